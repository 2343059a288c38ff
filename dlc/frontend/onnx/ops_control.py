"""Control flow.  `If`: a condition known at import time inlines its branch; otherwise both
branches are inlined and their outputs selected with `where` (the branches are pure).  `Loop`
with a known trip count and a condition that stays true (a `for` loop) becomes the IR's `scan`
over the iteration numbers.  `Scan` (opset 9+) is the IR's `scan`: carries then per-step slices
in, carries then stacked per-step results out; scan axes or directions that differ between its
sequences are brought to one (a transpose to axis 0, a reversed slice) around it.  Anything else
is an error naming the node."""
from __future__ import annotations

import numpy as np

from ...compiler.ir import Graph, Value
from ...compiler.ops import OPS
from ...errors import DlcError, ShapeError
from .context import Ctx
from .loader import tensor_to_numpy
from .registry import converter


def _convert_nodes(cx: Ctx, sub: Ctx, gp, what: str) -> None:
    """Convert the nodes of GraphProto `gp` in the child context `sub`.  An error inside is reported
    at the outer node (`in <what>: ...`), and the outer node stays current afterwards."""
    from .importer import convert_node
    outer = (cx.node, cx.node_index, cx.span)
    try:
        for i, node in enumerate(gp.node):
            convert_node(sub, i, node)
    except DlcError as e:
        raise cx.error(f"in {what}: {e.message}", e.hint) from None
    finally:
        cx.node, cx.node_index, cx.span = outer


def _inline(cx: Ctx, gp, what: str) -> list:
    """Convert GraphProto `gp` into the current graph; its outputs (values or constants)."""
    from .loader import tensor_to_numpy
    sub = cx.child(cx.g)
    for t in gp.initializer:
        sub.set(t.name, tensor_to_numpy(t, cx.base_dir, f"{what} initializer"))
    _convert_nodes(cx, sub, gp, what)
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


@converter("Scan", since=9)
def scan(cx: Ctx, node):
    a = Ctx.attrs(node)
    body_gp = next(x.g for x in node.attribute if x.name == "body")
    m = int(a.get("num_scan_inputs") or 0)
    nc = len(node.input) - m
    if m < 1 or nc < 0:
        raise cx.error(f"Scan needs 1 to {len(node.input)} scan inputs, num_scan_inputs={m}")
    carries = [cx.val(n) for n in node.input[:nc]]
    seqs = [cx.val(n) for n in node.input[nc:]]
    n_ys = len(body_gp.output) - nc
    return _scan(cx, body_gp, carries, seqs,
                 [_norm_axis(cx, ax, s.type.rank) for ax, s in zip(_per(a, "scan_input_axes", m, 0), seqs)],
                 _per(a, "scan_input_directions", m, 0), _per(a, "scan_output_axes", n_ys, 0),
                 _per(a, "scan_output_directions", n_ys, 0))


@converter("Scan", since=8, until=9)
def scan8(cx: Ctx, node):
    """Scan-8: every state and sequence has a leading batch axis (sequences [B, T, ...]) and the body sees
    one batch element: one scan per element of a known batch, the results stacked."""
    a = Ctx.attrs(node)
    body_gp = next(x.g for x in node.attribute if x.name == "body")
    m = int(a.get("num_scan_inputs") or 0)
    nc = len(node.input) - 1 - m
    if m < 1 or nc < 0:
        raise cx.error(f"Scan needs 1 to {len(node.input) - 1} scan inputs, num_scan_inputs={m}")
    carries = [cx.val(n) for n in node.input[1:1 + nc]]
    seqs = [cx.val(n) for n in node.input[1 + nc:]]
    B = seqs[0].type.shape[0]
    if not isinstance(B, int):
        raise cx.error("Scan-8 with a symbolic batch size is not supported", "bind the batch dimension (bind=)")
    if node.input[0]:
        lens = cx.const(node.input[0])
        T = seqs[0].type.shape[1]
        if lens is None or not isinstance(T, int) or not (lens == T).all():
            raise cx.error("sequence_lens other than the full length of every sequence is not supported")
    n_ys = len(body_gp.output) - nc
    dirs = _per(a, "directions", m, 0)
    per_b = [_scan(cx, body_gp, [_row(cx, c, b) for c in carries], [_row(cx, s, b) for s in seqs],
                   [0] * m, dirs, [0] * n_ys, [0] * n_ys) for b in range(B)]
    outs = []
    for k in range(nc + n_ys):
        rows = [cx.op("reshape", r[k], shape=(1,) + tuple(r[k].type.shape)) for r in per_b]
        outs.append(rows[0] if B == 1 else cx.op("concat", *rows, axis=0))
    return outs


def _row(cx: Ctx, v, b: int):
    r = v.type.rank
    s = cx.op("strided_slice", v, begin=[b] + [None] * (r - 1), end=[b + 1] + [None] * (r - 1))
    return cx.op("reshape", s, shape=tuple(v.type.shape[1:]))


def _scan(cx: Ctx, body_gp, carries, seqs, in_axes, in_dirs, raw_out_axes, out_dirs) -> list:
    """ONNX Scan-9 semantics as one IR scan (with transposes / reversed slices where the sequences
    disagree on the axis or the direction)."""
    nc, m = len(carries), len(seqs)
    if len(body_gp.input) != nc + m or len(body_gp.output) < nc:
        raise cx.error(f"Scan's body takes {len(body_gp.input)} inputs and returns {len(body_gp.output)} "
                       f"values; the node passes {nc} states and {m} scan inputs")
    body, ys = _scan_body(cx, body_gp, carries, seqs, in_axes)
    out_axes = [_norm_axis(cx, ax, y.type.rank + 1) for ax, y in zip(raw_out_axes, ys)]
    one_axis = len(set(in_axes + out_axes)) == 1
    axis = in_axes[0] if one_axis else 0
    one_dir = len(set(in_dirs + out_dirs)) == 1
    reverse = bool(in_dirs[0]) if one_dir else False
    xs = []
    for s, ax, d in zip(seqs, in_axes, in_dirs):
        s = s if one_axis else _move_axis(cx, s, ax, 0)
        xs.append(_flip(cx, s, axis) if d and not one_dir else s)
    try:
        res = list(cx.g.add_node(OPS["scan"], carries + xs, {"num_carry": nc, "axis": axis, "reverse": reverse},
                                 cx.span, cx.scope, body))
    except ShapeError as e:
        raise cx.error(f"Scan as scan: {e.message}", e.hint) from None
    for k, (ax, d) in enumerate(zip(out_axes, out_dirs)):
        y = res[nc + k]
        y = _flip(cx, y, axis) if d and not one_dir else y
        res[nc + k] = y if one_axis else _move_axis(cx, y, 0, ax)
    return res


def _per(a: dict, key: str, n: int, default: int) -> list[int]:
    v = a.get(key)
    return [int(x) for x in v] if v else [default] * n


def _norm_axis(cx: Ctx, ax: int, rank: int) -> int:
    if not -rank <= ax < rank:
        raise cx.error(f"Scan axis {ax} is out of range for rank {rank}")
    return ax % rank


def _move_axis(cx: Ctx, v, src: int, dst: int):
    if src == dst:
        return v
    perm = list(range(v.type.rank))
    perm.insert(dst, perm.pop(src))
    return cx.op("transpose", v, axes=tuple(perm))


def _flip(cx: Ctx, v, axis: int):
    r = v.type.rank
    return cx.op("strided_slice", v, begin=[None] * r, end=[None] * r,
                 strides=[-1 if i == axis else 1 for i in range(r)])


def _scan_body(cx: Ctx, body_gp, carries: list, seqs: list, in_axes: list[int]):
    """The body as a dlc scan body (carries, then one slice of each sequence); its per-step outputs."""
    from ...compiler.types import TensorType
    body = Graph("scan_body", mode=cx.g.mode, parent=cx.g, span=cx.span)
    sub = cx.child(body)
    for t in body_gp.initializer:
        from .loader import tensor_to_numpy
        sub.set(t.name, tensor_to_numpy(t, cx.base_dir, "Scan body initializer"))
    b_in = list(body_gp.input)
    for k, (vi, c) in enumerate(zip(b_in, carries)):
        sub.set(vi.name, body.add_input(f"state{k}", c.type))
    for k, (vi, s, ax) in enumerate(zip(b_in[len(carries):], seqs, in_axes)):
        t = TensorType(s.type.dtype, s.type.shape[:ax] + s.type.shape[ax + 1:])
        sub.set(vi.name, body.add_input(f"x{k}_t", t))
    _convert_nodes(cx, sub, body_gp, "the Scan body")
    outs = []
    for vo in body_gp.output:
        v = sub.const(vo.name)
        outs.append(sub.val(vo.name) if v is None else sub.materialize(v, vo.name))
    body.outputs = outs
    for v, c in zip(outs, carries):
        if v.type != c.type:
            raise cx.error(f"the Scan body changes a state's type from {c.type} to {v.type}")
    return body, outs[len(carries):]
