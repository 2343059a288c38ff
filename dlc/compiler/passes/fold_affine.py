"""Fold a per-channel scale or shift into the adjacent convolution, where exact.

A per-channel scale or shift is `x * s`, `x + t` or `x - t` with `s`/`t`
computed from weights alone (parameters, buffers, constants) and varying
along the channel axis (1) only: shape (C,1,1), (1,C,1,1), a scalar...

After a convolution (conv1d/conv2d/conv_transpose2d) whose output nothing
else reads, it is always exact:

    conv(x, W, b) * s  ->  conv(x, W * s[out], b * s)
    conv(x, W, b) + t  ->  conv(x, W, b + t)

Before a conv1d/conv2d (or conv_transpose2d for a scale) that is the only
reader of the scaled value:

    conv(x * s, W, b)  ->  conv(x, W * s[in], b)        always: padded zeros stay zero
    conv(x + t, W, b)  ->  conv(x, W, b + sum(W * t[in]))

The shift folds only when the conv pads nothing: with zero padding the
border windows read padded zeros where the shifted input had t, so
sum(W * t) would be added where the original added less.  (dlc's convs pad
with zeros only; a replicate/reflect padding would keep it exact, as the
padded values would be shifted too.)  A transposed conv's output border
likewise sums fewer taps, so no shift folds into one.

The new weight and bias are IR on the weights (parameters untouched), placed
before the conv and attributed to the scale/shift's `.dln` line.  The pass
folds one op at a time until nothing changes, so `conv((x + t) * s)` folds
both.  Scan bodies are left alone.
"""
from __future__ import annotations

from ..ir import Graph, Node, Value
from ._folding import (CONVS, Splice, WeightOnly, as_vector, channel_count, defined_before, full_bias,
                       pads_are_zero, positions, scale_in_channels, scale_out_channels, set_layer,
                       shifted_input_bias)
from .pipeline import PassContext, register_pass
from .rewrite import replace_uses, single_user, users

_AFFINE = ("mul", "add", "sub")
_CONV_LIKE = CONVS + ("conv_transpose2d",)


@register_pass("fold_affine", level=2, modes=("eval",),
               summary="fold a per-channel scale/shift into the adjacent conv where exact")
def fold_affine(g: Graph, ctx: PassContext) -> None:
    weights = WeightOnly()
    while _fold_one(g, ctx, weights):
        pass


def _fold_one(g: Graph, ctx: PassContext, weights: WeightOnly) -> bool:
    """Fold the first foldable scale/shift of `g`; False when there is none."""
    uses = users(g)
    for node in g.nodes:
        if node.op.name not in _AFFINE:
            continue
        ctx.node = node
        for data, c in _operand_orders(node):
            if _after_conv(g, node, data, c, uses, weights):
                ctx.count(f"{'scale' if node.op.name == 'mul' else 'shift'}_after_conv")
                return True
            if _before_conv(g, node, data, c, uses, weights):
                ctx.count(f"{'scale' if node.op.name == 'mul' else 'shift'}_before_conv")
                return True
    return False


def _operand_orders(node: Node):
    """(data, per-channel operand) pairs: both orders for mul/add, x - t only for sub."""
    a, b = node.inputs
    return ((a, b),) if node.op.name == "sub" else ((a, b), (b, a))


def _per_channel(node: Node, data: Value, c: Value, channels, weights: WeightOnly) -> int | None:
    """Channels of `c` if `node` is data (*|+|-) c with c a per-channel weight value."""
    if node.outputs[0].type != data.type or c.type.dtype != data.type.dtype or not weights(c):
        return None
    return channel_count(c, data.type.rank, channels)


def _after_conv(g, node, data, c, uses, weights) -> bool:
    conv = data.producer
    if conv is None or conv.op.name not in _CONV_LIKE or single_user(uses, data, g) is not node:
        return False
    if not weights(conv.inputs[1]):
        return False
    cout = data.type.shape[1]
    n = _per_channel(node, data, c, cout, weights)
    pos = positions(g)
    if n is None or not defined_before(g, c, pos[id(conv)], pos):
        return False
    bias = conv.inputs[2] if len(conv.inputs) > 2 else None
    with Splice(g, conv, node.span, node.scope) as b:
        if node.op.name == "mul":
            w2 = scale_out_channels(b, conv, c)
            b2 = None if bias is None else b.op("mul", bias, as_vector(b, c, n))
        else:
            v = as_vector(b, c, n)
            if node.op.name == "sub":
                v = b.op("neg", v)
            w2 = conv.inputs[1]
            b2 = full_bias(b, v, cout) if bias is None else b.op("add", bias, v)
    set_layer(conv, w2, b2)
    replace_uses(g, {node.outputs[0].id: data})
    g.nodes.remove(node)
    return True


def _before_conv(g, node, data, c, uses, weights) -> bool:
    x = node.outputs[0]
    conv = single_user(uses, x, g)
    if conv is None or conv.op.name not in _CONV_LIKE or conv.inputs[0] is not x:
        return False
    shift = node.op.name != "mul"
    if shift and (conv.op.name not in CONVS or not pads_are_zero(conv)):
        return False        # a zero-padded border would see t where the original saw 0: not exact
    if not weights(conv.inputs[1]) or data.type.rank < 2:
        return False        # (the swapped order of x + t names t `data`: t may be a vector)
    n = _per_channel(node, data, c, data.type.shape[1], weights)
    if n is None:
        return False
    bias = conv.inputs[2] if len(conv.inputs) > 2 else None
    with Splice(g, conv, node.span, node.scope) as b:
        if shift:
            extra = shifted_input_bias(b, conv, c)
            if node.op.name == "sub":
                extra = b.op("neg", extra)
            w2, b2 = conv.inputs[1], extra if bias is None else b.op("add", bias, extra)
        else:
            w2, b2 = scale_in_channels(b, conv, c), bias
    set_layer(conv, w2, b2)
    conv.inputs = (data,) + conv.inputs[1:]
    g.nodes.remove(node)
    return True
