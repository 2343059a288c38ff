"""LSTM, GRU and RNN: ONNX's one-layer recurrent ops -> the IR's `lstm`/`gru`/`rnn` (torch's gate
order and weight layout).  The weights must be initializers: they are re-laid-out at import time
(ONNX gates iofc / zrh -> torch ifgo / rzn) into parameters with torch's names under the node's
scope (`<scope>.weight_ih_l0`, `..._reverse`)."""
from __future__ import annotations

import numpy as np

from . import fold, stack
from .context import Ctx
from .registry import converter

# ONNX gate blocks -> torch's order
_GATE_ORDER = {"LSTM": [0, 2, 3, 1], "GRU": [1, 0, 2], "RNN": [0]}
_DEFAULT_ACTS = {"LSTM": ["Sigmoid", "Tanh", "Tanh"], "GRU": ["Sigmoid", "Tanh"], "RNN": ["Tanh"]}


def _s(v):
    return v.decode() if isinstance(v, bytes) else v


def _reorder(w: np.ndarray, order: list[int], hidden: int) -> np.ndarray:
    return np.concatenate([w[g * hidden:(g + 1) * hidden] for g in order], axis=0)


@converter("LSTM", "GRU", "RNN", since=7)
def recurrent(cx: Ctx, node):
    kind = node.op_type
    a = Ctx.attrs(node)
    x = cx.val(node.input[0])
    hidden = int(a["hidden_size"])
    direction = _s(a.get("direction", "forward"))
    if direction not in ("forward", "reverse", "bidirectional"):
        raise cx.error(f"{kind} direction={direction!r} is not supported")
    dirs = 2 if direction == "bidirectional" else 1
    acts = [_s(v) for v in a.get("activations", [])] or _DEFAULT_ACTS[kind] * dirs
    nonlinearity = "tanh"
    if kind == "RNN" and all(v == "Relu" for v in acts):
        nonlinearity = "relu"
    elif [v for v in acts] != _DEFAULT_ACTS[kind] * dirs:
        raise cx.error(f"{kind} activations {acts} are not supported (the defaults{' or Relu' * (kind == 'RNN')} are)")
    if "clip" in a or a.get("input_forget", 0):
        raise cx.error(f"{kind} with clip or input_forget is not supported")
    layout = int(a.get("layout", 0))
    W, R = _weight_operand(cx, node, 1), _weight_operand(cx, node, 2)
    B = _weight_operand(cx, node, 3) if len(node.input) > 3 and node.input[3] else None
    _check_lengths(cx, node, x, layout)
    if kind == "LSTM" and len(node.input) > 7 and node.input[7]:     # peepholes: no IR op has them
        from .lstm_peephole import lstm_with_peepholes
        scope = cx.scope or (node.name.strip("/").replace("/", ".") or "lstm")
        return lstm_with_peepholes(cx, node, x, W, R, B, cx.need_const(node.input[7], "LSTM's P"), hidden, dirs,
                                   direction, layout, scope)
    if kind == "GRU" and not a.get("linear_before_reset", 0):
        scope = cx.scope or (node.name.strip("/").replace("/", ".") or "gru")
        return gru_reset_before(cx, node, x, W, R, B, hidden, dirs, direction, layout, scope)
    if direction == "reverse":      # the forward recurrence over the time-reversed sequence
        x = _reverse_time(cx, x, layout)
    scope = cx.scope or (node.name.strip("/").replace("/", ".") or kind.lower())
    weights = []
    for d in range(dirs):
        weights += _direction_weights(cx, kind, W, R, B, d, hidden, f"{scope}.%s_l0{'_reverse' if d else ''}")
    states = []
    for i in ((5, 6) if kind == "LSTM" else (5,)):
        v = cx.opt(node, i)
        if v is not None and layout == 1:
            v = cx.op("transpose", v, axes=(1, 0, 2))
        states.append(v)
    if kind == "LSTM" and (states[0] is None) != (states[1] is None):
        z = cx.op("full", shape=(dirs, x.type.shape[1 - layout], hidden), value=0.0, dtype=x.type.dtype.numpy_name)
        states = [s if s is not None else z for s in states]
    attrs = {"num_layers": 1, "bias": True, "bidirectional": dirs == 2, "batch_first": layout == 1,
             **({"nonlinearity": nonlinearity} if kind == "RNN" else {})}
    stackable = layout == 0 and direction != "reverse" and all(w.kind == "param" for w in weights)
    saved, cx.scope = cx.scope, scope
    try:
        stacked = stack.try_stack(cx, node, kind.lower(), x, states, weights, attrs) if stackable else None
        if stacked is not None:      # the next layer of an earlier op: one op with one more layer
            y, finals = stacked
        else:
            build = cx.layer if all(w.kind == "param" for w in weights) else cx.op  # computed: no layer owns them
            outs = build(kind.lower(), x, *states, *weights, **attrs)
            y, finals = outs[0], list(outs[1:])
            if stackable:
                stack.remember(cx, node, y.producer, dirs)
    finally:
        cx.scope = saved
    # Y: [T, dirs, N, H] (layout 0) or [N, T, dirs, H] (layout 1)
    s = y.type.shape
    y = cx.op("reshape", y, shape=(s[0], s[1], dirs, hidden))
    y = cx.op("transpose", y, axes=(0, 2, 1, 3)) if layout == 0 else y
    if direction == "reverse":
        y = _reverse_time(cx, y, layout)
    if layout == 1:
        finals = [cx.op("transpose", f, axes=(1, 0, 2)) for f in finals]
    return [y] + finals


def _weight_operand(cx: Ctx, node, i: int):
    """W, R or B: an import-time array (an initializer) or an IR value computed in the graph."""
    known = cx.const(node.input[i])
    if known is None and node.input[i] in cx.frozen:
        known = cx.need_const(node.input[i], f"{node.op_type}'s {'WRB'[i - 1]}")
    return known if known is not None else cx.val(node.input[i])


def _direction_weights(cx: Ctx, kind: str, W, R, B, d: int, hidden: int, pattern: str) -> list:
    """weight_ih, weight_hh, bias_ih, bias_hh of direction d in torch's gate order.  An initializer is
    re-laid-out here into a new parameter (`pattern` % role); a computed weight is cut and joined in the
    graph, folded (fold.py) so that an exporter's own reordering of a parameter cancels to the parameter."""
    order = _GATE_ORDER[kind]
    G = len(order)
    out = []
    for role, src, start in (("weight_ih", W, 0), ("weight_hh", R, 0), ("bias_ih", B, 0), ("bias_hh", B, G)):
        if src is None:     # no B: zero biases
            dt = W.dtype if isinstance(W, np.ndarray) else W.type.dtype.numpy_name
            src = np.zeros((d + 1, 2 * G * hidden), dt)
        if isinstance(src, np.ndarray):
            arr = src[d][start * hidden:(start + G) * hidden]
            arr = _reorder(arr, order, hidden)
            pname = pattern % role
            cx.initializers[pname] = arr        # a weight of the model: a trainable param
            out.append(cx.materialize(arr, pname))
            continue
        row = fold.index(cx, src, d)
        out.append(fold.join(cx, [fold.rows(row, (start + g) * hidden, (start + g + 1) * hidden) for g in order]))
    return out


def _reverse_time(cx: Ctx, v, layout: int):
    r = v.type.rank
    return cx.op("strided_slice", v, begin=[None] * r, end=[None] * r,
                 strides=[-1 if i == layout else 1 for i in range(r)])


def _check_lengths(cx: Ctx, node, x, layout: int) -> None:
    if len(node.input) > 4 and node.input[4]:
        lens = cx.known(node.input[4])
        T = x.type.shape[layout]
        if lens is None or not isinstance(T, int) or not (lens == T).all():
            raise cx.error("sequence_lens other than the full length of every sequence is not supported")


def gru_reset_before(cx: Ctx, node, x, W, R, B, hidden: int, dirs: int, direction: str, layout: int, scope: str):
    """ONNX's default GRU (linear_before_reset=0: the reset gate scales h before the recurrent
    product), which no IR op computes, as a `scan` over time of the written-out cell."""
    from ...compiler.ir import Graph
    from ...compiler.ops import OPS
    from ...compiler.types import TensorType
    if layout == 1:
        x = cx.op("transpose", x, axes=(1, 0, 2))
    T, N = x.type.shape[0], x.type.shape[1]
    h0 = cx.opt(node, 5)
    if h0 is not None and layout == 1:
        h0 = cx.op("transpose", h0, axes=(1, 0, 2))
    ys, finals = [], []
    for d in range(dirs):
        rev = direction == "reverse" or d == 1
        sfx = "_reverse" if d else ""
        w, r, wb, rb = _gru_cell_weights(cx, W, R, B, d, hidden, f"{scope}.%s_l0{sfx}")
        xw = cx.op("add", cx.op("matmul", x, w), wb)                                  # [T, N, 3H]
        h = cx.op("reshape", cx.op("strided_slice", h0, begin=[d, None, None], end=[d + 1, None, None]),
                  shape=(N, hidden)) if h0 is not None else \
            cx.op("full", shape=(N, hidden), value=0.0, dtype=x.type.dtype.numpy_name)
        body = Graph("gru_cell", mode=cx.g.mode, parent=cx.g, span=cx.span)
        sub = cx.child(body)
        hv = body.add_input("h", TensorType(x.type.dtype, (N, hidden)))
        xt = body.add_input("xw_t", TensorType(x.type.dtype, (N, 3 * hidden)))

        def part(v, k, c=sub):
            return c.op("strided_slice", v, begin=[None, k * hidden], end=[None, (k + 1) * hidden])
        hr = sub.op("add", sub.op("matmul", hv, r), rb)                               # h R^T + Rb: [N, 3H]
        z = sub.op("sigmoid", sub.op("add", part(xt, 0), part(hr, 0)))
        rg = sub.op("sigmoid", sub.op("add", part(xt, 1), part(hr, 1)))
        rh = sub.op("matmul", sub.op("mul", rg, hv), sub.op("strided_slice", r, begin=[None, 2 * hidden],
                                                              end=[None, 3 * hidden]))
        rbh = sub.op("strided_slice", rb, begin=[2 * hidden], end=[3 * hidden])
        n = sub.op("tanh", sub.op("add", part(xt, 2), sub.op("add", rh, rbh)))
        one = sub.scalar(1.0, z)
        hn = sub.op("add", sub.op("mul", sub.op("sub", one, z), n), sub.op("mul", z, hv))
        body.outputs = [hn, hn]
        outs = cx.g.add_node(OPS["scan"], [h, xw], {"num_carry": 1, "reverse": rev}, cx.span, cx.scope, body)
        finals.append(cx.op("reshape", outs[0], shape=(1, N, hidden)))
        ys.append(cx.op("reshape", outs[1], shape=(T, 1, N, hidden)))
    y = ys[0] if dirs == 1 else cx.op("concat", *ys, axis=1)                         # [T, dirs, N, H]
    yh = finals[0] if dirs == 1 else cx.op("concat", *finals, axis=0)                # [dirs, N, H]
    if layout == 1:
        y = cx.op("transpose", y, axes=(2, 0, 1, 3))
        yh = cx.op("transpose", yh, axes=(1, 0, 2))
    return [y, yh]


def _gru_cell_weights(cx: Ctx, W, R, B, d: int, hidden: int, pattern: str):
    """W^T [I, 3H], R^T [H, 3H] (gates z, r, h) and the two biases of direction d: new parameters
    under ONNX's names for initializers, the computed values (transposed, cut) otherwise."""
    out = []
    for role, src in (("W", W), ("R", R)):
        if isinstance(src, np.ndarray):
            out.append(cx.materialize(np.ascontiguousarray(src[d].T), pattern % role))
        else:
            out.append(cx.op("transpose", fold.index(cx, src, d), axes=(1, 0)))
    if B is None:
        dt = W.dtype if isinstance(W, np.ndarray) else W.type.dtype.numpy_name
        B = np.zeros((d + 1, 6 * hidden), dt)
    for role, lo in (("Wb", 0), ("Rb", 3 * hidden)):
        if isinstance(B, np.ndarray):
            out.append(cx.materialize(B[d][lo:lo + 3 * hidden], pattern % role))
        else:
            out.append(fold.build(cx, fold.rows(fold.index(cx, B, d), lo, lo + 3 * hidden)))
    return out
