"""Dead-code elimination: drop every node whose results nothing needs.

Needed are the graph's outputs, its state updates and what they depend on,
inside scan and fused bodies too.  Parameters stay (they are the weights'
interface) even when unused.
"""
from __future__ import annotations

from ..clone import prune
from ..ir import Graph
from .pipeline import PassContext, register_pass


def dce_graph(g: Graph) -> int:
    """Prune `g` and its nested bodies in place; returns the nodes removed."""
    before = len(g.nodes)
    prune(g)
    removed = before - len(g.nodes)
    for n in g.nodes:
        if n.body is not None:
            removed += dce_body(n.body)
    return removed


def dce_body(body: Graph) -> int:
    # a body's outputs are all needed (the node returns each of them)
    return dce_graph(body)


@register_pass("dce", level=1, summary="drop nodes whose results nothing needs")
def dce(g: Graph, ctx: PassContext) -> None:
    ctx.count("removed", dce_graph(g))
