"""Block instances of a module graph, for the structured module (one class per
`.dln` block): which applications (`Graph.blocks`, recorded by the frontend)
can become a call of a class instance, and the sub-graph each one is
generated from.

An application `layer1.0` of `BasicBlock` is an *instance* when its part of
the graph is self-contained: its top-level nodes (scope `layer1.0` or below)
are consecutive, no node elsewhere (a scan body included) has its scope,
it reads only parameters under `layer1.0.` and nothing else reads those, the
state updates of its buffers are made inside it, and something outside uses
its results.  Anything else is written out flat, and `reason` says why.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field

from ...compiler.ir import BlockCall, Graph, Layer, Node, Value, free_values


def within(scope: str, prefix: str) -> bool:
    """Whether dotted `scope` is `prefix` or below it ("" holds everything)."""
    return not prefix or scope == prefix or scope.startswith(prefix + ".")


@dataclass
class Instance:
    """One block application written as a call of its class."""

    call: BlockCall
    nodes: list[Node]                  # its top-level nodes, in graph order
    inputs: list[Value]                # the values it reads from outside (the forward's arguments)
    outputs: list[Value]               # its results others read (what forward returns)
    params: list[Value]                # the parameters and buffers under its scope, in graph order
    children: list[Instance] = field(default_factory=list)

    @property
    def scope(self) -> str:
        return self.call.scope


def _reads(n: Node) -> list[Value]:
    out = [v for v in n.inputs if v is not None]
    if n.body is not None:
        out += free_values(n.body)
    return out


def find_instances(g: Graph) -> tuple[list[Instance], dict[str, str]]:
    """The eligible applications, nested (children under the innermost eligible
    parent), and for every other application the reason it stays flat."""
    pos = {id(n): i for i, n in enumerate(g.nodes)}
    readers: dict[int, list[int]] = {}           # value id -> positions of top-level nodes reading it
    for i, n in enumerate(g.nodes):
        for v in _reads(n):
            readers.setdefault(v.id, []).append(i)
    escaping = {v.id for v in g.outputs}
    flat: dict[str, str] = {}
    found: list[Instance] = []
    for call in g.blocks:
        inst = _instance(g, call, pos, readers, escaping)
        if isinstance(inst, str):
            flat[call.scope] = inst
        else:
            found.append(inst)
    return _nest(found), flat


def _instance(g: Graph, call: BlockCall, pos, readers, escaping) -> Instance | str:
    s = call.scope
    nodes = [n for n in g.nodes if within(n.scope, s)]
    for n in g.nodes:
        if n.body is not None and not within(n.scope, s) \
                and any(within(m.scope, s) for m in n.body.walk()):
            return "it is applied inside a scan body"
    if not nodes:
        return "it computes nothing of its own"
    idx = [pos[id(n)] for n in nodes]
    if idx != list(range(idx[0], idx[0] + len(idx))):
        return "its operations are interleaved with others"
    inside = set(idx)
    defined = {o.id for n in nodes for o in n.outputs}
    params = [p for p in g.params if within(p.name, s) and p.name != s]
    own = {p.id for p in params}
    inputs, seen = [], set()
    for _, v in call.inputs:
        if v.id not in seen and v.id not in defined:
            seen.add(v.id)
            inputs.append(v)
    for n in nodes:
        for v in _reads(n):
            if v.kind in ("param", "buffer") and v.id not in own:
                return f"it reads {v.name} - a parameter outside its scope"
            if v.id not in defined and v.id not in own and v.id not in seen:
                seen.add(v.id)
                inputs.append(v)
    for p in params:
        if any(i not in inside for i in readers.get(p.id, [])):
            return f"its parameter {p.name} is also used outside it"
    state_out = set()
    for key, v in g.state_updates.items():
        if within(key, s) and v.id not in defined and v.id not in own:
            return f"the new value of its buffer {key} is computed outside it"
        if not within(key, s):
            state_out.add(v.id)
    outputs = [o for n in nodes for o in n.outputs
               if o.id in escaping or o.id in state_out or any(i not in inside for i in readers.get(o.id, []))]
    if not outputs:
        return "nothing reads its results"
    return Instance(call, nodes, inputs, outputs, params)


def _nest(found: list[Instance]) -> list[Instance]:
    """Each instance under its innermost eligible enclosing instance; the roots."""
    roots: list[Instance] = []
    stack: list[Instance] = []
    by_depth = sorted(found, key=lambda i: len(i.scope.split(".")))
    for inst in by_depth:
        parent = None
        for cand in stack:
            if within(inst.scope, cand.scope) and inst.scope != cand.scope and \
                    (parent is None or len(cand.scope) > len(parent.scope)):
                parent = cand
        (parent.children if parent is not None else roots).append(inst)
        stack.append(inst)
    order = {id(n): i for i, inst in enumerate(found) for n in inst.nodes[:1]}

    def sort(lst):
        lst.sort(key=lambda i: order.get(id(i.nodes[0]), 0))
        for i in lst:
            sort(i.children)
    sort(roots)
    return roots


def _rel(name: str, prefix: str) -> str:
    return name[len(prefix) + 1:] if prefix and name.startswith(prefix + ".") else (
        "" if name == prefix else name)


@contextmanager
def relative_names(g: Graph, prefix: str, values: list[Value], nodes: list[Node], input_names: dict,
                   results: list[Value] = ()):
    """Parameter names and node scopes (nested bodies included) relative to
    `prefix` while a sub-graph is generated; the inputs named as the block
    declares them, its `results` unnamed.  Everything is
    restored afterwards."""
    saved_v = [(v, v.name, v.param.name if v.param is not None else None) for v in list(values) + list(results)]
    saved_n = []
    for n in nodes:
        saved_n.append((n, n.scope))
        if n.body is not None:
            saved_n += [(m, m.scope) for m in n.body.walk()]
    try:
        for v in values:
            if v.kind in ("param", "buffer"):
                v.name = _rel(v.name, prefix)
                if v.param is not None:
                    v.param.name = v.name
            elif v.id in input_names:
                v.name = input_names[v.id]
        for v in results:   # its name is the caller's variable, which differs between instances
            v.name = ""
        for n, sc in saved_n:
            n.scope = _rel(sc, prefix)
        yield
    finally:
        for v, name, pname in saved_v:
            v.name = name
            if v.param is not None:
                v.param.name = pname
        for n, sc in saved_n:
            n.scope = sc


def sub_graph(g: Graph, name: str, prefix: str, nodes: list[Node], inputs: list[Value],
              outputs: list[Value], params: list[Value], layers: list[Layer]) -> Graph:
    """The graph one class is generated from (names already relative)."""
    sub = Graph(name, mode=g.mode, inputs=list(inputs), params=list(params), nodes=list(nodes),
                outputs=list(outputs),
                output_names=list(g.output_names) if not prefix else
                ["y"] if len(outputs) == 1 else [f"y{i}" for i in range(len(outputs))],
                state_updates={_rel(k, prefix): v for k, v in g.state_updates.items()
                               if within(k, prefix) and k != prefix},
                dims=dict(g.dims), span=g.span)
    sub.layers = layers
    return sub


def layers_of(g: Graph, prefix: str, child_scopes: list[str]) -> list[Layer]:
    """The layer records directly in `prefix` (not inside a child instance), relative."""
    out = []
    for rec in g.layers:
        if not within(rec.name, prefix) or rec.name == prefix:
            continue
        if any(within(rec.name, c) for c in child_scopes):
            continue
        out.append(Layer(_rel(rec.name, prefix), rec.kind, rec.span,
                         [_rel(p, prefix) for p in rec.params], list(rec.outputs)))
    return out
