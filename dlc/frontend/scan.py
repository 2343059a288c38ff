"""The `scan` builtin: run a hand-written cell over a sequence axis.

    ys, (h, c) = scan(LSTMCell(128), xs, init=(h0, c0), axis=1)

The cell is elaborated once, into the body graph of one `scan` node, so its
parameters are shared across time steps and the length may stay symbolic.
"""
from __future__ import annotations

from ..compiler.ir import Graph
from ..compiler.types import TensorType
from .builtins import builtin
from .values import BlockValue, Builtin, PartialBlock, describe, flatten, is_tensor, unflatten


@builtin(kind="ct")
def scan(F, cell, xs, init, axis=0, reverse=False, name=None):
    """scan(cell, xs, init, axis=0): y_t, state = cell(x_t, state) for each t;
    returns (stacked ys, final state)."""
    from .blocks import apply_block
    from .expressions import call_value
    frame = F.frame
    if not isinstance(cell, (PartialBlock, BlockValue, Builtin)):
        F.fail(f"scan: the cell must be a block, got {describe(cell)}", "e.g. scan(LSTMCell(128), xs, init)")
    seqs = list(xs) if isinstance(xs, (tuple, list)) else [xs]
    if not seqs:
        F.fail("scan: needs at least one sequence tensor", "e.g. scan(LSTMCell(128), xs, init)")
    for s in seqs:
        F.tensor(s, "sequence")
    ax = F.axis(axis, seqs[0])
    carries = flatten(init)
    for c in carries:
        F.tensor(c, "initial state")
    reverse = F.boolean(reverse, "reverse")
    body = Graph(f"{frame.graph.name}.scan", mode=frame.ctx.mode, parent=frame.graph)
    carry_in = [body.add_input(f"carry{i}", c.type) for i, c in enumerate(carries)]
    x_in = []
    for i, s in enumerate(seqs):
        shp = list(s.type.shape)
        del shp[ax]
        x_in.append(body.add_input(f"x{i}", TensorType(s.type.dtype, tuple(shp))))
    state = unflatten(init, carry_in) if isinstance(init, (tuple, list)) else carry_in[0]
    x_arg = x_in[0] if not isinstance(xs, (tuple, list)) else tuple(x_in)
    outer = frame.graph
    frame.graph = body
    try:
        result = call_value(frame, cell if not isinstance(cell, BlockValue) or not cell.has_cparams else
                            F.fail("scan: give the cell its compile-time arguments, e.g. Cell(128)"),
                            [x_arg, state], {} if name is None else {"name": name}, F.span)
    finally:
        frame.graph = outer
    if not isinstance(result, tuple) or len(result) != 2:
        F.fail(f"scan: the cell must return (output, new_state), got {describe(result)}")
    y, new_state = result
    new_carries = flatten(new_state)
    if len(new_carries) != len(carries):
        F.fail(f"scan: the cell returns {len(new_carries)} state tensors but received {len(carries)}")
    ys = flatten(y)
    for v in new_carries + ys:
        F.tensor(v, "cell result")
    body.outputs = list(new_carries) + list(ys)
    from ..compiler.ops import OPS
    node_outs = F.checked(frame.graph.add_node, OPS["scan"], carries + seqs,
                          {"num_carry": len(carries), "axis": ax, "reverse": reverse}, F.span,
                          frame.prefix, body=body)
    final = node_outs[:len(carries)]
    stacked = node_outs[len(carries):]
    ys_struct = unflatten(y, stacked) if isinstance(y, tuple) else stacked[0]
    st_struct = unflatten(new_state, final) if isinstance(new_state, tuple) else final[0]
    return ys_struct, st_struct
