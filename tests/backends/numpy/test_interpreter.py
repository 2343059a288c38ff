"""The NumPy interpreter on whole graphs: scan, train/eval mode, seeds, dtypes."""
import numpy as np
import pytest

import dlc
from dlc.backends.numpy.kernels import KERNELS
from dlc.compiler.ops import OPS

DATA = "tests/data"


def test_every_op_has_a_numpy_kernel():
    # or a decomposition, which the interpreter runs in its place
    missing = sorted(n for n in OPS if n not in KERNELS and n != "scan" and OPS[n].decompose is None)
    assert not missing, f"ops without a NumPy lowering or a decomposition: {missing}"
    extra = sorted(n for n in KERNELS if n not in OPS)
    assert not extra, f"kernels without an op definition: {extra}"


def test_scan_cell_equals_builtin_lstm_kernel():
    m = dlc.load(f"{DATA}/lstm_scan.dln")
    w = m.init_weights(seed=3)
    x = np.random.default_rng(0).standard_normal((3, 7, 8)).astype(np.float64)
    out = m.run({"x": x}, w, dtype="float64")["ys"]
    # the hand-written cell uses PyTorch's gate order i, f, g, o: compare with the lstm kernel
    y, hn, cn = KERNELS["lstm"](x, None, None, w["cell.weight_ih"].astype(np.float64),
                                w["cell.weight_hh"].astype(np.float64), w["cell.bias_ih"].astype(np.float64),
                                w["cell.bias_hh"].astype(np.float64), batch_first=True)
    assert out.shape == (3, 7, 16)
    np.testing.assert_allclose(out, y, rtol=1e-12, atol=1e-14)


def test_scan_length_is_symbolic():
    m = dlc.load(f"{DATA}/lstm_scan.dln")
    assert "T" in str(m.graph.outputs[0].type)
    w = m.init_weights()
    for T in (1, 4, 9):
        x = np.zeros((2, T, 8), np.float32)
        assert m.run({"x": x}, w)["ys"].shape == (2, T, 16)


BN_SPEC = """
model Net(x: f32[N, 3, 4, 4]) -> f32[N, 3, 4, 4] {
    example N = 4
    y = batchnorm(x, momentum=0.5)
    return dropout(y, 0.5)
}
"""


def test_train_mode_updates_batchnorm_and_applies_dropout(tmp_path):
    p = tmp_path / "bn.dln"
    p.write_text(BN_SPEC)
    m = dlc.load(p)
    w = m.init_weights()
    x = np.random.default_rng(1).standard_normal((4, 3, 4, 4)).astype(np.float32) * 3 + 1
    out_eval, upd_eval = m.run_with_state({"x": x}, w, mode="eval")
    assert upd_eval == {}
    # eval: running stats are (0, 1), dropout is the identity
    np.testing.assert_allclose(out_eval["output"], x / np.sqrt(1 + 1e-5), rtol=1e-5)
    out_train, upd = m.run_with_state({"x": x}, w, mode="train", seed=7)
    mean = x.mean(axis=(0, 2, 3))
    var = x.var(axis=(0, 2, 3), ddof=1)
    np.testing.assert_allclose(upd["y.running_mean"], 0.5 * mean, rtol=1e-5)
    np.testing.assert_allclose(upd["y.running_var"], 0.5 + 0.5 * var, rtol=1e-5)
    assert int(upd["y.num_batches_tracked"]) == 1
    zeros = (out_train["output"] == 0).mean()
    assert 0.3 < zeros < 0.7
    # the same seed gives the same mask; another seed a different one
    again, _ = m.run_with_state({"x": x}, w, mode="train", seed=7)
    np.testing.assert_array_equal(again["output"], out_train["output"])
    other, _ = m.run_with_state({"x": x}, w, mode="train", seed=8)
    assert not np.array_equal(other["output"], out_train["output"])


def test_float64_run_keeps_double_precision():
    m = dlc.load("specs/lenet5.dln")
    w = m.init_weights()
    x = np.random.default_rng(0).standard_normal((2, 1, 32, 32))
    o64 = m.run({"image": x}, w, dtype="float64")["output"]
    o32 = m.run({"image": x.astype(np.float32)}, w)["output"]
    assert o64.dtype == np.float64 and o32.dtype == np.float32
    np.testing.assert_allclose(o32, o64, rtol=1e-4, atol=1e-6)


def test_seeded_initialisation_is_reproducible_and_per_parameter():
    m = dlc.load("specs/lenet5.dln")
    a, b, c = m.init_weights(0), m.init_weights(0), m.init_weights(1)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    assert not np.array_equal(a["c1.weight"], c["c1.weight"])
    # PyTorch's default: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for linear weights
    bound = 1 / np.sqrt(400)
    assert np.abs(a["f5.weight"]).max() <= bound
    assert np.abs(a["f5.weight"]).max() > 0.9 * bound


def test_kernel_failure_is_reported_at_the_dln_line(tmp_path):
    from dlc.errors import DlcRuntimeError
    p = tmp_path / "e.dln"
    p.write_text("model E(idx: i64[N, 3]) {\n    example N = 1\n    return embedding(idx, 10, 4)\n}\n")
    m = dlc.load(p)
    with pytest.raises(DlcRuntimeError) as e:
        m.run({"idx": np.array([[1, 2, 99]])}, m.init_weights())
    assert e.value.span.line == 3
