"""Ops by decomposition: one op's results built from other ops.

An `OpDef` may carry a decomposition (`defdecomp`, beside the op).  A backend
lowers an op directly where its table has a kernel; otherwise it lowers the
op's decomposition in place of the node:

    sub = decomposition(node)          # a small standalone Graph
    # bind sub.inputs to the node's (present) operands, lower sub.nodes the
    # way the backend lowers any node (so a decomposition may use ops that are
    # themselves decomposed), and read the node's results from sub.outputs

The expansion is per node and leaves the model's graph untouched, so every
value the graph names (outputs, state updates, layer records) keeps its
identity.  Autodiff uses the same graph to differentiate an op that has a
decomposition but no VJP rule of its own (`vjp_by_decomposition`).

Decompositions should make constants 0-d (`scalar`) and let broadcasting
do the rest: a constant with the operand's (possibly symbolic) shape would
cost a full tensor on every backend.
"""
from __future__ import annotations

from .builder import Builder
from .ir import Graph, Node, Value


def decomposition(node: Node) -> Graph:
    """`node`'s op built from other ops: a graph whose inputs stand for the
    node's present operands (in order) and whose outputs have the node's
    result types."""
    op = node.op
    if op.decompose is None:
        raise KeyError(f"op {op.name!r} has no decomposition")
    g = Graph(f"{op.name}.decomposition", span=node.span)
    ins = [None if v is None else g.add_input(f"x{i}", v.type) for i, v in enumerate(node.inputs)]
    b = Builder(g, node.span, node.scope)
    # an op with a body (a fused region) decomposes into a copy of that body
    outs = op.decompose(b, ins, dict(node.attrs), node) if node.body is not None \
        else op.decompose(b, ins, dict(node.attrs))
    g.outputs = list(outs) if isinstance(outs, (list, tuple)) else [outs]
    g.output_names = [f"y{i}" for i in range(len(g.outputs))]
    got = [v.type for v in g.outputs]
    want = [v.type for v in node.outputs]
    if got != want:
        raise AssertionError(f"the decomposition of {op.name} gives {got}, the op {want}")
    return g


def bind_inputs(sub: Graph, node: Node, lookup) -> dict[int, object]:
    """{sub input id: lookup(operand)} for the node's present operands."""
    present = [v for v in node.inputs if v is not None]
    return {s.id: lookup(v) for s, v in zip(sub.inputs, present)}


def vjp_by_decomposition(b: Builder, node: Node, cotangents: list) -> list:
    """The operands' cotangents of `node`, by differentiating its decomposition.

    The decomposition is recomputed into `b.graph` from the node's operands,
    and its backward pass appended after it.
    """
    from .autodiff import vjp
    from .clone import clone_into, prune
    sub = decomposition(node)
    pairs = [(o, c) for o, c in zip(sub.outputs, cotangents) if c is not None]
    grads = vjp(sub, [o for o, _ in pairs], [c for _, c in pairs], list(sub.inputs), node.span)
    # splice forward and backward into the caller's graph, the operands in place of sub's inputs
    present = [v for v in node.inputs if v is not None]
    vmap: dict[int, Value] = {s.id: v for s, v in zip(sub.inputs, present)}
    sub.outputs = [g for g in grads if g is not None]
    prune(sub)
    copied = iter(clone_into(sub, b.graph, vmap))
    by_input = iter(None if g is None else next(copied) for g in grads)
    return [None if v is None else next(by_input) for v in node.inputs]
