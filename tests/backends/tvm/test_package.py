"""Packages (.dlcpkg), the deploy runtime and the compile cache."""
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tvm")
pytestmark = pytest.mark.tvm

import dlc  # noqa: E402
from dlc.backends.tvm import cache as tvm_cache  # noqa: E402
from dlc.backends.tvm.package import example_input_specs, read_manifest, source_hash, write_package  # noqa: E402
from dlc.errors import DlcError  # noqa: E402

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("dlc-cache")
    old = os.environ.get("DLC_CACHE_DIR")
    os.environ["DLC_CACHE_DIR"] = str(d)
    yield d
    if old is None:
        os.environ.pop("DLC_CACHE_DIR", None)
    else:
        os.environ["DLC_CACHE_DIR"] = old


def _package(spec, out, target="cpu"):
    m = dlc.load(ROOT / spec)
    cm, hit = tvm_cache.compile_cached(m.graph, target)
    w = m.init_weights(0)
    write_package(out, cm, w, source_hash=source_hash(ROOT / spec), spec_path=spec, model_name=m.name,
                  target_name=target, example_inputs=example_input_specs(m._elaborate("eval")),
                  example_dims=dict(m.graph.dims))
    return m, w


@pytest.fixture(scope="module")
def mlp_pkg(cache_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("pkg") / "mlp.dlcpkg"
    m, w = _package("specs/mlp.dln", out)
    return out, m, w


def _close(a, b, rel=1e-4):
    np.testing.assert_allclose(a, b, rtol=rel, atol=rel * max(1.0, float(np.abs(b).max())))


def test_round_trip_in_a_fresh_process_without_frontend_or_torch(mlp_pkg, tmp_path):
    path, m, w = mlp_pkg
    for n in (1, 7):   # one package, symbolic batch
        x = m.random_inputs(n, bind={"N": n})
        np.save(tmp_path / f"x{n}.npy", x["x"])
        np.save(tmp_path / f"ref{n}.npy", m.run(x, w)["output"])
    code = f"""
import sys, json, numpy as np
import dlc.runtime
pkg = dlc.runtime.load({str(path)!r})
res = {{}}
for n in (1, 7):
    out = pkg.run({{"x": np.load({str(tmp_path)!r} + f"/x{{n}}.npy")}})["output"]
    ref = np.load({str(tmp_path)!r} + f"/ref{{n}}.npy")
    res[n] = [list(out.shape), float(np.abs(out - ref).max()), float(np.abs(ref).max())]
res["modules"] = [k for k in ("lark", "torch", "dlc.frontend", "dlc.api") if k in sys.modules]
print(json.dumps(res))
"""
    env = dict(os.environ, TVM_NUM_THREADS="2")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
    assert p.returncode == 0, p.stderr
    res = json.loads(p.stdout.strip().splitlines()[-1])
    assert res["modules"] == []
    assert res["1"][0] == [1, 10] and res["7"][0] == [7, 10]
    for n in ("1", "7"):
        assert res[n][1] <= 1e-4 * max(1.0, res[n][2])


def test_manifest(mlp_pkg):
    path, m, _ = mlp_pkg
    man = read_manifest(path)
    assert man["format"] == "dlcpkg" and man["format_version"] == 1
    assert man["model"] == "MLP" and man["target_name"] == "cpu"
    from dlc.runtime.package import host_arch
    assert man["target"]["kind"] == "llvm" and man["target"]["mtriple"] == f"{host_arch()}-linux-gnu"
    assert man["library"]["file"] == "lib.so" and man["library"]["format"] == "so"
    assert man["signature"]["inputs"][0]["shape"] == ["N", 64]
    assert man["signature"]["symbolic_dims"] == ["N"]
    assert len(man["source_hash"]) == 64 and man["tvm_version"] and man["dlc_version"] == dlc.__version__
    with zipfile.ZipFile(path) as z:
        assert sorted(z.namelist()) == ["lib.so", "manifest.json", "weights.safetensors"]


def test_lenet5_in_process_and_example_inputs(cache_dir, tmp_path):
    out = tmp_path / "lenet5.dlcpkg"
    m, w = _package("specs/lenet5.dln", out)
    pkg = dlc.runtime.load(out)
    x = m.random_inputs(3, bind={"N": 3})
    _close(pkg.run(x)["output"], m.run(x, w)["output"])
    # no inputs: drawn exactly as Model.random_inputs draws them
    x0 = m.random_inputs(0)
    np.testing.assert_array_equal(pkg.example_inputs(0)["image"], x0["image"])
    _close(pkg.run()["output"], m.run(x0, w)["output"])
    assert [s["name"] for s in pkg.inputs] == ["image"] and pkg.outputs[0]["name"] == "output"


def test_input_errors(mlp_pkg):
    path, _, _ = mlp_pkg
    pkg = dlc.runtime.load(path)
    with pytest.raises(DlcError, match=r"input 'x' has shape \(2, 65\), the package expects \(N, 64\)"):
        pkg.run({"x": np.zeros((2, 65), np.float32)})
    with pytest.raises(DlcError, match="input 'x' has 1 dimensions"):
        pkg.run({"x": np.zeros(64, np.float32)})
    with pytest.raises(DlcError, match="dtype complex128"):
        pkg.run({"x": np.zeros((1, 64), np.complex128)})
    with pytest.raises(DlcError, match="missing input 'x'"):
        pkg.runner.run({})
    with pytest.raises(DlcError, match="no input y"):
        pkg.run({"x": np.zeros((1, 64), np.float32), "y": np.zeros(1)})
    with pytest.raises(DlcError, match="no entry for 'hidden.weight'"):
        pkg.set_weights({})


def test_not_a_package(tmp_path):
    with pytest.raises(DlcError, match="no such package"):
        dlc.runtime.load(tmp_path / "missing.dlcpkg")
    bad = tmp_path / "bad.dlcpkg"
    bad.write_bytes(b"not a zip")
    with pytest.raises(DlcError, match="is not a dlc package"):
        dlc.runtime.load(bad)
    z = tmp_path / "other.dlcpkg"
    with zipfile.ZipFile(z, "w") as f:
        f.writestr("hello.txt", "hi")
    with pytest.raises(DlcError, match="has no manifest.json"):
        read_manifest(z)


def _rewrite_manifest(src, dst, change):
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for item in zin.namelist():
            data = zin.read(item)
            if item == "manifest.json":
                man = json.loads(data)
                change(man)
                data = json.dumps(man).encode()
            zout.writestr(item, data)


def test_package_for_another_machine_is_refused(mlp_pkg, tmp_path):
    path, _, _ = mlp_pkg
    other = tmp_path / "arm.dlcpkg"
    _rewrite_manifest(path, other, lambda m: m["library"].update(arch="aarch64", triple="aarch64-linux-gnu"))
    with pytest.raises(DlcError, match="compiled for aarch64.*this machine is x86_64"):
        dlc.runtime.load(other)
    newer = tmp_path / "newer.dlcpkg"
    _rewrite_manifest(path, newer, lambda m: m.update(format_version=99))
    with pytest.raises(DlcError, match="package format 99"):
        dlc.runtime.load(newer)
    with pytest.raises(DlcError, match="compiled for cpu.*not cuda"):
        dlc.runtime.load(path, device="cuda")


def test_atomic_write_and_crash_keeps_old_package(mlp_pkg, tmp_path, monkeypatch):
    path, m, w = mlp_pkg
    out = tmp_path / "m.dlcpkg"
    cm, hit = tvm_cache.compile_cached(m.graph, "cpu")
    assert hit
    write_package(out, cm, w, source_hash="x", spec_path="specs/mlp.dln", model_name="MLP")
    assert [p.name for p in tmp_path.iterdir()] == ["m.dlcpkg"]      # no temporary left
    before = out.read_bytes()

    real_write = zipfile.ZipFile.write

    def crash(self, filename, arcname=None, *a, **k):
        if arcname == "lib.so":
            raise OSError("disk full (simulated)")
        return real_write(self, filename, arcname, *a, **k)

    monkeypatch.setattr(zipfile.ZipFile, "write", crash)
    w2 = {k: v + 1 for k, v in w.items()}
    with pytest.raises(OSError, match="simulated"):
        write_package(out, cm, w2, source_hash="y", spec_path="specs/mlp.dln", model_name="MLP")
    assert out.read_bytes() == before                                  # the old package survives
    assert [p.name for p in tmp_path.iterdir()] == ["m.dlcpkg"]
    monkeypatch.undo()
    assert read_manifest(out)["source_hash"] == "x"


def test_cache_hit_skips_build(cache_dir, monkeypatch):
    from dlc.backends.tvm import pipeline
    calls = []
    real = pipeline.build

    def counting(*a, **k):
        calls.append(1)
        return real(*a, **k)

    monkeypatch.setattr(pipeline, "build", counting)
    m = dlc.load(ROOT / "specs/perceptron.dln")
    cm1, hit1 = tvm_cache.compile_cached(m.graph, "cpu")
    cm2, hit2 = tvm_cache.compile_cached(m.graph, "cpu")
    assert (hit1, hit2) == (False, True) and len(calls) == 1
    assert cm2.signature == cm1.signature and cm2.lib_path == cm1.lib_path
    x, w = m.random_inputs(0, bind={"N": 5}), m.init_weights(0)
    _close(cm2.runner().set_weights(w).run(x)["output"], m.run(x, w)["output"])
    # a different binding or target is another entry
    _, hit3 = tvm_cache.compile_cached(m._elaborate("eval", {"N": 2}), "cpu")
    assert not hit3 and len(calls) == 2
    _, hit4 = tvm_cache.compile_cached(m.graph, "cpu", cache=False)
    assert not hit4 and len(calls) == 3


@pytest.mark.parametrize("damage", ["entry", "lib", "delete", "lib-same-size", "entry-signature"])
def test_corrupt_cache_entry_is_a_miss(cache_dir, damage):
    m = dlc.load(ROOT / "specs/perceptron.dln")
    cm, _ = tvm_cache.compile_cached(m.graph, "cpu")
    entry = cm.lib_path.parent
    if damage == "entry":
        (entry / "entry.json").write_text("{not json")
    elif damage == "lib":
        with open(cm.lib_path, "r+b") as f:
            f.truncate(100)
    elif damage == "lib-same-size":          # a flipped byte: the size still matches
        data = bytearray(cm.lib_path.read_bytes())
        data[len(data) // 2] ^= 0xFF
        cm.lib_path.write_bytes(bytes(data))
    elif damage == "entry-signature":        # still valid JSON, but it lies about the outputs
        meta = json.loads((entry / "entry.json").read_text())
        meta["signature"]["outputs"][0]["shape"] = ["N", 999]
        (entry / "entry.json").write_text(json.dumps(meta))
    else:
        import shutil
        shutil.rmtree(cache_dir)
    cm2, hit = tvm_cache.compile_cached(m.graph, "cpu")
    assert not hit
    x, w = m.random_inputs(0), m.init_weights(0)
    _close(cm2.runner().set_weights(w).run(x)["output"], m.run(x, w)["output"])
    _, hit = tvm_cache.compile_cached(m.graph, "cpu")
    assert hit


def test_package_for_a_bigger_cpu_is_refused(mlp_pkg, tmp_path):
    path, _, _ = mlp_pkg
    big = tmp_path / "big.dlcpkg"
    _rewrite_manifest(path, big, lambda m: m["target"].update(mcpu="diamondrapids"))
    from tvm.target import codegen
    from dlc.runtime.package import host_arch
    if host_arch() != "x86_64" or codegen.llvm_get_system_cpu() == "diamondrapids":
        pytest.skip("needs an x86_64 CPU older than diamondrapids")
    with pytest.raises(DlcError, match="compiled for CPU 'diamondrapids', which has instructions this CPU lacks"):
        dlc.runtime.load(big)
