"""The torch lowering of the quantized ops equals the NumPy integer reference bit
for bit, and runs the products as real int8 matrix products (torch._int_mm)."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from dlc.backends.numpy.interpreter import Interpreter  # noqa: E402
from dlc.backends.torch.funcgen import compile_function  # noqa: E402
from dlc.compiler.builder import Builder  # noqa: E402
from dlc.compiler.ir import Graph  # noqa: E402
from dlc.compiler.types import DType, TensorType  # noqa: E402

pytestmark = pytest.mark.torch


def _layer_graph(kind: str, x_shape, w_shape, attrs, x_zp=37, y_zp=90, relu=False, out_dtype="uint8"):
    """float x, w, bias -> quantize, int8 weights, bias_q, multiplier/shift (IR ops) -> the int8 layer."""
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
    zp_dt = "uint8" if out_dtype == "uint8" else "int8"
    yd = b.op("dequantize_linear", y, sy, b.const(y_zp, zp_dt))
    g.outputs, g.output_names = [y, yd, wq, bq, m, s], ["y", "yd", "wq", "bq", "m", "s"]
    return g


def _check(g, seed=0):
    rng = np.random.default_rng(seed)
    feed = {v.name: (rng.standard_normal(tuple(v.type.shape)) * 2).astype(np.float32) for v in g.inputs}
    want, _ = Interpreter(g).run(feed, {})
    fn = compile_function(g)
    got, _ = fn(*[torch.tensor(feed[v.name]) for v in g.inputs], {})
    for name, t in zip(g.output_names, got):
        assert t.numpy().dtype == want[name].dtype, name
        assert np.array_equal(t.numpy(), want[name]), name
    assert len(np.unique(want["y"])) > 8
    return fn


@pytest.mark.parametrize("attrs, x_shape, w_shape, relu", [
    ({"padding": 1}, (2, 3, 8, 8), (8, 3, 3, 3), True),
    ({"stride": 2, "padding": 1, "groups": 2}, (1, 4, 9, 7), (6, 2, 3, 3), False),
    ({"padding": (0, 2), "dilation": (2, 1), "groups": 4}, (3, 4, 7, 7), (4, 1, 3, 3), True),
    ({}, (4, 16, 5, 5), (32, 16, 1, 1), False),
])
def test_qconv2d_torch_equals_numpy(attrs, x_shape, w_shape, relu):
    fn = _check(_layer_graph("qconv2d", x_shape, w_shape, attrs, relu=relu))
    assert "torch._int_mm" in fn.source


@pytest.mark.parametrize("x_shape, out_dtype, relu", [((5, 24), "uint8", False), ((2, 7, 40), "int8", True),
                                                       ((33, 64), "uint8", True)])
def test_qdense_torch_equals_numpy(x_shape, out_dtype, relu):
    g = _layer_graph("qdense", x_shape, (10, x_shape[-1]), {}, y_zp=(90 if out_dtype == "uint8" else -3),
                     relu=relu, out_dtype=out_dtype)
    fn = _check(g, seed=len(x_shape))
    assert "torch._int_mm" in fn.source


def test_torch_rejects_a_shift_outside_1_62():
    g = Graph("q")
    b = Builder(g)
    m, s = b.op("requant_multiplier", b.const(1e-10), b.const(1e-10, shape=(2,)), b.const(10.0))
    g.outputs, g.output_names = [m, s], ["m", "s"]
    with pytest.raises(ValueError, match=r"outside \[1, 62\]"):
        compile_function(g)({})
