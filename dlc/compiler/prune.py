"""What pruning may touch, read off the IR.

Two questions `dlc prune` asks of a model's eval graph (as elaborated, -O0):

- `prunable_weights(g)`: the weights of convolutions and dense layers, the
  tensors magnitude pruning zeroes (biases and normalisation parameters are
  left alone, as torch.nn.utils.prune users do).
- `channel_groups(g)`: for each 2-D convolution, where its output channels
  go.  Following the value forward through channel-preserving ops (unary
  activations, pooling, batch norm, a spatial mean, a flatten), every
  parameter axis that holds one entry (or a block of entries) per channel is
  recorded: the conv's own weight rows and bias, the batch norm's parameters
  and running statistics, and the input axis of the consumers (the next
  convolution, or a dense layer after flatten or global pooling).  If the
  channels meet an op that ties them to another tensor (a residual `add`, a
  concatenation) or one this analysis does not follow, the group is
  `blocked` with the reason and the place: removing a channel there would
  change the other operand's meaning too.

Removing channel c is then: delete index c (or block c) along each recorded
axis, and the model computes what the original computes with channel c's
contribution to every consumer zeroed.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import Span
from .ir import Graph, Node, Value
from .ops.registry import ACTIVATION, BINARY, CONV, POOL, UNARY

_DENSE = ("linear",)
_SPATIAL_POOL = POOL


@dataclass(frozen=True)
class ChannelAxis:
    """Parameter `param` holds the channels along `axis`, `block` consecutive
    entries per channel (a dense layer after a flatten of C x H x W: H*W)."""

    param: str
    axis: int
    block: int = 1


@dataclass
class ChannelGroup:
    """The output channels of one convolution and everything sized by them."""

    layer: str                    # the conv's layer name (its weight is `<layer>.weight`)
    span: Span | None             # the conv call in the .dln source
    channels: int
    weight: str                   # the conv weight: channel scores are its rows' L1 norms
    axes: list[ChannelAxis] = field(default_factory=list)
    blocked: str | None = None    # why these channels cannot be removed
    blocked_span: Span | None = None

    @property
    def prunable(self) -> bool:
        return self.blocked is None


@dataclass(frozen=True)
class PrunableWeight:
    param: str
    layer: str
    span: Span | None


def _weight_param(node: Node) -> Value | None:
    w = node.inputs[1] if len(node.inputs) > 1 else None
    return w if w is not None and w.kind == "param" else None


def _is_weight_layer(node: Node) -> bool:
    return (CONV in node.op.groups or node.op.name in _DENSE) and _weight_param(node) is not None


def prunable_weights(g: Graph) -> list[PrunableWeight]:
    """Weights of conv and dense layers, in graph order, each once."""
    out, seen = [], set()
    for n in g.walk():
        if not _is_weight_layer(n):
            continue
        w = _weight_param(n)
        if w.name in seen or w.type.rank < 2:
            continue
        seen.add(w.name)
        out.append(PrunableWeight(w.name, w.name.rsplit(".", 1)[0], n.span))
    return out


def _users(g: Graph) -> dict[int, list[tuple[Node, int]]]:
    out: dict[int, list[tuple[Node, int]]] = {}
    for n in g.nodes:
        for i, v in enumerate(n.inputs):
            if v is not None:
                out.setdefault(v.id, []).append((n, i))
    return out


class _Blocked(Exception):
    def __init__(self, why: str, span: Span | None):
        super().__init__(why)
        self.why, self.span = why, span


def _static(d) -> int | None:
    return d if isinstance(d, int) else None


def _follow(g: Graph, users, start: Value, axes: list[ChannelAxis]) -> None:
    """Walk forward from `start` (channels on axis 1), appending every
    parameter axis sized by them; raise _Blocked where they cannot be cut."""
    outputs = {v.id for v in g.outputs}
    work, seen = [(start, 1)], set()
    while work:
        v, block = work.pop()
        if v.id in seen:
            continue
        seen.add(v.id)
        if v.id in outputs:
            raise _Blocked("the channels reach the model's output", v.span)
        for node, idx in users.get(v.id, []):
            nxt = _step(node, idx, v, block, axes)
            if nxt is not None:
                work.append(nxt)


def _step(node: Node, idx: int, v: Value, block: int, axes: list[ChannelAxis]):
    """One user of the channels: the value they continue in (and its block), or None where they end."""
    op = node.op.name
    here = f"`{op}` at {node.span}" if node.span else f"`{op}`"
    if idx != 0:
        if BINARY in node.op.groups:
            raise _Blocked(f"the channels are tied to another tensor by {here}", node.span)
        raise _Blocked(f"the channels feed operand {idx} of {here}", node.span)
    if v.type.rank == 4 and block == 1:
        if CONV in node.op.groups:
            w = _weight_param(node)
            if op != "conv2d" or w is None or node.attrs.get("groups", 1) != 1:
                raise _Blocked(f"the channels feed {here}, which is grouped or has a computed weight", node.span)
            axes.append(ChannelAxis(w.name, 1))
            return None
        if (UNARY in node.op.groups or ACTIVATION in node.op.groups) and len(node.inputs) == 1:
            return node.outputs[0], 1
        if _SPATIAL_POOL in node.op.groups or op == "dropout":
            return node.outputs[0], 1
        if op == "batch_norm":
            axes.extend(ChannelAxis(p.name, 0) for p in node.inputs[1:] if p is not None and p.kind != "node")
            return node.outputs[0], 1
        if op == "mean" and set(node.attrs.get("axis") or ()) == {2, 3} and not node.attrs.get("keepdims"):
            return node.outputs[0], 1
        if op == "reshape":
            return _flatten(node, v, here)
    if v.type.rank == 2 and op in _DENSE:
        w = _weight_param(node)
        if w is None:
            raise _Blocked(f"the channels feed {here}, whose weight is computed", node.span)
        axes.append(ChannelAxis(w.name, 1, block))
        return None
    if v.type.rank == 2 and ((UNARY in node.op.groups and len(node.inputs) == 1) or op == "dropout"):
        return node.outputs[0], block
    if BINARY in node.op.groups:
        raise _Blocked(f"the channels are tied to another tensor by {here}", node.span)
    raise _Blocked(f"the channels feed {here}, which channel pruning does not follow", node.span)


def _flatten(node: Node, v: Value, here: str):
    """(N, C, H, W) -> (N, C*H*W): channel c becomes the block c*H*W .. (c+1)*H*W - 1."""
    c, h, w = (_static(d) for d in v.type.shape[1:])
    out = node.outputs[0].type.shape
    if None in (c, h, w) or len(out) != 2 or _static(out[1]) != c * h * w:
        raise _Blocked(f"the channels feed {here}, which is not a flatten of [N, C, H, W]", node.span)
    return node.outputs[0], h * w


def channel_groups(g: Graph) -> list[ChannelGroup]:
    """One group per 2-D convolution of `g`'s top level (scan bodies are not
    pruned), in graph order."""
    users = _users(g)
    spans = {p: layer.span for layer in g.layers for p in layer.params}
    out = []
    for n in g.nodes:
        if n.op.name != "conv2d" or _weight_param(n) is None:
            continue
        w = _weight_param(n)
        layer = w.name.rsplit(".", 1)[0]
        grp = ChannelGroup(layer, spans.get(w.name, n.span), int(w.type.shape[0]), w.name)
        grp.axes.append(ChannelAxis(w.name, 0))
        bias = n.inputs[2] if len(n.inputs) > 2 else None
        if bias is not None and bias.kind == "param":
            grp.axes.append(ChannelAxis(bias.name, 0))
        try:
            if n.attrs.get("groups", 1) != 1:
                raise _Blocked(f"{layer} is a grouped convolution", n.span)
            _follow(g, users, n.outputs[0], grp.axes)
        except _Blocked as b:
            grp.blocked, grp.blocked_span = b.why, b.span
        out.append(grp)
    return out
