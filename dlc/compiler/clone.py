"""Copying IR: graphs and scan bodies, with a value map.

`clone_into(src, dst, vmap)` appends copies of `src`'s nodes to `dst`,
reading operands through `vmap` (old value id -> new Value; values absent
from the map, such as parameters or values of enclosing graphs, are used as
they are, i.e. captured).  Nested scan bodies are copied too, with fresh
inputs, so the copy shares no value with the original except the captures.

    vmap = {old.id: new for old, new in zip(body.inputs, new_inputs)}
    outs = clone_into(body, dst, vmap)      # dst's values for body.outputs

`free_values(g)` (defined in `ir`, re-exported here) lists what a (scan body)
graph uses from enclosing graphs, and `prune(g)` drops the nodes nothing depends on.
"""
from __future__ import annotations

from .ir import Graph, Node, Value, defined_values, free_values  # noqa: F401 (re-exported)


def clone_nodes(nodes, dst: Graph, vmap: dict[int, Value]) -> None:
    """Append copies of `nodes` to `dst`, extending `vmap` with their results."""
    for node in nodes:
        body = clone_body(node.body, dst, vmap) if node.body is not None else None
        ins = [None if v is None else vmap.get(v.id, v) for v in node.inputs]
        outs = dst.add_node(node.op, ins, dict(node.attrs), node.span, node.scope, body=body)
        for old, new in zip(node.outputs, outs):
            new.name = old.name
            vmap[old.id] = new


def clone_body(body: Graph, parent: Graph, vmap: dict[int, Value]) -> Graph:
    """A copy of scan body `body` nested in `parent`, with fresh inputs (added to `vmap`)."""
    g = Graph(body.name, mode=body.mode, dims=dict(body.dims), span=body.span, parent=parent)
    for v in body.inputs:
        vmap[v.id] = g.add_input(v.name, v.type)
    clone_nodes(body.nodes, g, vmap)
    g.outputs = [vmap.get(v.id, v) for v in body.outputs]
    g.output_names = list(body.output_names)
    return g


def clone_into(src: Graph, dst: Graph, vmap: dict[int, Value]) -> list[Value]:
    """Append copies of `src`'s nodes to `dst`; returns the copies of `src.outputs`.

    `vmap` should map `src.inputs` to values of `dst` (or of its ancestors).
    """
    clone_nodes(src.nodes, dst, vmap)
    return [vmap.get(v.id, v) for v in src.outputs]


def node_uses(node: Node) -> list[Value]:
    """Everything a node reads: its operands and, for a scan, its body's captures."""
    uses = [v for v in node.inputs if v is not None]
    # a fused body is closed (it reads its operands only): no captures to look for
    if node.body is not None and node.op.name != "fused":
        uses += free_values(node.body)
    return uses


def prune(g: Graph) -> Graph:
    """Remove the nodes of `g` whose results nothing needs (in place; returns `g`).

    Needed: `g.outputs`, `g.state_updates` and whatever they depend on.
    Nested bodies are kept whole.
    """
    live = {v.id for v in g.outputs} | {v.id for v in g.state_updates.values()}
    keep = []
    for node in reversed(g.nodes):
        if any(o.id in live for o in node.outputs):
            keep.append(node)
            live.update(v.id for v in node_uses(node))
    keep.reverse()
    g.nodes[:] = keep
    return g
