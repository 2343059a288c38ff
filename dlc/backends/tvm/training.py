"""Training on the TVM backend.

`TvmStepRunner(graph)` compiles a dlc IR graph -- typically the symbolic
training step of `compiler.training.build_train_step` (forward, loss,
symbolic backward, optimizer update) -- once for the host CPU and runs it
with the same call signature as the NumPy interpreter's trainer loop and the
torch backend's `TorchStepRunner`:

    runner = TvmStepRunner(g)
    outs, updates = runner(inputs, weights, seed)   # NumPy in, NumPy out

* Every weight is a runtime argument (``lift_params=False``): weights change
  at every step, so nothing may be precomputed from them.
* The batch dimension stays symbolic, so the last, smaller batch of an epoch
  runs the same executable.
* Random ops (dropout) are drawn on the host with the NumPy reference's
  generator and the same seed, so a step equals the interpreter's step.
* Outputs come back as zero-copy NumPy views of TVM's output tensors
  (DLPack).  When the trainer feeds such an array back at the next step
  (``weights[name] = outs["param:" + name]``, the optimizer state, buffer
  updates) the runner recognises it and passes the TVM tensor it views
  straight back: weights and optimizer state stay in TVM memory between
  steps, with no copy either way.  Any other array is copied in.
"""
from __future__ import annotations

import numpy as np

from ...errors import DlcRuntimeError
from ..protocol import input_dims


class TvmStepRunner:
    """A dlc IR graph compiled with TVM for `target` (default: this CPU).

    `bind` fixes dimensions at compile time (by default only those a
    lowering needs concrete are fixed, to their example sizes)."""

    def __init__(self, graph, target="cpu", *, bind: dict | None = None, database=None):
        import tvm

        from .relaxgen import lower_model
        from .target import resolve_target
        self.graph = graph
        self.target = resolve_target(target) if not hasattr(target, "kind") else dict(target.export())
        self.bind = {k: int(v) for k, v in (bind or {}).items()}
        self.database = database
        kind = self.target.get("kind")
        self.device = tvm.cpu() if kind in ("llvm", "c") else tvm.device(kind)
        self._zero_copy = self.device.dlpack_device_type() == 1   # kDLCPU: NumPy can view TVM memory
        # id(array) -> (array, tvm tensor) for the arrays this runner returned last
        self._views: dict[int, tuple] = {}
        # dimensions a lowering needs concrete (e.g. the batch of a training batch norm):
        # one executable per size of them, compiled on first use
        lowered = lower_model(graph, self.bind, lift_params=False)
        self.per_size = sorted(set(lowered.fixed) - set(self.bind))
        self._variants: dict[tuple, _Variant] = {}
        if not self.per_size:
            self._variants[()] = self._compile({})

    def _compile(self, extra: dict) -> _Variant:
        from tvm import relax

        from .compile import compile_graph
        compiled = compile_graph(self.graph, self.target, bind={**self.bind, **extra},
                                 database=self.database, lift_params=False)
        vm = relax.VirtualMachine(compiled.executable, self.device)
        return _Variant(compiled, vm["main"])

    def _variant(self, inputs: dict) -> _Variant:
        if not self.per_size:
            return self._variants[()]
        sizes = input_dims(self.graph, inputs)
        missing = [d for d in self.per_size if d not in sizes]
        if missing:
            from ...errors import DlcError
            raise DlcError(f"the TVM backend needs a fixed size for {', '.join(missing)}", self.graph.span,
                           f"bind it: --bind {missing[0]}=<size>")
        key = tuple(sizes[d] for d in self.per_size)
        v = self._variants.get(key)
        if v is None:
            v = self._variants[key] = self._compile(dict(zip(self.per_size, key)))
        return v

    @property
    def signature(self) -> dict:
        return next(iter(self._variants.values())).compiled.signature if self._variants else None

    # arrays in and out -----------------------------------------------------
    def _arg(self, a, spec: dict):
        import tvm
        hit = self._views.get(id(a))
        if hit is not None and hit[0] is a:
            return hit[1]
        arr = np.require(np.asarray(a, dtype=spec["dtype"]), requirements="C")
        shape = spec["shape"]
        if all(isinstance(d, int) for d in shape) and arr.shape != tuple(shape):
            if arr.size == int(np.prod(shape, dtype=np.int64)):
                arr = arr.reshape(shape)   # a scalar buffer stored as (1,)
            else:
                raise DlcRuntimeError(f"'{spec['name']}' has shape {arr.shape}, the compiled step "
                                      f"expects {tuple(shape)}", None)
        if self._zero_copy and arr.size and arr.ctypes.data % 64 == 0:
            try:   # TVM memory viewed by NumPy (another runner's output) or any aligned array
                return tvm.runtime.from_dlpack(arr)
            except Exception:  # noqa: BLE001 - not importable without a copy
                pass
        return tvm.runtime.tensor(arr, self.device)

    def _out(self, t):
        if self._zero_copy:
            a = np.from_dlpack(t)
            self._views[id(a)] = (a, t)
            return a
        return t.numpy()

    def __call__(self, inputs: dict, weights: dict, seed: int = 0):
        import tvm

        from ...compiler.ops.norm import check_batch_statistics
        from .compile import draw_random_inputs, resolve_dims
        # compiled code would divide by zero into running_var: refuse as the reference does
        check_batch_statistics(self.graph, inputs=inputs)
        var = self._variant(inputs)
        sig = var.compiled.signature
        for spec in sig["inputs"]:
            if spec["name"] not in inputs:
                raise DlcRuntimeError(f"missing input '{spec['name']}'", None,
                                      "inputs: " + ", ".join(s["name"] for s in sig["inputs"]))
        for spec in sig["params"]:
            if spec["name"] not in weights:
                raise DlcRuntimeError(f"the weights have no entry for '{spec['name']}'", None)
        shapes = {s["name"]: _ShapeOnly(inputs[s["name"]]) for s in sig["inputs"]}
        dims = resolve_dims(sig, shapes)
        args = [self._arg(inputs[s["name"]], s) for s in sig["inputs"]]
        args += [tvm.runtime.tensor(a, self.device) for a in draw_random_inputs(sig, dims, seed)]
        args += [self._arg(weights[s["name"]], s) for s in sig["params"]]
        res = var.main(*args)
        res = [res] if _is_tensor(res) else list(res)
        self._views = {}
        outs, updates = {}, {}
        for spec, t in zip(sig["outputs"], res):
            name = spec["name"]
            a = self._out(t)
            if name.startswith("update:"):
                updates[name[7:]] = a
            else:
                outs[name] = a
        return outs, updates

    run = __call__


class _Variant:
    def __init__(self, compiled, main):
        self.compiled = compiled
        self.main = main


class _ShapeOnly:
    """What `resolve_dims` reads of an input: its rank and shape."""

    def __init__(self, a):
        a = np.asarray(a) if not hasattr(a, "shape") else a
        self.shape = tuple(a.shape)
        self.ndim = len(self.shape)


def _is_tensor(x) -> bool:
    import tvm
    return isinstance(x, tvm.runtime.Tensor)
