"""The NumPy interpreter: dlc's reference semantics.

Every other backend is tested against this one.  `Interpreter` walks a graph
in order; subclasses override `call_op` (one op) or `run_node` (one node) to
change how ops execute, in the manner of torch.fx's Interpreter:

    Interpreter.run(graph, inputs, weights)
      -> run_node(node)          # per node; scan bodies recurse
           -> call_op(name, arrays, attrs)   # the kernel table
           -> run_decomposition(node, env)   # ops without a kernel

Failures inside a kernel are reported against the `.dln` line of the node.

A run frees each value after its last use (`compiler.memory_plan.last_uses`),
so the arrays alive at any moment are those the memory plan says are live:
its peak, not the sum of every intermediate, bounds what a run allocates.
"""
from __future__ import annotations

import numpy as np

from ...compiler.hoist import weight_only_nodes
from ...compiler.decompose import bind_inputs, decomposition
from ...compiler.dims import Dim
from ...compiler.ir import Graph, Node
from ...compiler.memory_plan import last_uses
from ...compiler.ops.norm import batch_statistics_error
from ...errors import DlcRuntimeError
from .fused import run_fused
from .kernels import KERNELS
from .kernels.dtypes import as_arrays
from .lowp import is_low, narrow, widen


_UNQUIET = {name: fn.unquiet for name, fn in KERNELS.items() if hasattr(fn, "unquiet")}
_SEEDED = frozenset({"randn", "uniform", "dropout"})
_CONSTANT = frozenset({"full", "arange", "sinusoidal_positions"})


_KERNEL_ERRORS = (ValueError, IndexError, TypeError, KeyError, FloatingPointError, MemoryError)


def _kernel_failed(node: Node, e: Exception) -> DlcRuntimeError:
    return DlcRuntimeError(f"{node.op.name} failed: {e}", node.span,
                           getattr(e, "hint", None) or "the inputs do not match the shapes the model was compiled for")


def _concrete(v, env):
    if isinstance(v, Dim):
        return v.evaluate(env)
    if isinstance(v, tuple):
        return tuple(_concrete(x, env) for x in v)
    if isinstance(v, list):
        return [_concrete(x, env) for x in v]
    return v


class Interpreter:
    def __init__(self, graph: Graph, seed: int = 0, dims: dict[str, int] | None = None):
        self.graph = graph
        self.seed = seed          # may be changed between runs (the trainer does, per step)
        self.dims = dict(dims or {})
        self._attr_cache: dict = {}
        self._const_cache: dict = {}
        self._decompositions: dict[int, tuple[Node, Graph]] = {}
        self._frees: dict[int, tuple[Graph, list[tuple[int, ...]]]] = {}
        self._steps: dict = {}
        self._dims_key = tuple(sorted(self.dims.items()))   # refreshed by run()
        self._warnings_off = False                           # True inside run()
        # nodes that compute on the weights alone (folded batch norms, transposed
        # weights): run once per set of weight arrays, not once per run
        self._hoisted = {id(n): n for n in weight_only_nodes(graph)}
        self._hoisted_params = [p for p in graph.params
                                if any(p in n.inputs for n in self._hoisted.values())]
        self._weight_key = None
        self._weight_values: dict[int, tuple] = {}

    # the extension points --------------------------------------------------
    def call_op(self, name: str, args: list, attrs: dict):
        # inside run() the floating-point warnings are off for the whole run:
        # skip each kernel's own errstate (a measurable cost per node)
        fn = _UNQUIET.get(name) if self._warnings_off else None
        return as_arrays(fn(*args, **attrs)) if fn is not None else KERNELS[name](*args, **attrs)

    def _attrs(self, node: Node) -> dict:
        """Concrete attributes of a node, cached per (node, dims)."""
        key = (id(node), self._dims_key)
        attrs = self._attr_cache.get(key)
        if attrs is None:
            attrs = {k: _concrete(v, self.dims) for k, v in node.attrs.items()}
            self._attr_cache[key] = attrs
        return attrs

    def run_node(self, node: Node, env: dict):
        if not is_low(node):
            return self._run_node(node, env)
        # bf16/fp16 (--precision): the fp32 kernel on the operands widened to fp32, its results rounded once
        wide = dict(env)
        for v in node.inputs:
            if v is not None:
                wide[v.id] = widen([env[v.id]])[0]
        return narrow(node, self._run_node(node, wide))

    def _run_node(self, node: Node, env: dict):
        args = [env[v.id] if v is not None else None for v in node.inputs]
        attrs = self._attrs(node)
        if node.op.name == "scan":
            return self.run_scan(node, args, attrs, env)
        if node.op.name == "fused":        # its body, with in-place ufuncs where exact
            return run_fused(self, node, env, self._dead_after)
        if node.op.name not in KERNELS and node.op.decompose is not None:
            return self.run_decomposition(node, env)
        if node.op.name in _SEEDED:
            attrs = {**attrs, "seed": (self.seed, attrs["seed"])}
        if node.op.name == "batch_norm":
            err = batch_statistics_error(node, np.shape(args[0]))
            if err is not None:
                raise err
        try:
            out = self.call_op(node.op.name, args, attrs)
        except _KERNEL_ERRORS as e:
            raise _kernel_failed(node, e) from None
        return out if isinstance(out, tuple) else (out,)

    def _plain_steps(self, g: Graph) -> list:
        """Per node of `g`: (raw kernel, operand ids, concrete attrs) for a node
        that is one plain kernel call, else None; built once per graph and dims."""
        key = (id(g), self._dims_key)
        cached = self._steps.get(key)
        if cached is None or cached[0] is not g:
            steps = []
            for n in g.nodes:
                name = n.op.name
                plain = name in _UNQUIET and n.body is None and name not in _SEEDED | _CONSTANT | {"batch_norm"} \
                    and not is_low(n)
                steps.append((_UNQUIET[name], tuple(None if v is None else v.id for v in n.inputs),
                              self._attrs(n)) if plain else None)
            cached = self._steps[key] = (g, steps)
        return cached[1]

    def _fast_path(self) -> bool:
        """Whether run_nodes may call plain kernels itself: inside run() (the
        warnings are off) and with run_node/call_op not overridden."""
        cls = type(self)
        return (self._warnings_off and cls.run_node is Interpreter.run_node and cls.call_op is Interpreter.call_op
                and "run_node" not in self.__dict__ and "call_op" not in self.__dict__)

    def run_decomposition(self, node: Node, env: dict):
        """An op without a kernel: run its decomposition (built once per node)."""
        cached = self._decompositions.get(id(node))
        if cached is None or cached[0] is not node:   # (an id may be reused once a node is gone)
            cached = self._decompositions[id(node)] = (node, decomposition(node))
        sub = cached[1]
        senv = bind_inputs(sub, node, lambda v: env[v.id])  # the graph is standalone
        self.run_nodes(sub, senv, free=True)
        return tuple(senv[v.id] for v in sub.outputs)

    def run_scan(self, node: Node, args: list, attrs: dict, env: dict):
        nc, axis = attrs["num_carry"], attrs["axis"]
        carries, seqs = list(args[:nc]), args[nc:]
        length = seqs[0].shape[axis]
        steps = range(length - 1, -1, -1) if attrs.get("reverse") else range(length)
        body = node.body
        ys: list[list] = [[] for _ in range(len(body.outputs) - nc)]
        for t in steps:
            benv = dict(env)
            for v, c in zip(body.inputs[:nc], carries):
                benv[v.id] = c
            for v, s in zip(body.inputs[nc:], seqs):
                benv[v.id] = np.take(s, t, axis=axis)
            self.run_nodes(body, benv, free=True)
            outs = [benv[v.id] for v in body.outputs]
            carries = outs[:nc]
            for i, y in enumerate(outs[nc:]):
                ys[i].append(y)
        if attrs.get("reverse"):
            ys = [lst[::-1] for lst in ys]
        stacked = [np.stack(lst, axis=axis) for lst in ys]
        return tuple(carries) + tuple(stacked)

    def _dead_after(self, g: Graph) -> list[tuple[int, ...]]:
        """Per node of `g`, the ids of the values to drop once it has run."""
        cached = self._frees.get(id(g))
        if cached is None or cached[0] is not g:
            cached = self._frees[id(g)] = (g, [tuple(v.id for v in vs) for vs in last_uses(g)])
        return cached[1]

    def run_nodes(self, g: Graph, env: dict, free: bool = False):
        """Run `g`'s nodes into `env`; `free`: drop each result after its last
        use (`g`'s outputs and state updates stay), else keep them all."""
        dead = self._dead_after(g) if free else None
        steps = self._plain_steps(g) if self._fast_path() else [None] * len(g.nodes)
        hoisted = self._weight_values if g is self.graph else {}
        for i, node in enumerate(g.nodes):
            step = steps[i]
            if id(node) in hoisted:    # computed from the weights alone, once per set of weights
                outs = hoisted[id(node)]
            elif step is not None:     # the common case, without run_node's dispatch
                fn, ids, attrs = step
                try:
                    out = fn(*[None if k is None else env[k] for k in ids], **attrs)
                except _KERNEL_ERRORS as e:
                    raise _kernel_failed(node, e) from None
                outs = as_arrays(out) if type(out) is tuple else (out if type(out) is np.ndarray else np.asarray(out),)
            elif node.op.name in _CONSTANT:
                # operand-free, deterministic: computed once per dims, then reused
                key = (id(node), self._dims_key)
                outs = self._const_cache.get(key)
                if outs is None:
                    outs = self.run_node(node, env)
                    for a in outs:
                        if isinstance(a, np.ndarray):
                            a.setflags(write=False)  # shared between runs: never written
                    self._const_cache[key] = outs
            else:
                outs = self.run_node(node, env)
            for v, a in zip(node.outputs, outs):
                env[v.id] = a
            out = outs = a = None          # hold no array past its last use
            if dead is not None:
                for vid in dead[i]:
                    del env[vid]

    def _compute_weight_values(self, env: dict) -> None:
        """(Re)compute the weight-only nodes when the weight arrays differ from
        the last run's.  Weights are identified by object: a weight changed in
        place (rather than replaced by a new array) is not seen, as with TVM's
        transformed parameters; every dlc caller passes new arrays."""
        if not self._hoisted:
            return
        key = (self._dims_key, tuple(id(env[p.id]) for p in self._hoisted_params))
        if key == self._weight_key:
            return
        self._weight_values = {}
        wenv = {p.id: env[p.id] for p in self.graph.params}
        for node in self._hoisted.values():
            outs = self.run_node(node, wenv)
            for v, a in zip(node.outputs, outs):
                wenv[v.id] = a
            self._weight_values[id(node)] = outs
        self._weight_key = key
        # the arrays themselves stay referenced by the key's weights (ids stay valid)
        self._weight_refs = [env[p.id] for p in self._hoisted_params]

    def run(self, inputs: dict[str, np.ndarray], weights: dict[str, np.ndarray]):
        """Returns (outputs by name, updated buffers by name)."""
        g = self.graph
        env: dict[int, np.ndarray] = {}
        for v in g.inputs:
            if v.name not in inputs:
                raise DlcRuntimeError(f"missing input '{v.name}'", g.span, f"inputs: {', '.join(i.name for i in g.inputs)}")
            env[v.id] = inputs[v.name]
        for p in g.params:
            if p.name not in weights:
                raise DlcRuntimeError(f"no weights for parameter '{p.name}'", p.param.span)
            env[p.id] = weights[p.name]
        # overflow in exp() etc. is part of the semantics (inf), not an error
        self._dims_key = tuple(sorted(self.dims.items()))
        with np.errstate(over="ignore", under="ignore", invalid="ignore", divide="ignore"):
            self._warnings_off = True
            try:
                self._compute_weight_values(env)
                self.run_nodes(g, env, free=True)
            finally:
                self._warnings_off = False
        outs = {name: env[v.id] for name, v in zip(g.output_names, g.outputs)}
        updates = {name: env[v.id] for name, v in g.state_updates.items()}
        return outs, updates
