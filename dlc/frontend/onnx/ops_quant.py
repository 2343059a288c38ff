"""QDQ models: QuantizeLinear/DequantizeLinear become the IR's `quantize_linear`/`dequantize_linear`
(compiler/ops/quant.py, the same arithmetic as ONNX: float32 true division, round half to even).
The layers between the pairs stay float, as in onnxruntime's QDQ format: the model computes
exactly what onnxruntime's reference computes ("fake quantization"), on every backend."""
from __future__ import annotations

import numpy as np

from .context import Ctx
from .registry import converter

_QTYPES = {"uint8": "uint8", "int8": "int8", "int32": "int32"}


def _qparams(cx: Ctx, node, x_rank: int):
    a = Ctx.attrs(node)
    scale = cx.val(node.input[1])
    zp = cx.opt(node, 2)
    if scale.type.dtype.short != "f32":
        raise cx.error(f"{node.op_type} with a {scale.type.dtype} scale is not supported (dlc's scales are f32)")
    if scale.type.rank == 1 and scale.type.shape[0] == 1 and x_rank > 0 and a.get("axis") is None:
        scale = cx.op("reshape", scale, shape=())
        zp = cx.op("reshape", zp, shape=()) if zp is not None else None
    axis = None
    if scale.type.rank == 1:
        axis = int(a.get("axis", 1)) % x_rank
    elif scale.type.rank > 1:
        raise cx.error("blocked quantization (a scale of rank > 1) is not supported")
    return scale, zp, axis


@converter("QuantizeLinear", since=10)     # 10: per-tensor only (no axis), as 13 reads it
def quantize_linear(cx: Ctx, node):
    x = cx.val(node.input[0])
    a = Ctx.attrs(node)
    flat_shape = None
    if a.get("block_size", 0):
        x, scale, zp, axis, flat_shape = _blocked(cx, node, x, int(a["block_size"]))
    else:
        scale, zp, axis = _qparams(cx, node, x.type.rank)
    if a.get("output_dtype"):
        from .loader import ONNX_TO_NUMPY
        dt = np.dtype(ONNX_TO_NUMPY.get(int(a["output_dtype"]), np.float64)).name
    else:
        dt = zp.type.dtype.numpy_name if zp is not None else "uint8"
    if dt not in _QTYPES:
        raise cx.error(f"QuantizeLinear to {dt} is not supported (dlc quantizes to uint8, int8 and int32)")
    if x.type.dtype.short != "f32":
        x = cx.op("cast", x, dtype="float32")
    q = cx.op("quantize_linear", x, scale, zp, axis=axis, dtype=dt)
    return q if flat_shape is None else cx.op("reshape", q, shape=flat_shape)


@converter("DequantizeLinear", since=10)
def dequantize_linear(cx: Ctx, node):
    x = cx.val(node.input[0])
    if x.type.dtype.numpy_name not in _QTYPES:
        raise cx.error(f"DequantizeLinear of {x.type.dtype} is not supported (dlc dequantizes uint8, int8, int32)")
    block = int(Ctx.attrs(node).get("block_size", 0) or 0)
    if block:
        x, scale, zp, axis, shape = _blocked(cx, node, x, block)
        return cx.op("reshape", cx.op("dequantize_linear", x, scale, zp, axis=axis), shape=shape)
    scale, zp, axis = _qparams(cx, node, x.type.rank)
    return cx.op("dequantize_linear", x, scale, zp, axis=axis)


def _blocked(cx: Ctx, node, x, block: int):
    """Blocked quantization (opset 21): a scale (and zero point) of x's rank whose `axis` dimension
    holds one entry per `block` elements.  Each entry is repeated over its block (the last block may
    be partial) and the element-wise scales become a per-channel quantization of x flattened (one
    channel per element), the IR's exact arithmetic.  Returns (x, scale, zp, axis) for the flat
    tensor and x's shape to restore."""
    scale, zp = cx.val(node.input[1]), cx.opt(node, 2)
    if scale.type.dtype.short != "f32":
        raise cx.error(f"{node.op_type} with a {scale.type.dtype} scale is not supported (dlc's scales are f32)")
    shape = tuple(x.type.shape)
    r = len(shape)
    ax = int(Ctx.attrs(node).get("axis", 1)) % max(r, 1)
    n = shape[ax]
    if block < 1 or scale.type.rank != r or not isinstance(n, int) or not all(isinstance(d, int) for d in shape):
        raise cx.error(f"blocked quantization needs a static input and a scale of its rank, got {x.type} and "
                       f"{scale.type} with block_size {block}")
    nb = -(-n // block)
    if tuple(scale.type.shape) != shape[:ax] + (nb,) + shape[ax + 1:]:
        raise cx.error(f"blocked quantization: the scale {scale.type} does not hold one entry per {block} "
                       f"elements of axis {ax} of {x.type}")

    def per_element(v):
        inter = shape[:ax] + (nb, 1) + shape[ax + 1:]
        wide = shape[:ax] + (nb, block) + shape[ax + 1:]
        e = cx.op("reshape", cx.op("expand", cx.op("reshape", v, shape=inter), shape=wide),
                  shape=shape[:ax] + (nb * block,) + shape[ax + 1:])
        if nb * block != n:
            e = cx.op("strided_slice", e, begin=[None] * r, end=[None] * ax + [n] + [None] * (r - ax - 1))
        return cx.op("reshape", e, shape=(int(np.prod(shape)),))
    flat = (int(np.prod(shape)),)
    return (cx.op("reshape", x, shape=flat), per_element(scale), per_element(zp) if zp is not None else None, 0,
            shape)


@converter("DynamicQuantizeLinear", since=11)
def dynamic_quantize_linear(cx: Ctx, node):
    """uint8 quantization with the range of x (widened to hold 0), as ONNX's function body:
    scale = (max(x, 0) - min(x, 0)) / 255, zero point = round(clip(-min / scale, 0, 255))."""
    from .ops_extra import round_half_even
    x = cx.val(node.input[0])
    if x.type.dtype.short != "f32":
        raise cx.error(f"DynamicQuantizeLinear of {x.type.dtype} is not supported (ONNX defines it on f32)")
    axes = tuple(range(x.type.rank))
    zero = cx.scalar(0.0, x)
    lo = cx.op("minimum", cx.op("min", x, axis=axes, keepdims=False), zero)
    hi = cx.op("maximum", cx.op("max", x, axis=axes, keepdims=False), zero)
    scale = cx.op("div", cx.op("sub", hi, lo), cx.scalar(255.0, x))
    zp_f = cx.op("hardtanh", cx.op("sub", zero, cx.op("div", lo, scale)), min_val=0.0, max_val=255.0)
    zp = cx.op("cast", round_half_even(cx, zp_f), dtype="uint8")
    return [cx.op("quantize_linear", x, scale, zp, axis=None, dtype="uint8"), scale, zp]
