"""Compile a dlc graph for a TVM target and run it in process.

    compiled = compile_graph(graph, target)          # CompiledModel
    runner = compiled.runner()                       # loads weights once
    outs = runner.run(inputs, weights, seed=0)       # NumPy in, NumPy out

`compile_graph` lowers the graph to Relax (`relaxgen.lower_model`), then
optimises and builds it (`pipeline.build`).  `CompiledModel.signature`
is what a package manifest records: inputs, host-drawn random inputs,
parameters and outputs with their dtypes and (possibly symbolic) shapes.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...compiler.dims import Dim
from ...compiler.ir import Graph
from ...errors import DlcError, DlcRuntimeError
from .relaxgen import Lowered, RandomInput, lower_model, storage_dtype


def _dim_json(d, fixed):
    if isinstance(d, Dim):
        if d.is_const:
            return d.value
        if all(s in fixed for s in d.symbols()):
            return d.evaluate(fixed)
        return str(d)
    return int(d)


def signature(graph: Graph, lowered: Lowered) -> dict:
    """Inputs, random inputs, parameters and outputs: names, dtypes, shapes
    (ints, or dimension expressions such as ``"N"`` where left symbolic)."""
    fixed = lowered.fixed

    def entry(name, t):
        return {"name": name, "dtype": storage_dtype(t), "dlc_dtype": t.dtype.numpy_name,
                "shape": [_dim_json(d, fixed) for d in t.shape]}

    outs = [entry(n, v.type) for n, v in zip(graph.output_names, graph.outputs)]
    outs += [entry(f"update:{k}", v.type) for k, v in graph.state_updates.items()]
    return {
        "inputs": [entry(v.name, v.type) for v in graph.inputs],
        "random_inputs": [r.to_json() for r in lowered.random_inputs],
        "params": [dict(entry(p.name, p.type), kind=p.kind) for p in graph.params],
        "outputs": outs,
        "fixed_dims": dict(fixed),
        "symbolic_dims": list(lowered.symbolic),
    }


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
                    raise DlcRuntimeError(f"input '{spec['name']}': dimension {d} is {n} here but "
                                          f"{env[d]} elsewhere", None)
            elif isinstance(d, int) and d != n:
                raise DlcRuntimeError(f"input '{spec['name']}' has shape {tuple(a.shape)}, the package "
                                      f"expects ({_fmt(spec['shape'])})", None)
    return env


def _fmt(shape) -> str:
    return ", ".join(str(d) for d in shape)


def draw_random_inputs(sig: dict, dims: dict[str, int], seed: int) -> list[np.ndarray]:
    from .lowering import draw_random
    out = []
    for r in sig["random_inputs"]:
        ri = RandomInput.from_json(r)
        shape = [dims[d] if isinstance(d, str) else int(d) for d in ri.shape]
        out.append(np.ascontiguousarray(draw_random(ri.kind, shape, ri.dtype, ri.attrs, seed)))
    return out


@dataclass
class CompiledModel:
    executable: object          # relax VMExecutable
    lowered: Lowered
    signature: dict
    target: dict

    def runner(self, device=None) -> "Runner":
        import tvm
        return Runner(self.executable, self.signature, device or tvm.cpu())


class Runner:
    """A loaded executable: weights bound once, then NumPy in, NumPy out.

    Also what `dlc.runtime.load` builds from a package (it needs only the
    executable, the signature and TVM's runtime)."""

    def __init__(self, executable, signature: dict, device):
        from tvm import relax
        self.signature = signature
        self.device = device
        self.vm = relax.VirtualMachine(executable, device)
        self._params = None
        self._has_transform = _has_function(self.vm, "main_transform_params")

    def set_weights(self, weights: dict[str, np.ndarray]):
        import tvm
        tensors = []
        for p in self.signature["params"]:
            if p["name"] not in weights:
                raise DlcRuntimeError(f"the weights have no entry for '{p['name']}'", None)
            a = np.ascontiguousarray(np.asarray(weights[p["name"]], dtype=p["dtype"]))
            want = tuple(p["shape"]) if all(isinstance(d, int) for d in p["shape"]) else None
            if want is not None and a.shape != want and a.size == int(np.prod(want)):
                a = a.reshape(want)   # a scalar buffer stored as (1,) (torch's num_batches_tracked)
            if want is not None and a.shape != want:
                raise DlcRuntimeError(f"weight '{p['name']}' has shape {a.shape}, the package "
                                      f"expects {want}", None)
            tensors.append(tvm.runtime.tensor(a, self.device))
        if self._has_transform:
            out = self.vm["main_transform_params"](tensors)
            self._params = list(out)
        else:
            self._params = tensors
        return self

    def run(self, inputs: dict[str, np.ndarray], weights: dict | None = None, seed: int = 0) -> dict:
        import tvm
        if weights is not None:
            self.set_weights(weights)
        if self._params is None:
            raise DlcRuntimeError("no weights loaded", None, "call set_weights() first")
        sig = self.signature
        arrays = {}
        for spec in sig["inputs"]:
            if spec["name"] not in inputs:
                raise DlcRuntimeError(f"missing input '{spec['name']}'", None,
                                      "inputs: " + ", ".join(s["name"] for s in sig["inputs"]))
            arrays[spec["name"]] = np.ascontiguousarray(np.asarray(inputs[spec["name"]], dtype=spec["dtype"]))
        dims = resolve_dims(sig, arrays)
        args = [tvm.runtime.tensor(arrays[s["name"]], self.device) for s in sig["inputs"]]
        args += [tvm.runtime.tensor(a, self.device) for a in draw_random_inputs(sig, dims, seed)]
        out = self.vm["main"](*args, *self._params)
        outs = [out] if hasattr(out, "numpy") else list(out)
        return {spec["name"]: o.numpy() for spec, o in zip(sig["outputs"], outs)}


def _has_function(vm, name: str) -> bool:
    try:
        vm[name]
        return True
    except (AttributeError, KeyError, RuntimeError, ValueError, Exception):  # noqa: BLE001 - TVM raises various
        return False


def compile_graph(graph: Graph, target, *, bind: dict | None = None, examples: dict | None = None,
                  database=None, lift_params: bool = True) -> CompiledModel:
    """Lower and build `graph` for `target` (a name such as ``"cpu"``, a
    target dict, or a `tvm.target.Target`)."""
    from . import pipeline
    from .target import resolve_target
    target_dict = resolve_target(target) if not hasattr(target, "kind") else dict(target.export())
    import tvm
    tgt = tvm.target.Target(target_dict)
    lowered = lower_model(graph, bind, examples, lift_params=lift_params)
    try:
        ex = pipeline.build(lowered.mod, tgt, database=database)
    except DlcError:
        raise
    except Exception as e:  # noqa: BLE001 - a TVM failure is reported against the model
        raise DlcError(f"TVM failed to compile {graph.name} for {target_dict.get('kind')}: "
                       f"{str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__}",
                       graph.span, "run with DLC_DEBUG=1 for TVM's full message") from e
    return CompiledModel(ex, lowered, signature(graph, lowered), target_dict)
