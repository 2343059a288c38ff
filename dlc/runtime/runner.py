"""Running a loaded executable with TVM's runtime: the `Runner` (weights bound
once, NumPy in, NumPy out), the array hand-over to TVM (zero-copy DLPack where
TVM accepts the layout), and the signature helpers `resolve_dims` and
`draw_random_inputs`, shared by the deploy runtime (`package.py`) and the
in-process compiler (`backends/tvm/compile.py`)."""
from __future__ import annotations

import numpy as np

from ..errors import DlcRuntimeError
from .tvm_import import import_tvm


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
