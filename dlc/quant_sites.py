"""The quantization sites of a graph, as the flow uses them.

A site is a conv2d or dense (`linear`) layer whose weight is a parameter (or
computed from parameters alone, as a folded batch norm leaves it), named by
its layer path; its input range is keyed "<layer>:in", its output "<layer>:out"
(the pinned `QuantPlan` keys).  The compiler's `quant_sites(g)` is the
authority; this module reads its answer into `Site`s.
"""
from __future__ import annotations

from dataclasses import dataclass

from .compiler.ir import Node, Value


@dataclass
class Site:
    name: str          # the layer path: "conv1", "layer1.0.conv1"
    kind: str          # "conv2d" or "dense"
    node: Node
    input: Value
    weight: Value
    output: Value

    @property
    def span(self):
        return self.node.span


OPS = {"conv2d": "conv2d", "linear": "dense"}


def list_sites(g) -> list[Site]:
    """The sites of `g`'s top level, in graph order."""
    from .compiler.hoist import weight_only_nodes
    fixed = {p.id for p in g.params} | {o.id for n in weight_only_nodes(g) for o in n.outputs}
    sites, seen = [], {}
    for n in g.nodes:
        if n.op.name not in OPS or len(n.inputs) < 2 or n.inputs[1] is None or n.inputs[1].id not in fixed:
            continue
        name = n.scope or f"{OPS[n.op.name]}@{n.span.line if n.span else len(sites)}"
        seen[name] = seen.get(name, 0) + 1
        if seen[name] > 1:               # one layer applying two weighted ops: number the later ones
            name = f"{name}#{seen[name] - 1}"
        sites.append(Site(name, OPS[n.op.name], n, n.inputs[0], n.inputs[1], n.outputs[0]))
    return sites
