"""QuantizeLinear/DequantizeLinear: the QDQ format.

`dlc export` of a quantized model stops the pipeline before `lower_int8`, so
the graph holds float conv/dense between quantize_linear/dequantize_linear
pairs: exactly onnxruntime's QDQ format, which it fuses into QLinearConv /
QGemm.  dlc's integer kernels (qconv2d, qdense, requant_multiplier: the
fixed-point requantization of docs/quantization.md) have no mapping.

Two details decide what onnxruntime fuses and what it computes:
- every DequantizeLinear carries its zero point, zeros included: onnxruntime's
  QDQ selectors fuse a Gemm into QGemm only when the weight's DequantizeLinear
  has one (a Conv fuses either way);
- `int32_biases` gives each quantized layer its bias as DequantizeLinear(int32
  bias_q, s_x * s_w): the bias dlc's qconv2d/qdense add (round half to even of
  bias / (s_x * s_w)), as onnxruntime.quantization writes it, so the file's own
  QDQ semantics, onnxruntime's fused kernels and dlc's int8 ops use one bias.
"""
from __future__ import annotations

import numpy as np

from ...compiler.builder import Builder
from ...compiler.ir import Graph, Node, Value
from ...compiler.types import DType
from .table import onnx_op

_LAYERS = ("conv2d", "linear")


def _zero_point(e, node, x, dtype) -> str:
    """ONNX infers the quantized type from the zero point: give one when dlc left it out."""
    if len(x) > 2 and x[2] is not None:
        return x[2]
    scale_shape = node.inputs[1].type.shape
    # named after its scale (conv1.weight_scale -> conv1.weight_zero_point) so the file reads as written
    hint = x[1][: -len("_scale")] + "_zero_point" if x[1].endswith("_scale") else "zero_point"
    return e.const(np.zeros(tuple(int(d) for d in scale_shape), dtype=dtype), hint=hint)


def _axis(node) -> dict:
    axis = node.attrs["axis"]
    return {} if axis is None else {"axis": int(axis)}


@onnx_op("quantize_linear")
def _quantize(e, node, x):
    zp = _zero_point(e, node, x, node.attrs.get("dtype") or "uint8")
    return [e.op("QuantizeLinear", [x[0], x[1], zp], **_axis(node))]


@onnx_op("dequantize_linear")
def _dequantize(e, node, x):
    zp = _zero_point(e, node, x, node.inputs[0].type.dtype.numpy_name)
    return [e.op("DequantizeLinear", [x[0], x[1], zp], **_axis(node))]


def _dequantized(v: Value | None) -> Node | None:
    p = v.producer if v is not None else None
    return p if p is not None and p.op.name == "dequantize_linear" else None


def _layer_operands(n: Node) -> tuple[Value, Value, Value | None, int] | None:
    """(x, w, bias, index of the bias among n's operands) of a conv2d/linear node, or of a `fused`
    node whose body holds one on its own operands (conv_epilogue: the layer, then relu...)."""
    if n.op.name in _LAYERS:
        bias = n.inputs[2] if len(n.inputs) > 2 else None
        return n.inputs[0], n.inputs[1], bias, 2
    if n.body is None:
        return None
    pos = {v.id: i for i, v in enumerate(n.body.inputs)}
    for inner in n.body.nodes:
        if inner.op.name in _LAYERS and len(inner.inputs) > 2 and inner.inputs[2] is not None:
            ix = [pos.get(v.id) if v is not None else None for v in inner.inputs[:3]]
            if None not in ix:
                return n.inputs[ix[0]], n.inputs[ix[1]], n.inputs[ix[2]], ix[2]
    return None


def _quantized_layer(n: Node):
    """(s_x, s_w, bias, its operand index) of a conv2d/linear (or a fused node around one) on a
    per-tensor dequantized input and an int8 weight dequantized per output channel or per tensor,
    with a float bias; else None."""
    ops = _layer_operands(n)
    if ops is None or ops[2] is None:
        return None
    x, w, bias, at = ops
    dq_x, dq_w = _dequantized(x), _dequantized(w)
    if dq_x is None or dq_w is None or dq_x.attrs["axis"] is not None or not bias.type.dtype.is_float:
        return None
    if dq_w.inputs[0].type.dtype != DType.i8 or dq_w.attrs["axis"] not in (None, 0) or bias.type.rank != 1:
        return None
    return dq_x.inputs[1], dq_w.inputs[1], bias, at


def int32_biases(g: Graph) -> int:
    """Give every quantized conv2d/linear of `g` its bias as dequantize(quantize(bias, s_x * s_w,
    int32)) (in place; the export folds the quantize into an int32 initializer); returns how many."""
    done = 0
    for n in list(g.nodes):
        found = _quantized_layer(n)
        if found is None:
            continue
        s_x, s_w, bias, at = found
        co = bias.type.shape[0]
        b = Builder(g, n.span, n.scope)
        start = len(g.nodes)
        if s_w.type.rank == 0:                # a per-tensor weight scale: one per output channel
            s_w = b.op("mul", s_w, b.const(1.0, shape=(co,)))
        s_b = b.op("mul", s_x, s_w)
        b_q = b.op("quantize_linear", bias, s_b, None, axis=0, dtype="int32")
        b_dq = b.op("dequantize_linear", b_q, s_b, None, axis=0)
        made = g.nodes[start:]
        del g.nodes[start:]
        i = g.nodes.index(n)
        g.nodes[i:i] = made                   # before the layer: its operands come first
        n.inputs = n.inputs[:at] + (b_dq,) + n.inputs[at + 1:]
        done += 1
    return done
