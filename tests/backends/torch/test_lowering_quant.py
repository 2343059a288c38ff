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
from quant_graphs import int8_layer_graph as _layer_graph  # noqa: E402

pytestmark = pytest.mark.torch




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


@pytest.mark.parametrize("kind", ["qdense", "qconv2d"])
def test_the_int32_accumulator_wraps_as_in_numpy(kind):
    # a saturated bias_q (tiny scales) plus a positive sum overflows int32: both wrap the same way
    g = Graph("q")
    b = Builder(g)
    xs, ws = ((3, 40), (5, 40)) if kind == "qdense" else ((1, 3, 4, 4), (5, 3, 3, 3))
    x = g.add_input("x", TensorType(DType.u8, xs))
    w = g.add_input("w", TensorType(DType.i8, ws))
    vec = [g.add_input(n, TensorType(DType.i32, (5,))) for n in ("bias", "m", "s")]
    attrs = {"padding": 1} if kind == "qconv2d" else {}
    y = b.op(kind, x, w, *vec, x_zero_point=0, y_zero_point=128, **attrs)
    g.outputs, g.output_names = [y], ["y"]
    feed = {"x": np.full(xs, 255, np.uint8), "w": np.full(ws, 127, np.int8),
            "bias": np.array([2**31 - 1, -2**31, 2**31 - 1000, 0, 5], np.int32),
            "m": np.full(5, 1 << 30, np.int32), "s": np.full(5, 50, np.int32)}
    want, _ = Interpreter(g).run(feed, {})
    got, _ = compile_function(g)(*[torch.tensor(feed[v.name]) for v in g.inputs], {})
    assert np.array_equal(got[0].numpy(), want["y"])
    # channel 0 wrapped to a large negative accumulator: the output saturates low, channel 3 does not
    first = want["y"].reshape(want["y"].shape[0], 5, -1)[0]
    assert first[0].max() == 0 and first[3].min() >= 128
