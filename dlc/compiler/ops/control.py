"""`scan`: run a body graph over one axis of its inputs, threading a carry.

Operands are the initial carries followed by the scanned sequences.  The body
graph takes (carries..., x_t...) and returns (new carries..., y_t...); the
node returns the final carries followed by the stacked per-step outputs.
This is how recurrence over a symbolic length stays a single IR node.
"""
from __future__ import annotations

from ...errors import ShapeError
from ..dims import mul
from ..types import TensorType
from .registry import CONTROL, defop, required


def _scan(node, ts, attrs):
    body = node.body
    nc, axis = attrs["num_carry"], attrs["axis"]
    xs = ts[nc:]
    if not xs:
        raise ShapeError("scan needs at least one sequence to iterate over")
    length = xs[0].shape[axis]
    for x in xs[1:]:
        if x.shape[axis] != length:
            raise ShapeError(f"scan: sequences differ in length along axis {axis}: {xs[0]} vs {x}")
    outs = body.outputs
    for c, o in zip(ts[:nc], outs[:nc]):
        if c != o.type:
            raise ShapeError(f"scan: the carry changes type from {c} to {o.type}",
                             "the cell must return a state of the same shape as the one it receives")
    stacked = []
    for o in outs[nc:]:
        s = list(o.type.shape)
        s.insert(axis, length)
        stacked.append(TensorType(o.type.dtype, tuple(s)))
    return [c for c in ts[:nc]] + stacked


def _scan_macs(ins, outs, attrs):
    return 0  # counted by walking the body (see compiler.analysis)


scan = defop("scan", "", _scan, attrs={"num_carry": required(), "axis": 0, "reverse": False},
             macs=_scan_macs, groups={CONTROL}, variadic=True, wants_node=True,
             doc="Loop a body graph over an axis; recurrence over a symbolic length.")


# ---------------------------------------------------------------- VJP rule
from .registry import defvjp  # noqa: E402


@defvjp("scan")
def _(b, node, g):
    """Backpropagation through time: see compiler/scan_grad.py."""
    from ..scan_grad import scan_vjp
    return scan_vjp(b, node, g)
