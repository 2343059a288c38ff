"""QuantizeLinear/DequantizeLinear: the QDQ format.

`dlc export` of a quantized model stops the pipeline before `lower_int8`, so
the graph holds float conv/dense between quantize_linear/dequantize_linear
pairs: exactly onnxruntime's QDQ format, which it fuses into QLinearConv /
QGemm.  dlc's integer kernels (qconv2d, qdense, requant_multiplier: the
fixed-point requantization of docs/quantization.md) have no mapping.
"""
from __future__ import annotations

import numpy as np

from .table import onnx_op


def _zero_point(e, node, x) -> str:
    """ONNX infers the quantized type from the zero point: give one when dlc left it out."""
    if len(x) > 2 and x[2] is not None:
        return x[2]
    dt = node.attrs.get("dtype") or "uint8"
    scale_shape = node.inputs[1].type.shape
    return e.const(np.zeros(tuple(int(d) for d in scale_shape), dtype=dt), hint="zero_point")


def _axis(node) -> dict:
    axis = node.attrs["axis"]
    return {} if axis is None else {"axis": int(axis)}


@onnx_op("quantize_linear")
def _quantize(e, node, x):
    return [e.op("QuantizeLinear", [x[0], x[1], _zero_point(e, node, x)], **_axis(node))]


@onnx_op("dequantize_linear")
def _dequantize(e, node, x):
    zp = x[2] if len(x) > 2 else None
    return [e.op("DequantizeLinear", [x[0], x[1], zp], **_axis(node))]
