"""The NumPy integer reference of the quantized ops against independent references:
onnxruntime's QuantizeLinear/DequantizeLinear (same semantics), Python's
math.frexp for the fixed-point multiplier, and naive per-element loops of the
pinned qconv2d/qdense formulas written with Python ints."""
from __future__ import annotations

import math

import numpy as np
import pytest

from dlc.backends.numpy.kernels.quant import (dequantize_linear, qconv2d, qdense, quantize_linear,
                                              requant_multiplier)


def _ort(node_op: str, inputs: dict, attrs: dict, out_type):
    ort = pytest.importorskip("onnxruntime")
    from onnx import TensorProto, helper
    from onnx.helper import np_dtype_to_tensor_dtype as t
    ins = [helper.make_tensor_value_info(k, t(v.dtype), list(v.shape)) for k, v in inputs.items()]
    node = helper.make_node(node_op, list(inputs), ["y"], **attrs)
    out = helper.make_tensor_value_info("y", out_type, None)
    model = helper.make_model(helper.make_graph([node], "g", ins, [out]),
                              opset_imports=[helper.make_opsetid("", 19)])
    model.ir_version = 9
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    del TensorProto
    return sess.run(None, inputs)[0]


@pytest.mark.parametrize("dtype", [np.uint8, np.int8])
def test_quantize_linear_matches_onnxruntime(dtype):
    from onnx import TensorProto
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((3, 4, 5)) * 4).astype(np.float32)
    # exact ties (x / s = k + 0.5) and saturation on both sides
    x[0, 0, :5] = np.array([0.25, 0.75, -0.25, -0.75, 1000.0], np.float32)
    scale = np.float32(0.5)
    zp = np.array(3 if dtype == np.uint8 else -2, dtype=dtype)
    want = _ort("QuantizeLinear", {"x": x, "s": np.array(scale), "zp": zp}, {},
                TensorProto.UINT8 if dtype == np.uint8 else TensorProto.INT8)
    got = quantize_linear(x, scale, zp, dtype=np.dtype(dtype).name)
    assert got.dtype == dtype and np.array_equal(got, want)


def test_quantize_linear_per_channel_matches_onnxruntime():
    from onnx import TensorProto
    rng = np.random.default_rng(1)
    w = rng.standard_normal((6, 3, 2, 2)).astype(np.float32)
    s = (np.abs(w).max(axis=(1, 2, 3)) / np.float32(127)).astype(np.float32)
    zp = np.zeros(6, np.int8)
    want = _ort("QuantizeLinear", {"x": w, "s": s, "zp": zp}, {"axis": 0}, TensorProto.INT8)
    got = quantize_linear(w, s, zp, axis=0, dtype="int8")
    assert np.array_equal(got, want)
    assert got.max() == 127 or got.min() == -127       # the largest |w| of each channel maps to +-127
    deq_want = _ort("DequantizeLinear", {"x": got, "s": s, "zp": zp}, {"axis": 0}, TensorProto.FLOAT)
    assert np.array_equal(dequantize_linear(got, s, zp, axis=0), deq_want)


def test_quantize_is_a_true_division_and_rounds_half_to_even():
    # 0.3 / 0.1 in float32 is 3.0000002 (rounds to 3) while 0.3 * (1 / 0.1) may differ: the pinned
    # semantics is the division.  Ties go to even.
    x = np.array([0.5, 1.5, 2.5, -0.5, -1.5, -2.5], np.float32)
    assert quantize_linear(x, np.float32(1.0), np.int8(0), dtype="int8").tolist() == [0, 2, 2, 0, -2, -2]
    rng = np.random.default_rng(2)
    x = rng.uniform(-3, 3, 10000).astype(np.float32)
    s = np.float32(0.0137)
    want = np.clip(np.rint(x / s) + 128, 0, 255)          # float32 / float32 in NumPy: a true division
    assert np.array_equal(quantize_linear(x, s, np.uint8(128)), want.astype(np.uint8))


def test_int32_quantize_clamps_to_the_int32_range():
    got = quantize_linear(np.array([1e12, -1e12, 7.5], np.float32), np.float32(1.0), None, dtype="int32")
    assert got.dtype == np.int32 and got.tolist() == [2**31 - 1, -2**31, 8]


def _frexp_reference(m: float) -> tuple[int, int]:
    f, e = math.frexp(m)
    mult = round(f * 2**31)                  # Python's round: half to even
    if mult == 2**31:
        mult, e = mult // 2, e + 1
    return mult, 31 - e


def test_requant_multiplier_matches_frexp():
    rng = np.random.default_rng(3)
    s_x = np.float32(0.0213)
    s_w = rng.uniform(1e-4, 1e-1, 50).astype(np.float32)
    s_y = np.float32(0.117)
    mult, shift = requant_multiplier(s_x, s_w, s_y)
    for i in range(50):
        m = float(s_x) * float(s_w[i]) / float(s_y)
        assert (int(mult[i]), int(shift[i])) == _frexp_reference(m)
        # the fixed-point value is m to 31 bits
        assert abs(int(mult[i]) / 2 ** int(shift[i]) - m) <= m * 2.0 ** -30


def test_requant_multiplier_rounding_up_to_two_to_the_31_renormalises():
    m = 1.0 - 2.0 ** -40                     # f * 2^31 rounds to 2^31
    mult, shift = requant_multiplier(np.float32(1.0), np.array([m], np.float64).astype(np.float32), np.float32(1.0))
    want = _frexp_reference(float(np.float32(m)))
    assert (int(mult[0]), int(shift[0])) == want


def test_requant_multiplier_rejects_a_shift_outside_1_62():
    with pytest.raises(ValueError, match=r"outside \[1, 62\]"):
        requant_multiplier(np.float32(1e-10), np.array([1e-10], np.float32), np.float32(10.0))


def _requant(acc: int, mult: int, shift: int, y_zp: int, lo: int, hi: int) -> int:
    return min(max(y_zp + ((acc * mult + (1 << (shift - 1))) >> shift), lo), hi)


def _naive_qconv2d(x, w, bias, mult, shift, stride, pad, dil, groups, x_zp, y_zp, relu, qmin, qmax):
    n, c, h, wd = x.shape
    co, cg, kh, kw = w.shape
    oh = (h + 2 * pad[0] - dil[0] * (kh - 1) - 1) // stride[0] + 1
    ow = (wd + 2 * pad[1] - dil[1] * (kw - 1) - 1) // stride[1] + 1
    out = np.zeros((n, co, oh, ow), np.int64)
    per = co // groups
    lo = max(qmin, y_zp) if relu else qmin
    for b in range(n):
        for o in range(co):
            g = o // per
            for i in range(oh):
                for j in range(ow):
                    acc = int(bias[o])
                    for ci in range(cg):
                        for p in range(kh):
                            for q in range(kw):
                                y = i * stride[0] - pad[0] + p * dil[0]
                                z = j * stride[1] - pad[1] + q * dil[1]
                                if 0 <= y < h and 0 <= z < wd:
                                    acc += (int(x[b, g * cg + ci, y, z]) - x_zp) * int(w[o, ci, p, q])
                    out[b, o, i, j] = _requant(acc, int(mult[o]), int(shift[o]), y_zp, lo, qmax)
    return out


CONV_CASES = [
    # (n, c, h, w, co, k, stride, pad, dil, groups, relu, out_dtype)
    (2, 3, 6, 5, 4, 3, (1, 1), (1, 1), (1, 1), 1, False, "uint8"),
    (1, 4, 7, 7, 6, 3, (2, 2), (1, 1), (1, 1), 2, True, "uint8"),
    (1, 4, 6, 6, 4, 3, (1, 2), (2, 0), (2, 1), 4, True, "int8"),       # depthwise, dilated, asymmetric
    (2, 2, 5, 5, 3, 1, (1, 1), (0, 0), (1, 1), 1, False, "int8"),
]


def _rand_q(rng, shape, cout, k: int):
    """Random uint8 input and per-channel bias/multiplier/shift for a K-term accumulation, the
    shifts chosen so that outputs spread over ~100 levels (not all saturated)."""
    x = rng.integers(0, 256, shape).astype(np.uint8)
    spread = math.sqrt(k) * 74 * 74                  # std of a sum of k products (x - zp) * w
    s0 = 31 + round(math.log2(spread / 40))
    mult = rng.integers(1 << 30, (1 << 31) - 1, cout).astype(np.int32)
    shift = rng.integers(s0, s0 + 2, cout).astype(np.int32)
    bias = rng.integers(-int(spread), int(spread), cout).astype(np.int32)
    return x, mult, shift, bias


@pytest.mark.parametrize("case", CONV_CASES)
def test_qconv2d_matches_a_naive_loop(case):
    n, c, h, w_, co, k, stride, pad, dil, groups, relu, out_dtype = case
    rng = np.random.default_rng(sum(case[:6]))
    x, mult, shift, bias = _rand_q(rng, (n, c, h, w_), co, c // groups * k * k)
    w = rng.integers(-128, 128, (co, c // groups, k, k)).astype(np.int8)
    x_zp, y_zp = 37, (90 if out_dtype == "uint8" else -5)
    qmin, qmax = (0, 255) if out_dtype == "uint8" else (-128, 127)
    got = qconv2d(x, w, bias, mult, shift, stride=stride, padding=pad, dilation=dil, groups=groups,
                  x_zero_point=x_zp, y_zero_point=y_zp, out_dtype=out_dtype, relu=relu)
    want = _naive_qconv2d(x, w, bias, mult, shift, stride, pad, dil, groups, x_zp, y_zp, relu, qmin, qmax)
    assert got.dtype == np.dtype(out_dtype) and np.array_equal(got.astype(np.int64), want)
    assert len(np.unique(got)) > 10                        # not saturated into a trivial answer
    if relu:
        assert got.min() >= y_zp


@pytest.mark.parametrize("relu", [False, True])
def test_qdense_matches_a_naive_loop(relu):
    rng = np.random.default_rng(5)
    x, mult, shift, bias = _rand_q(rng, (2, 3, 17), 5, 17)
    w = rng.integers(-128, 128, (5, 17)).astype(np.int8)
    got = qdense(x, w, bias, mult, shift, x_zero_point=128, y_zero_point=60, relu=relu)
    lo = 60 if relu else 0
    want = np.zeros((2, 3, 5), np.int64)
    for idx in np.ndindex(2, 3):
        for o in range(5):
            acc = int(bias[o]) + sum((int(x[idx][kk]) - 128) * int(w[o, kk]) for kk in range(17))
            want[idx + (o,)] = _requant(acc, int(mult[o]), int(shift[o]), 60, lo, 255)
    assert np.array_equal(got.astype(np.int64), want)
    assert len(np.unique(got)) > 5


def test_requantisation_rounds_half_up_with_an_arithmetic_shift():
    # acc * M / 2^shift exactly at +-k.5: (x + 2^(s-1)) >> s rounds half up (towards +inf), also for negatives
    x = np.array([[0, 1, 2, 3]], np.uint8)
    w = np.array([[1, 0, 0, 0]], np.int8)
    one = np.array([1 << 30], np.int32)        # M / 2^shift = 2^30 / 2^31 = 0.5
    for bias, want in ((3, 2), (-3, -1), (-1, 0), (1, 1)):   # acc * 0.5 = 1.5 -> 2, -1.5 -> -1, -0.5 -> 0
        y = qdense(x, w, np.array([bias], np.int32), one, np.array([31], np.int32), out_dtype="int8")
        assert int(y[0, 0]) == want
