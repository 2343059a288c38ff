"""Layers: Conv, ConvTranspose, BatchNormalization, Gemm/MatMul, normalisations, Softmax, Dropout (pooling: ops_pool)."""
from __future__ import annotations

import math

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
    if nd not in (2, 3):
        raise cx.error("ConvTranspose is supported in 2-D and 3-D only")
    a = Ctx.attrs(node)
    if "output_shape" in a or _s(a.get("auto_pad", "NOTSET")) not in ("NOTSET", "VALID"):
        raise cx.error("ConvTranspose with output_shape or auto_pad=SAME is not supported")
    pads = list(a.get("pads", [0] * (2 * nd)))
    if pads[:nd] != pads[nd:]:
        raise cx.error(f"ConvTranspose with asymmetric pads {pads} is not supported")
    return cx.layer(f"conv_transpose{nd}d", x, w, b, stride=tuple(a.get("strides", [1] * nd)),
                    padding=tuple(pads[:nd]), output_padding=tuple(a.get("output_padding", [0] * nd)),
                    groups=int(a.get("group", 1)), dilation=tuple(a.get("dilations", [1] * nd)))


@converter("BatchNormalization", since=9)
def batch_norm(cx: Ctx, node):
    a = Ctx.attrs(node)
    if a.get("training_mode", 0):
        raise cx.error("BatchNormalization in training mode is not supported (dlc imports eval graphs)")
    x, scale, bias = (cx.val(n) for n in node.input[:3])
    mean, var = (cx.val(n, buffer=True) for n in node.input[3:5])
    y, _, _ = cx.layer("batch_norm", x, mean, var, scale, bias, training=False,
                       momentum=f32(1 - a.get("momentum", 0.9)),
                       eps=float(a.get("epsilon", 1e-5)))
    return y


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
    if len(node.input) > 2 and node.input[2]:
        t = cx.const(node.input[2])
        if t is None and node.input[2] in cx.frozen:
            t = cx.need_const(node.input[2], "Dropout's training_mode")
        if t is None or bool(t.reshape(-1)[0]):
            raise cx.error("Dropout in training mode is not supported (the import is in eval mode)")
    x = cx.val(node.input[0])
    if len(node.output) > 1 and node.output[1]:      # eval mode keeps every element
        return [x, cx.op("full", shape=tuple(x.type.shape), value=True, dtype="bool")]
    return x
