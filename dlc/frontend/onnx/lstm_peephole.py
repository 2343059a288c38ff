"""ONNX LSTM with peepholes (input P), which no IR op computes (torch's LSTM has none), as a `scan`
over time of the written-out cell, per direction:

    i = σ(x Wi + h Ri + Pi ⊙ c + bi)      f = σ(x Wf + h Rf + Pf ⊙ c + bf)
    g = tanh(x Wc + h Rc + bc)            c' = f ⊙ c + i ⊙ g
    o = σ(x Wo + h Ro + Po ⊙ c' + bo)     h' = o ⊙ tanh(c')

(ONNX's gate order in W, R, B is i, o, f, c; in P it is i, o, f.)"""
from __future__ import annotations

import numpy as np

from .context import Ctx


def lstm_with_peepholes(cx: Ctx, node, x, W, R, B, P, hidden: int, dirs: int, direction: str, layout: int,
                        scope: str) -> list:
    """The outputs Y [T, dirs, N, H] (layout 0), Y_h and Y_c [dirs, N, H] (layout 1: batch first)."""
    if layout == 1:
        x = cx.op("transpose", x, axes=(1, 0, 2))
    T, N = x.type.shape[0], x.type.shape[1]
    init = [_initial_state(cx, node, i, layout) for i in (5, 6)]
    ys, hs, cs = [], [], []
    for d in range(dirs):
        sfx = "_reverse" if d else ""
        b = B[d] if B is not None else np.zeros(8 * hidden, W.dtype)
        w = cx.materialize(np.ascontiguousarray(W[d].T), f"{scope}.W_l0{sfx}")           # [I, 4H] (i, o, f, c)
        r = cx.materialize(np.ascontiguousarray(R[d].T), f"{scope}.R_l0{sfx}")           # [H, 4H]
        bias = cx.materialize(b[:4 * hidden] + b[4 * hidden:], f"{scope}.B_l0{sfx}")
        p = P[d] if P is not None else np.zeros(3 * hidden, W.dtype)
        peep = [cx.materialize(p[k * hidden:(k + 1) * hidden], f"{scope}.P{g}_l0{sfx}") for k, g in enumerate("iof")]
        xw = cx.op("add", cx.op("matmul", x, w), bias)                                    # [T, N, 4H]
        h0, c0 = (_direction_state(cx, s, d, N, hidden, x) for s in init)
        body = _cell(cx, x, r, peep, N, hidden)
        res = cx.g.add_node(_scan(), [h0, c0, xw], {"num_carry": 2, "reverse": direction == "reverse" or d == 1},
                            cx.span, cx.scope, body)
        hs.append(cx.op("reshape", res[0], shape=(1, N, hidden)))
        cs.append(cx.op("reshape", res[1], shape=(1, N, hidden)))
        ys.append(cx.op("reshape", res[2], shape=(T, 1, N, hidden)))
    y, yh, yc = (v[0] if dirs == 1 else cx.op("concat", *v, axis=1 if v is ys else 0) for v in (ys, hs, cs))
    if layout == 1:
        y = cx.op("transpose", y, axes=(2, 0, 1, 3))
        yh, yc = (cx.op("transpose", v, axes=(1, 0, 2)) for v in (yh, yc))
    return [y, yh, yc]


def _scan():
    from ...compiler.ops import OPS
    return OPS["scan"]


def _initial_state(cx: Ctx, node, i: int, layout: int):
    v = cx.opt(node, i)
    return cx.op("transpose", v, axes=(1, 0, 2)) if v is not None and layout == 1 else v


def _direction_state(cx: Ctx, s, d: int, N, hidden: int, like):
    if s is None:
        return cx.op("full", shape=(N, hidden), value=0.0, dtype=like.type.dtype.numpy_name)
    return cx.op("reshape", cx.op("strided_slice", s, begin=[d, None, None], end=[d + 1, None, None]),
                 shape=(N, hidden))


def _cell(cx: Ctx, x, r, peep, N, hidden: int):
    from ...compiler.ir import Graph
    from ...compiler.types import TensorType
    body = Graph("lstm_peephole_cell", mode=cx.g.mode, parent=cx.g, span=cx.span)
    sub = cx.child(body)
    t = TensorType(x.type.dtype, (N, hidden))
    h, c = body.add_input("h", t), body.add_input("c", t)
    xt = body.add_input("xw_t", TensorType(x.type.dtype, (N, 4 * hidden)))
    z = sub.op("add", xt, sub.op("matmul", h, r))                                      # [N, 4H]

    def gate(k):
        return sub.op("strided_slice", z, begin=[None, k * hidden], end=[None, (k + 1) * hidden])
    pi, po, pf = peep
    i = sub.op("sigmoid", sub.op("add", gate(0), sub.op("mul", pi, c)))
    f = sub.op("sigmoid", sub.op("add", gate(2), sub.op("mul", pf, c)))
    g = sub.op("tanh", gate(3))
    cn = sub.op("add", sub.op("mul", f, c), sub.op("mul", i, g))
    o = sub.op("sigmoid", sub.op("add", gate(1), sub.op("mul", po, cn)))
    hn = sub.op("mul", o, sub.op("tanh", cn))
    body.outputs = [hn, cn, hn]
    return body
