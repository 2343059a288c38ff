"""TVM lowering of convolution, pooling, normalisation and attention.

Registered into `lowering.LOWERING`; see that module for the conventions.
Argument normalisation (padding strings, pooling strides) reuses the NumPy
reference's helpers so both backends read attributes identically.
"""
from __future__ import annotations

import math

import numpy as np

from ...compiler.ops.conv import conv_pads, ntuple
from .lowering import (arg_as, bessel_factor, softmax, cast, in_dtype, lowers, ndim, norm_axis, out_dtype, out_shape,
                       scalar, _op)
from .relaxgen import Unsupported


def _batched(low, node, x, nd):
    """Pool/conv kernels want (N, C, *spatial); unbatched (C, *spatial)
    inputs get a batch axis of one.  Returns (x, squeeze_back)."""
    if ndim(node, 0) == nd + 1:
        return low.emit(_op().expand_dims(x, [0])), True
    return x, False


def _unbatch(low, y, squeeze):
    return low.emit(_op().squeeze(y, [0])) if squeeze else y


def _nhwc(node) -> bool:
    """dlc's layout pass chose channels last for this op (``layout="NHWC"``)."""
    return node.attrs.get("layout", "NCHW") == "NHWC"


_NC_LAYOUT = {1: "NCW", 2: "NCHW", 3: "NCDHW"}     # relax's channels-first layouts by spatial rank


def _bias(low, node, args, y, nd, dt):
    if len(args) > 2 and args[2] is not None:
        b = arg_as(low, node, args, 2, dt)
        c = low.prim(node.inputs[2].type.shape[0])
        b = low.emit(_op().reshape(b, [1, 1, 1, c] if _nhwc(node) else [1, c] + [1] * nd))
        y = low.emit(_op().add(y, b))
    return y


@lowers("conv1d", "conv2d", "conv3d")
def _conv(low, node, args, env):
    op = _op()
    nd = int(node.op.name[-2])
    a = low.concrete_attr(node.attrs, "convolution attributes")
    dt = out_dtype(node)
    x = arg_as(low, node, args, 0, dt)
    w = arg_as(low, node, args, 1, dt)
    kernel = [low.concrete(k, "the kernel size") for k in node.inputs[1].type.shape[2:]]
    nhwc = _nhwc(node)
    stride = ntuple(a["stride"], nd, "stride")
    dilation = ntuple(a["dilation"], nd, "dilation")
    pads = conv_pads(a["padding"], nd, kernel, dilation, stride)
    x, squeeze = _batched(low, node, x, nd)
    if nd != 2:
        conv = op.nn.conv1d if nd == 1 else op.nn.conv3d
        y = low.emit(conv(x, w, strides=stride, padding=[lo for lo, _ in pads] + [hi for _, hi in pads],
                          dilation=dilation, groups=int(a["groups"]),
                          data_layout=_NC_LAYOUT[nd], kernel_layout="OI" + _NC_LAYOUT[nd][2:]))
    else:
        padding = [pads[0][0], pads[1][0], pads[0][1], pads[1][1]]   # top, left, bottom, right
        if nhwc:
            # the weight stays OIHW in dlc; HWIO is what the CPU schedule wants
            # (a weight-only transpose: LiftTransformParams moves it out of main)
            w = low.emit(op.permute_dims(w, [2, 3, 1, 0]))
        y = low.emit(op.nn.conv2d(x, w, strides=stride, padding=padding, dilation=dilation,
                                  groups=int(a["groups"]), data_layout="NHWC" if nhwc else "NCHW",
                                  kernel_layout="HWIO" if nhwc else "OIHW"))
    y = _bias(low, node, args, y, nd, dt)
    return _unbatch(low, y, squeeze)


@lowers("conv_transpose2d", "conv_transpose3d")
def _conv_transpose(low, node, args, env):
    op = _op()
    nd = int(node.op.name[-2])
    a = low.concrete_attr(node.attrs, "convolution attributes")
    dt = out_dtype(node)
    x = arg_as(low, node, args, 0, dt)
    w = arg_as(low, node, args, 1, dt)
    stride = ntuple(a["stride"], nd, "stride")
    pad = ntuple(a["padding"], nd, "padding")
    opad = ntuple(a["output_padding"], nd, "output_padding")
    dil = ntuple(a["dilation"], nd, "dilation")
    x, squeeze = _batched(low, node, x, nd)
    fn = op.nn.conv2d_transpose if nd == 2 else op.nn.conv3d_transpose
    y = low.emit(fn(x, w, strides=stride, padding=list(pad) * 2, output_padding=opad, dilation=dil,
                    groups=int(a["groups"]), data_layout=_NC_LAYOUT[nd], kernel_layout="IO" + _NC_LAYOUT[nd][2:]))
    y = _bias(low, node, args, y, nd, dt)
    return _unbatch(low, y, squeeze)


# ---------------------------------------------------------------------------
# pooling
# ---------------------------------------------------------------------------

def _pool_args(low, node, nd):
    a = low.concrete_attr(node.attrs, "pooling attributes")
    k = ntuple(a["kernel_size"], nd, "kernel_size")
    s = k if a.get("stride") in (None, (), []) else ntuple(a["stride"], nd, "stride")
    p = ntuple(a.get("padding", 0), nd, "padding")
    d = ntuple(a.get("dilation", 1), nd, "dilation")
    return a, k, s, p, d


@lowers("max_pool1d", "max_pool2d", "max_pool3d", "avg_pool1d", "avg_pool2d", "avg_pool3d")
def _pool(low, node, args, env):
    op = _op()
    nd = int(node.op.name[-2])
    a, k, s, p, d = _pool_args(low, node, nd)
    dt = out_dtype(node)
    is_max = node.op.name.startswith("max")
    if not is_max and any(v != 1 for v in d):
        from .lowering_avg_pool import dilated_avg_pool
        x = arg_as(low, node, args, 0, dt)
        if not _nhwc(node):
            return dilated_avg_pool(low, node, x, nd, k, s, p, d)
        # the layout pass made it channels-last: pool the NCHW view
        y = dilated_avg_pool(low, node, low.emit(op.permute_dims(x, [0, 3, 1, 2])), nd, k, s, p, d)
        return low.emit(op.permute_dims(y, [0, 2, 3, 1]))
    x, squeeze = _batched(low, node, arg_as(low, node, args, 0, dt), nd)
    ceil = bool(a["ceil_mode"])
    layout = "NHWC" if _nhwc(node) else _NC_LAYOUT[nd]
    fn = getattr(op.nn, f"{node.op.name[:3]}_pool{nd}d")
    kw = {} if is_max else {"count_include_pad": bool(a["count_include_pad"])}
    y = low.emit(fn(x, pool_size=k, strides=s, padding=list(p) * 2, dilation=d, ceil_mode=ceil, layout=layout,
                    **kw))
    if not is_max and a.get("divisor_override"):
        # sum = avg * area when every window is full; recompute exactly instead
        y = low.emit(fn(x, pool_size=k, strides=s, padding=list(p) * 2, dilation=d, ceil_mode=ceil,
                        layout=layout, count_include_pad=True))
        y = low.emit(op.multiply(y, scalar(low, math.prod(k) / float(a["divisor_override"]), dt)))
    return _unbatch(low, y, squeeze)


@lowers("adaptive_avg_pool1d", "adaptive_avg_pool2d", "adaptive_max_pool2d")
def _adaptive(low, node, args, env):
    op = _op()
    nd = 1 if node.op.name.endswith("1d") else 2
    dt = out_dtype(node)
    x, squeeze = _batched(low, node, arg_as(low, node, args, 0, dt), nd)
    spatial = node.outputs[0].type.shape[1:3] if _nhwc(node) else node.outputs[0].type.shape[-nd:]
    osize = [low.concrete(o, "the adaptive pooling output size") for o in spatial]
    if node.op.name == "adaptive_avg_pool2d":
        layout = "NHWC" if _nhwc(node) else "NCHW"
        y = low.emit(op.nn.adaptive_avg_pool2d(x, osize, layout=layout))
    elif node.op.name == "adaptive_avg_pool1d":
        y = low.emit(op.nn.adaptive_avg_pool1d(x, osize, layout="NCW"))
    else:
        # NaN-propagating, -inf windows give -inf (topi's adaptive_pool drops NaN)
        from .nan_legalize import adaptive_max_pool2d
        y = low.bb.emit_te(lambda t: adaptive_max_pool2d(t, osize), x, primfunc_name_hint="adaptive_max_pool2d")
    return _unbatch(low, y, squeeze)


# ---------------------------------------------------------------------------
# normalisation
# ---------------------------------------------------------------------------

def _channel_view(low, node, v, r):
    if _nhwc(node):
        c = low.prim(node.inputs[0].type.shape[3])
        return low.emit(_op().reshape(v, [1, 1, 1, c]))
    c = low.prim(node.inputs[0].type.shape[1])
    return low.emit(_op().reshape(v, [1, c] + [1] * (r - 2)))


def _pow2_scale_te(a):
    """2**floor(log2(a)) where 1 < a < inf, else 1, from the exponent bits:
    dividing by it is exact (the reference's _pow2_scale)."""
    from tvm import te, tirx
    dt = str(a.dtype)
    ut, mask = ("uint64", 0x7FF0000000000000) if dt == "float64" else ("uint32", 0x7F800000)

    def one(*i):
        v = a(*i)
        p2 = tirx.reinterpret(dt, tirx.bitwise_and(tirx.reinterpret(ut, v), tirx.const(mask, ut)))
        big = tirx.all(v > tirx.const(1, dt), v < tirx.const(float("inf"), dt))
        return tirx.Select(big, p2, tirx.const(1, dt))
    return te.compute(a.shape, one, name="pow2_scale")


def scaled_moments(low, x, axes, eps, dt):
    """(x - mean, 1 / sqrt(var + eps), scale, scaled mean, scaled biased var)
    over `axes` (kept as size-1 axes), computed on x / s with s a power of two
    per slice, so the squares stay finite (layer_norm([1e30, 0, 0, 0, 0]) is
    [2, -0.5, ...]) and the variance is two-pass (no E[x^2] - E[x]^2
    cancellation); as the NumPy reference's scaled_moments."""
    op = _op()
    amax = low.emit(op.max(op.abs(x), axes, True))
    s = low.bb.emit_te(_pow2_scale_te, amax, primfunc_name_hint="pow2_scale")
    xs = low.emit(op.divide(x, s))
    mean = low.emit(op.mean(xs, axes, True))
    d = low.emit(op.subtract(xs, mean))
    var = low.emit(op.mean(op.multiply(d, d), axes, True))
    inv = low.emit(op.rsqrt(op.add(var, op.divide(eps, op.multiply(s, s)))))
    return d, inv, s, mean, var


@lowers("batch_norm")
def _batch_norm(low, node, args, env):
    """Eval: y = x * scale + shift with scale and shift computed from the
    weights only (so they are lifted out of the per-call work and fuse into
    the producing convolution's epilogue).  Train: batch statistics and the
    running-average updates, as the reference."""
    op = _op()
    a = node.attrs
    dt = out_dtype(node)
    r = ndim(node, 0)
    x = arg_as(low, node, args, 0, dt)
    rm, rv, w, b = (args[i] if len(args) > i else None for i in range(1, 5))
    eps = scalar(low, float(a["eps"]), dt)
    if not a["training"]:
        if rm is None or rv is None:
            raise Unsupported("batch_norm in eval mode needs running_mean and running_var", node.span)
        inv = low.emit(op.rsqrt(op.add(cast(low, rv, in_dtype(node, 2), dt), eps)))
        scale = low.emit(op.multiply(inv, arg_as(low, node, args, 3, dt))) if w is not None else inv
        shift = low.emit(op.negative(op.multiply(cast(low, rm, in_dtype(node, 1), dt), scale)))
        if b is not None:
            shift = low.emit(op.add(shift, arg_as(low, node, args, 4, dt)))
        y = low.emit(op.add(op.multiply(x, _channel_view(low, node, scale, r)),
                            _channel_view(low, node, shift, r)))
        return [y, rm, rv][:len(node.outputs)]
    axes = [0, 1, 2] if _nhwc(node) else [0] + list(range(2, r))
    d, inv, s, mean_s, var_s = scaled_moments(low, x, axes, eps, dt)
    y = low.emit(op.multiply(d, inv))
    c = [low.prim(node.inputs[0].type.shape[3 if _nhwc(node) else 1])]
    mean = low.emit(op.reshape(op.multiply(mean_s, s), c))
    var = low.emit(op.reshape(op.multiply(var_s, op.multiply(s, s)), c))
    if w is not None:
        y = low.emit(op.multiply(y, _channel_view(low, node, arg_as(low, node, args, 3, dt), r)))
    if b is not None:
        y = low.emit(op.add(y, _channel_view(low, node, arg_as(low, node, args, 4, dt), r)))
    outs = [y]
    m = float(a["momentum"])
    shape = node.inputs[0].type.shape
    count = 1
    for i in axes:
        count = count * shape[i]
    if rm is not None:
        rdt = in_dtype(node, 1)
        new = op.add(op.multiply(cast(low, rm, rdt, dt), scalar(low, 1 - m, dt)),
                     op.multiply(mean, scalar(low, m, dt)))
        outs.append(cast(low, low.emit(new), dt, rdt))
    else:
        outs.append(None)
    if rv is not None:
        rdt = in_dtype(node, 2)
        unbiased = op.multiply(var, bessel_factor(low, count, 1, dt))
        new = op.add(op.multiply(cast(low, rv, rdt, dt), scalar(low, 1 - m, dt)),
                     op.multiply(unbiased, scalar(low, m, dt)))
        outs.append(cast(low, low.emit(new), dt, rdt))
    else:
        outs.append(None)
    return outs[:len(node.outputs)]


@lowers("layer_norm")
def _layer_norm(low, node, args, env):
    op = _op()
    dt = out_dtype(node)
    x = arg_as(low, node, args, 0, dt)
    ns = node.attrs["normalized_shape"]
    k = 1 if isinstance(ns, int) or not isinstance(ns, (tuple, list)) else len(ns)
    r = ndim(node, 0)
    axes = list(range(r - k, r))
    w = arg_as(low, node, args, 1, dt) if len(args) > 1 and args[1] is not None else None
    b = arg_as(low, node, args, 2, dt) if len(args) > 2 and args[2] is not None else None
    d, inv, *_ = scaled_moments(low, x, axes, scalar(low, float(node.attrs["eps"]), dt), dt)
    y = low.emit(op.multiply(d, inv))
    if w is not None:
        y = low.emit(op.multiply(y, w))
    if b is not None:
        y = low.emit(op.add(y, b))
    return y


@lowers("group_norm")
def _group_norm(low, node, args, env):
    op = _op()
    dt = out_dtype(node)
    x = arg_as(low, node, args, 0, dt)
    r = ndim(node, 0)
    w = arg_as(low, node, args, 1, dt) if len(args) > 1 and args[1] is not None else None
    b = arg_as(low, node, args, 2, dt) if len(args) > 2 and args[2] is not None else None
    g = int(node.attrs["num_groups"])
    shape = node.inputs[0].type.shape
    # (N, G, C/G * spatial): one slice per (sample, group)
    grouped = low.emit(op.reshape(x, [low.prim(shape[0]), g, -1]))
    d, inv, *_ = scaled_moments(low, grouped, [2], scalar(low, float(node.attrs["eps"]), dt), dt)
    y = low.emit(op.reshape(op.multiply(d, inv), low.shape(shape)))
    if w is not None:
        y = low.emit(op.multiply(y, _channel_view(low, node, w, r)))
    if b is not None:
        y = low.emit(op.add(y, _channel_view(low, node, b, r)))
    return y


@lowers("local_response_norm")
def _lrn(low, node, args, env):
    from tvm import relax
    op = _op()
    a = node.attrs
    dt = out_dtype(node)
    x = arg_as(low, node, args, 0, dt)
    size = int(a["size"])
    r = ndim(node, 0)
    c = low.concrete(node.inputs[0].type.shape[1], "the channel count of local response norm")
    sq = low.emit(op.square(x))
    widths = [0, 0] * r
    widths[2], widths[3] = size // 2, (size - 1) // 2
    sq = low.emit(op.nn.pad(sq, widths, "constant", 0.0))
    total = None
    for j in range(size):
        part = low.emit(op.strided_slice(sq, [1], [j], [j + c], assume_inbound=True))
        total = part if total is None else low.emit(op.add(total, part))
    div = op.add(op.multiply(total, scalar(low, float(a["alpha"]) / size, dt)), scalar(low, float(a["k"]), dt))
    div = low.emit(op.power(div, scalar(low, float(a["beta"]), dt)))
    return low.emit(op.divide(x, div))


# ---------------------------------------------------------------------------
# attention
# ---------------------------------------------------------------------------

@lowers("scaled_dot_product_attention")
def _sdpa(low, node, args, env):
    """softmax(q k^T * scale + mask) v, composed from matmul and softmax;
    fully masked rows give zeros (torch 2.x, and the reference)."""
    op = _op()
    dt = out_dtype(node)
    q, k, v = (arg_as(low, node, args, i, dt) for i in range(3))
    mask = args[3] if len(args) > 3 else None
    qshape = node.inputs[0].type.shape
    r = len(qshape)
    E = low.concrete(qshape[-1], "the attention head size")
    scale = node.attrs["scale"]
    scale = 1.0 / math.sqrt(E) if scale is None else float(scale)
    kt = low.emit(op.permute_dims(k, list(range(r - 2)) + [r - 1, r - 2]))
    scores = low.emit(op.multiply(op.matmul(q, kt), scalar(low, scale, dt)))
    if node.attrs["is_causal"]:
        L, S = qshape[-2], node.inputs[1].type.shape[-2]
        # an additive float mask, 0 on and below the diagonal and -FLT_MAX above
        # (exp gives exactly 0 there, as with -inf: a causal row is never fully
        # masked).  Not a bool tensor: a vectorized select on a bool buffer
        # fused into the matmul fails LLVM codegen (boolx16 vs int8x16).
        ones = low.emit(op.ones([low.prim(L), low.prim(S)], dt))
        big = scalar(low, float(np.finfo(dt).max), dt)
        neg = low.emit(op.multiply(op.subtract(op.tril(ones, 0), scalar(low, 1.0, dt)), big))
        scores = low.emit(op.add(scores, neg))
    elif mask is not None:
        if in_dtype(node, 3) == "bool":
            scores = low.emit(op.where(mask, scores, scalar(low, float("-inf"), dt)))
        else:
            scores = low.emit(op.add(scores, arg_as(low, node, args, 3, dt)))
    masked = node.attrs["is_causal"] is False and mask is not None and in_dtype(node, 3) == "bool"
    if masked or (mask is not None and in_dtype(node, 3) != "bool"):
        # the reference's guard: a fully masked row is all zeros, not NaN
        m = low.emit(op.max(scores, [r - 1], True))
        m = low.emit(op.where(op.isfinite(m), m, scalar(low, 0, dt)))
        e = low.emit(op.exp(op.subtract(scores, m)))
        den = low.emit(op.sum(e, [r - 1], True))
        den = low.emit(op.where(op.equal(den, scalar(low, 0, dt)), scalar(low, 1, dt), den))
        probs = low.emit(op.divide(e, den))
    else:
        probs = softmax(low, scores, r - 1, dt)
    return low.emit(op.matmul(probs, v))

