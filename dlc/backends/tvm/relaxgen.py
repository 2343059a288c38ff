"""dlc IR -> TVM Relax.

`to_relax(graph)` builds an `IRModule` whose function ``main`` takes the
model's inputs, then the host-drawn random tensors (see below), then the
weights in the graph's parameter order, and returns the outputs followed by
the train-mode buffer updates.  Its attribute ``num_input`` counts everything
before the weights, which is what `relax.transform.LiftTransformParams` needs
to move weight-only work (layout transposes, batch-norm scale and shift) into
``main_transform_params``, run once when a package is loaded.

Ops are lowered one node at a time through `LOWERING` (backends/tvm/
lowering.py), in the layouts dlc uses (NCHW, OIHW); layout conversion to NHWC
and the schedules are the pipeline's business (backends/tvm/pipeline.py).

Symbolic dimensions stay symbolic: each dimension name becomes one
``tirx.Var`` (int64), so a package compiled without ``--bind`` accepts any
batch size.  Where a lowering needs a concrete size (the number of steps of an
unrolled `scan` or recurrence, the shape of a random tensor) it raises
`NeedsConcrete`; `lower_model` then binds that dimension to the model's
example size and tries again, and the manifest records it as fixed.

Random ops are not compiled: dropout noise, `randn` and `uniform` are drawn on
the host with the NumPy reference's generators (so results match the
reference bit for bit) and passed in as extra inputs, described by
`RandomInput`s.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ...compiler.decompose import bind_inputs, decomposition
from ...compiler.dims import Dim, FloorDiv
from ...compiler.ir import Graph, Node, Value
from ...compiler.types import TensorType
from ...errors import DlcError


class NeedsConcrete(Exception):
    """A lowering needs these symbolic dimensions to have a fixed size."""

    def __init__(self, names, why: str):
        super().__init__(f"{', '.join(sorted(names))}: {why}")
        self.names = set(names)
        self.why = why


class Unsupported(DlcError):
    """An op (or an attribute combination) with no TVM lowering."""


@dataclass
class RandomInput:
    """A tensor drawn on the host for a random op, passed to ``main``.

    `kind` is ``dropout`` (the noise tensor ``mask / (1 - p)``), ``randn`` or
    ``uniform``; `shape` holds ints and dimension names; `attrs` are the op's
    attributes that the draw needs (p, seed, low, high).
    """

    name: str
    kind: str
    shape: list
    dtype: str
    attrs: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"name": self.name, "kind": self.kind, "shape": self.shape, "dtype": self.dtype,
                "attrs": self.attrs}

    @staticmethod
    def from_json(d: dict) -> "RandomInput":
        return RandomInput(d["name"], d["kind"], list(d["shape"]), d["dtype"], dict(d.get("attrs", {})))


def storage_dtype(t) -> str:
    """The TVM dtype a dlc value (a `TensorType`, or a `DType`) is stored in:
    bfloat16 is kept in float32 (rounded at each cast), as the NumPy
    reference does."""
    name = (t.dtype if isinstance(t, TensorType) else t).numpy_name
    return "float32" if name == "bfloat16" else name


class Lowerer:
    """State of one lowering: the block builder, the symbolic dimension
    variables and the map from dlc values to Relax expressions."""

    def __init__(self, graph: Graph, fixed: dict[str, int] | None = None):
        from tvm import relax, tirx
        self.relax = relax
        self.tirx = tirx
        self.graph = graph
        self.fixed = dict(fixed or {})
        self.bb = relax.BlockBuilder()
        self.dim_vars: dict[str, object] = {}
        self.env: dict[int, object] = {}
        self.random_inputs: list[RandomInput] = []
        self._random_vars: dict[int, object] = {}   # node id -> relax.Var of its drawn tensor
        self.node: Node | None = None                # the node being lowered (for errors)

    # dimensions ----------------------------------------------------------
    def dim_var(self, name: str):
        if name in self.fixed:
            return self.tirx.IntImm("int64", self.fixed[name])
        v = self.dim_vars.get(name)
        if v is None:
            v = self.dim_vars[name] = self.tirx.Var(name, "int64")
        return v

    def prim(self, d):
        """A dimension (int or `Dim`) as a TIR expression (an int when known)."""
        if isinstance(d, bool):
            raise TypeError("not a dimension")
        if isinstance(d, int):
            return d
        if not isinstance(d, Dim):
            return d
        if d.is_const:
            return d.value
        if all(s in self.fixed for s in d.symbols()):
            return d.evaluate(self.fixed)
        total = None
        for mono, coeff in d.terms.items():
            term = self.tirx.IntImm("int64", coeff)
            for a in mono:
                if isinstance(a, str):
                    term = term * self.dim_var(a)
                else:
                    term = term * self.tirx.floordiv(self._as_expr(self.prim(a.num)), a.den)
            total = term if total is None else total + term
        return total

    def _as_expr(self, p):
        return self.tirx.IntImm("int64", p) if isinstance(p, int) else p

    def shape(self, dims) -> list:
        return [self.prim(d) for d in dims]

    def concrete(self, d, why: str) -> int:
        """A dimension that must be known at compile time."""
        if isinstance(d, int):
            return d
        if isinstance(d, Dim):
            if d.is_const:
                return d.value
            missing = {s for s in d.symbols() if s not in self.fixed}
            if not missing:
                return d.evaluate(self.fixed)
            raise NeedsConcrete(missing, why)
        raise TypeError(f"not a dimension: {d!r}")

    def concrete_attr(self, v, why: str):
        """An attribute value with every `Dim` in it made concrete."""
        if isinstance(v, Dim):
            return self.concrete(v, why)
        if isinstance(v, tuple):
            return tuple(self.concrete_attr(x, why) for x in v)
        if isinstance(v, list):
            return [self.concrete_attr(x, why) for x in v]
        return v

    # emitting ---------------------------------------------------------------
    def emit(self, expr):
        return self.bb.emit(expr)

    def const(self, value, dtype: str):
        import numpy as np
        return self.relax.const(np.asarray(value, dtype=dtype), dtype)

    def random_input(self, node: Node, kind: str, shape, dtype: str, attrs: dict):
        """The relax.Var carrying a host-drawn tensor for `node`."""
        v = self._random_vars.get(id(node))
        if v is not None:
            return v
        shp = []
        for d in shape:
            if isinstance(d, Dim) and not d.is_const:
                if len(d.symbols()) == 1 and d == Dim.symbol(next(iter(d.symbols()))):
                    name = next(iter(d.symbols()))
                    shp.append(self.fixed.get(name, name))
                else:
                    shp.append(self.concrete(d, f"the shape of a {kind} tensor drawn on the host"))
            else:
                shp.append(int(d.value if isinstance(d, Dim) else d))
        name = f"__random{len(self.random_inputs)}"
        ri = RandomInput(name, kind, shp, dtype, attrs)
        self.random_inputs.append(ri)
        var = self.relax.Var(name, self.relax.TensorType(
            [self.dim_var(s) if isinstance(s, str) else s for s in shp], dtype))
        self._random_vars[id(node)] = var
        return var

    # lowering -----------------------------------------------------------------
    def lower_nodes(self, g: Graph, env: dict):
        from .lowering import LOWERING
        from .lowp import is_low, lower_widened
        for node in g.nodes:
            self.node = node
            fn = LOWERING.get(node.op.name)
            if fn is None and node.op.decompose is not None:
                fn = Lowerer.decomposed
            if fn is None:
                from .lowering import UNSUPPORTED
                why = UNSUPPORTED.get(node.op.name, "no TVM lowering")
                raise Unsupported(f"the TVM backend cannot compile '{node.op.name}': {why}", node.span,
                                  "run this model with --backend numpy or torch")
            args = [env[v.id] if v is not None else None for v in node.inputs]
            if is_low(node):     # --precision: the node's fp32 twin, its results rounded once
                outs = lower_widened(self, fn, node, args, env)
            else:
                outs = fn(self, node, args, env)
            if not isinstance(outs, (list, tuple)):
                outs = [outs]
            if len(outs) != len(node.outputs):
                raise AssertionError(f"{node.op.name}: lowering gave {len(outs)} results for "
                                     f"{len(node.outputs)} outputs")
            for v, o in zip(node.outputs, outs):
                env[v.id] = o

    def decomposed(self, node: Node, args: list, env: dict | None = None) -> list:
        """`node`'s results through its op's decomposition: for an op without a
        lowering, or from a lowering for the attribute values it leaves alone."""
        sub = decomposition(node)
        by_value = {v.id: a for v, a in zip(node.inputs, args) if v is not None}
        senv = bind_inputs(sub, node, lambda v: by_value[v.id])   # the graph is standalone
        self.lower_nodes(sub, senv)
        self.node = node
        return [senv[v.id] for v in sub.outputs]

    def value_type(self, v: Value):
        return self.relax.TensorType(self.shape(v.type.shape), storage_dtype(v.type))


@dataclass
class Lowered:
    """A Relax module and what the runtime needs to call it."""

    mod: object                         # tvm.IRModule
    input_names: list[str]
    random_inputs: list[RandomInput]
    param_names: list[str]
    output_names: list[str]             # outputs, then "update:<buffer>" for state updates
    fixed: dict[str, int]               # dims bound at compile time (given or forced)
    symbolic: list[str]                 # dims left symbolic
    lifted: bool = True                 # weights go through main_transform_params


def _input_free_outputs(graph: Graph) -> list[str]:
    """The names of `graph`'s outputs that depend on no model input and no
    host-drawn random tensor (so only on weights and constants)."""
    from ...compiler.ir import free_values
    from .lowering import random_plan
    live = {v.id for v in graph.inputs}
    for n in graph.nodes:
        operands = list(n.inputs)
        drawn = random_plan(n) is not None
        if n.body is not None:      # a body's captures are operands too
            operands += free_values(n.body)
            drawn = drawn or any(random_plan(m) is not None for m in n.body.walk())
        if drawn or any(v is not None and v.id in live for v in operands):
            live.update(o.id for o in n.outputs)
    return [name for name, v in zip(graph.output_names, graph.outputs) if v.id not in live]


def to_relax(graph: Graph, fixed: dict[str, int] | None = None, *,
             lift_params: bool = True, func_name: str = "main") -> Lowered:
    """Lower `graph` with the dimensions in `fixed` bound; raises
    `NeedsConcrete` when a lowering needs more of them fixed."""
    if graph.state_updates:
        # updates such as num_batches_tracked + 1 depend on the weights alone;
        # LiftTransformParams would move them out of main, so a train-mode
        # graph keeps every weight a runtime input
        lift_params = False
    if lift_params and _input_free_outputs(graph):
        # an output computed from the weights and constants alone (a constant
        # folded at import, a buffer returned as it is) would be moved into
        # main_transform_params whole by LiftTransformParams, which then
        # leaves main returning a variable it no longer defines ("Var gv is not
        # defined" at codegen); such a graph keeps its weights runtime inputs
        lift_params = False
    low = Lowerer(graph, fixed)
    relax = low.relax
    env: dict[int, object] = {}
    in_vars = []
    for v in graph.inputs:
        rv = relax.Var(v.name, low.value_type(v))
        env[v.id] = rv
        in_vars.append(rv)
    param_vars = []
    for i, p in enumerate(graph.params):
        rv = relax.Var(f"p{i}", low.value_type(p))
        env[p.id] = rv
        param_vars.append(rv)
    bb = low.bb
    from .lowering import random_plan
    plan = [(n, e) for n in graph.walk() if (e := random_plan(n)) is not None]
    for n, (kind, shape, dtype, attrs) in plan:
        low.random_input(n, kind, shape, dtype, attrs)
    random_vars = [low._random_vars[id(n)] for n, _ in plan]
    params = in_vars + random_vars + param_vars
    attrs = {"num_input": len(in_vars) + len(random_vars)} if lift_params else {
        "num_input": len(params)}
    try:
        with bb.function(func_name, params, attrs=attrs):
            with bb.dataflow():
                low.lower_nodes(graph, env)
                results = [env[v.id] for v in graph.outputs]
                results += [env[v.id] for v in graph.state_updates.values()]
                outs = [bb.emit_output(r) for r in results]
            bb.emit_func_output(relax.Tuple(outs) if len(outs) != 1 else outs[0])
    except BaseException:
        # close the builder's open block, or its destructor prints a warning
        try:
            bb._end_block()
        except Exception:  # noqa: BLE001 - nothing open
            pass
        raise
    mod = bb.get()
    symbolic = sorted(set(low.dim_vars))
    return Lowered(mod, [v.name for v in graph.inputs], low.random_inputs,
                   [p.name for p in graph.params],
                   list(graph.output_names) + [f"update:{k}" for k in graph.state_updates],
                   dict(low.fixed), symbolic, lift_params)


def lower_model(graph: Graph, fixed: dict[str, int] | None = None, examples: dict | None = None,
                **kw) -> Lowered:
    """`to_relax`, binding dimensions to their example sizes where a lowering
    needs them concrete (each such dimension is reported in `Lowered.fixed`)."""
    fixed = dict(fixed or {})
    examples = dict(examples if examples is not None else graph.dims)
    for _ in range(16):
        try:
            return to_relax(graph, fixed, **kw)
        except NeedsConcrete as e:
            missing = [n for n in e.names if examples.get(n) is None]
            if missing:
                raise DlcError(f"the TVM backend needs a fixed size for {', '.join(sorted(missing))} "
                               f"({e.why})", graph.span,
                               f"bind it: --bind {sorted(missing)[0]}=<size>") from None
            for n in e.names:
                fixed[n] = int(examples[n])
    raise DlcError("could not fix the model's dimensions for the TVM backend", graph.span)
