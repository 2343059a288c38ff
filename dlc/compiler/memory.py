"""How much memory running a graph takes, estimated before anything is allocated.

Activations come from the memory plan (`memory_plan.plan_memory`): the most
bytes alive at one step when every value is freed after its last use, which
is how the NumPy interpreter runs (it passes its kernels' scratch as
`workspace`, so its estimate is its measured peak).  For the other backends
the same live peak is a lower bound.  Initialising a float parameter draws it
in float64 first, so the largest such draw is counted as a transient.
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
                    workspace=None) -> MemoryEstimate:
    """Bytes a run will allocate.  `new_inputs`: names of inputs still to be drawn
    (None: all); `new_weights`: whether the weights are still to be drawn;
    `workspace(node, dims)`: a backend's scratch bytes inside a node (see
    `memory_plan.plan_memory`)."""
    from .memory_plan import plan_memory
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
    est.activations = plan_memory(g, dims, workspace).workspace_peak
    return est
