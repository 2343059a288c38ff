"""One quantized layer as an IR graph, shared by the backends' int8 tests
(torch/test_lowering_quant.py, tvm/test_int8_graph.py): each compares its
backend with the NumPy integer reference on it."""
from __future__ import annotations

from dlc.compiler.builder import Builder
from dlc.compiler.ir import Graph
from dlc.compiler.types import DType, TensorType


def int8_layer_graph(kind: str, x_shape, w_shape, attrs, x_zp=37, y_zp=90, relu=False, out_dtype="uint8") -> Graph:
    """float x, w, bias -> quantize_linear, int8 weights, int32 bias, requant_multiplier -> the int8
    layer `kind` (qconv2d/qdense) -> dequantize_linear; every intermediate is an output too."""
    g = Graph("q")
    b = Builder(g)
    x = g.add_input("x", TensorType(DType.f32, x_shape))
    w = g.add_input("w", TensorType(DType.f32, w_shape))
    bias = g.add_input("bias", TensorType(DType.f32, (w_shape[0],)))
    sx, sy = b.const(0.031), b.const(0.047)
    xq = b.op("quantize_linear", x, sx, b.const(x_zp, "uint8"))
    sw = b.op("div", b.op("max", b.op("abs", w), axis=tuple(range(1, len(w_shape)))), b.const(127.0))
    wq = b.op("quantize_linear", w, sw, None, axis=0, dtype="int8")
    bq = b.op("quantize_linear", bias, b.op("mul", sx, sw), None, axis=0, dtype="int32")
    m, s = b.op("requant_multiplier", sx, sw, sy)
    y = b.op(kind, xq, wq, bq, m, s, x_zero_point=x_zp, y_zero_point=y_zp, relu=relu, out_dtype=out_dtype,
             **attrs)
    yd = b.op("dequantize_linear", y, sy, b.const(y_zp, out_dtype))
    g.outputs, g.output_names = [y, yd, xq, wq, bq, m, s], ["y", "yd", "xq", "wq", "bq", "m", "s"]
    return g
