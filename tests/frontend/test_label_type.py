"""How `label` is typed from the loss that consumes it."""
from __future__ import annotations

import pytest

import dlc

SEQ_SPEC = """
model Tagger(ids: i64[N, T]) -> f32[N, T, 7] {
    emb = embedding(ids, 11, 5)
    return dense(emb, 7)
}
train Tagger on npz { loss = LOSS }
"""


@pytest.mark.parametrize("loss, want", [
    # a language model's loss: logits [N, T, V] flattened to [N*T, V], the label [N, T] to [N*T]
    ("cross_entropy(flatten(output, 0, 1), flatten(label, 0))", "i64[N, T]"),
    ("nll_loss(flatten(log_softmax(output, -1), 0, 1), flatten(label, 0))", "i64[N, T]"),
    ("cross_entropy(flatten(output, 0, 1), flatten(label, 0), label_smoothing=0.1)", "i64[N, T]"),
    # class indices along axis 1: the output without that axis
    ("cross_entropy(output, label)", "i64[N, 7]"),
    # a regression loss: the output's own type
    ("mse_loss(output, label)", "f32[N, T, 7]"),
])
def test_label_type_follows_the_loss(tmp_path, loss, want):
    p = tmp_path / "m.dln"
    p.write_text(SEQ_SPEC.replace("LOSS", loss))
    g, _ = dlc.load(p).grad_graph()
    (label,) = [v for v in g.inputs if v.name == "label"]
    assert str(label.type) == want


def test_the_flattened_loss_trains_and_differentiates(tmp_path):
    p = tmp_path / "m.dln"
    p.write_text(SEQ_SPEC.replace("LOSS", "cross_entropy(flatten(output, 0, 1), flatten(label, 0))"))
    m = dlc.load(p, bind={"N": 2, "T": 3})
    import numpy as np
    rng = np.random.default_rng(0)
    res = m.grad({"ids": rng.integers(0, 11, (2, 3))}, label=rng.integers(0, 7, (2, 3)), bind={"N": 2, "T": 3})
    assert np.isfinite(res["loss"]) and res["dense.weight"].shape == (7, 5)
