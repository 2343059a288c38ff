"""`dlc prune` unstructured: magnitude pruning, the mask format, masks kept
through fine-tuning, and bad input."""
import numpy as np
import pytest
from click.testing import CliRunner

import dlc
from dlc.cli import main
from dlc.errors import DlcError
from dlc.prune import load_masks, masked_step, prune_unstructured, save_pruned
from dlc.runtime.weights import load_weights, save_weights

DIGITS = "specs/digits_cnn.dln"
WEIGHTS = ("conv1.weight", "conv2.weight", "hidden.weight", "output.weight")


@pytest.fixture(scope="module")
def digits():
    m = dlc.load(DIGITS)
    return m, m.init_weights(seed=3)


@pytest.mark.parametrize("sparsity", [0.5, 0.3, 0.9, 0.0])
def test_each_layer_loses_exactly_its_share_of_smallest_weights(digits, sparsity):
    m, w = digits
    pruned, masks, report = prune_unstructured(m, w, sparsity)
    assert sorted(masks) == sorted(WEIGHTS)                 # conv and dense weights only
    for name in WEIGHTS:
        n = w[name].size
        k = round(sparsity * n)
        removed = ~masks[name]
        assert removed.sum() == k and (pruned[name] == 0).sum() == k
        assert report.layers[name] == (k, n)
        if 0 < k < n:   # every pruned weight is no larger than every kept one
            assert np.abs(w[name][removed]).max() <= np.abs(w[name][~removed]).min()
        np.testing.assert_array_equal(pruned[name][~removed], w[name][~removed])
    for name in ("conv1.bias", "conv2.bias", "hidden.bias", "output.bias"):
        np.testing.assert_array_equal(pruned[name], w[name])


def test_masks_equal_torch_l1_unstructured(digits):
    torch = pytest.importorskip("torch")
    from torch.nn.utils import prune as tprune
    m, w = digits
    _, masks, _ = prune_unstructured(m, w, 0.6)
    for name in WEIGHTS:
        mod = torch.nn.Module()
        mod.weight = torch.nn.Parameter(torch.from_numpy(w[name].copy()))
        tprune.l1_unstructured(mod, "weight", amount=0.6)
        np.testing.assert_array_equal(masks[name], mod.weight_mask.numpy().astype(bool), err_msg=name)


def test_global_scope_ranks_all_layers_together(digits):
    m, w = digits
    _, masks, report = prune_unstructured(m, w, 0.5, scope="global")
    total = sum(w[n].size for n in WEIGHTS)
    assert report.pruned == round(0.5 * total) == sum((~masks[n]).sum() for n in WEIGHTS)
    gone = np.concatenate([np.abs(w[n][~masks[n]]) for n in WEIGHTS])
    kept = np.concatenate([np.abs(w[n][masks[n]]) for n in WEIGHTS])
    assert gone.max() <= kept.min()
    # layers differ in scale, so the per-layer shares differ
    assert len({round(float((~masks[n]).mean()), 3) for n in WEIGHTS}) > 1


def test_the_file_holds_the_weights_and_the_masks(tmp_path, digits):
    m, w = digits
    pruned, masks, report = prune_unstructured(m, w, 0.5)
    path = tmp_path / "p.safetensors"
    save_pruned(path, pruned, masks, report)
    loaded = load_weights(path)
    assert sorted(loaded) == sorted(w)                     # nothing but the model's weights
    back = load_masks(path)
    assert sorted(back) == sorted(WEIGHTS)
    for n in WEIGHTS:
        np.testing.assert_array_equal(back[n], masks[n])
    assert load_masks(tmp_path / "p.safetensors", loaded).keys() == back.keys()
    save_weights(tmp_path / "plain.safetensors", w)
    assert load_masks(tmp_path / "plain.safetensors") == {}


def test_cli_prune_then_run_strictly(tmp_path, digits):
    m, w = digits
    save_weights(tmp_path / "w.safetensors", w)
    out = tmp_path / "p.safetensors"
    r = CliRunner().invoke(main, ["prune", DIGITS, "--weights", str(tmp_path / "w.safetensors"),
                                  "--sparsity", "0.5", "-o", str(out)])
    assert r.exit_code == 0, r.output
    assert "6,792 of 13,584" in r.output and "conv2.weight: 2,304 of 4,608" in r.output
    r = CliRunner().invoke(main, ["run", DIGITS, "--weights", str(out), "--dtype", "float64"])
    assert r.exit_code == 0, r.output
    x = m.random_inputs(0)
    got = m.run(x, load_weights(out), dtype="float64")["output"]
    want = m.run(x, prune_unstructured(m, w, 0.5)[0], dtype="float64")["output"]
    np.testing.assert_array_equal(got, want)


class _NumpyStep:
    """A stand-in training step: every update moves every weight."""

    def __init__(self, weights):
        self.weights = dict(weights)

    def run(self, feed, lr, step, seed):
        for k in self.weights:
            self.weights[k] = self.weights[k] - lr * np.sign(self.weights[k] + 0.5)
        return 0.0


def test_masked_step_zeroes_after_every_update(digits):
    m, w = digits
    pruned, masks, _ = prune_unstructured(m, w, 0.5)
    step = masked_step(_NumpyStep(pruned), masks)
    for i in range(3):
        step.run({}, 0.1, i, 0)
        for n in WEIGHTS:
            assert not np.array_equal(step.weights[n][masks[n]], pruned[n][masks[n]])
            assert np.all(step.weights[n][~masks[n]].view(np.uint32) == 0)      # +0.0, bit for bit
    assert masked_step(step.step, {}) is step.step


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_fine_tuning_keeps_the_pruned_weights_exactly_zero(tmp_path, digits, backend):
    if backend == "torch":
        pytest.importorskip("torch")
    m, w = digits
    pruned, masks, report = prune_unstructured(m, w, 0.5)
    path = tmp_path / "p.safetensors"
    save_pruned(path, pruned, masks, report)
    res = dlc.train(DIGITS, data="digits", epochs=1, max_steps=6, out=str(tmp_path / "run"), backend=backend,
                    weights=str(path), progress=False)
    for n in WEIGHTS:
        t = np.asarray(res.weights[n])
        assert np.all(t[~masks[n]].view(np.uint32) == 0), n
        assert not np.array_equal(t[masks[n]], pruned[n][masks[n]]), f"{n} was not trained"


@pytest.mark.parametrize("sparsity", [1.0, -0.1, float("nan"), 1.5])
def test_sparsity_out_of_range_is_an_error(digits, sparsity):
    m, w = digits
    with pytest.raises(DlcError, match="out of range"):
        prune_unstructured(m, w, sparsity)


def test_weights_of_another_model_are_refused(tmp_path, digits):
    m, _ = digits
    lenet = dlc.load("specs/lenet5.dln").init_weights(0)
    with pytest.raises(DlcError, match="no entry for 'conv1.weight'"):
        prune_unstructured(m, lenet, 0.5)
    _, w = digits
    bad = dict(w, **{"conv2.weight": w["conv2.weight"][:8]})
    with pytest.raises(DlcError, match=r"'conv2.weight' has shape \(8, 16, 3, 3\)"):
        prune_unstructured(m, bad, 0.5)
    with pytest.raises(DlcError, match="does not use: extra"):
        prune_unstructured(m, dict(w, extra=np.zeros(3)), 0.5)
    save_weights(tmp_path / "lenet.safetensors", lenet)
    r = CliRunner().invoke(main, ["prune", DIGITS, "-w", str(tmp_path / "lenet.safetensors"), "--sparsity", "0.5",
                                  "-o", str(tmp_path / "o.safetensors")])
    assert r.exit_code == 1 and "error:" in r.output and "Traceback" not in r.output
    r = CliRunner().invoke(main, ["prune", DIGITS, "-w", str(tmp_path / "lenet.safetensors"), "--sparsity", "2",
                                  "-o", str(tmp_path / "o.safetensors")])
    assert r.exit_code == 1 and "out of range" in r.output


def test_a_model_without_conv_or_dense_weights_is_an_error(tmp_path):
    spec = tmp_path / "act.dln"
    spec.write_text("model Act(x: f32[N, 4]) -> f32[N, 4] {\n    example N = 1\n    return relu(x)\n}\n")
    m = dlc.load(spec)
    with pytest.raises(DlcError, match="no conv or dense weights"):
        prune_unstructured(m, {}, 0.5)


def test_a_resumed_fine_tuning_run_keeps_the_masks(tmp_path, digits):
    m, w = digits
    pruned, masks, report = prune_unstructured(m, w, 0.5)
    path = tmp_path / "p.safetensors"
    save_pruned(path, pruned, masks, report)
    out = str(tmp_path / "run")
    dlc.train(DIGITS, data="digits", epochs=1, max_steps=3, out=out, weights=str(path), progress=False)
    res = dlc.train(DIGITS, data="digits", epochs=2, max_steps=6, out=out, resume=True, progress=False)
    assert res.epochs_run == 1
    for n in WEIGHTS:
        t = np.asarray(res.weights[n])
        assert np.all(t[~masks[n]].view(np.uint32) == 0), n
    path.unlink()
    with pytest.raises(DlcError, match="which is gone"):
        dlc.train(DIGITS, data="digits", epochs=3, max_steps=8, out=out, resume=True, progress=False)
