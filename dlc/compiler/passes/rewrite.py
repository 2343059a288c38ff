"""Helpers every pass uses to edit a graph in place.

Values are objects: a node's operands, a graph's outputs, its state updates,
its layer records and the captures of nested scan bodies all hold them.
`replace_uses` redirects every one of those at once, so a pass only has to
build the replacement and call it:

    new = b.op("relu", x)
    replace_uses(g, {old.id: new})
    dce(g)                       # the old node, now unused, goes

`users(g)` maps a value id to the nodes that read it (nested bodies count
as their enclosing node reading the captured value).
"""
from __future__ import annotations

from collections import defaultdict

from ..clone import node_uses
from ..ir import Graph, Node, Value


def _remap(v: Value | None, mapping: dict[int, Value]) -> Value | None:
    while v is not None and v.id in mapping:
        v = mapping[v.id]
    return v


def replace_uses(g: Graph, mapping: dict[int, Value]) -> None:
    """Every use of value id k in `g` (nested bodies, outputs, state updates,
    layer records included) becomes `mapping[k]`.  Chains are followed."""
    if not mapping:
        return

    def visit(h: Graph):
        for n in h.nodes:
            n.inputs = tuple(_remap(v, mapping) for v in n.inputs)
            if n.body is not None and n.op.name != "fused":   # a fused body is closed: nothing to remap
                visit(n.body)
        h.outputs = [_remap(v, mapping) for v in h.outputs]
        h.state_updates = {k: _remap(v, mapping) for k, v in h.state_updates.items()}
        for layer in h.layers:
            layer.outputs = [_remap(v, mapping) for v in layer.outputs]
    visit(g)


def users(g: Graph) -> dict[int, list[Node]]:
    """Value id -> the nodes of `g` (top level) that read it, directly or
    through a nested body's capture."""
    out: dict[int, list[Node]] = defaultdict(list)
    for n in g.nodes:
        seen = set()
        for v in node_uses(n):
            if v.id not in seen:
                seen.add(v.id)
                out[v.id].append(n)
    return out


def escaping(g: Graph) -> set[int]:
    """Ids of the values that must stay observable: outputs, state updates and
    layer outputs (what `dlc info` and module generation map to layers)."""
    ids = {v.id for v in g.outputs if v is not None}
    ids |= {v.id for v in g.state_updates.values() if v is not None}
    return ids


def single_user(uses: dict[int, list[Node]], v: Value, g: Graph) -> Node | None:
    """The one node reading `v`, if exactly one does and `v` is not an output."""
    us = uses.get(v.id, [])
    if len(us) != 1 or v.id in escaping(g):
        return None
    return us[0]
