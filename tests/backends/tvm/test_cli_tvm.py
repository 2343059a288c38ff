"""dlc compile/run/bench/targets with TVM targets."""
import json
import re
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

pytest.importorskip("tvm")
pytestmark = pytest.mark.tvm

from dlc.cli import main  # noqa: E402

ROOT = Path(__file__).resolve().parents[3]
MLP = str(ROOT / "specs/mlp.dln")


@pytest.fixture(autouse=True)
def cache_dir(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("DLC_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "dlc-cache-cli"))


def _invoke(*args):
    r = CliRunner().invoke(main, [str(a) for a in args])
    return r.exit_code, r.output


def test_compile_run_and_cache_hit(tmp_path):
    pkg = tmp_path / "mlp.dlcpkg"
    code, out = _invoke("compile", MLP, "--target", "cpu", "-o", pkg)
    assert code == 0, out
    assert out.startswith(f"MLP -> {pkg}: cpu (llvm ") and "cache miss" in out and "KB" in out
    code, out = _invoke("compile", MLP, "--target", "cpu", "-o", pkg)
    assert code == 0 and "cache hit" in out
    x = np.random.default_rng(0).standard_normal((3, 64)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    code, out = _invoke("run", pkg, "-i", f"x={tmp_path / 'x.npy'}", "-o", tmp_path / "out.npz")
    assert code == 0, out
    assert "(3, 10)" in out
    import dlc
    m = dlc.load(MLP)
    ref = m.run({"x": x}, m.init_weights(0))["output"]
    np.testing.assert_allclose(np.load(tmp_path / "out.npz")["output"], ref, rtol=1e-4, atol=1e-5)
    code, out = _invoke("run", pkg)                       # random inputs at the example size
    assert code == 0 and "(1, 10)" in out
    code, out = _invoke("bench", pkg, "--repeat", "3", "--json")
    assert code == 0, out
    assert json.loads(out)["median_ms"] > 0


def test_run_dln_with_tvm_backend_matches_numpy():
    code, out_tvm = _invoke("run", MLP, "--backend", "tvm", "--bind", "N=2")
    assert code == 0, out_tvm
    code, out_np = _invoke("run", MLP, "--bind", "N=2")
    assert code == 0 and "(2, 10)" in out_tvm
    row = lambda s: [ln for ln in s.splitlines() if "output" in ln and "(" in ln][0]  # noqa: E731
    cells = lambda s: re.split(r"\s*│\s*|\s{2,}", row(s).strip("│ "))  # noqa: E731 - rich, or plain when piped
    assert cells(out_tvm)[3:5] == cells(out_np)[3:5]   # mean, std as printed
    assert len(cells(out_np)) == 8


def test_errors(tmp_path):
    code, out = _invoke("compile", MLP, "--target", "cpux")
    assert code == 1
    assert out.startswith("error: unknown target 'cpux'\nhint: did you mean 'cpu'?")
    code, out = _invoke("run", tmp_path / "missing.dlcpkg")
    assert code == 1 and "error: no such package:" in out
    pkg = tmp_path / "mlp.dlcpkg"
    assert _invoke("compile", MLP, "-t", "cpu", "-o", pkg)[0] == 0
    np.save(tmp_path / "bad.npy", np.zeros((2, 65), np.float32))
    code, out = _invoke("run", pkg, "-i", f"x={tmp_path / 'bad.npy'}")
    assert code == 1
    assert "error: input 'x' has shape (2, 65), the package expects (N, 64)" in out
    code, out = _invoke("compile", MLP, "-t", "cuda", "--arch", "80")
    assert code == 1 and "unknown CUDA architecture '80'" in out
    bad = tmp_path / "bad.dln"
    bad.write_text("model M(x: f32[N, 4]) -> f32[N, 2] {\n    example N = 1\n    y = dense(x, 2, bogus=1)\n"
                   "    return y\n}\n")
    code, out = _invoke("compile", bad, "-t", "cpu", "-o", tmp_path / "b.dlcpkg")
    assert code == 1 and out.startswith(f"{bad}:3:") and "error:" in out


def test_targets_command():
    code, out = _invoke("targets", "--json")
    assert code == 0
    names = [r["name"] for r in json.loads(out)]
    assert names == ["cpu", "llvm", "cuda", "aarch64", "rasp4", "jetson-orin"]
    code, out = _invoke("targets")
    assert code == 0 and "jetson-orin" in out and "rasp4" in out


def test_torch_target_still_works(tmp_path):
    code, out = _invoke("compile", MLP, "--target", "torch", "-o", tmp_path / "m.py")
    assert code == 0 and "class MLP" in (tmp_path / "m.py").read_text()


def test_cached_compile_does_not_import_tvm(tmp_path):
    """The second compile of a spec is a cache hit that never imports TVM."""
    import os
    import subprocess
    import sys
    code = f"""
import sys
from dlc.cli import main
try:
    main(["compile", {MLP!r}, "-t", "cpu", "-o", {str(tmp_path / 'm.dlcpkg')!r}])
except SystemExit as e:
    assert not e.code, e.code
print("TVM_IMPORTED", "tvm" in sys.modules)
"""
    env = dict(os.environ, DLC_CACHE_DIR=str(tmp_path / "cache"), TVM_NUM_THREADS="2")
    runs = [subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
            for _ in range(2)]
    for r in runs:
        assert r.returncode == 0, r.stderr
    assert "cache miss" in runs[0].stdout and "TVM_IMPORTED True" in runs[0].stdout
    assert "cache hit" in runs[1].stdout and "TVM_IMPORTED False" in runs[1].stdout


def test_database_hash_is_content_based(tmp_path):
    from dlc.backends.tvm.cache import database_hash, default_tuning_dir
    (tmp_path / "database_workload.json").write_text("a")
    (tmp_path / "database_tuning_record.json").write_text("b")
    h1 = database_hash(tmp_path)
    assert h1 == database_hash(str(tmp_path)) and database_hash(None) is None
    (tmp_path / "database_tuning_record.json").write_text("c")
    assert database_hash(tmp_path) != h1
    assert default_tuning_dir({"kind": "llvm"}) is None      # nothing tuned in this cache
