"""Which nodes compute on the weights alone.

A node whose operands are all parameters, buffers, constants or other such
nodes gives the same result on every run with the same weights: folded
batch-norm weights (`passes/fold_batchnorm.py`), a transposed weight matrix,
a weight cast to another dtype.  A backend computes these once per set of
weights rather than once per run, as TVM's `transform_params` does:

    hoisted = weight_only_nodes(g)       # in graph order
    # run them when the weights change, keep their results, skip them per run

Random ops are never hoisted (their draws depend on the run's seed), nor
scans, nor anything that reads a graph input.  A fused region (closed, never
random) is hoisted like any node.
"""
from __future__ import annotations

from .clone import node_uses
from .ir import Graph, Node
from .ops.fused import FUSED
from .ops.registry import RANDOM


def weight_only_nodes(g: Graph, constants: bool = True) -> list[Node]:
    """The top-level nodes of `g` that depend on parameters, buffers and
    constants only, in graph order.  `constants=False` leaves out the nodes
    that read no parameter at all (`full`, arithmetic on constants), which
    fusion may still absorb into a region."""
    params = {p.id for p in g.params}
    fixed = set(params)
    on_weights = set(params)
    out = []
    for n in g.nodes:
        if RANDOM in n.op.groups or (n.body is not None and n.op.name != FUSED):
            continue
        uses = node_uses(n)
        if all(v.id in fixed for v in uses):
            fixed.update(o.id for o in n.outputs)
            if any(v.id in on_weights for v in uses):
                on_weights.update(o.id for o in n.outputs)
            elif not constants:
                continue
            out.append(n)
    return out
