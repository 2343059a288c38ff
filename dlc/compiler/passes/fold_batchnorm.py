"""Fold an eval-mode batch norm into the conv, linear or matmul layer before it.

In eval mode batch norm is a per-channel affine map of its input,

    y = (x - mean) * s + beta        with s = gamma / sqrt(var + eps),

so when x is a layer's output and nothing else reads x, the layer can
produce y itself:

    W' = W * s     (s along the weight's output-channel axis)
    b' = (b - mean) * s + beta       (b = 0 when the layer has no bias)

W' and b' are IR computed from the parameters (not new parameters: the same
weights file loads), placed just before the layer and attributed to the
batch norm's `.dln` line and scope.  They depend on weights alone, so TVM
lifts them into `main_transform_params` (run once per set of weights); the
NumPy interpreter and the torch function recompute them on every call (a
few element-wise ops on the weights; see docs/passes/bnfold.md for what that
costs).

Layers: conv1d/conv2d (grouped and depthwise included), conv_transpose2d,
linear, and `x @ W` (+ a per-feature bias add) on rank-2 activations, where
batch norm's channel axis (1) is the feature axis.  Without gamma/beta
(affine=False) s = 1/sqrt(var + eps) and beta = 0.  Skipped: training-mode
batch norm (batch statistics: nothing to fold), a batch norm without running
statistics, a layer whose output something else reads, weights computed from
the inputs, mixed dtypes, and scan bodies (the folded weights would be
recomputed every step).
"""
from __future__ import annotations

from dataclasses import dataclass

from ..ir import Graph, Node, Value
from ._folding import (CONVS, Splice, WeightOnly, as_vector, channel_count, defined_before, positions,
                       scale_out_channels, set_layer)
from .pipeline import PassContext, register_pass
from .rewrite import replace_uses, single_user, users


@dataclass
class _Match:
    layer: Node                   # the conv / linear / matmul
    bias: Value | None            # its bias (for matmul: the added per-feature value)
    bias_add: Node | None = None  # matmul + bias: the add node


@register_pass("fold_batchnorm", level=2, modes=("eval",),
               summary="fold eval-mode batch norm into the preceding conv/linear layer's weight and bias")
def fold_batchnorm(g: Graph, ctx: PassContext) -> None:
    weights = WeightOnly()
    for bn in [n for n in g.nodes if n.op.name == "batch_norm"]:
        ctx.node = bn
        m = _match(g, bn, weights)
        if m is None:
            ctx.count("kept")
            continue
        _fold(g, bn, m)
        ctx.count("folded")


def _match(g: Graph, bn: Node, weights: WeightOnly) -> _Match | None:
    if bn.attrs["training"]:
        return None                            # normalised by batch statistics: not a fixed affine map
    x, rm, rv, gamma, beta = (list(bn.inputs) + [None] * 5)[:5]
    if rm is None or rv is None or x.producer is None or not isinstance(x.type.shape[1], int):
        return None
    uses = users(g)
    if single_user(uses, x, g) is not bn:
        return None
    m = _layer_of(g, x.producer, uses)
    if m is None:
        return None
    layer = m.layer
    operands = (rm, rv, gamma, beta, layer.inputs[1], m.bias)
    if not all(weights(v) for v in operands):
        return None
    if any(v is not None and v.type.dtype != x.type.dtype for v in operands):
        return None
    pos = positions(g)
    at = pos[id(layer)]
    if not all(defined_before(g, v, at, pos) for v in operands):
        return None
    return m


def _layer_of(g: Graph, p: Node, uses) -> _Match | None:
    """The layer whose output (channels on axis 1) `p`'s result is."""
    op = p.op.name
    if op in CONVS or op == "conv_transpose2d":
        return _Match(p, p.inputs[2] if len(p.inputs) > 2 else None)
    if op == "linear":
        if p.outputs[0].type.rank != 2:        # (N, L, C): batch norm's axis 1 is not the features
            return None
        return _Match(p, p.inputs[2] if len(p.inputs) > 2 else None)
    if op == "matmul":
        return _Match(p, None) if _plain_matmul(p) else None
    if op == "add":
        for mm_out, bias in (p.inputs, reversed(p.inputs)):
            mm = mm_out.producer
            if (mm is not None and mm.op.name == "matmul" and _plain_matmul(mm)
                    and single_user(uses, mm_out, g) is p and mm_out.type == p.outputs[0].type
                    and channel_count(bias, 2, mm_out.type.shape[1]) is not None):
                return _Match(mm, bias, p)
    return None


def _plain_matmul(mm: Node) -> bool:
    """x (N, in) @ W (in, out): the weight's columns are the output features."""
    a, w = mm.inputs
    return a.type.rank == 2 and w.type.rank == 2


def _fold(g: Graph, bn: Node, m: _Match) -> None:
    x, rm, rv, gamma, beta = (list(bn.inputs) + [None] * 5)[:5]
    layer, channels = m.layer, x.type.shape[1]
    dt = x.type.dtype.numpy_name
    with Splice(g, layer, bn.span, bn.scope) as b:
        eps = b.op("full", shape=(), value=bn.attrs["eps"], dtype=dt)
        s = b.op("rsqrt", b.op("add", rv, eps))
        if gamma is not None:
            s = b.op("mul", gamma, s)
        w2 = scale_out_channels(b, layer, s)
        if m.bias is None:
            shift = b.op("mul", rm, s)                             # b' = beta - mean * s
            b2 = b.op("neg", shift) if beta is None else b.op("sub", beta, shift)
        else:
            rank, axis = (2, 1) if m.bias_add is not None else (1, 0)
            bias = as_vector(b, m.bias, channel_count(m.bias, rank, channels, axis))
            b2 = b.op("mul", b.op("sub", bias, rm), s)             # b' = (b - mean) * s + beta
            if beta is not None:
                b2 = b.op("add", b2, beta)
    if layer.op.name == "matmul":
        layer.inputs = (layer.inputs[0], w2)
        out = layer.outputs[0]
        if m.bias_add is not None:
            m.bias_add.inputs = (out, b2)
            new = m.bias_add.outputs[0]
        else:
            with Splice(g, bn, bn.span, bn.scope) as b:
                new = b.op("add", out, b2)
    else:
        set_layer(layer, w2, b2)
        new = layer.outputs[0]
    replace_uses(g, {bn.outputs[0].id: new, bn.outputs[1].id: rm, bn.outputs[2].id: rv})
    g.nodes.remove(bn)
