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
    if a.get("block_size", 0):
        raise cx.error("blocked quantization (block_size) is not supported")
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
    scale, zp, axis = _qparams(cx, node, x.type.rank)
    a = Ctx.attrs(node)
    if a.get("output_dtype"):
        from .loader import ONNX_TO_NUMPY
        dt = np.dtype(ONNX_TO_NUMPY.get(int(a["output_dtype"]), np.float64)).name
    else:
        dt = zp.type.dtype.numpy_name if zp is not None else "uint8"
    if dt not in _QTYPES:
        raise cx.error(f"QuantizeLinear to {dt} is not supported (dlc quantizes to uint8, int8 and int32)")
    if x.type.dtype.short != "f32":
        x = cx.op("cast", x, dtype="float32")
    return cx.op("quantize_linear", x, scale, zp, axis=axis, dtype=dt)


@converter("DequantizeLinear", since=10)
def dequantize_linear(cx: Ctx, node):
    x = cx.val(node.input[0])
    if x.type.dtype.numpy_name not in _QTYPES:
        raise cx.error(f"DequantizeLinear of {x.type.dtype} is not supported (dlc dequantizes uint8, int8, int32)")
    scale, zp, axis = _qparams(cx, node, x.type.rank)
    return cx.op("dequantize_linear", x, scale, zp, axis=axis)
