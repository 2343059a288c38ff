"""Which nodes compute on the weights alone.

A node whose operands are all parameters, buffers, constants or other such
nodes gives the same result on every run with the same weights: folded
batch-norm weights (`passes/fold_batchnorm.py`), a transposed weight matrix,
a weight cast to another dtype.  A backend computes these once per set of
weights rather than once per run, as TVM's `transform_params` does:

    hoisted = weight_only_nodes(g)       # in graph order
    # run them when the weights change, keep their results, skip them per run

Random ops are never hoisted (their draws depend on the run's seed), nor
nodes with bodies, nor anything that reads a graph input.
"""
from __future__ import annotations

from .clone import node_uses
from .ir import Graph, Node
from .ops.registry import RANDOM


def weight_only_nodes(g: Graph) -> list[Node]:
    """The top-level nodes of `g` that depend on parameters, buffers and
    constants only, in graph order."""
    fixed = {p.id for p in g.params}
    out = []
    for n in g.nodes:
        if n.body is not None or RANDOM in n.op.groups:
            continue
        if all(v.id in fixed for v in node_uses(n)):
            out.append(n)
            fixed.update(o.id for o in n.outputs)
    return out
