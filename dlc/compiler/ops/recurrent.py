"""Recurrent layers: rnn, lstm, gru, as torch.nn.RNN/LSTM/GRU.

Operands: x, the optional initial states (h0, and c0 for lstm; None when
absent), then the weights in torch's `_flat_weights` order: per layer, per
direction, w_ih (G*H, I_l), w_hh (G*H, H) and, with bias, b_ih and b_hh
(G*H,), and for an LSTM with proj_size P > 0 a trailing w_hr (P, H).  G is 1
(rnn), 4 (lstm) or 3 (gru); I_l is the input size for layer 0 and
P*directions above it (P = H without projection).
"""
from __future__ import annotations

from ...errors import ShapeError
from ..dims import add, known_equal, mul
from ..types import TensorType, fmt_shape
from .common import promote, require_float
from .registry import RECURRENT, defop

GATES = {"rnn": 1, "lstm": 4, "gru": 3}
N_STATES = {"rnn": 1, "lstm": 2, "gru": 1}


def _eq_shape(t: TensorType, shape: tuple) -> bool:
    return t.rank == len(shape) and all(known_equal(a, b) is True for a, b in zip(t.shape, shape))


def _layout(name: str, ts: list, attrs: dict):
    """Validate everything; return (x, T, N, H, P, dirs, layers, per-(layer, dir) input sizes).

    P is the size of h (and of each direction's output): H, or proj_size for a
    projected LSTM, whose per-(layer, direction) weights end with w_hr (P, H).
    """
    if not ts or ts[0] is None:
        raise ShapeError(f"{name} needs an input tensor")
    x = ts[0]
    require_float(x, name)
    if x.rank != 3:
        layout = "(N, T, features)" if attrs["batch_first"] else "(T, N, features)"
        raise ShapeError(f"{name} expects a rank-3 input {layout}, got {x}", "add a batch dimension")
    layers = attrs["num_layers"]
    if isinstance(layers, bool) or not isinstance(layers, int) or layers <= 0:
        raise ShapeError(f"{name}: num_layers must be a positive int, got {layers!r}")
    if name == "rnn" and attrs["nonlinearity"] not in ("tanh", "relu"):
        raise ShapeError(f"rnn: nonlinearity must be 'tanh' or 'relu', got {attrs['nonlinearity']!r}")
    proj = attrs.get("proj_size", 0)
    if isinstance(proj, bool) or not isinstance(proj, int) or proj < 0:
        raise ShapeError(f"{name}: proj_size must be a non-negative int, got {proj!r}")
    dirs = 2 if attrs["bidirectional"] else 1
    per = (4 if attrs["bias"] else 2) + (1 if proj else 0)
    ns = N_STATES[name]
    weights = ts[1 + ns:]
    want = layers * dirs * per
    if len(weights) != want or any(w is None for w in weights):
        raise ShapeError(f"{name}: expected {want} weight tensors ({layers} layer(s) x {dirs} direction(s) x "
                         f"{per}), got {len(weights)}",
                         "pass the weights in torch's _flat_weights order: w_ih, w_hh[, b_ih, b_hh]"
                         f"{'[, w_hr]' if name == 'lstm' else ''} per layer and direction")
    G = GATES[name]
    if weights[0].rank != 2:
        raise ShapeError(f"{name}: w_ih must be 2-D (G*H, input_size), got {weights[0]}")
    H = weights[0].shape[0] // G
    P = proj or H
    if proj and isinstance(H, int) and proj >= H:
        raise ShapeError(f"lstm: proj_size {proj} must be smaller than the hidden size {H}")
    GH = mul(G, H)
    T, N = (x.shape[1], x.shape[0]) if attrs["batch_first"] else (x.shape[0], x.shape[1])
    in_sizes = []
    for layer in range(layers):
        i_l = x.shape[2] if layer == 0 else mul(P, dirs)
        for d in range(dirs):
            base = (layer * dirs + d) * per
            group = weights[base:base + per]
            tag = f"layer {layer}{' reverse' if d else ''}"
            for t in group:
                promote(x.dtype, t.dtype, name)
            expected = [("w_ih", (GH, i_l)), ("w_hh", (GH, P))]
            if attrs["bias"]:
                expected += [("b_ih", (GH,)), ("b_hh", (GH,))]
            if proj:
                expected.append(("w_hr", (P, H)))
            for (what, shape), t in zip(expected, group):
                if not _eq_shape(t, shape):
                    hint = None
                    if what == "w_ih":
                        hint = ("the input size must match the layer's input features" if layer == 0 else
                                "layers above the first take hidden_size*directions features")
                    raise ShapeError(f"{name}: {tag} {what} is {t}, expected {fmt_shape(shape)} "
                                     f"(input {x}, hidden size {H})", hint)
            in_sizes.append(i_l)
    for i, what in enumerate(("h0", "c0")[:ns], start=1):
        state = (layers * dirs, N, P if i == 1 else H)
        s = ts[i] if len(ts) > i else None
        if s is not None and not _eq_shape(s, state):
            raise ShapeError(f"{name}: initial state {what} is {s}, expected {fmt_shape(state)} "
                             f"for input {x}", "states are (num_layers*directions, N, hidden_size)")
    if ns == 2 and (ts[1] is None) != (ts[2] is None):
        raise ShapeError("lstm: give both initial states h0 and c0, or neither")
    return x, T, N, H, P, dirs, layers, in_sizes


def _recurrent(name: str):
    def infer(ts, attrs):
        x, T, N, H, P, dirs, layers, _ = _layout(name, ts, attrs)
        feat = mul(P, dirs)
        y = TensorType(x.dtype, (N, T, feat) if attrs["batch_first"] else (T, N, feat))
        states = [TensorType(x.dtype, (layers * dirs, N, P)), TensorType(x.dtype, (layers * dirs, N, H))]
        return [y] + states[:N_STATES[name]]
    return infer


def _recurrent_macs(name: str):
    def macs(ins, outs, attrs):
        x, T, N, H, P, _, _, in_sizes = _layout(name, ins, attrs)
        total = 0
        for i_l in in_sizes:
            total = add(total, mul(mul(GATES[name], H), add(i_l, P)))
            if P != H:
                total = add(total, mul(P, H))
        return mul(mul(T, N), total)
    return macs


_ATTRS = {"num_layers": 1, "bias": True, "bidirectional": False, "batch_first": False}
defop("rnn", ("x", "h0?", "*weights"), _recurrent("rnn"),
      attrs={"num_layers": 1, "nonlinearity": "tanh", "bias": True, "bidirectional": False,
             "batch_first": False},
      macs=_recurrent_macs("rnn"), groups={RECURRENT}, variadic=True,
      doc="Elman RNN (tanh or relu), torch.nn.RNN; returns (y, h_n).")
defop("lstm", ("x", "h0?", "c0?", "*weights"), _recurrent("lstm"), attrs={**_ATTRS, "proj_size": 0},
      macs=_recurrent_macs("lstm"), groups={RECURRENT}, variadic=True,
      doc="Long short-term memory, torch.nn.LSTM; returns (y, h_n, c_n).")
defop("gru", ("x", "h0?", "*weights"), _recurrent("gru"), attrs=_ATTRS,
      macs=_recurrent_macs("gru"), groups={RECURRENT}, variadic=True,
      doc="Gated recurrent unit, torch.nn.GRU; returns (y, h_n).")


# ---------------------------------------------------------------- VJP rules
# The rules decompose the op into IR -- per layer and direction, a `scan` over
# time whose body is the cell written with linear/sigmoid/tanh/mul/add, a
# reversed scan for the backward direction -- and differentiate that with
# `autodiff.vjp` (so through the scan VJP, compiler/scan_grad.py).  The
# decomposition reads the weights through fresh per-gate (and, above a
# bidirectional layer, per-direction) slices, and the gradient is taken with
# respect to those slices: the differentiated part of the graph has only
# linear/elementwise ops and scans, and the slices' gradients are assembled
# back into the operands' shapes with concat/reshape.
from .registry import defvjp  # noqa: E402


def _leaves(b, v, sections: int, axis: int) -> list:
    """`sections` fresh values partitioning `v` along `axis` (one identity reshape when 1)."""
    if sections == 1:
        return [b.op("reshape", v, shape=v.type.shape)]
    return list(b.op("split", v, sections=sections, axis=axis))


def _join(b, parts: list, axis: int):
    return parts[0] if len(parts) == 1 else b.op("concat", *parts, axis=axis)


def _cell(name: str, attrs: dict, b, states: list, xw: list, hw: list) -> list:
    """One step of the cell; returns the new states (h first)."""
    if name == "rnn":
        act = "tanh" if attrs["nonlinearity"] == "tanh" else "relu"
        return [b.op(act, b.op("add", xw[0], hw[0]))]
    if name == "lstm":
        i, f, g, o = (b.op("add", a, c) for a, c in zip(xw, hw))
        c = b.op("add", b.op("mul", b.op("sigmoid", f), states[1]),
                 b.op("mul", b.op("sigmoid", i), b.op("tanh", g)))
        return [b.op("mul", b.op("sigmoid", o), b.op("tanh", c)), c]
    # gru, torch's form: n = tanh(W_in x + b_in + r * (W_hn h + b_hn)); h' = (h - n) * z + n
    r = b.op("sigmoid", b.op("add", xw[0], hw[0]))
    z = b.op("sigmoid", b.op("add", xw[1], hw[1]))
    n = b.op("tanh", b.op("add", xw[2], b.op("mul", r, hw[2])))
    return [b.op("add", b.op("mul", b.op("sub", states[0], n), z), n)]


def decompose(b, name: str, node, x_tm, state_leaves, weight_leaves):
    """Build the op's computation as scans; returns (per-direction top-layer outputs
    (T, N, H) time-major, {layer * dirs + d: final states}).

    `x_tm` is the time-major input, `state_leaves[s][idx]` the (N, H) initial
    state s of (layer, direction) idx (or None: zeros), `weight_leaves[idx]`
    = (w_ih[gate][part], w_hh[gate], b_ih[gate] | None, b_hh[gate] | None).
    """
    from ..builder import Builder
    from ..ir import Graph
    from ..types import TensorType
    from .registry import OPS

    attrs = node.attrs
    ns, G = N_STATES[name], GATES[name]
    L, D = attrs["num_layers"], 2 if attrs["bidirectional"] else 1
    N = x_tm.type.shape[1]
    layer_in = [x_tm]
    finals = {}
    for layer in range(L):
        outs = []
        for d in range(D):
            idx = layer * D + d
            wih, whh, bih, bhh = weight_leaves[idx]
            H = whh[0].type.shape[1]
            xw = []
            for k in range(G):
                acc = None
                for p, part in enumerate(layer_in):
                    args = (part, wih[k][p]) + ((bih[k],) if bih is not None and p == 0 else ())
                    t = b.op("linear", *args)
                    acc = t if acc is None else b.op("add", acc, t)
                xw.append(acc)
            dt = xw[0].type.dtype
            inits = []
            for s in range(ns):
                leaf = state_leaves[s][idx] if state_leaves[s] is not None else None
                inits.append(leaf if leaf is not None else
                             b.op("full", shape=(N, H), value=0.0, dtype=dt.numpy_name))
            body = Graph(f"{name}.l{layer}{'_reverse' if d else ''}", mode=b.graph.mode, span=node.span,
                         parent=b.graph)
            bb = Builder(body, b.span, b.scope)
            st = [body.add_input(("h", "c")[s], v.type) for s, v in enumerate(inits)]
            xt = [body.add_input(f"xw{k}", TensorType(v.type.dtype, v.type.shape[1:])) for k, v in enumerate(xw)]
            hw = [bb.op("linear", st[0], whh[k], *((bhh[k],) if bhh is not None else ())) for k in range(G)]
            new = _cell(name, attrs, bb, st, xt, hw)
            body.outputs = new + [new[0]]
            res = b.graph.add_node(OPS["scan"], inits + xw, {"num_carry": ns, "axis": 0, "reverse": d == 1},
                                   b.span, b.scope, body=body)
            finals[idx] = res[:ns]
            outs.append(res[ns])
        layer_in = outs
    return layer_in, finals


def _recurrent_vjp(name: str):
    def rule(b, node, g):
        from ..autodiff import NoVJPRule, vjp

        attrs = node.attrs
        if attrs.get("proj_size", 0):
            raise NoVJPRule("lstm with proj_size > 0 has no VJP rule yet", node.span,
                            "train an LSTM without proj_size (e.g. project its outputs with dense)")
        x_tm, state_leaves, weight_leaves = _fresh_leaves(b, name, node)
        ys, finals = decompose(b, name, node, x_tm, state_leaves, weight_leaves)
        outs, cts = _outputs_and_cotangents(b, name, node, g, ys, finals)
        flat = [x_tm]
        for sl in state_leaves:
            flat += sl or []
        for wih, whh, bih, bhh in weight_leaves:
            flat += [w for row in wih for w in row] + whh + (bih or []) + (bhh or [])
        grads = vjp(b.graph, outs, cts, flat, b.span)
        gmap = {v.id: gr for v, gr in zip(flat, grads)}
        return _assemble_gradients(b, name, node, gmap, x_tm, state_leaves, weight_leaves)
    return rule


def _fresh_leaves(b, name: str, node):
    """Fresh values for the operands, the gradient is taken wrt these, then assembled:
    (time-major input, per-state leaves per (layer, direction) or None, per-(layer,
    direction) weights split by gate, and above a bidirectional layer by direction)."""
    attrs = node.attrs
    ns, G = N_STATES[name], GATES[name]
    L, D = attrs["num_layers"], 2 if attrs["bidirectional"] else 1
    per = 4 if attrs["bias"] else 2
    x = node.inputs[0]
    inits = [node.inputs[1 + s] if len(node.inputs) > 1 + s else None for s in range(ns)]
    weights = list(node.inputs[1 + ns:])
    x_tm = b.op("transpose", x, axes=(1, 0, 2)) if attrs["batch_first"] else b.op("reshape", x, shape=x.type.shape)
    state_leaves = []
    for s0 in inits:
        if s0 is None:
            state_leaves.append(None)
        elif L * D == 1:
            state_leaves.append([b.op("reshape", s0, shape=s0.type.shape[1:])])
        else:
            state_leaves.append([b.op("reshape", p, shape=p.type.shape[1:])
                                 for p in b.op("split", s0, sections=L * D, axis=0)])
    weight_leaves = []
    for idx in range(L * D):
        group = weights[idx * per:(idx + 1) * per]
        parts = D if idx >= D else 1  # layers above the first read each direction's output
        wih = [_leaves(b, rows, parts, 1) for rows in _leaves(b, group[0], G, 0)] if parts > 1 else \
            [[w] for w in _leaves(b, group[0], G, 0)]
        whh = _leaves(b, group[1], G, 0)
        bih, bhh = (_leaves(b, group[2], G, 0), _leaves(b, group[3], G, 0)) if per == 4 else (None, None)
        weight_leaves.append((wih, whh, bih, bhh))
    return x_tm, state_leaves, weight_leaves


def _outputs_and_cotangents(b, name: str, node, g, ys, finals):
    """The decomposition's values that have a cotangent, and those cotangents
    (time-major, split per direction and per (layer, direction))."""
    attrs = node.attrs
    ns = N_STATES[name]
    L, D = attrs["num_layers"], 2 if attrs["bidirectional"] else 1
    outs, cts = [], []
    gy = g[0]
    if gy is not None:
        gy_tm = b.op("transpose", gy, axes=(1, 0, 2)) if attrs["batch_first"] else gy
        parts = [gy_tm] if D == 1 else list(b.op("split", gy_tm, sections=D, axis=2))
        outs += ys
        cts += parts
    for s in range(ns):
        gs = g[1 + s] if len(g) > 1 + s else None
        if gs is None:
            continue
        parts = [gs] if L * D == 1 else list(b.op("split", gs, sections=L * D, axis=0))
        for idx, p in enumerate(parts):
            outs.append(finals[idx][s])
            cts.append(b.op("reshape", p, shape=p.type.shape[1:]))
    return outs, cts


def _assemble_gradients(b, name: str, node, gmap: dict, x_tm, state_leaves, weight_leaves) -> list:
    """The operands' gradients, joined back from the leaves' (zeros for a leaf
    without one; None for an operand none of whose leaves has one)."""
    from .vjp_util import zeros_like

    attrs = node.attrs
    ns = N_STATES[name]
    per = 4 if attrs["bias"] else 2
    inits = [node.inputs[1 + s] if len(node.inputs) > 1 + s else None for s in range(ns)]

    def get(leaf):
        return gmap.get(leaf.id)

    def assemble(blocks, axis):
        """Join leaf gradients (zeros where None); None when all are None."""
        if all(get(v) is None for v in blocks):
            return None
        return _join(b, [get(v) if get(v) is not None else zeros_like(b, v) for v in blocks], axis)

    result = [None] * len(node.inputs)
    gx = get(x_tm)
    if gx is not None:
        result[0] = b.op("transpose", gx, axes=(1, 0, 2)) if attrs["batch_first"] else gx
    for s, s0 in enumerate(inits):
        if s0 is None or all(get(v) is None for v in state_leaves[s]):
            continue
        full = [b.op("reshape", get(v) if get(v) is not None else zeros_like(b, v),
                     shape=(1,) + v.type.shape) for v in state_leaves[s]]
        result[1 + s] = _join(b, full, 0)
    base = 1 + ns
    for idx, (wih, whh, bih, bhh) in enumerate(weight_leaves):
        off = base + idx * per
        if any(get(v) is not None for row in wih for v in row):
            result[off] = _join(b, [_join(b, [get(v) if get(v) is not None else zeros_like(b, v)
                                              for v in row], 1) for row in wih], 0)
        result[off + 1] = assemble(whh, 0)
        if bih is not None:
            result[off + 2] = assemble(bih, 0)
            result[off + 3] = assemble(bhh, 0)
    return result


for _name in GATES:
    defvjp(_name)(_recurrent_vjp(_name))
