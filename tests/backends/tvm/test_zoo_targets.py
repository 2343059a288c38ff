"""Every zoo spec compiles for `cuda` (sm_90; the package's host code and
CUDA source) and for `aarch64` (a real AArch64 shared object, cross-linked)
on this machine.  Slow: run with --runslow; the default run covers both
targets on small models in test_targets.py."""
from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("tvm")

import dlc
from dlc.backends.tvm.compile import compile_graph
from dlc.backends.tvm.package import export_library

pytestmark = [pytest.mark.tvm, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[3]
SPECS = sorted(p for p in (ROOT / "specs").glob("*.dln"))


def _elf_machine(data: bytes) -> int:
    assert data[:4] == b"\x7fELF"
    return int.from_bytes(data[18:20], "little")


@pytest.mark.parametrize("target", ["cuda", "aarch64"])
@pytest.mark.parametrize("spec", SPECS, ids=[p.stem for p in SPECS])
def test_zoo_spec_compiles_for(spec, target, tmp_path):
    if target == "aarch64":
        from crosscc import CROSS_REASON, ensure_cross_compiler
        if ensure_cross_compiler() is None:
            pytest.skip(CROSS_REASON)
    m = dlc.load(spec)
    compiled = compile_graph(m.graph, target)
    info = export_library(compiled.executable, compiled.target, tmp_path)
    data = (tmp_path / info["file"]).read_bytes()
    if target == "aarch64":
        assert info["format"] == "so" and _elf_machine(data) == 183     # EM_AARCH64
    else:
        assert _elf_machine(data) == 62                                 # x86-64 host code
        assert info["device"] == "cuda"
