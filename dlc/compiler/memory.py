"""How much memory running a graph takes, estimated before anything is allocated.

The NumPy interpreter keeps every intermediate value until the run ends, so
its activations are the sum of all node outputs.  Other backends free values
as they go; for them only the largest single output is counted (a lower
bound).  Initialising a float parameter draws it in float64 first, so the
largest such draw is counted as a transient.
"""
from __future__ import annotations

from dataclasses import dataclass

from .dims import Dim
from .ir import Graph
from .types import TensorType


@dataclass
class MemoryEstimate:
    inputs: int = 0
    weights: int = 0
    activations: int = 0
    transient: int = 0     # the float64 draw of the largest parameter

    @property
    def total(self) -> int:
        return self.inputs + self.weights + self.activations + self.transient


def tensor_bytes(t: TensorType, dims: dict) -> int:
    """Bytes of one tensor; 0 for a dimension that has no size."""
    n = t.dtype.itemsize
    for d in t.shape:
        if isinstance(d, Dim):
            try:
                d = d.evaluate(dims)
            except KeyError:
                return 0
        n *= int(d)
    return n


def estimate_memory(g: Graph, dims: dict, *, new_inputs=None, new_weights: bool = True,
                    keep_all: bool = True) -> MemoryEstimate:
    """Bytes a run will allocate.  `new_inputs`: names of inputs still to be drawn
    (None: all); `new_weights`: whether the weights are still to be drawn;
    `keep_all`: whether every intermediate stays alive (the NumPy interpreter)."""
    est = MemoryEstimate()
    for v in g.inputs:
        if new_inputs is None or v.name in new_inputs:
            est.inputs += tensor_bytes(v.type, dims)
    if new_weights:
        for p in g.params:
            b = tensor_bytes(p.type, dims)
            est.weights += b
            if p.type.dtype.is_float:
                est.transient = max(est.transient, b // p.type.dtype.itemsize * 8)
    sizes = [tensor_bytes(o.type, dims) for n in g.nodes for o in n.outputs]
    est.activations = sum(sizes) if keep_all else max(sizes, default=0)
    return est
