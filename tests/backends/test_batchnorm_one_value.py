"""Batch norm in training mode with one value per channel is an error, the same
one on every backend: located at the `.dln` line of the batchnorm, with a hint
about the batch size and drop_last (PyTorch raises "Expected more than 1 value
per channel when training"; TVM used to write NaN into running_var and carry
on with zeros)."""
from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

import dlc
from dlc.cli import main
from dlc.errors import DlcRuntimeError

DENSE = """\
model BN(x: f32[N, 6]) -> f32[N, 3] {
    example N = 2
    h = dense(x, 4) |> batchnorm |> relu
    output = dense(h, 3)
    return output
}

train BN on npz {
    loss      = cross_entropy(output, label)
    optimizer = sgd(lr=0.1)
    epochs    = 1
    batch     = 4
    shuffle   = false
}
"""
BN_LINE, BN_COL = 3, 24

IMAGE = """\
model BNI(x: f32[N, 2, H, W]) -> f32[N, 2, H, W] {
    example N = 2
    example H = 3
    example W = 3
    y = batchnorm(x)
    return y
}
"""

BACKENDS = ["numpy", "torch", pytest.param("tvm", marks=pytest.mark.tvm)]


def _spec(tmp_path, text, name="bn.dln"):
    p = tmp_path / name
    p.write_text(text)
    return p


def _assert_located(err: DlcRuntimeError, path, line):
    assert err.span is not None and err.span.line == line and str(err.span.file).endswith(path.name), err.span
    assert "one value per channel" in str(err)
    assert "drop_last" in (err.hint or "") and "batch" in (err.hint or "")


@pytest.mark.parametrize("backend", BACKENDS)
def test_train_mode_batch_of_one_is_a_located_error(tmp_path, backend):
    if backend == "tvm":
        pytest.importorskip("tvm")
    p = _spec(tmp_path, DENSE)
    m = dlc.load(p)
    w = m.init_weights(0)
    x = np.ones((1, 6), np.float32)
    with pytest.raises(DlcRuntimeError) as e:
        m.run({"x": x}, w, backend=backend, mode="train")
    _assert_located(e.value, p, BN_LINE)
    # two rows are fine, and eval mode with one row is fine
    m.run({"x": np.ones((2, 6), np.float32)}, w, backend=backend, mode="train")
    m.run({"x": x}, w, backend=backend, mode="eval")


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_spatial_one_by_one_batch_of_one(tmp_path, backend):
    p = _spec(tmp_path, IMAGE, "bni.dln")
    m = dlc.load(p)
    w = m.init_weights(0)
    with pytest.raises(DlcRuntimeError) as e:
        m.run({"x": np.ones((1, 2, 1, 1), np.float32)}, w, backend=backend, mode="train")
    _assert_located(e.value, p, 5)
    # one image of 2x2 has four values per channel: fine
    m.run({"x": np.ones((1, 2, 2, 2), np.float32)}, w, backend=backend, mode="train")


@pytest.mark.parametrize("backend", BACKENDS)
def test_dlc_train_last_batch_of_one(tmp_path, backend):
    """5 training rows at batch 4 leave a last batch of one: every backend stops
    with the same located error (TVM used to exit 0 with a NaN checkpoint)."""
    if backend == "tvm":
        pytest.importorskip("tvm")
    p = _spec(tmp_path, DENSE)
    rng = np.random.default_rng(0)
    data = tmp_path / "d.npz"
    np.savez(data, x_train=rng.standard_normal((5, 6)).astype(np.float32), y_train=rng.integers(0, 3, 5),
             x_val=rng.standard_normal((4, 6)).astype(np.float32), y_val=rng.integers(0, 3, 4))
    r = CliRunner().invoke(main, ["train", str(p), "--data", "npz", "--data-path", str(data), "--backend", backend,
                                  "--out", str(tmp_path / "run"), "--no-progress"])
    assert r.exit_code != 0, r.output
    first = r.output.strip().splitlines()
    assert any(line.startswith(f"{p}:{BN_LINE}:{BN_COL}: error:") and "one value per channel" in line
               for line in first), r.output
    assert "internal error" not in r.output and "Traceback" not in r.output
    assert "drop_last" in r.output
