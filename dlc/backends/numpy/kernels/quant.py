"""The exact integer reference of the quantized ops (`compiler/ops/quant.py`
states the pinned arithmetic; every other backend must equal these bit for bit).

The accumulations sum integer products in float64 BLAS matmuls: each product
|(x - zp) * w| <= 255 * 128 < 2^15 and a sum of K of them stays far below
2^53 for any real K, so every partial sum is an exactly representable
integer and the result is exact whatever order BLAS adds in.  The sum is
then wrapped to int32 (the accumulator's type) before the bias add, which
wraps too, and the requantisation runs in int64 with NumPy's arithmetic
right shift.
"""
from __future__ import annotations

import numpy as np

from ....compiler.ops.conv import ntuple
from ....compiler.quant.scales import fixed_point_multipliers, real_multiplier
from .conv import conv2d as _float_conv2d
from .dtypes import np_dtype

_QRANGE = {"uint8": (0, 255), "int8": (-128, 127), "int32": (-(1 << 31), (1 << 31) - 1)}


def _qrange(dtype) -> tuple[int, int]:
    name = np_dtype(dtype).name
    if name not in _QRANGE:
        raise ValueError(f"{dtype!r} is not a quantized dtype (uint8, int8, int32)")
    return _QRANGE[name]


def _along(v: np.ndarray, ndim: int, axis) -> np.ndarray:
    """A per-channel vector shaped to broadcast along `axis` of an ndim-d array (a scalar as is)."""
    v = np.asarray(v)
    if axis is None or v.ndim == 0:
        return v
    shape = [1] * ndim
    shape[axis % ndim] = v.shape[0]
    return v.reshape(shape)


def quantize_linear(x, scale, zero_point=None, *, axis=None, dtype="uint8"):
    """clamp(round_half_even(x / scale) + zp, qmin, qmax): a float32 true division, np.rint's
    ties-to-even, then the zero point added and the clamp done exactly in float64."""
    qmin, qmax = _qrange(dtype)
    x = np.asarray(x, dtype=np.float32)
    s = _along(np.asarray(scale, dtype=np.float32), x.ndim, axis)
    r = np.rint(np.true_divide(x, s, dtype=np.float32)).astype(np.float64)
    if zero_point is not None:
        r = r + _along(np.asarray(zero_point), x.ndim, axis).astype(np.float64)
    return np.clip(r, qmin, qmax).astype(np_dtype(dtype))


def dequantize_linear(q, scale, zero_point=None, *, axis=None):
    """float32(int32(q) - zp) * scale (a float32 multiply)."""
    q = np.asarray(q)
    d = q.astype(np.int64)
    if zero_point is not None:
        d = d - _along(np.asarray(zero_point), q.ndim, axis).astype(np.int64)
    s = _along(np.asarray(scale, dtype=np.float32), q.ndim, axis)
    return np.multiply(d.astype(np.float32), s, dtype=np.float32)


def requant_multiplier(s_x, s_w, s_y):
    """(multiplier, shift), int32 each, of m = s_x * s_w / s_y = f * 2^e (f in [0.5, 1)):
    multiplier = round_half_even(f * 2^31) (2^31 becomes 2^30 with e + 1), shift = 31 - e.
    m is computed in float64 from the float32 scales (the product is exact, only the division
    rounds); the math is the compiler's (`compiler.quant.scales`), shared with the passes."""
    return fixed_point_multipliers(real_multiplier(s_x, s_w, s_y))


def requantize(acc, multiplier, shift, *, y_zero_point: int, out_dtype, relu: bool, axis: int):
    """y = clamp(y_zp + ((int64(acc) * M + (1 << (shift - 1))) >> shift), lo, qmax) with
    M and shift per channel along `axis` of acc (int32)."""
    if np_dtype(out_dtype).name not in ("uint8", "int8"):
        raise ValueError(f"out_dtype must be uint8 or int8, got {out_dtype!r}")
    qmin, qmax = _qrange(out_dtype)
    acc = np.asarray(acc)
    m = _along(np.asarray(multiplier, np.int64), acc.ndim, axis)
    sh = _along(np.asarray(shift, np.int64), acc.ndim, axis)
    if np.any((sh < 1) | (sh > 62)):
        raise ValueError(f"shift must lie in [1, 62], got {np.asarray(shift)}")
    y = (acc.astype(np.int64) * m + (np.int64(1) << (sh - 1))) >> sh
    lo = max(qmin, y_zero_point) if relu else qmin
    return np.clip(y + y_zero_point, lo, qmax).astype(np_dtype(out_dtype))


def _exact_int32(total: np.ndarray, bias_q) -> np.ndarray:
    """An exact float64 integer sum as the int32 accumulator (wrapping), plus bias_q (wrapping)."""
    acc = np.rint(total).astype(np.int64).astype(np.int32)
    with np.errstate(over="ignore"):
        return acc + np.asarray(bias_q, np.int32)


def _centered(x_q, x_zero_point: int) -> np.ndarray:
    return np.asarray(x_q).astype(np.float64) - float(x_zero_point)


def qconv2d(x_q, w_q, bias_q, multiplier, shift, *, stride=1, padding=0, dilation=1, groups=1,
            x_zero_point=0, y_zero_point=0, out_dtype="uint8", relu=False):
    """int8 conv2d: the zero-padded (x_q - x_zp) correlated with w_q, exactly, then requantised."""
    xs = _centered(x_q, x_zero_point)              # padding then adds real zeros, as pinned
    w = np.asarray(w_q).astype(np.float64)
    total = _float_conv2d(xs, w, None, stride=ntuple(stride, 2, "stride"), padding=ntuple(padding, 2, "padding"),
                          dilation=ntuple(dilation, 2, "dilation"), groups=groups)
    acc = _exact_int32(total, np.asarray(bias_q).reshape(1, -1, 1, 1))
    return requantize(acc, multiplier, shift, y_zero_point=y_zero_point, out_dtype=out_dtype, relu=relu, axis=1)


def qdense(x_q, w_q, bias_q, multiplier, shift, *, x_zero_point=0, y_zero_point=0, out_dtype="uint8",
           relu=False):
    """int8 x @ w.T over the last axis, exactly, then requantised per output feature."""
    xs = _centered(x_q, x_zero_point)
    total = xs @ np.asarray(w_q).astype(np.float64).T
    acc = _exact_int32(total, bias_q)
    return requantize(acc, multiplier, shift, y_zero_point=y_zero_point, out_dtype=out_dtype, relu=relu, axis=-1)


KERNELS = {
    "quantize_linear": quantize_linear,
    "dequantize_linear": dequantize_linear,
    "requant_multiplier": requant_multiplier,
    "qconv2d": qconv2d,
    "qdense": qdense,
}
