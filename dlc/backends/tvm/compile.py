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

from ...compiler.dims import Dim
from ...compiler.ir import Graph
from ...errors import DlcError
from ...runtime.package import (Runner, _has_function, draw_random_inputs,  # noqa: F401 - re-exported
                                resolve_dims)
from .relaxgen import Lowered, lower_model, storage_dtype


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
        # whether main's weights come from main_transform_params (eval graphs)
        # or are passed as they are (train-mode graphs, training steps)
        "lifted_params": bool(lowered.lifted),
    }


@dataclass
class CompiledModel:
    executable: object          # relax VMExecutable
    lowered: Lowered
    signature: dict
    target: dict

    def runner(self, device=None) -> "Runner":
        import tvm
        return Runner(self.executable, self.signature, device or tvm.cpu())


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
