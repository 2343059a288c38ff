"""The deploy runtime: run a compiled `.dlcpkg` with TVM's runtime alone.

    import dlc.runtime
    pkg = dlc.runtime.load("model.dlcpkg")          # device="cpu" or "cuda"
    outs = pkg.run({"x": x})                         # NumPy in, NumPy out

A package is one zip file (written by `backends/tvm/package.py`):

    manifest.json          format version, dlc and TVM versions, target,
                           source hash, the signature (inputs, outputs, ...)
    weights.safetensors    the weights, by dlc's parameter names
    lib.so | lib.tar       the compiled library (relax VM executable)

Loading a package runs its native code, as with any shared library; what the
runtime checks before that (the manifest, member names and sizes, the
library's sha256, an optional pinned package hash) is in `pkgfile.py`,
`manifest.py` and docs/security.md.

This module imports only NumPy, safetensors and TVM's runtime (`tvm.runtime`,
`relax.VirtualMachine`): no parser (lark), no torch, no dlc frontend.  TVM's
FFI layer imports torch when it is installed (for DLPack interop); `import_tvm`
keeps it from doing so, which also saves seconds of start-up.

`Runner` (one loaded executable, weights bound once; `runner.py`), `resolve_dims` and
`draw_random_inputs` are shared with the in-process compiler
(`backends/tvm/compile.py` re-exports them).
"""
from __future__ import annotations

import platform
import shutil

import numpy as np

from ..errors import DlcError
from .manifest import FORMAT_VERSION, check_example_bytes, nbytes  # noqa: F401 - FORMAT_VERSION re-exported
from .pkgfile import MANIFEST, WEIGHTS, PackageFile, private_dir, remove_stale_extractions  # noqa: F401
from .memory import standard_normal
from .runner import Runner, _has_function, check_weights, draw_random_inputs, resolve_dims  # noqa: F401
from .tvm_import import import_tvm  # noqa: F401 - re-exported

SUFFIX = ".dlcpkg"

__all__ = ["load", "LoadedPackage", "Runner", "read_manifest", "resolve_dims", "draw_random_inputs",
           "example_inputs", "check_weights", "import_tvm", "host_arch", "FORMAT_VERSION", "MANIFEST", "WEIGHTS"]



def host_arch() -> str:
    m = platform.machine().lower()
    return {"amd64": "x86_64", "x64": "x86_64", "arm64": "aarch64"}.get(m, m)


def triple_arch(triple: str | None) -> str | None:
    if not triple:
        return None
    a = triple.split("-")[0].lower()
    return {"arm64": "aarch64", "amd64": "x86_64"}.get(a, a)


# --------------------------------------------------------------------------
# signatures: dimensions, random inputs

def example_inputs(manifest: dict, seed: int = 0, dims: dict | None = None) -> dict[str, np.ndarray]:
    """Random inputs at the model's example sizes (or `dims`), drawn as
    `dlc.Model.random_inputs` draws them: same generator, same order."""
    specs = manifest.get("example_inputs") or []
    dims = dict(dims or {})
    for d, n in dims.items():
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
            raise DlcError(f"dimension {d} = {n!r} is not a size", hint="sizes are integers >= 0: --bind N=8")
    rng = np.random.default_rng(seed)
    sym = {i["name"]: i["shape"] for i in manifest["signature"]["inputs"]}
    shapes = []
    for e in specs:
        shape = list(e["shape"])
        for k, d in enumerate(sym.get(e["name"], [])):
            if isinstance(d, str) and d in dims and k < len(shape):
                shape[k] = int(dims[d])
        shapes.append(tuple(shape))
    # the bytes first, in Python integers: never attempt a 72 TiB allocation
    check_example_bytes(sum(nbytes(sh, e["dtype"]) for sh, e in zip(shapes, specs)),
                        manifest.get("model", "package"))
    out = {}
    for e, shape in zip(specs, shapes):
        if e["kind"] == "float":
            out[e["name"]] = standard_normal(rng, shape, e["dtype"])   # as Model.random_inputs draws
        elif e["kind"] == "int":
            out[e["name"]] = rng.integers(0, int(e.get("high", 2)), size=shape).astype(e["dtype"])
        else:
            out[e["name"]] = rng.random(shape) < 0.5
    return out


# --------------------------------------------------------------------------
# the runner

def read_manifest(path) -> dict:
    """The manifest of a `.dlcpkg` (a dict, every field the runtime uses
    checked); `DlcError` if it is not one, or a damaged one."""
    with PackageFile(path) as pf:
        return pf.manifest


def check_loadable(manifest: dict, device: str = "cpu", path="package") -> None:
    """Refuse a package built for another machine (arch) or device."""
    lib = manifest.get("library", {})
    target = manifest.get("target") or {}
    want = lib.get("device", "cpu")
    if device != want:
        raise DlcError(f"{path} was compiled for {want} ({manifest.get('target_name', target.get('kind'))}), "
                       f"not {device}", hint=f"load it with device='{want}' (dlc run --device {want})")
    arch = lib.get("arch")
    if arch and arch != host_arch():
        raise DlcError(f"{path} was compiled for {arch} ({lib.get('triple', '?')}, target "
                       f"'{manifest.get('target_name', '?')}'); this machine is {host_arch()}",
                       hint="run it on a matching device (dlc.runtime.load there, or dlc bench --rpc), "
                            "or recompile: dlc compile model.dln --target cpu")
    _check_cpu(manifest, path)
    if lib.get("format") != "so":
        raise DlcError(f"{path} holds its library as {lib.get('file')} (no cross compiler was found when "
                       f"it was built), which cannot be loaded directly",
                       hint="install the cross compiler (gcc-aarch64-linux-gnu) and recompile")


_ISA_PREFIXES = ("avx", "sse", "ssse", "fma", "amx", "bmi", "f16c", "vaes", "vpclmul", "gfni", "sha", "aes",
                 "popcnt", "lzcnt", "movbe", "adx", "neon", "sve", "dotprod", "fullfp16", "fp16", "bf16", "i8mm",
                 "sme")


def _check_cpu(manifest: dict, path) -> None:
    """Refuse a CPU package whose -mcpu has instruction-set extensions this
    machine's CPU lacks (it would die of an illegal instruction)."""
    target = manifest.get("target") or {}
    triple = target.get("mtriple", f"{host_arch()}-linux-gnu")
    if target.get("kind") != "llvm" or not target.get("mcpu") or \
            manifest.get("library", {}).get("arch") != host_arch() or triple_arch(triple) != host_arch():
        return
    # only the fields check_manifest vetted reach LLVM (a hostile triple crashes it)
    spec = {"kind": "llvm", "mtriple": triple, "mcpu": target["mcpu"]}
    if target.get("mattr"):
        spec["mattr"] = list(target["mattr"])
    try:
        tvm = import_tvm()
        from tvm.target import codegen
        need = set(codegen.llvm_get_cpu_features(tvm.target.Target(spec)))
        here = set(codegen.llvm_get_cpu_features(tvm.target.Target(
            {"kind": "llvm", "mtriple": triple, "mcpu": codegen.llvm_get_system_cpu()})))
    except Exception:  # noqa: BLE001 - a runtime-only TVM build: cannot tell, let it load
        return
    missing = sorted(f for f in need - here if f.startswith(_ISA_PREFIXES))
    if missing:
        raise DlcError(f"{path} was compiled for CPU '{target['mcpu']}', which has instructions this CPU "
                       f"lacks: {', '.join(missing[:6])}{' ...' if len(missing) > 6 else ''}",
                       hint="recompile for this machine: dlc compile model.dln --target cpu")


def _load_library(pf: PackageFile, tvm):
    """Unpack the library into a fresh private folder (its sha256 checked
    against the manifest), load it and remove the folder: the loaded library
    no longer needs the file."""
    try:
        remove_stale_extractions(min_age_s=60)   # left by killed processes
    except OSError:
        pass
    folder = private_dir()
    try:
        lib_path = pf.extract_library(folder)
        try:
            return tvm.runtime.load_module(str(lib_path))
        except Exception as e:  # noqa: BLE001 - TVM's loader raises various types
            raise DlcError(f"cannot load the library of {pf.path}: {str(e).strip().splitlines()[-1]}",
                           hint="run with DLC_DEBUG=1 for TVM's full message") from e
    finally:
        shutil.rmtree(folder, ignore_errors=True)


class LoadedPackage:
    """A package loaded for one device: `.run(inputs) -> outputs`."""

    def __init__(self, path, device: str = "cpu", expect_sha256: str | None = None):
        self.path = str(path)
        with PackageFile(path, expect_sha256) as pf:
            self.manifest = pf.manifest
            self.sha256 = pf.sha256
            check_loadable(self.manifest, device, path)
            weights = pf.read_weights()
            if weights is not None:     # checked before any of the package's code runs
                try:
                    check_weights(self.manifest["signature"]["params"], weights)
                except DlcError as e:
                    raise DlcError(f"{path}: {e.message}", hint="the packaged weights do not match the "
                                   "package's parameters: rebuild it") from None
            tvm = import_tvm()
            dev = tvm.cpu() if device == "cpu" else tvm.cuda()
            if device != "cpu" and not dev.exist:
                raise DlcError(f"{path} needs a {device} device and this machine has none")
            lib = _load_library(pf, tvm)
        self.signature = self.manifest["signature"]
        self.runner = Runner(lib, self.signature, dev)
        if weights is not None:
            self.runner.set_weights(weights)

    @property
    def inputs(self) -> list[dict]:
        return self.signature["inputs"]

    @property
    def outputs(self) -> list[dict]:
        return self.signature["outputs"]

    @property
    def name(self) -> str:
        return self.manifest.get("model", "?")

    def set_weights(self, weights: dict) -> "LoadedPackage":
        self.runner.set_weights(weights)
        return self

    def example_inputs(self, seed: int = 0, dims: dict | None = None) -> dict[str, np.ndarray]:
        return example_inputs(self.manifest, seed, dims)

    def run(self, inputs: dict | None = None, seed: int = 0) -> dict[str, np.ndarray]:
        """Outputs by name.  Inputs not given are drawn from `seed` at the
        model's example sizes."""
        inputs = dict(inputs or {})
        if len(inputs) < len(self.inputs):
            dims = resolve_dims({"inputs": [s for s in self.inputs if s["name"] in inputs], "fixed_dims": {}},
                                {k: np.asarray(v) for k, v in inputs.items() if k in
                                 {s["name"] for s in self.inputs}})
            for k, v in example_inputs(self.manifest, seed, dims).items():
                inputs.setdefault(k, v)
        return self.runner.run(inputs, seed=seed)

    def time(self, inputs: dict | None = None, **kw) -> list[float]:
        inputs = dict(inputs or {}) or example_inputs(self.manifest, kw.get("seed", 0))
        return self.runner.time(inputs, **kw)

    def __repr__(self) -> str:
        return f"LoadedPackage({self.path!r}, model={self.name!r}, target={self.manifest.get('target_name')!r})"


def load(path, device: str = "cpu", expect_sha256: str | None = None) -> LoadedPackage:
    """Load a `.dlcpkg` for `device` ("cpu" or "cuda").  Loading runs the
    package's native code: `expect_sha256` (the sha256 of the .dlcpkg file)
    refuses any package but the one you pinned."""
    if device not in ("cpu", "cuda"):
        raise DlcError(f"unknown device '{device}'", hint="devices: cpu, cuda")
    return LoadedPackage(path, device, expect_sha256)
