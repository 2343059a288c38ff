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

`Runner` (one loaded executable, weights bound once), `resolve_dims` and
`draw_random_inputs` are shared with the in-process compiler
(`backends/tvm/compile.py` re-exports them).
"""
from __future__ import annotations

import os
import platform
import shutil
import sys

import numpy as np

from ..errors import DlcError, DlcRuntimeError
from .manifest import FORMAT_VERSION, check_example_bytes, nbytes  # noqa: F401 - FORMAT_VERSION re-exported
from .pkgfile import MANIFEST, WEIGHTS, PackageFile, private_dir, remove_stale_extractions  # noqa: F401
from .memory import standard_normal

SUFFIX = ".dlcpkg"

__all__ = ["load", "LoadedPackage", "Runner", "read_manifest", "resolve_dims", "draw_random_inputs",
           "example_inputs", "check_weights", "import_tvm", "host_arch", "FORMAT_VERSION", "MANIFEST", "WEIGHTS"]


# --------------------------------------------------------------------------
# importing TVM without torch

class _BlockTorch:
    """A meta-path finder that makes `import torch` fail (while TVM imports)."""

    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError("dlc: torch is not imported with TVM's runtime")
        return None



def _contiguous(a):
    """C-contiguous, keeping 0-d arrays 0-d (np.ascontiguousarray makes them 1-d)."""
    return np.require(a, requirements="C")


def _compact(a: np.ndarray) -> bool:
    """Whether `a`'s strides are exactly the C-order ones for its shape."""
    want, step = [], a.itemsize
    for n in reversed(a.shape):
        want.append(step)
        step *= n
    return tuple(reversed(want)) == a.strides


def _aligned(a: np.ndarray) -> np.ndarray:
    """`a`, or a copy of it, C-contiguous at a 64-byte boundary: what TVM
    accepts without a copy of its own (DLPack, zero-copy)."""
    if a.flags.c_contiguous and a.ctypes.data % 64 == 0:
        return a
    buf = np.empty(a.nbytes + 64, dtype=np.uint8)
    off = (-buf.ctypes.data) % 64
    out = buf[off:off + a.nbytes].view(a.dtype).reshape(a.shape)
    out[...] = a
    return out

def import_tvm():
    """`import tvm` (and relax), keeping tvm_ffi from importing torch when
    torch is not loaded yet.  Set DLC_TVM_WITH_TORCH=1 to let it."""
    if "tvm" in sys.modules:
        import tvm
        return tvm
    block = None
    if "torch" not in sys.modules and not os.environ.get("DLC_TVM_WITH_TORCH"):
        block = _BlockTorch()
        sys.meta_path.insert(0, block)
    try:
        try:
            import tvm
            from tvm import relax  # noqa: F401
        except ImportError as e:
            raise DlcError(f"TVM is not installed ({e})",
                           hint="pip install 'dlc[tvm]' (apache-tvm==0.27.0.post1)") from None
    finally:
        if block is not None:
            sys.meta_path.remove(block)
    return tvm


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

def _fmt(shape) -> str:
    return ", ".join(str(d) for d in shape)


def resolve_dims(sig: dict, arrays: dict[str, np.ndarray]) -> dict[str, int]:
    """Sizes of the symbolic dimensions, read off the inputs' shapes (only
    plain dimension names are read; expressions are checked by TVM)."""
    env = dict(sig.get("fixed_dims", {}))
    for spec in sig["inputs"]:
        a = arrays[spec["name"]]
        if a.ndim != len(spec["shape"]):
            raise DlcRuntimeError(f"input '{spec['name']}' has {a.ndim} dimensions, the package "
                                  f"expects {len(spec['shape'])} ({_fmt(spec['shape'])})", None)
        for d, n in zip(spec["shape"], a.shape):
            if isinstance(d, str) and d.isidentifier():
                if env.setdefault(d, int(n)) != int(n):
                    raise DlcRuntimeError(f"input '{spec['name']}' has shape {tuple(a.shape)}: dimension "
                                          f"{d} is {n} here but {env[d]} elsewhere "
                                          f"(expected ({_fmt(spec['shape'])}))", None)
            elif isinstance(d, int) and d != n:
                raise DlcRuntimeError(f"input '{spec['name']}' has shape {tuple(a.shape)}, the package "
                                      f"expects ({_fmt(spec['shape'])})", None)
    return env


def draw_random_inputs(sig: dict, dims: dict[str, int], seed: int) -> list[np.ndarray]:
    """The host-drawn tensors of random ops (dropout noise, randn, uniform),
    drawn exactly as the NumPy reference draws them."""
    if not sig.get("random_inputs"):
        return []
    from .random import draw_random   # pure NumPy: the reference's generators
    out = []
    for r in sig["random_inputs"]:
        shape = [dims[d] if isinstance(d, str) else int(d) for d in r["shape"]]
        out.append(_contiguous(draw_random(r["kind"], shape, r["dtype"], dict(r.get("attrs", {})),
                                                    seed)))
    return out


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

def _has_function(vm, name: str) -> bool:
    try:
        vm[name]
        return True
    except Exception:  # noqa: BLE001 - TVM raises various types for a missing function
        return False


def check_weights(params: list[dict], weights: dict) -> list[np.ndarray]:
    """The weights in `params`' order, each of exactly the declared shape and
    dtype (no reshape, no cast: a transposed matrix has the right element
    count and gives wrong outputs)."""
    out = []
    for p in params:
        if p["name"] not in weights:
            raise DlcRuntimeError(f"the weights have no entry for '{p['name']}'", None)
        a = np.asarray(weights[p["name"]])
        want = np.dtype(p["dtype"])
        if a.dtype != want:
            raise DlcRuntimeError(f"weight '{p['name']}' has dtype {a.dtype}, the package expects {want}", None,
                                  f"convert it yourself (weights[{p['name']!r}].astype('{want}')) if that is "
                                  "what you mean: weights are never cast silently")
        shape = p["shape"]
        fixed = all(isinstance(d, int) for d in shape)
        if (fixed and a.shape != tuple(shape)) or a.ndim != len(shape):
            raise DlcRuntimeError(f"weight '{p['name']}' has shape {a.shape}, the package expects "
                                  f"{tuple(shape) if fixed else '(' + _fmt(shape) + ')'}", None)
        out.append(_contiguous(a))
    return out


def _tvm_failure(what: str, e: Exception) -> DlcRuntimeError:
    """A TVM error (a check in the library: a shape, a dtype) as one line."""
    lines = str(e).strip().splitlines()
    msg = lines[-1].strip() if lines else type(e).__name__
    return DlcRuntimeError(f"the model's library rejected {what}: {msg}", None,
                           "a package whose manifest does not match its library is damaged: rebuild it")


def _as_array(a, spec: dict, what: str) -> np.ndarray:
    arr = np.asarray(a)
    want = np.dtype(spec["dtype"])
    if arr.dtype != want:
        # numbers convert (float64 -> float32, int64 -> int32, ...); text,
        # objects, complex numbers and dates do not
        if arr.dtype.kind not in "biuf" or want.kind not in "biuf":
            raise DlcRuntimeError(f"{what} '{spec['name']}' has dtype {arr.dtype}, the package expects "
                                  f"{want}", None)
    return _contiguous(arr.astype(want, copy=False))


class Runner:
    """A loaded executable: weights bound once, then NumPy in, NumPy out.

    `executable` is a relax VMExecutable or a runtime module loaded from a
    library (`tvm.runtime.load_module`, or `remote.load_module` over RPC)."""

    def __init__(self, executable, signature: dict, device, *, transform_device=None):
        tvm = import_tvm()
        from tvm import relax
        self.tvm = tvm
        self.signature = signature
        self.device = device
        self.vm = relax.VirtualMachine(executable, device)
        self._params = None
        # train-mode graphs pass their weights to main as they are
        # (signature["lifted_params"] is False), even if a transform exists
        self._has_transform = (signature.get("lifted_params", True)
                               and _has_function(self.vm, "main_transform_params"))
        self._remote = int(getattr(device, "dlpack_device_type", lambda: device.device_type)()) >= 128
        self._main = None
        self._host = not self._remote and int(device.dlpack_device_type()) == 1   # kDLCPU

    def set_weights(self, weights: dict[str, np.ndarray], transformed: list | None = None):
        """Bind weights (dlc names).  `transformed`: the result of another
        runner's ``main_transform_params`` for the same model, as NumPy arrays
        (used over RPC, which cannot pass the list that function takes)."""
        tvm = self.tvm
        if transformed is not None:
            self._params = [tvm.runtime.tensor(_contiguous(a), self.device) for a in transformed]
            return self
        tensors = [tvm.runtime.tensor(a, self.device) for a in check_weights(self.signature["params"], weights)]
        if self._has_transform:
            if self._remote:
                raise DlcRuntimeError("main_transform_params cannot be called over RPC (it takes a list)",
                                      None, "pass transformed= from a local runner (dlc.backends.tvm.rpc)")
            try:
                self._params = list(self.vm["main_transform_params"](tensors))
            except Exception as e:  # noqa: BLE001 - TVM raises various types
                raise _tvm_failure("the weights", e) from None
        else:
            self._params = tensors
        return self

    def transformed_weights(self) -> list[np.ndarray]:
        """``main``'s weight arguments as NumPy arrays (after the transform)."""
        self._need_weights()
        return [p.numpy() for p in self._params]

    def _need_weights(self):
        if self._params is None:
            raise DlcRuntimeError("no weights loaded", None, "call set_weights() first")

    def prepare(self, inputs: dict[str, np.ndarray], seed: int = 0) -> list:
        """The arguments of ``main`` (inputs, random tensors, weights) as tensors."""
        self._need_weights()
        sig = self.signature
        unknown = set(inputs) - {s["name"] for s in sig["inputs"]}
        if unknown:
            raise DlcRuntimeError(f"the model has no input {', '.join(sorted(unknown))}", None,
                                  "inputs: " + ", ".join(s["name"] for s in sig["inputs"]))
        arrays = {}
        for spec in sig["inputs"]:
            if spec["name"] not in inputs:
                raise DlcRuntimeError(f"missing input '{spec['name']}'", None,
                                      "inputs: " + ", ".join(s["name"] for s in sig["inputs"]))
            arrays[spec["name"]] = _as_array(inputs[spec["name"]], spec, "input")
        dims = resolve_dims(sig, arrays)
        args = [self._tensor(arrays[s["name"]]) for s in sig["inputs"]]
        args += [self._tensor(a) for a in draw_random_inputs(sig, dims, seed)]
        return args + list(self._params)

    def _tensor(self, a: np.ndarray):
        # on the host, hand NumPy's memory to TVM (DLPack) instead of copying
        # it: for small models the copy costs more than the model.  DLPack
        # cannot export a read-only array (np.load(mmap_mode='r'), frombuffer
        # of bytes), TVM wants 64-byte alignment and compact strides (NumPy
        # calls (0, 16) with strides (0, 0), or a size-1 axis with any stride,
        # C-contiguous; TVM's kernels reject them): those take the copying path
        if self._host and a.dtype != np.bool_ and a.size and a.flags.writeable and _compact(a):
            try:
                return self.tvm.runtime.from_dlpack(_aligned(a))
            except (BufferError, RuntimeError, TypeError, ValueError):
                pass   # anything else DLPack refuses: the copying path below
        return self.tvm.runtime.tensor(np.ascontiguousarray(a), self.device)

    def _numpy(self, t) -> np.ndarray:
        if self._host:
            try:
                return np.from_dlpack(t)   # zero-copy; main allocates fresh outputs per call
            except (TypeError, ValueError, BufferError, RuntimeError):
                pass
        return t.numpy()

    def invoke(self, args: list) -> dict[str, np.ndarray]:
        sig = self.signature
        try:
            if self._remote:
                self.vm.set_input("main", *args)
                self.vm.invoke_stateful("main")
                out = self.vm.get_outputs("main")
            else:
                if self._main is None:
                    self._main = self.vm["main"]
                out = self._main(*args)
        except Exception as e:  # noqa: BLE001 - TVM raises various types
            raise _tvm_failure("the call", e) from None
        outs = [out] if hasattr(out, "numpy") else list(out)
        return {spec["name"]: self._numpy(o) for spec, o in zip(sig["outputs"], outs)}

    def run(self, inputs: dict[str, np.ndarray], weights: dict | None = None, seed: int = 0) -> dict:
        if weights is not None:
            self.set_weights(weights)
        return self.invoke(self.prepare(inputs, seed))

    def time(self, inputs: dict[str, np.ndarray], *, repeat: int = 20, number: int = 1, seed: int = 0,
             warmup: int = 2) -> list[float]:
        """Seconds per call of ``main`` (`repeat` measurements, each the mean of
        `number` calls), after `warmup` calls; timed on the device itself."""
        args = self.prepare(inputs, seed)
        for _ in range(max(0, warmup)):
            self.invoke(args)
        if self._remote:
            self.vm.set_input("main", *args)
            f = self.vm.time_evaluator("invoke_stateful", self.device, number=number, repeat=repeat)
            res = f("main")
        else:
            f = self.vm.time_evaluator("main", self.device, number=number, repeat=repeat)
            res = f(*args)
        return [float(r) for r in res.results]


# --------------------------------------------------------------------------
# packages

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
            raise DlcError(f"cannot load the library of {pf.path}: {str(e).strip().splitlines()[-1]}") from None
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
