"""Control flow.  `If`: a condition known at import time inlines its branch; otherwise both
branches are inlined and their outputs selected with `where` (the branches are pure).  `Loop`
with a known trip count and a condition that stays true (a `for` loop) becomes the IR's `scan`
over the iteration numbers.  Anything else is an error naming the node."""
from __future__ import annotations

import numpy as np

from ...compiler.ir import Graph, Value
from ...compiler.ops import OPS
from ...errors import DlcError, ShapeError
from .context import Ctx
from .loader import tensor_to_numpy
from .registry import converter


def _inline(cx: Ctx, gp, what: str) -> list:
    """Convert GraphProto `gp` into the current graph; its outputs (values or constants)."""
    from .importer import convert_node
    sub = cx.child(cx.g)
    outer = (cx.node, cx.node_index, cx.span)
    for t in gp.initializer:
        from .loader import tensor_to_numpy
        sub.set(t.name, tensor_to_numpy(t, cx.base_dir, f"{what} initializer"))
    try:
        for i, node in enumerate(gp.node):
            convert_node(sub, i, node)
    except DlcError as e:
        raise cx.error(f"in {what}: {e.message}", e.hint) from None
    finally:
        cx.node, cx.node_index, cx.span = outer
    out = []
    for vo in gp.output:
        v = sub.const(vo.name)
        out.append(v if v is not None else sub.val(vo.name))
    return out


@converter("If", since=11)
def if_(cx: Ctx, node):
    a = {x.name: x.g for x in node.attribute}
    cond = cx.known(node.input[0])
    if cond is not None:
        return _inline(cx, a["then_branch" if bool(np.asarray(cond).reshape(-1)[0]) else "else_branch"],
                       "the chosen branch")
    c = cx.val(node.input[0])
    if c.type.numel() != 1:
        raise cx.error(f"If's condition must hold one value, got {c.type}")
    if c.type.rank:
        c = cx.op("reshape", c, shape=())
    then = _inline(cx, a["then_branch"], "then_branch")
    other = _inline(cx, a["else_branch"], "else_branch")
    outs = []
    for k, (t, e) in enumerate(zip(then, other)):
        t = t if isinstance(t, Value) else cx.materialize(t, f"{node.output[k]}_then")
        e = e if isinstance(e, Value) else cx.materialize(e, f"{node.output[k]}_else")
        if t.type != e.type:
            raise cx.error(f"If's branches give output {k} different types ({t.type} and {e.type}); dlc selects "
                           "between them with `where`, which needs one type")
        outs.append(cx.op("where", c, t, e))
    return outs


@converter("Loop", since=11)
def loop(cx: Ctx, node):
    body_gp = next(x.g for x in node.attribute if x.name == "body")
    if not node.input[0]:
        raise cx.error("Loop without a trip count (a while loop) is not supported: dlc's scan runs a known "
                       "number of steps")
    trips = int(cx.need_const(node.input[0], "Loop's trip count").reshape(-1)[0])
    if len(node.input) > 1 and node.input[1]:
        c0 = cx.known(node.input[1])
        if c0 is None or not bool(c0.reshape(-1)[0]):
            raise cx.error("Loop with a run-time or false initial condition is not supported")
    carries = [cx.val(n) for n in node.input[2:]]
    body = Graph("loop_body", mode=cx.g.mode, parent=cx.g, span=cx.span)
    sub = cx.child(body)
    b_in = list(body_gp.input)
    it = body.add_input("iteration", _scalar_i64())
    sub.set(b_in[0].name, it)
    sub.set(b_in[1].name, np.array(True))
    for t in body_gp.initializer:     # the body's own constants
        sub.set(t.name, tensor_to_numpy(t, cx.base_dir, "Loop body initializer"))
    carry_vals = []
    for vi, c in zip(b_in[2:], carries):
        v = body.add_input(f"carry{len(carry_vals)}", c.type)
        carry_vals.append(v)
        sub.set(vi.name, v)
    body.inputs = carry_vals + [it]      # scan's body takes (carries..., x_t...)
    from .importer import convert_node
    from .loop_unroll import Snapshot, needs_iteration_value, unroll
    outer = (cx.node, cx.node_index, cx.span)
    before = Snapshot(cx)
    try:
        for i, n in enumerate(body_gp.node):
            convert_node(sub, i, n)
    except DlcError as e:
        if needs_iteration_value(e):
            before.restore()
            cx.node, cx.node_index, cx.span = outer
            return unroll(cx, node, body_gp, trips, carries)
        raise cx.error(f"in the Loop body: {e.message}", e.hint) from None
    finally:
        cx.node, cx.node_index, cx.span = outer
    cond_out = sub.const(body_gp.output[0].name)
    if cond_out is None or not bool(cond_out.reshape(-1)[0]):
        raise cx.error("Loop whose condition is computed in the body (a while loop) is not supported: dlc's scan "
                       "runs a known number of steps")
    outs = []
    for vo in body_gp.output[1:]:
        v = sub.const(vo.name)
        outs.append(sub.val(vo.name) if v is None else sub.materialize(v, vo.name))
    body.outputs = outs
    for v, c in zip(outs, carries):
        if v.type != c.type:
            raise cx.error(f"the Loop body changes a carried value's type from {c.type} to {v.type}")
    steps = cx.op("arange", start=0, stop=trips, step=1, dtype="int64")
    try:
        res = cx.g.add_node(OPS["scan"], carries + [steps], {"num_carry": len(carries)}, cx.span, cx.scope, body)
    except ShapeError as e:
        raise cx.error(f"Loop as scan: {e.message}", e.hint) from None
    return list(res)


def _scalar_i64():
    from ...compiler.types import DType, TensorType
    return TensorType(DType.i64, ())
