"""Common subexpression elimination: nodes with the same op, the same
attributes and the same operands compute the same thing; the first one stays
and the others' uses go to it.

It matters most in training graphs: autodiff rebuilds pieces of the forward
pass inside the backward (a transposed weight, a flattened input, the
constants of every VJP rule), and several VJP rules rebuild the same value;
after CSE the backward reads the forward's values.

Never merged: random ops (the RANDOM group: dropout, randn, uniform), whose
two draws are two draws, and nodes with a body (scan, fused) unless their
bodies are structurally equal (same ops, attributes and wiring, the same
values captured).  Operands of commutative ops are compared as a set
(a + b is b + a, bit for bit, in IEEE arithmetic).  Attributes are compared
by type and value, so 0.0 and -0.0, 1 and 1.0 and True stay apart.
"""
from __future__ import annotations

from ..dims import Dim
from ..ir import Graph, Node, Value
from ..ops.registry import RANDOM
from ..types import DType
from .pipeline import PassContext, register_pass
from .rewrite import replace_uses

# results independent of operand order (bit for bit: IEEE + and * commute)
COMMUTATIVE = frozenset({"add", "mul", "maximum", "minimum", "eq", "ne", "logical_and", "logical_or"})


def freeze(v):
    """A hashable key for an attribute value that keeps its type: 1, 1.0,
    True and -0.0 vs 0.0 differ; floats by their exact bits."""
    if isinstance(v, bool) or v is None or isinstance(v, (str, Dim, DType)):
        return (type(v).__name__, v)
    if isinstance(v, int):
        return ("int", v)
    if isinstance(v, float):
        return ("float", v.hex())
    if isinstance(v, (list, tuple)):
        return ("seq", tuple(freeze(x) for x in v))
    if isinstance(v, dict):
        return ("map", tuple(sorted((k, freeze(x)) for k, x in v.items())))
    return ("obj", repr(v))


def body_key(body: Graph) -> tuple:
    """The structure of a nested body: its nodes with the wiring numbered
    locally, and the ids of what it captures from outside."""
    local: dict[int, tuple] = {v.id: ("in", i, str(v.type)) for i, v in enumerate(body.inputs)}

    def ref(v: Value | None):
        if v is None:
            return None
        return local.get(v.id, ("cap", v.id))

    nodes = []
    for i, n in enumerate(body.nodes):
        nodes.append((n.op.name, freeze(n.attrs), tuple(ref(v) for v in n.inputs),
                      body_key(n.body) if n.body is not None else None))
        for j, o in enumerate(n.outputs):
            local[o.id] = ("n", i, j)
    return tuple(nodes), tuple(ref(v) for v in body.outputs)


def node_key(n: Node) -> tuple | None:
    """What makes two nodes compute the same results, or None (never merged)."""
    if RANDOM in n.op.groups or not n.outputs:
        return None
    operands = tuple(None if v is None else v.id for v in n.inputs)
    if n.op.name in COMMUTATIVE and None not in operands:
        operands = tuple(sorted(operands))
    body = body_key(n.body) if n.body is not None else None
    types = tuple(str(o.type) for o in n.outputs)
    return n.op.name, freeze(n.attrs), operands, body, types


def cse_graph(g: Graph) -> int:
    """Merge equal nodes of `g` and of its nested bodies (each body with its
    own table); returns how many nodes were removed."""
    mapping: dict[int, Value] = {}
    removed = 0

    def remap(v):
        while v is not None and v.id in mapping:
            v = mapping[v.id]
        return v

    def visit(h: Graph) -> None:
        nonlocal removed
        seen: dict[tuple, Node] = {}
        keep = []
        for n in h.nodes:
            n.inputs = tuple(remap(v) for v in n.inputs)
            if n.body is not None:
                visit(n.body)
                replace_uses(n.body, mapping)
            key = node_key(n)
            first = seen.get(key) if key is not None else None
            if first is None:
                if key is not None:
                    seen[key] = n
                keep.append(n)
                continue
            for old, new in zip(n.outputs, first.outputs):
                mapping[old.id] = new
            removed += 1
        h.nodes[:] = keep

    visit(g)
    replace_uses(g, mapping)
    return removed


@register_pass("cse", level=1, summary="merge nodes that compute the same thing (forward and backward alike)")
def cse(g: Graph, ctx: PassContext) -> None:
    ctx.count("merged", cse_graph(g))
