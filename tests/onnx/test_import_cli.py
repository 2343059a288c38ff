"""`dlc import`: summary, --ir, --weights, located errors with exit status 1."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("onnx")
pytest.importorskip("torch")
import real_models
from click.testing import CliRunner

from dlc.cli import main
from dlc.runtime.weights import load_weights


@pytest.fixture(scope="module")
def mlp_file(tmp_path_factory):
    data, _feed, module = real_models.export("mlp")
    p = tmp_path_factory.mktemp("onnx") / "mlp.onnx"
    p.write_bytes(data)
    return p, module


def test_import_summary_ir_and_weights(mlp_file, tmp_path):
    p, module = mlp_file
    w = tmp_path / "w.safetensors"
    r = CliRunner().invoke(main, ["import", str(p), "--ir", "--weights", str(w)])
    assert r.exit_code == 0, r.output
    assert "input  x: f32[N, 64]" in r.output and "linear x2" in r.output
    assert "linear(x, @hidden.weight, @hidden.bias)" in r.output
    saved = load_weights(w)
    for name, t in module.state_dict().items():
        np.testing.assert_array_equal(saved[name], t.numpy())


def test_import_bind_fixes_the_dynamic_dim(mlp_file):
    p, _ = mlp_file
    r = CliRunner().invoke(main, ["import", str(p), "--bind", "N=3"])
    assert r.exit_code == 0 and "input  x: f32[3, 64]" in r.output


def test_import_bad_file_is_one_error_line(tmp_path):
    p = tmp_path / "bad.onnx"
    p.write_bytes(b"\x08\x07garbage")
    r = CliRunner().invoke(main, ["import", str(p)])
    assert r.exit_code == 1
    assert "error:" in r.output and "Traceback" not in r.output


def test_import_writes_a_spec_and_its_weights(tmp_path):
    import dlc
    data, feed, module = real_models.export("lenet5")
    p = tmp_path / "lenet.onnx"
    p.write_bytes(data)
    out = tmp_path / "lenet.dln"
    r = CliRunner().invoke(main, ["import", str(p), "-o", str(out)])
    assert r.exit_code == 0, r.output
    w = load_weights(tmp_path / "lenet.safetensors")
    m = dlc.load(out)
    import torch
    with torch.no_grad():
        ref = module(torch.from_numpy(feed["x"])).numpy()
    got = next(iter(m.run(feed, w, bind={"N": 2}).values()))
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-5)
