"""Outlining: turn a group of nodes into one `fused` node (`ops/fused.py`).

    node = outline(g, [conv, add, relu], "conv_epilogue", anchor=conv)

The group's operands are the values it reads from outside (parameters
included), in first-use order; its results are the values something outside
still reads (or the graph returns).  The fused node takes the place of the
group's last node and carries the anchor's `.dln` span and scope, so errors
and generated code still point at the user's line.
"""
from __future__ import annotations

from ..clone import node_uses
from ..ir import Graph, Node, Value
from ..ops import OPS
from .rewrite import escaping, replace_uses


def _operands(group: list[Node], produced: set[int]) -> list[Value]:
    """What `group` reads from outside (values not in `produced`), in first-use order."""
    ins, seen = [], set()
    for n in group:
        for v in node_uses(n):
            if v.id not in produced and v.id not in seen:
                seen.add(v.id)
                ins.append(v)
    return ins


def group_io(g: Graph, group: list[Node]) -> tuple[list[Value], list[Value]]:
    """(operands, results) of `group`, a list of top-level nodes of `g`."""
    inside = {id(n) for n in group}
    produced = {o.id for n in group for o in n.outputs}
    ins = _operands(group, produced)
    used_outside = set(escaping(g))
    for n in g.nodes:
        if id(n) not in inside:
            used_outside.update(v.id for v in node_uses(n))
    outs = [o for n in group for o in n.outputs if o.id in used_outside]
    return ins, outs


def outline(g: Graph, group: list[Node], kind: str, anchor: Node | None = None) -> Node | None:
    """Replace `group` (top-level nodes of `g`, none with a body) by one fused
    node; None (and `g` unchanged) when the group cannot be one region: a node
    between its members reads one of its results, or a member has a body."""
    if not group or any(n.body is not None for n in group):
        return None
    pos = {id(n): i for i, n in enumerate(g.nodes)}
    group = sorted(group, key=lambda n: pos[id(n)])
    first, last = pos[id(group[0])], pos[id(group[-1])]
    inside = {id(n) for n in group}
    produced = {o.id for n in group for o in n.outputs}
    for n in g.nodes[first:last]:
        if id(n) not in inside and any(v.id in produced for v in node_uses(n)):
            return None
    ins, outs = group_io(g, group)
    if not outs:
        return None
    node = _fused_node(g, group, ins, outs, kind, anchor)
    keep = [n for n in g.nodes if id(n) not in inside]
    # the fused node goes where the group's last node was
    keep.insert(sum(1 for n in g.nodes[:last] if id(n) not in inside), node)
    g.nodes[:] = keep
    replace_uses(g, {o.id: new for o, new in zip(outs, node.outputs)})
    return node


def _fused_node(g: Graph, group: list[Node], ins: list[Value], outs: list[Value], kind: str,
                anchor: Node | None) -> Node:
    """The fused node of `group` (in graph order), its body a copy of the group."""
    anchor = anchor or group[0]
    body = Graph(kind, mode=g.mode, dims=dict(g.dims), span=anchor.span, parent=g)
    vmap: dict[int, Value] = {}
    for i, v in enumerate(ins):
        vmap[v.id] = body.add_input(v.name or f"x{i}", v.type)
    for n in group:
        copies = body.add_node(n.op, [None if v is None else vmap[v.id] for v in n.inputs], dict(n.attrs),
                               n.span, n.scope)
        for old, new in zip(n.outputs, copies):
            new.name = old.name
            vmap[old.id] = new
    body.outputs = [vmap[o.id] for o in outs]
    body.output_names = [f"y{i}" for i in range(len(outs))]
    node = Node(OPS["fused"], ins, {"kind": kind}, anchor.span, anchor.scope, body)
    node.outputs = [Value(t, o.name, "node", node, i)
                    for i, (t, o) in enumerate(zip(OPS["fused"].infer([v.type for v in ins], node.attrs, node), outs))]
    return node


def outline_many(g: Graph, groups: list[tuple[list[Node], str, Node | None]]) -> list[Node | None]:
    """`outline` for many disjoint groups (group, kind, anchor) at once, in
    one sweep of the graph instead of one per group.  Each group is checked
    as `outline` checks it, against the graph as it is; groups that pass
    each check are valid together (a group's outside readers all come after
    its last node, where its fused node goes, so no order of fused nodes can
    break).  Returns the fused node of each group, None where it was refused."""
    pos = {id(n): i for i, n in enumerate(g.nodes)}
    readers: dict[int, list[int]] = {}
    for i, n in enumerate(g.nodes):
        for v in node_uses(n):
            readers.setdefault(v.id, []).append(i)
    esc = escaping(g)
    placed: dict[int, Node] = {}
    gone: set[int] = set()
    mapping: dict[int, Value] = {}
    made: list[Node | None] = []
    for group, kind, anchor in groups:
        ok = bool(group) and all(n.body is None and id(n) in pos for n in group)
        group = sorted(group, key=lambda n: pos[id(n)]) if ok else group
        at = {pos[id(n)] for n in group} if ok else set()
        if not ok or at & gone:
            made.append(None)
            continue
        first, last = min(at), max(at)
        produced = [o for n in group for o in n.outputs]
        if any(first < r < last and r not in at for o in produced for r in readers.get(o.id, [])):
            made.append(None)
            continue
        outs = [o for o in produced if o.id in esc or any(r not in at for r in readers.get(o.id, []))]
        if not outs:
            made.append(None)
            continue
        ins = _operands(group, {o.id for o in produced})
        node = _fused_node(g, group, ins, outs, kind, anchor)
        placed[last] = node
        gone |= at
        mapping.update({o.id: new for o, new in zip(outs, node.outputs)})
        made.append(node)
    g.nodes[:] = [placed[i] if i in placed else n for i, n in enumerate(g.nodes) if i in placed or i not in gone]
    replace_uses(g, mapping)
    return made


def inline(g: Graph, node: Node) -> list[Value]:
    """The inverse of `outline`: the body's nodes back in place of `node`."""
    from ..clone import clone_nodes
    i = g.nodes.index(node)
    tail = g.nodes[i + 1:]
    del g.nodes[i:]
    vmap = {v.id: x for v, x in zip(node.body.inputs, node.inputs)}
    clone_nodes(node.body.nodes, g, vmap)
    outs = [vmap.get(v.id, v) for v in node.body.outputs]
    g.nodes.extend(tail)
    replace_uses(g, {o.id: new for o, new in zip(node.outputs, outs)})
    return outs
