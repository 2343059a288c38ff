"""Issue 12's pruning acceptance: digits_cnn trained on digits, 50% of every
conv and dense weight pruned, fine-tuned 5 epochs, stays within 1 point of
the dense accuracy (about 3.5 minutes on the NumPy backend: slow)."""
import numpy as np
import pytest

import dlc
from dlc.prune import load_masks, prune_unstructured, save_pruned
from dlc.runtime.data import load_dataset

SPEC = "specs/digits_cnn.dln"


def _accuracy(m, weights) -> float:
    xs, ys = load_dataset("digits_images", seed=0, input_shape=(1, 8, 8)).reshaped((1, 8, 8)).val
    logits = m.run({"image": xs.astype(np.float32)}, weights, bind={"N": len(xs)})["output"]
    return float((logits.argmax(axis=1) == ys).mean())


@pytest.mark.slow
def test_half_pruned_digits_cnn_fine_tuned_stays_within_one_point(tmp_path):
    m = dlc.load(SPEC)
    dense = dlc.train(SPEC, out=str(tmp_path / "dense"), progress=False).weights
    pruned, masks, report = prune_unstructured(m, dense, 0.5)
    save_pruned(tmp_path / "p.safetensors", pruned, masks, report)
    tuned = dlc.train(SPEC, epochs=5, out=str(tmp_path / "ft"), progress=False,
                      weights=str(tmp_path / "p.safetensors")).weights
    for n, keep in load_masks(tmp_path / "p.safetensors").items():
        w = np.asarray(tuned[n])
        assert np.all(w[~keep] == 0) and (w == 0).mean() >= 0.5, n
    a_dense, a_tuned = _accuracy(m, dense), _accuracy(m, tuned)
    assert a_dense > 0.95
    assert a_tuned >= a_dense - 0.01, (a_dense, _accuracy(m, pruned), a_tuned)
