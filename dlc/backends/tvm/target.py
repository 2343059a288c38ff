"""TVM targets by name: the host CPU (detected), explicit llvm, CUDA, and
edge presets, as dicts (TVM 0.27 refuses target strings with options).

    resolve_target("cpu")                                  # this machine
    resolve_target("llvm", options={"mcpu": "skylake-avx512"})
    resolve_target("cuda", arch="sm_80")
    resolve_target("rasp4")                                # a Raspberry Pi 4

`TARGETS` describes each name: what it compiles for, where the result runs
and what it needs (a cross compiler, a CUDA compiler on the device);
`dlc targets` prints it with what this machine has.

The host is detected with LLVM (`llvm_get_system_triple/cpu`).  The wheel
reports its conda triple (x86_64-conda-linux-gnu), named x86_64-linux-gnu
here.  The detected dict is remembered in the cache directory, keyed by the
CPU and the TVM version, so that a cached compile need not import TVM.
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import shutil
from dataclasses import dataclass, field

from ...errors import DlcError

AARCH64_CC = "aarch64-linux-gnu-gcc"


@dataclass(frozen=True)
class TargetInfo:
    name: str
    description: str
    device: str                       # where the library runs: "cpu" or "cuda"
    arch: str | None                  # the host code's machine (None: this machine's)
    needs: tuple[str, ...] = ()       # human-readable requirements
    cross_compiler: str | None = None  # for export_library; None: the system's cc
    takes_arch: bool = False          # --arch applies (CUDA)
    aliases: tuple[str, ...] = field(default=())


TARGETS: dict[str, TargetInfo] = {t.name: t for t in [
    TargetInfo("cpu", "this machine's CPU (triple, -mcpu, cores detected)",
               "cpu", None, ("cc",), aliases=("host", "tvm")),
    TargetInfo("llvm", "any LLVM CPU: --target-opt mtriple=, mcpu=, mattr=+a,+b",
               "cpu", None, ("cc (a cross cc for another triple)",)),
    TargetInfo("cuda", "NVIDIA GPU, x86_64 host (--arch, default sm_90)",
               "cuda", "x86_64", ("NVRTC or nvcc on the GPU machine",),
               takes_arch=True),
    TargetInfo("aarch64", "64-bit ARM Linux with NEON",
               "cpu", "aarch64", (f"{AARCH64_CC} (apt: gcc-aarch64-linux-gnu)",),
               AARCH64_CC),
    TargetInfo("rasp4", "Raspberry Pi 4 (Cortex-A72 x4)",
               "cpu", "aarch64", (f"{AARCH64_CC} (apt: gcc-aarch64-linux-gnu)",),
               AARCH64_CC),
    TargetInfo("jetson-orin", "Jetson AGX Orin (sm_87, Cortex-A78AE host)",
               "cuda", "aarch64", (f"{AARCH64_CC} (apt: gcc-aarch64-linux-gnu)",
                                   "NVRTC or nvcc (JetPack) on the board"), AARCH64_CC, takes_arch=True),
]}

_ALIASES = {a: t.name for t in TARGETS.values() for a in t.aliases}


def physical_cores() -> int:
    try:
        import psutil
        n = psutil.cpu_count(logical=False)
        if n:
            return int(n)
    except ImportError:
        pass
    return os.cpu_count() or 1


def _tvm_version() -> str:
    try:
        from importlib.metadata import version
        return version("apache-tvm")
    except Exception:  # noqa: BLE001 - not installed as a distribution
        try:
            import tvm
            return str(tvm.__version__)
        except ImportError:
            return "none"


def _host_fingerprint() -> str:
    cpu = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith(("model name", "flags", "Features", "CPU part")):
                    cpu += line
                if line.strip() == "":
                    break
    except OSError:
        cpu = platform.processor()
    return hashlib.sha256(f"{platform.machine()}|{cpu}|{_tvm_version()}|{physical_cores()}".encode()).hexdigest()


def detect_host() -> dict:
    """The host as an llvm target dict, asking LLVM (imports TVM)."""
    from ...runtime.package import import_tvm
    import_tvm()
    from tvm.target import codegen
    triple = codegen.llvm_get_system_triple()
    # the wheel reports its conda triple, which LLVM's x86 backend treats as
    # plain linux; name it so, and give the CPU explicitly (-mcpu=native is refused)
    arch = triple.split("-")[0]
    return {"kind": "llvm", "mtriple": f"{arch}-linux-gnu", "mcpu": codegen.llvm_get_system_cpu(),
            "num-cores": physical_cores()}


def host_target_dict() -> dict:
    """This machine's CPU target (remembered in the cache directory)."""
    from .cache import cache_dir
    fp = _host_fingerprint()
    path = cache_dir() / "host-target.json"
    try:
        known = json.loads(path.read_text())
        if isinstance(known, dict) and isinstance(known.get(fp), dict):
            return dict(known[fp])
    except (OSError, ValueError):
        known = {}
    t = detect_host()
    try:
        from ...runtime.atomic import atomic_write
        known = known if isinstance(known, dict) else {}
        known[fp] = t
        atomic_write(path, json.dumps(known, indent=1).encode(), private=True)   # a cache
    except OSError:
        pass
    return t


def _parse_value(key: str, v):
    if not isinstance(v, str):
        return v
    if key in ("mattr", "keys", "libs", "cl-opt"):
        return [x for x in v.split(",") if x]
    if re.fullmatch(r"-?\d+", v):
        return int(v)
    if v.lower() in ("true", "false"):
        return v.lower() == "true"
    return v


def parse_options(items) -> dict:
    """`--target-opt` values (``key=value``) as a dict; `mattr=+a,+b` is a list."""
    out = {}
    for it in items or ():
        if "=" not in it:
            raise DlcError(f"target option '{it}': expected KEY=VALUE", hint="e.g. --target-opt mcpu=skylake-avx512")
        k, v = it.split("=", 1)
        k = k.strip().lstrip("-")
        if not k:
            raise DlcError(f"target option '{it}': empty key")
        out[k] = _parse_value(k, v.strip())
    return out


def canonical_name(target) -> str | None:
    if isinstance(target, dict):
        return None
    name = str(target)
    return _ALIASES.get(name, name)


# compute capabilities that NVIDIA has shipped (and CUDA 12/13 compiles for);
# "a"/"f" suffixes select the architecture- or family-specific feature sets
CUDA_ARCHS = (50, 52, 53, 60, 61, 62, 70, 72, 75, 80, 86, 87, 89, 90, 100, 101, 103, 110, 120, 121)


def _check_arch(arch: str) -> str:
    m = re.fullmatch(r"sm_(\d{2,3})([af]?)", arch)
    if not m or int(m[1]) not in CUDA_ARCHS or (m[2] and int(m[1]) < 90):
        raise DlcError(f"unknown CUDA architecture '{arch[:40]}'",
                       hint="one of " + ", ".join(f"sm_{a}" for a in CUDA_ARCHS) + " (e.g. --arch sm_90)")
    return arch


def resolve_target(target, arch: str | None = None, options: dict | None = None) -> dict:
    """A target name (see `TARGETS`) or dict as a TVM target dict.  `arch`
    sets the CUDA architecture; `options` are merged into the dict (for CUDA
    targets with a host, ``host.``-prefixed keys go to the host)."""
    options = dict(options or {})
    if isinstance(target, dict):
        t = dict(target)
    else:
        name = canonical_name(target)
        if name not in TARGETS:
            import difflib
            close = difflib.get_close_matches(str(target), list(TARGETS) + list(_ALIASES), n=1)
            raise DlcError(f"unknown target '{target}'",
                           hint=(f"did you mean '{close[0]}'? " if close else "") +
                           "targets: torch, " + ", ".join(TARGETS) + " (dlc targets lists them)")
        if arch is not None and not TARGETS[name].takes_arch:
            raise DlcError(f"--arch applies to CUDA targets, not '{name}'",
                           hint="for a CPU use --target-opt mcpu=NAME")
        if name == "cpu":
            t = host_target_dict()
        elif name == "llvm":
            t = {"kind": "llvm", "mtriple": f"{_machine()}-linux-gnu"}
        elif name == "cuda":
            t = {"kind": "cuda", "arch": _check_arch(arch or "sm_90"),
                 "host": {"kind": "llvm", "mtriple": "x86_64-linux-gnu"}}
        elif name == "aarch64":
            t = {"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mattr": ["+neon"]}
        elif name == "rasp4":
            t = {"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mcpu": "cortex-a72", "mattr": ["+neon"],
                 "num-cores": 4}
        elif name == "jetson-orin":
            t = {"kind": "cuda", "arch": _check_arch(arch or "sm_87"),
                 "host": {"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mcpu": "cortex-a78ae",
                          "mattr": ["+neon"]}}
        else:  # pragma: no cover - TARGETS and this switch agree
            raise DlcError(f"unknown target '{target}'")
    for k, v in options.items():
        v = _parse_value(k, v)
        if k.startswith("host.") and isinstance(t.get("host"), dict):
            t["host"] = {**t["host"], k[5:]: v}
        else:
            t[k] = v
    return t


def _machine() -> str:
    from ...runtime.package import host_arch
    return host_arch()


def target_info(target) -> TargetInfo | None:
    return TARGETS.get(canonical_name(target) or "")


def library_arch(target_dict: dict) -> str:
    """The machine the library's host code is for (x86_64, aarch64, ...)."""
    host = target_dict.get("host") if isinstance(target_dict.get("host"), dict) else None
    triple = (host or target_dict).get("mtriple") if (host or target_dict.get("kind") == "llvm") else None
    if triple:
        from ...runtime.package import triple_arch
        return triple_arch(triple)
    return _machine()


def library_device(target_dict: dict) -> str:
    return "cuda" if target_dict.get("kind") == "cuda" else "cpu"


def cross_compiler_for(target_dict: dict) -> str | None:
    """The cross compiler `export_library` needs, or None for this machine's cc."""
    arch = library_arch(target_dict)
    if arch == _machine():
        return None
    if arch == "aarch64":
        return AARCH64_CC
    return f"{arch}-linux-gnu-gcc"


def short(target_dict: dict) -> str:
    """One line: ``llvm x86_64-linux-gnu znver4`` / ``cuda sm_90``."""
    parts = [target_dict.get("kind", "?")]
    for k in ("arch", "mtriple", "mcpu"):
        if k in target_dict:
            parts.append(str(target_dict[k]))
    if isinstance(target_dict.get("host"), dict):
        parts.append("host " + short(target_dict["host"]))
    return " ".join(parts)


def availability() -> list[dict]:
    """What `dlc targets` prints: each target with what this machine has."""
    import importlib.util
    has_tvm = importlib.util.find_spec("tvm") is not None
    cc = shutil.which("cc") or shutil.which("gcc")
    cross = shutil.which(AARCH64_CC)
    nvcc = shutil.which("nvcc") or (os.path.exists("/usr/local/cuda/bin/nvcc") and "/usr/local/cuda/bin/nvcc")
    gpu = os.path.exists("/dev/nvidia0") or os.path.exists("/dev/nvidiactl")
    rows = []
    for t in TARGETS.values():
        notes = []
        ok = has_tvm
        if not has_tvm:
            notes.append("TVM not installed")
        if t.cross_compiler:
            notes.append(f"{t.cross_compiler}: {'found' if cross else 'missing (lib.tar only)'}")
            ok = ok and bool(cross)
        elif not cc:
            notes.append("no C compiler")
            ok = False
        if t.device == "cuda":
            notes.append(f"nvcc: {'found' if nvcc else 'missing'}")
            notes.append("GPU: " + ("yes" if gpu else "none"))
        elif t.arch and t.arch != _machine():
            notes.append(f"runs on {t.arch}: copy it, or --rpc")
        rows.append({"name": t.name, "aliases": list(t.aliases), "description": t.description,
                     "device": t.device, "needs": list(t.needs), "compile_here": ok,
                     "run_here": ok and (t.arch in (None, _machine())) and (t.device != "cuda" or gpu),
                     "notes": notes})
    return rows
