"""Shape and dtype rules of the quantized ops (compiler/ops/quant.py): what
they accept, what they infer, and the error each bad operand gets."""
from __future__ import annotations

import pytest

from dlc.compiler.builder import Builder
from dlc.compiler.ir import Graph
from dlc.compiler.types import DType, TensorType
from dlc.errors import ShapeError


def _b():
    g = Graph("q")
    return g, Builder(g)


def _in(g, name, dt, shape):
    return g.add_input(name, TensorType(dt, shape))


def test_quantize_and_dequantize_types():
    g, b = _b()
    x = _in(g, "x", DType.f32, ("N", 4, 3))
    q = b.op("quantize_linear", x, b.const(0.1), b.const(7, "uint8"))
    assert str(q.type) == "u8[N, 4, 3]"
    w = b.op("quantize_linear", x, _in(g, "s", DType.f32, (4,)), None, axis=1, dtype="int8")
    assert w.type.dtype == DType.i8
    assert b.op("dequantize_linear", w, g.inputs[1], None, axis=-2).type == TensorType(DType.f32, x.type.shape)
    b32 = b.op("quantize_linear", x, b.const(0.5), None, dtype="int32")
    assert b32.type.dtype == DType.i32


@pytest.mark.parametrize("make, match", [
    (lambda g, b, x: b.op("quantize_linear", x, b.const(0.1), None, dtype="int16"), "not a quantized type"),
    (lambda g, b, x: b.op("quantize_linear", x, b.const(0.1), b.const(0, "int8")), "not of the output dtype"),
    (lambda g, b, x: b.op("quantize_linear", x, b.const(0.1, shape=(4,)), None), "per-tensor scale is a scalar"),
    (lambda g, b, x: b.op("quantize_linear", x, b.const(0.1, shape=(5,)), None, axis=1), "5 scales for the 4"),
    (lambda g, b, x: b.op("quantize_linear", x, b.const(0.1, shape=(4,)), None, axis=3), "out of range"),
    (lambda g, b, x: b.op("quantize_linear", x, b.const(1, "int32"), None), "scale must be f32"),
    (lambda g, b, x: b.op("dequantize_linear", x, b.const(0.1)), "not a quantized type"),
    (lambda g, b, x: b.op("requant_multiplier", b.const(0.1, shape=(2, 2)), b.const(0.1), b.const(0.1)),
     "scalar or vector"),
])
def test_bad_quantize_operands(make, match):
    g, b = _b()
    x = _in(g, "x", DType.f32, (2, 4, 3))
    with pytest.raises(ShapeError, match=match):
        make(g, b, x)


def _layer(b, g, kind, x_dt=DType.u8, w_dt=DType.i8, vec=(8,), x_shape=(2, 4, 6, 6), w_shape=(8, 2, 3, 3), **attrs):
    x = _in(g, "x", x_dt, x_shape)
    w = _in(g, "w", w_dt, w_shape)
    bias, m, s = (_in(g, n, DType.i32, vec) for n in ("bias", "m", "s"))
    return b.op(kind, x, w, bias, m, s, **attrs)


def test_qconv2d_and_qdense_types():
    g, b = _b()
    y = _layer(b, g, "qconv2d", stride=2, padding=1, groups=2, x_zero_point=3, y_zero_point=-4, out_dtype="int8",
               relu=True)
    assert str(y.type) == "i8[2, 8, 3, 3]"
    g, b = _b()
    y = _layer(b, g, "qdense", x_shape=(2, 5, 16), w_shape=(8, 16))
    assert str(y.type) == "u8[2, 5, 8]"
    assert y.producer.op.macs([v.type for v in y.producer.inputs], [y.type], y.producer.attrs) == 2 * 5 * 8 * 16


@pytest.mark.parametrize("kw, match", [
    (dict(x_dt=DType.f32), "must be uint8 or int8"),
    (dict(w_dt=DType.u8), "weight must be int8"),
    (dict(vec=(4,)), r"bias_q must be i32\[8\]"),
    (dict(groups=1), "expects 2"),
    (dict(groups=2, x_zero_point=300), r"x_zero_point must be an int in \[0, 255\]"),
    (dict(groups=2, out_dtype="int32"), "not a quantized type"),
    (dict(groups=2, relu=1), "relu must be true or false"),
    (dict(groups=2, padding="same"), "non-negative int"),
])
def test_bad_qconv2d(kw, match):
    g, b = _b()
    with pytest.raises(ShapeError, match=match):
        _layer(b, g, "qconv2d", **kw)


def test_bad_qdense():
    g, b = _b()
    with pytest.raises(ShapeError, match="features"):
        _layer(b, g, "qdense", x_shape=(2, 15), w_shape=(8, 16))
