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
