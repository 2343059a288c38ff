"""What fold_batchnorm and fold_affine share: which values are weights, where
new nodes go, and how a per-channel scale or shift enters a layer's weight
and bias.

The folded weights are IR computed from the parameters, never new
parameters: the parameters stay the weights' interface (the same
`.safetensors` file loads, `Graph.params` is unchanged).  The nodes that
compute them are placed just before the layer they feed, so the graph stays
in definition order.

The layers ("weight layers") and the axis of their weight that holds each
channel:

    conv1d/conv2d     W (Cout, Cin/g, k...)   out channel: axis 0; in channel c: group c // (Cin/g), W axis 1
    conv_transpose2d  W (Cin, Cout/g, k...)   in channel: axis 0; out channel o: group o // (Cout/g), W axis 1
    linear            W (out, in)             out feature: axis 0
    matmul            x @ W, W (in, out)      out feature: axis 1

A per-channel value here holds 1 value (one scale for every channel) or one
per channel, in any shape whose other axes are 1 (`channel_count` checks;
the helpers reshape it to what they need, `as_vector` to 1-D).
"""
from __future__ import annotations

from ..builder import Builder
from ..ops.conv import conv_pads
from ..dims import known_equal
from ..ir import Graph, Node, Value

CONVS = ("conv1d", "conv2d")
LAYERS = CONVS + ("conv_transpose2d", "linear", "matmul")
_RANDOM = frozenset({"randn", "uniform", "dropout"})


class WeightOnly:
    """Whether a value depends on parameters, buffers and constants alone
    (nothing computed from an input, nothing random): what a backend may
    compute once per set of weights (TVM lifts it into transform_params)."""

    def __init__(self):
        self._memo: dict[int, bool] = {}

    def __call__(self, v: Value | None) -> bool:
        if v is None:
            return True
        if v.kind in ("param", "buffer"):
            return True
        if v.kind != "node" or v.producer is None:
            return False
        hit = self._memo.get(v.id)
        if hit is None:
            n = v.producer
            hit = n.body is None and n.op.name not in _RANDOM and all(self(u) for u in n.inputs)
            self._memo[v.id] = hit
        return hit


def defined_before(g: Graph, v: Value | None, index: int, positions: dict[int, int]) -> bool:
    """Whether `v` is usable by a node inserted at `index` of `g.nodes`:
    parameters, inputs and values of enclosing graphs always are, node
    results when their node comes earlier."""
    if v is None or v.producer is None:
        return True
    pos = positions.get(id(v.producer))
    return pos is None or pos < index


def positions(g: Graph) -> dict[int, int]:
    return {id(n): i for i, n in enumerate(g.nodes)}


class Splice:
    """A Builder whose nodes land just before `anchor` in `g.nodes`:

        with Splice(g, anchor, span, scope) as b:
            w2 = b.op("mul", w, s)
    """

    def __init__(self, g: Graph, anchor: Node, span, scope: str):
        self.g, self.anchor = g, anchor
        self.builder = Builder(g, span, scope)

    def __enter__(self) -> Builder:
        self.start = len(self.g.nodes)
        return self.builder

    def __exit__(self, *exc):
        new = self.g.nodes[self.start:]
        del self.g.nodes[self.start:]
        if exc[0] is None:
            at = self.g.nodes.index(self.anchor)
            self.g.nodes[at:at] = new
        return False


def channel_count(v: Value, rank: int, channels, axis: int = 1) -> int | None:
    """How many distinct channels `v` holds when broadcast against a
    rank-`rank` tensor with `channels` channels on `axis`: 1 (one value for
    all), `channels`, or None when `v` varies along another axis (batch,
    spatial) or has more axes than the tensor."""
    shape = v.type.shape
    if len(shape) > rank or not isinstance(channels, int):
        return None
    full = (1,) * (rank - len(shape)) + tuple(shape)
    if any(i != axis and known_equal(d, 1) is not True for i, d in enumerate(full)):
        return None
    k = full[axis]
    if known_equal(k, 1) is True:
        return 1
    return channels if known_equal(k, channels) is True else None


def as_vector(b: Builder, v: Value, n: int) -> Value:
    """`v` (of `n` elements, see `channel_count`) as a 1-D value."""
    return v if v.type.shape == (n,) else b.op("reshape", v, shape=(n,))


def _length(s: Value) -> int:
    """The channels a per-channel value holds (1 or C): its element count."""
    n = 1
    for d in s.type.shape:
        n *= d
    return n


def _along(b: Builder, s: Value, rank: int, axis: int) -> Value:
    """Per-channel `s` (any shape) reshaped to broadcast along `axis` of a rank-`rank` tensor."""
    shape = [1] * rank
    shape[axis] = _length(s)
    return s if s.type.shape == tuple(shape) else b.op("reshape", s, shape=tuple(shape))


def _grouped(b: Builder, w: Value, s: Value, groups: int, axis: int, op: str = "mul") -> Value:
    """`w` (C0, C1, k...) with C1 the per-group channels of axis-1 channel
    numbering `group * C1 + j`: w viewed as (g, C0/g, C1, k...) combined with
    `s` viewed as (g, 1, C1, 1...), element by element (`op`), in that view."""
    shape = w.type.shape
    view = (groups, shape[0] // groups) + tuple(shape[1:])
    sv = (groups, 1, shape[1]) + (1,) * (len(shape) - 2)
    return b.op(op, b.op("reshape", w, shape=view), b.op("reshape", s, shape=sv))


def scale_out_channels(b: Builder, layer: Node, s: Value) -> Value:
    """The weight of `layer` with output channel c multiplied by s[c]."""
    w = layer.inputs[1]
    rank, op = w.type.rank, layer.op.name
    if op in CONVS or op == "linear":
        return b.op("mul", w, _along(b, s, rank, 0))
    if op == "matmul":
        return b.op("mul", w, _along(b, s, rank, 1))
    groups = layer.attrs["groups"]         # conv_transpose2d
    if groups == 1 or _length(s) == 1:
        return b.op("mul", w, _along(b, s, rank, 1))
    return b.op("reshape", _grouped(b, w, s, groups, 1), shape=w.type.shape)


def scale_in_channels(b: Builder, layer: Node, s: Value) -> Value:
    """The weight of `layer` (a conv) with input channel c multiplied by s[c]."""
    w = layer.inputs[1]
    rank = w.type.rank
    if layer.op.name == "conv_transpose2d":
        return b.op("mul", w, _along(b, s, rank, 0))
    groups = layer.attrs["groups"]
    if groups == 1 or _length(s) == 1:
        return b.op("mul", w, _along(b, s, rank, 1))
    return b.op("reshape", _grouped(b, w, s, groups, 1), shape=w.type.shape)


def shifted_input_bias(b: Builder, layer: Node, t: Value) -> Value:
    """What a conv1d/conv2d without padding adds to output channel o when
    input channel c is shifted by t[c]: sum over j, k of W[o, j, k] * t[c(o, j)]."""
    w = layer.inputs[1]
    rank, groups, cout = w.type.rank, layer.attrs["groups"], w.type.shape[0]
    if groups == 1 or _length(t) == 1:
        prod = b.op("mul", w, _along(b, t, rank, 1))
        return b.op("sum", prod, axis=tuple(range(1, rank)), keepdims=False)
    prod = _grouped(b, w, t, groups, 1)
    summed = b.op("sum", prod, axis=tuple(range(2, rank + 1)), keepdims=False)
    return b.op("reshape", summed, shape=(cout,))


def out_channels(layer: Node) -> int:
    return layer.outputs[0].type.shape[-1 if layer.op.name in ("linear", "matmul") else 1]


def full_bias(b: Builder, t: Value, channels: int) -> Value:
    """Per-channel `t` as a bias of exactly `channels` entries."""
    if _length(t) == channels:
        return t
    return b.op("add", b.op("full", shape=(channels,), value=0.0, dtype=t.type.dtype.numpy_name), t)


def set_layer(layer: Node, weight: Value, bias: Value | None) -> None:
    """Point a conv/linear `layer` at a new weight and bias (same types: its
    result type is unchanged)."""
    layer.inputs = (layer.inputs[0], weight, bias)


def pads_are_zero(layer: Node) -> bool:
    """Whether a conv1d/conv2d pads nothing (so every output reads a full window of real input)."""
    w = layer.inputs[1]
    nd = w.type.rank - 2
    a = layer.attrs
    pads = conv_pads(a["padding"], nd, w.type.shape[2:], _tuple(a["dilation"], nd), _tuple(a["stride"], nd))
    return all(lo == 0 and hi == 0 for lo, hi in pads)


def _tuple(v, n):
    return tuple(v) if isinstance(v, (tuple, list)) else (v,) * n
