"""The deploy runtime: run a compiled `.dlcpkg` with TVM's runtime alone.

    import dlc.runtime
    pkg = dlc.runtime.load("model.dlcpkg")          # device="cpu" or "cuda"
    outs = pkg.run({"x": x})                         # NumPy in, NumPy out

A package is one zip file (written by `backends/tvm/package.py`):

    manifest.json          format version, dlc and TVM versions, target,
                           source hash, the signature (inputs, outputs, ...)
    weights.safetensors    the weights, by dlc's parameter names
    lib.so | lib.tar       the compiled library (relax VM executable)

This module imports only NumPy, safetensors and TVM's runtime (`tvm.runtime`,
`relax.VirtualMachine`): no parser (lark), no torch, no dlc frontend.  TVM's
FFI layer imports torch when it is installed (for DLPack interop); `import_tvm`
keeps it from doing so, which also saves seconds of start-up.

`Runner` (one loaded executable, weights bound once), `resolve_dims` and
`draw_random_inputs` are shared with the in-process compiler
(`backends/tvm/compile.py` re-exports them).
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from ..errors import DlcError, DlcRuntimeError
from .memory import standard_normal

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
WEIGHTS = "weights.safetensors"
SUFFIX = ".dlcpkg"

__all__ = ["load", "LoadedPackage", "Runner", "read_manifest", "resolve_dims", "draw_random_inputs",
           "example_inputs", "import_tvm", "host_arch", "FORMAT_VERSION"]


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
    from ..backends.tvm.lowering import draw_random   # pure NumPy (the reference's generators)
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
    rng = np.random.default_rng(seed)
    sym = {i["name"]: i["shape"] for i in manifest["signature"]["inputs"]}
    out = {}
    for e in specs:
        shape = list(e["shape"])
        for k, d in enumerate(sym.get(e["name"], [])):
            if isinstance(d, str) and d in dims and k < len(shape):
                shape[k] = int(dims[d])
        shape = tuple(shape)
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
        tensors = []
        for p in self.signature["params"]:
            if p["name"] not in weights:
                raise DlcRuntimeError(f"the weights have no entry for '{p['name']}'", None)
            a = _as_array(weights[p["name"]], p, "weight")
            want = tuple(p["shape"]) if all(isinstance(d, int) for d in p["shape"]) else None
            if want is not None and a.shape != want and a.size == int(np.prod(want)):
                a = a.reshape(want)   # a scalar buffer stored as (1,) (torch's num_batches_tracked)
            if want is not None and a.shape != want:
                raise DlcRuntimeError(f"weight '{p['name']}' has shape {a.shape}, the package "
                                      f"expects {want}", None)
            tensors.append(tvm.runtime.tensor(a, self.device))
        if self._has_transform:
            if self._remote:
                raise DlcRuntimeError("main_transform_params cannot be called over RPC (it takes a list)",
                                      None, "pass transformed= from a local runner (dlc.backends.tvm.rpc)")
            self._params = list(self.vm["main_transform_params"](tensors))
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
        # it: for small models the copy costs more than the model
        if self._host and a.dtype != np.bool_:
            return self.tvm.runtime.from_dlpack(_aligned(a))
        return self.tvm.runtime.tensor(a, self.device)

    def _numpy(self, t) -> np.ndarray:
        if self._host:
            try:
                return np.from_dlpack(t)   # zero-copy; main allocates fresh outputs per call
            except (TypeError, ValueError, BufferError, RuntimeError):
                pass
        return t.numpy()

    def invoke(self, args: list) -> dict[str, np.ndarray]:
        sig = self.signature
        if self._remote:
            self.vm.set_input("main", *args)
            self.vm.invoke_stateful("main")
            out = self.vm.get_outputs("main")
        else:
            if self._main is None:
                self._main = self.vm["main"]
            out = self._main(*args)
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

def _open_zip(path) -> zipfile.ZipFile:
    p = Path(path)
    if not p.exists():
        raise DlcError(f"no such package: {path}", hint="build one with: dlc compile model.dln --target cpu")
    if p.is_dir():
        raise DlcError(f"{path} is a directory, not a .dlcpkg package")
    try:
        z = zipfile.ZipFile(p)
    except (zipfile.BadZipFile, OSError) as e:
        raise DlcError(f"{path} is not a dlc package ({e})",
                       hint="a .dlcpkg is written by: dlc compile model.dln --target cpu") from None
    if MANIFEST not in z.namelist():
        z.close()
        raise DlcError(f"{path} is not a dlc package (it has no {MANIFEST})",
                       hint="a .dlcpkg is written by: dlc compile model.dln --target cpu")
    return z


def _manifest_from_zip(z: zipfile.ZipFile, path) -> dict:
    try:
        m = json.loads(z.read(MANIFEST).decode("utf-8"))
    except (ValueError, UnicodeDecodeError, zipfile.BadZipFile, OSError) as e:
        raise DlcError(f"{path}: the package manifest is damaged ({e})") from None
    if not isinstance(m, dict) or m.get("format") != "dlcpkg":
        raise DlcError(f"{path} is not a dlc package (its manifest has no format 'dlcpkg')")
    if int(m.get("format_version", 0)) > FORMAT_VERSION:
        raise DlcError(f"{path} has package format {m.get('format_version')}; this dlc reads up to "
                       f"{FORMAT_VERSION}", hint="upgrade dlc")
    return m


def read_manifest(path) -> dict:
    """The manifest of a `.dlcpkg` (a dict); `DlcError` if it is not one."""
    with _open_zip(path) as z:
        return _manifest_from_zip(z, path)


def check_loadable(manifest: dict, device: str = "cpu", path="package") -> None:
    """Refuse a package built for another machine (arch) or device."""
    lib = manifest.get("library", {})
    target = manifest.get("target", {})
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
    target = manifest.get("target", {})
    if target.get("kind") != "llvm" or not target.get("mcpu") or \
            manifest.get("library", {}).get("arch") != host_arch():
        return
    try:
        tvm = import_tvm()
        from tvm.target import codegen
        triple = target.get("mtriple", f"{host_arch()}-linux-gnu")
        need = set(codegen.llvm_get_cpu_features(tvm.target.Target(dict(target))))
        here = set(codegen.llvm_get_cpu_features(tvm.target.Target(
            {"kind": "llvm", "mtriple": triple, "mcpu": codegen.llvm_get_system_cpu()})))
    except Exception:  # noqa: BLE001 - a runtime-only TVM build: cannot tell, let it load
        return
    missing = sorted(f for f in need - here if f.startswith(_ISA_PREFIXES))
    if missing:
        raise DlcError(f"{path} was compiled for CPU '{target['mcpu']}', which has instructions this CPU "
                       f"lacks: {', '.join(missing[:6])}{' ...' if len(missing) > 6 else ''}",
                       hint="recompile for this machine: dlc compile model.dln --target cpu")


def _extract_dir(path, z: zipfile.ZipFile, member: str) -> Path:
    """Extract the library into a private directory keyed by the package's
    hash (reused while it exists; a fresh temp dir otherwise)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    base = Path(tempfile.gettempdir()) / f"dlc-pkg-{os.getuid() if hasattr(os, 'getuid') else 'u'}"
    base.mkdir(mode=0o700, parents=True, exist_ok=True)
    d = base / h.hexdigest()[:32]
    target = d / member
    if target.is_file():
        return target
    tmp = Path(tempfile.mkdtemp(prefix=".x", dir=base))
    try:
        with z.open(member) as src, open(tmp / member, "wb") as dst:
            while chunk := src.read(1 << 20):
                dst.write(chunk)
        try:
            os.replace(tmp, d)
        except OSError:      # another process extracted it first
            pass
    finally:
        if tmp.exists():
            import shutil
            shutil.rmtree(tmp, ignore_errors=True)
    if not target.is_file():
        raise DlcError(f"could not extract {member} from {path}")
    return target


class LoadedPackage:
    """A package loaded for one device: `.run(inputs) -> outputs`."""

    def __init__(self, path, device: str = "cpu"):
        self.path = str(path)
        with _open_zip(path) as z:
            self.manifest = _manifest_from_zip(z, path)
            check_loadable(self.manifest, device, path)
            lib_name = self.manifest["library"]["file"]
            if lib_name not in z.namelist():
                raise DlcError(f"{path} is damaged: it has no {lib_name}")
            lib_path = _extract_dir(path, z, lib_name)
            weights = None
            if WEIGHTS in z.namelist():
                from safetensors.numpy import load as st_load
                weights = dict(st_load(z.read(WEIGHTS)))
        tvm = import_tvm()
        dev = tvm.cpu() if device == "cpu" else tvm.cuda()
        if device != "cpu" and not dev.exist:
            raise DlcError(f"{path} needs a {device} device and this machine has none")
        try:
            lib = tvm.runtime.load_module(str(lib_path))
        except Exception as e:  # noqa: BLE001 - TVM's loader raises various types
            raise DlcError(f"cannot load the library of {path}: {str(e).strip().splitlines()[-1]}") from None
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


def load(path, device: str = "cpu") -> LoadedPackage:
    """Load a `.dlcpkg` for `device` ("cpu" or "cuda")."""
    if device not in ("cpu", "cuda"):
        raise DlcError(f"unknown device '{device}'", hint="devices: cpu, cuda")
    return LoadedPackage(path, device)
