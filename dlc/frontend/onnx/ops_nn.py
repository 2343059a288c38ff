"""Layers: Conv, ConvTranspose, BatchNormalization, Gemm/MatMul, normalisations, Softmax, Dropout (pooling: ops_pool)."""
from __future__ import annotations

import math

import numpy as np

from .context import Ctx, f32
from .registry import converter


def _s(v):
    return v.decode() if isinstance(v, bytes) else v


def spatial_pads(cx: Ctx, node, x, kernel, strides, dilations) -> list[tuple[int, int]]:
    """(begin, end) padding per spatial axis, from `pads` or `auto_pad`."""
    a = Ctx.attrs(node)
    nd = len(kernel)
    auto = _s(a.get("auto_pad", "NOTSET"))
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        out = []
        for i in range(nd):
            size = x.type.shape[2 + i]
            if not isinstance(size, int):
                raise cx.error(f"auto_pad={auto} on the symbolic dimension {size} is not supported")
            total = max((math.ceil(size / strides[i]) - 1) * strides[i] + (kernel[i] - 1) * dilations[i] + 1 - size, 0)
            small = total // 2
            out.append((small, total - small) if auto == "SAME_UPPER" else (total - small, small))
        return out
    if auto == "VALID":
        return [(0, 0)] * nd
    pads = list(a.get("pads", [0] * (2 * nd)))
    if len(pads) != 2 * nd:
        raise cx.error(f"pads {pads} need {2 * nd} entries")
    return [(pads[i], pads[i + nd]) for i in range(nd)]


def _explicit_pad(cx: Ctx, x, pads, value=0.0):
    flat = []
    for lo, hi in reversed(pads):
        flat += [lo, hi]
    return cx.op("pad", x, pad=flat, mode="constant", value=value)


@converter("Conv", since=1)
def conv(cx: Ctx, node):
    x, w = cx.val(node.input[0]), cx.val(node.input[1])
    b = cx.opt(node, 2)
    nd = w.type.rank - 2
    if nd not in (1, 2, 3):
        raise cx.error(f"Conv with {nd} spatial dimensions is not supported (dlc has conv1d, conv2d and conv3d)")
    a = Ctx.attrs(node)
    kernel = tuple(w.type.shape[2:])
    strides = tuple(a.get("strides", [1] * nd))
    dil = tuple(a.get("dilations", [1] * nd))
    pads = spatial_pads(cx, node, x, kernel, strides, dil)
    if any(lo != hi for lo, hi in pads):
        x = _explicit_pad(cx, x, pads)
        pads = [(0, 0)] * nd
    padding = tuple(lo for lo, _ in pads)
    name = f"conv{nd}d"
    return cx.layer(name, x, w, b, stride=strides if nd > 1 else strides[0], padding=padding if nd > 1 else padding[0],
                    dilation=dil if nd > 1 else dil[0], groups=int(a.get("group", 1)))


@converter("ConvTranspose", since=1)
def conv_transpose(cx: Ctx, node):
    x, w = cx.val(node.input[0]), cx.val(node.input[1])
    b = cx.opt(node, 2)
    nd = w.type.rank - 2
    if nd not in (1, 2, 3):
        raise cx.error(f"ConvTranspose with {nd} spatial dimensions is not supported (dlc has it in 1-D, 2-D and 3-D)")
    a = Ctx.attrs(node)
    strides = list(a.get("strides", [1] * nd))
    dil = list(a.get("dilations", [1] * nd))
    out_pad = list(a.get("output_padding", [0] * nd))
    groups = int(a.get("group", 1))
    begins, sizes, full = _conv_transpose_window(cx, node, x, w, strides, dil, out_pad)
    if nd in (2, 3) and "output_shape" not in a and all(
            b0 * 2 == f + op - s for b0, s, f, op in zip(begins, sizes, full, out_pad)) and all(
            op < max(st, d) for op, st, d in zip(out_pad, strides, dil)):
        # symmetric pads: torch's ConvTranspose2d/3d as it is (the layer the .dln frontend writes)
        return cx.layer(f"conv_transpose{nd}d", x, w, b, stride=tuple(strides), padding=tuple(begins),
                        output_padding=tuple(out_pad), groups=groups, dilation=tuple(dil))
    if nd == 1:    # 1-D through 2-D: a height of 1
        x = cx.op("reshape", x, shape=tuple(x.type.shape[:2]) + (1,) + tuple(x.type.shape[2:]))
        w = cx.op("reshape", w, shape=tuple(w.type.shape[:2]) + (1,) + tuple(w.type.shape[2:]))
        strides, dil, begins, sizes, full = [1] + strides, [1] + dil, [0] + begins, [1] + sizes, [1] + full
    # the zeros past the end come from the op's own output_padding where it can (< max(stride, dilation))
    extra = [min(max(b0 + sz - f, 0), max(st, d) - 1) for b0, sz, f, st, d in zip(begins, sizes, full, strides, dil)]
    y = cx.op(f"conv_transpose{len(strides)}d", x, w, None, stride=tuple(strides), padding=(0,) * len(strides),
              output_padding=tuple(extra),
              groups=groups, dilation=tuple(dil))
    y = _window(cx, y, begins, sizes, [f + e for f, e in zip(full, extra)])
    if b is not None:
        y = cx.op("add", y, cx.op("reshape", b, shape=(b.type.shape[0],) + (1,) * len(strides)))
    return y if nd != 1 else cx.op("reshape", y, shape=tuple(y.type.shape[:2]) + tuple(y.type.shape[3:]))


def _conv_transpose_window(cx: Ctx, node, x, w, strides, dil, out_pad):
    """Where ONNX's output lies in the unpadded transposed convolution (whose size is `full`): the
    first index and the size per spatial axis, from pads, output_shape or auto_pad (as ONNX's
    reference: output_shape with explicit pads starts at the pad; SAME_UPPER puts the odd unit of
    padding at the end, SAME_LOWER at the start)."""
    a = Ctx.attrs(node)
    nd = w.type.rank - 2
    ins = list(x.type.shape[2:])
    if not all(isinstance(d, int) for d in ins):
        raise cx.error(f"ConvTranspose on the symbolic spatial dimensions {ins} is not supported")
    full = [st * (n - 1) + (k - 1) * d + 1 for st, n, k, d in zip(strides, ins, w.type.shape[2:], dil)]
    auto = _s(a.get("auto_pad", "NOTSET"))
    shape = list(a["output_shape"])[-nd:] if a.get("output_shape") else None
    if auto in ("SAME_UPPER", "SAME_LOWER") and "pads" not in a:
        shape = shape or [n * st for n, st in zip(ins, strides)]
        total = [f + op - s for f, op, s in zip(full, out_pad, shape)]
        begins = [t // 2 if auto == "SAME_UPPER" else t - t // 2 for t in total]
        return begins, shape, full
    pads = [0] * (2 * nd) if auto == "VALID" else list(a.get("pads", [0] * (2 * nd)))
    if len(pads) != 2 * nd:
        raise cx.error(f"pads {pads} need {2 * nd} entries")
    begins = pads[:nd]
    shape = shape or [f + op - p0 - p1 for f, op, p0, p1 in zip(full, out_pad, pads[:nd], pads[nd:])]
    if any(s <= 0 for s in shape):
        raise cx.error(f"ConvTranspose's output would have the size {shape}")
    return begins, shape, full


def _window(cx: Ctx, y, begins, sizes, full):
    """y[..., b:b+s] per spatial axis, zeros where the window leaves y (before 0 or past `full`)."""
    lo = [max(-b0, 0) for b0 in begins]
    hi = [max(b0 + s - f, 0) for b0, s, f in zip(begins, sizes, full)]
    if any(lo) or any(hi):
        y = _explicit_pad(cx, y, list(zip(lo, hi)))
    r = y.type.rank
    start = [b0 + p for b0, p in zip(begins, lo)]
    if all(st == 0 for st in start) and list(y.type.shape[2:]) == list(sizes):
        return y
    begin = [None, None] + start
    end = [None, None] + [st + s for st, s in zip(start, sizes)]
    return cx.op("strided_slice", y, begin=begin[:r], end=end[:r])


@converter("BatchNormalization", since=9)
def batch_norm(cx: Ctx, node):
    a = Ctx.attrs(node)
    if a.get("training_mode", 0):
        return _training_batch_norm(cx, node, a)
    x, scale, bias = (cx.val(n) for n in node.input[:3])
    mean, var = (cx.val(n, buffer=True) for n in node.input[3:5])
    y, _, _ = cx.layer("batch_norm", x, mean, var, scale, bias, training=False,
                       momentum=f32(1 - a.get("momentum", 0.9)),
                       eps=float(a.get("epsilon", 1e-5)))
    return y


def _training_batch_norm(cx: Ctx, node, a: dict):
    """BatchNormalization with training_mode=1 (opset 14+), as ONNX's reference: normalized by the
    batch's mean and biased variance; the running statistics outputs are
    running * momentum + batch * (1 - momentum) (the biased variance: torch's running_var uses the
    unbiased one, so this is not the IR's batch_norm in training)."""
    x, scale, bias, mean_in, var_in = (cx.val(n) for n in node.input[:5])
    r = x.type.rank
    axes = (0,) + tuple(range(2, r))
    mean = cx.op("mean", x, axis=axes, keepdims=True)
    var = cx.op("var", x, axis=axes, keepdims=True, correction=0)
    per_channel = (x.type.shape[1],) + (1,) * (r - 2)
    xhat = cx.op("div", cx.op("sub", x, mean), cx.op("sqrt", cx.op("add", var, cx.scalar(float(a.get("epsilon", 1e-5)), var))))
    y = cx.op("add", cx.op("mul", xhat, cx.op("reshape", scale, shape=per_channel)),
              cx.op("reshape", bias, shape=per_channel))
    m = float(a.get("momentum", 0.9))
    outs = [y]
    for running, batch in ((mean_in, mean), (var_in, var)):
        batch = cx.op("reshape", batch, shape=tuple(running.type.shape))
        outs.append(cx.op("add", cx.op("mul", running, cx.scalar(m, running)),
                          cx.op("mul", batch, cx.scalar(1.0 - m, batch))))
    return outs[:max(len(node.output), 1)]


@converter("InstanceNormalization", since=6)
def instance_norm(cx: Ctx, node):
    x, scale, bias = (cx.val(n) for n in node.input[:3])
    c = x.type.shape[1]
    return cx.op("group_norm", x, scale, bias, num_groups=c, eps=float(Ctx.attrs(node).get("epsilon", 1e-5)))


@converter("LayerNormalization", since=17)
def layer_norm(cx: Ctx, node):
    a = Ctx.attrs(node)
    x = cx.val(node.input[0])
    r = x.type.rank
    axis = a.get("axis", -1) % r
    ns = tuple(x.type.shape[axis:])
    scale, bias = cx.val(node.input[1]), cx.opt(node, 2)
    eps = float(a.get("epsilon", 1e-5))
    if tuple(scale.type.shape) == ns and (bias is None or tuple(bias.type.shape) == ns):
        y = cx.layer("layer_norm", x, scale, bias, normalized_shape=ns, eps=eps)
    else:
        y = cx.op("mul", cx.op("layer_norm", x, normalized_shape=ns, eps=eps), scale)
        y = cx.op("add", y, bias) if bias is not None else y
    if len(node.output) == 1 or not any(node.output[1:]):
        return y
    # the statistics outputs, as ONNX defines them (kept dims, population variance)
    axes = tuple(range(axis, r))
    mean = cx.op("mean", x, axis=axes, keepdims=True)
    var = cx.op("var", x, axis=axes, keepdims=True, correction=0)
    return [y, mean, cx.op("rsqrt", cx.op("add", var, cx.scalar(eps, var)))]


@converter("GroupNormalization", since=21)
def group_norm(cx: Ctx, node):
    a = Ctx.attrs(node)
    x, scale, bias = (cx.val(n) for n in node.input[:3])
    return cx.layer("group_norm", x, scale, bias, num_groups=int(a["num_groups"]), eps=float(a.get("epsilon", 1e-5)))


@converter("LRN", since=1)
def lrn(cx: Ctx, node):
    a = Ctx.attrs(node)
    return cx.op("local_response_norm", cx.val(node.input[0]), size=int(a["size"]), alpha=float(a.get("alpha", 1e-4)),
                 beta=float(a.get("beta", 0.75)), k=float(a.get("bias", 1.0)))


@converter("Gemm", since=11)
def gemm(cx: Ctx, node):
    a = Ctx.attrs(node)
    alpha, beta = float(a.get("alpha", 1.0)), float(a.get("beta", 1.0))
    ta, tb = int(a.get("transA", 0)), int(a.get("transB", 0))
    x, w = cx.val(node.input[0]), cx.val(node.input[1])
    c = cx.opt(node, 2)
    if ta:
        x = cx.op("transpose", x, axes=(1, 0))
    if tb and alpha == 1.0 and (c is None or (beta == 1.0 and c.type.rank == 1 and c.type.shape[0] == w.type.shape[0])):
        return cx.layer("linear", x, w, c)   # nn.Linear
    y = cx.op("matmul", x, cx.op("transpose", w, axes=(1, 0)) if tb else w)
    if alpha != 1.0:
        y = cx.op("mul", y, cx.scalar(alpha, y))
    if c is not None and beta != 0.0:
        if beta != 1.0:
            c = cx.op("mul", c, cx.scalar(beta, c))
        y = cx.op("add", y, c)
    return y


@converter("MatMul", since=1)
def matmul(cx: Ctx, node):
    x = cx.val(node.input[0])
    w = cx.transposed.get(node.input[1])
    if w is not None and x.type.dtype.is_float and x.type.rank >= 1:
        # x @ W.T: nn.Linear as torch.onnx writes it (Transpose, MatMul, Add)
        y = cx.layer("linear", x, cx.val(w), None)
        cx.bias_free_linear[node.output[0]] = y.producer
        return y
    return cx.op("matmul", x, cx.val(node.input[1]))


def fuse_linear_bias(cx: Ctx, node):
    """Add(linear(x, W), b) with a 1-D initializer b: the layer's bias, as `dense` has it."""
    for i in (0, 1):
        lin = cx.bias_free_linear.get(node.input[i])
        b_name = cx.alias.get(node.input[1 - i], node.input[1 - i])
        if lin is None or cx.uses.get(node.input[i], 0) != 1 or b_name not in cx.initializers:
            continue
        b = cx.initializers[b_name]
        w = lin.inputs[1]
        if b.ndim != 1 or b.shape[0] != w.type.shape[0] or str(b.dtype) != w.type.dtype.numpy_name:
            continue
        bv = cx.val(b_name)
        lin.inputs = lin.inputs[:2] + (bv,)
        for layer in cx.g.layers:
            if lin.outputs[0] in layer.outputs:
                layer.params.append(bv.name)
        return lin.outputs[0]
    return None


@converter("Softmax", "LogSoftmax", since=13)
def softmax(cx: Ctx, node):
    x = cx.val(node.input[0])
    axis = Ctx.attrs(node).get("axis", -1) % max(x.type.rank, 1)     # positive, as the frontend writes it
    if node.op_type == "Softmax" and x.type.dtype.short in ("f16", "bf16"):
        # ONNX defines Softmax by its function body, each op rounding to the input type; one fused
        # fp32 softmax rounded once differs from it by more than the fp16 tests' tolerance
        e = cx.op("exp", cx.op("sub", x, cx.op("max", x, axis=(axis,), keepdims=True)))
        return cx.op("div", e, cx.op("sum", e, axis=(axis,), keepdims=True))
    return cx.op("softmax" if node.op_type == "Softmax" else "log_softmax", x, axis=axis)


@converter("Hardmax", since=13)
def hardmax(cx: Ctx, node):
    x = cx.val(node.input[0])
    axis = Ctx.attrs(node).get("axis", -1) % x.type.rank
    idx = cx.op("argmax", x, axis=axis, keepdims=False)
    oh = cx.op("one_hot", idx, num_classes=x.type.shape[axis], dtype=x.type.dtype.numpy_name)
    r = x.type.rank
    if axis != r - 1:
        perm = list(range(r - 1))
        perm.insert(axis, r - 1)
        oh = cx.op("transpose", oh, axes=tuple(perm))
    return oh


@converter("Dropout", since=7)
def dropout(cx: Ctx, node):
    x = cx.val(node.input[0])
    want_mask = len(node.output) > 1 and bool(node.output[1])
    t_name = node.input[2] if len(node.input) > 2 else ""
    training = cx.known(t_name) if t_name else np.array(False)
    ratio = cx.known(node.input[1]) if len(node.input) > 1 and node.input[1] else np.array(0.5)
    if (training is not None and not bool(training.reshape(-1)[0])) or \
            (ratio is not None and float(ratio.reshape(-1)[0]) == 0.0):
        # eval mode, or nothing dropped: every element kept, unscaled
        return [x, cx.op("full", shape=tuple(x.type.shape), value=True, dtype="bool")] if want_mask else x
    return _training_dropout(cx, node, x, ratio, None if training is not None else cx.val(t_name), want_mask)


def _training_dropout(cx: Ctx, node, x, ratio, run_time_training, want_mask: bool):
    """Dropout in training mode: keep where a uniform sample in [0, 1) is >= ratio, scale by 1/(1 - ratio).
    The samples are dlc's seeded `uniform` (the node's seed), not NumPy's RandomState stream that ONNX's
    reference draws from: the masks have the same law, not the same elements."""
    seed = int(Ctx.attrs(node).get("seed", 0)) & 0x7FFFFFFF
    dt = x.type.dtype.numpy_name
    u = cx.op("uniform", shape=tuple(x.type.shape), seed=seed, dtype="float32")
    if ratio is not None:
        r = float(ratio.reshape(-1)[0])
        if not 0.0 <= r < 1.0:
            raise cx.error(f"Dropout's ratio {r} is outside [0, 1)")
        mask = cx.op("ge", u, cx.scalar(r, u))
        scale = cx.scalar(1.0 / (1.0 - r), x)
    else:
        rv = cx.val(node.input[1])
        rv = cx.op("reshape", rv, shape=()) if rv.type.rank else rv
        mask = cx.op("ge", u, rv if rv.type.dtype.short == "f32" else cx.op("cast", rv, dtype="float32"))
        rx = rv if rv.type.dtype.numpy_name == dt else cx.op("cast", rv, dtype=dt)
        scale = cx.op("div", cx.scalar(1.0, x), cx.op("sub", cx.scalar(1.0, x), rx))
    if run_time_training is not None:    # training_mode computed at run time: eval keeps everything
        t = cx.op("reshape", run_time_training, shape=()) if run_time_training.type.rank else run_time_training
        mask = cx.op("logical_or", mask, cx.op("logical_not", t))
        scale = cx.op("where", t, scale, cx.scalar(1.0, x))
    y = cx.op("mul", cx.op("where", mask, x, cx.scalar(0.0, x)), scale)
    return [y, mask] if want_mask else y
