"""TVM targets by name: the host CPU (detected), explicit llvm, CUDA, and
edge presets, as dicts (TVM 0.27 refuses target strings with options)."""
from __future__ import annotations

import os


def physical_cores() -> int:
    try:
        import psutil
        n = psutil.cpu_count(logical=False)
        if n:
            return int(n)
    except ImportError:
        pass
    return os.cpu_count() or 1


def host_target_dict() -> dict:
    from tvm.target import codegen
    triple = codegen.llvm_get_system_triple()
    # the wheel reports its conda triple, which LLVM's x86 backend treats as
    # plain linux; name it so, and give the CPU explicitly (-mcpu=native is refused)
    arch = triple.split("-")[0]
    return {"kind": "llvm", "mtriple": f"{arch}-linux-gnu", "mcpu": codegen.llvm_get_system_cpu(),
            "num-cores": physical_cores()}


def resolve_target(target, arch: str | None = None) -> dict:
    """A target name or dict as a TVM target dict.  (Minimal: the presets and
    `dlc targets` live in TARGETS below once filled in.)"""
    if isinstance(target, dict):
        return dict(target)
    name = str(target)
    if name in ("cpu", "host"):
        return host_target_dict()
    if name == "llvm":
        return {"kind": "llvm"}
    if name == "cuda":
        return {"kind": "cuda", "arch": arch or "sm_90"}
    if name == "aarch64":
        return {"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mattr": ["+neon"]}
    from ...errors import DlcError
    raise DlcError(f"unknown target '{name}'", hint="dlc targets lists them")
