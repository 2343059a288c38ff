"""Target names, presets and the edge/CUDA packages."""
import os
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest

tvm = pytest.importorskip("tvm")
pytestmark = pytest.mark.tvm

import dlc  # noqa: E402
from dlc.backends.tvm import cache as tvm_cache  # noqa: E402
from dlc.backends.tvm.package import read_manifest, write_package  # noqa: E402
from dlc.backends.tvm.target import (TARGETS, availability, parse_options, physical_cores,  # noqa: E402
                                     resolve_target)
from dlc.errors import DlcError  # noqa: E402

ROOT = Path(__file__).resolve().parents[3]
CROSS = "aarch64-linux-gnu-gcc"


@pytest.fixture(autouse=True)
def cache_dir(tmp_path_factory, monkeypatch):
    d = tmp_path_factory.getbasetemp() / "dlc-cache-targets"
    monkeypatch.setenv("DLC_CACHE_DIR", str(d))
    return d


def test_every_preset_is_a_valid_tvm_target():
    for name in TARGETS:
        t = resolve_target(name)
        tvm.target.Target(t)                        # TVM accepts the dict
    assert resolve_target("host") == resolve_target("cpu") == resolve_target("tvm")


def test_cpu_is_detected():
    t = resolve_target("cpu")
    from tvm.target import codegen
    assert t["kind"] == "llvm" and t["mtriple"].endswith("-linux-gnu") and "conda" not in t["mtriple"]
    assert t["mcpu"] == codegen.llvm_get_system_cpu()
    assert t["num-cores"] == physical_cores()


def test_options_arch_and_presets():
    t = resolve_target("llvm", options=parse_options(["mcpu=skylake-avx512", "mattr=+avx512f,+fma", "num-cores=4"]))
    assert t["mcpu"] == "skylake-avx512" and t["mattr"] == ["+avx512f", "+fma"] and t["num-cores"] == 4
    assert resolve_target("cuda")["arch"] == "sm_90"
    assert resolve_target("cuda", arch="sm_80")["arch"] == "sm_80"
    assert resolve_target("aarch64") == {"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mattr": ["+neon"]}
    r = resolve_target("rasp4")
    assert (r["mcpu"], r["mtriple"], r["num-cores"]) == ("cortex-a72", "aarch64-linux-gnu", 4)
    j = resolve_target("jetson-orin")
    assert j["kind"] == "cuda" and j["arch"] == "sm_87" and j["host"]["mtriple"] == "aarch64-linux-gnu"
    assert resolve_target("jetson-orin", options={"host.mcpu": "cortex-a78"})["host"]["mcpu"] == "cortex-a78"


def test_bad_names_and_options():
    with pytest.raises(DlcError, match="unknown target 'cdua'") as e:
        resolve_target("cdua")
    assert "did you mean 'cuda'" in e.value.hint
    with pytest.raises(DlcError, match="unknown CUDA architecture 'sm80'"):
        resolve_target("cuda", arch="sm80")
    with pytest.raises(DlcError, match="--arch applies to CUDA"):
        resolve_target("aarch64", arch="sm_90")
    with pytest.raises(DlcError, match="expected KEY=VALUE"):
        parse_options(["mcpu"])
    m = dlc.load(ROOT / "specs/perceptron.dln")
    with pytest.raises(DlcError, match="LLVM does not know the CPU 'skylak'") as e:
        tvm_cache.compile_cached(m.graph, "llvm", options={"mcpu": "skylak"})
    assert "skylake" in e.value.hint


def test_availability_rows():
    rows = {r["name"]: r for r in availability()}
    assert set(rows) == set(TARGETS)
    assert rows["cpu"]["compile_here"] and rows["cpu"]["run_here"]
    assert rows["aarch64"]["compile_here"] == bool(shutil.which(CROSS))
    assert not rows["aarch64"]["run_here"] or os.uname().machine == "aarch64"


def _elf_machine(data: bytes) -> int:
    assert data[:4] == b"\x7fELF"
    return int.from_bytes(data[18:20], "little" if data[5] == 1 else "big")


def _write(m, target, out, **kw):
    cm, _ = tvm_cache.compile_cached(m.graph, target, **kw)
    write_package(out, cm, m.init_weights(0), source_hash="h", spec_path="x.dln", model_name=m.name,
                  target_name=target)
    return read_manifest(out)


def test_aarch64_package_holds_an_aarch64_shared_object(tmp_path):
    from crosscc import CROSS_REASON, ensure_cross_compiler
    if ensure_cross_compiler() is None:
        pytest.skip(CROSS_REASON)
    m = dlc.load(ROOT / "specs/perceptron.dln")
    man = _write(m, "aarch64", tmp_path / "p.dlcpkg")
    assert man["library"]["file"] == "lib.so" and man["library"]["arch"] == "aarch64"
    assert man["library"]["cross_compiler"] == CROSS
    with zipfile.ZipFile(tmp_path / "p.dlcpkg") as z:
        data = z.read("lib.so")
    assert _elf_machine(data) == 183                 # EM_AARCH64
    assert data[4] == 2                              # 64-bit
    with pytest.raises(DlcError, match="compiled for aarch64"):
        dlc.runtime.load(tmp_path / "p.dlcpkg")


def test_aarch64_without_cross_compiler_falls_back_to_tar(tmp_path, monkeypatch):
    import dlc.backends.tvm.package as package
    real = shutil.which
    monkeypatch.setattr(package.shutil, "which", lambda n, *a, **k: None if n == CROSS else real(n, *a, **k))
    m = dlc.load(ROOT / "specs/perceptron.dln")
    man = _write(m, "aarch64", tmp_path / "p.dlcpkg", cache=False)
    assert man["library"]["file"] == "lib.tar" and man["library"]["format"] == "tar"
    assert CROSS in man["library"]["note"]


def test_cuda_compiles_here(tmp_path):
    m = dlc.load(ROOT / "specs/mlp.dln")
    man = _write(m, "cuda", tmp_path / "c.dlcpkg", arch="sm_80")
    assert man["target"]["kind"] == "cuda" and man["target"]["arch"] == "sm_80"
    assert man["library"]["device"] == "cuda" and man["library"]["arch"] == "x86_64"
    with zipfile.ZipFile(tmp_path / "c.dlcpkg") as z:
        assert _elf_machine(z.read("lib.so")) == 62  # EM_X86_64 host code, CUDA source inside
    with pytest.raises(DlcError, match="compiled for cuda"):
        dlc.runtime.load(tmp_path / "c.dlcpkg")
    dev_ok = tvm.cuda().exist
    if not dev_ok:
        with pytest.raises(DlcError, match="needs a cuda device"):
            dlc.runtime.load(tmp_path / "c.dlcpkg", device="cuda")
    else:  # a GPU machine: run it
        pkg = dlc.runtime.load(tmp_path / "c.dlcpkg", device="cuda")
        x = m.random_inputs(0)
        np.testing.assert_allclose(pkg.run(x)["output"], m.run(x, m.init_weights(0))["output"], rtol=1e-4,
                                   atol=1e-4)
