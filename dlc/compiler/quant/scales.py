"""Calibrated ranges to quantization parameters, exactly as pinned.

Activations (uint8, asymmetric, per tensor):
    lo = min(lo, 0), hi = max(hi, 0); scale = float32((hi - lo) / 255) (1 if hi == lo);
    zero_point = clamp(round_half_to_even(-lo / scale), 0, 255)  (with scale the float32 value)
Weights (int8, symmetric, zero point 0): scale = float32(max|w|) / 127 (a float32 division) per
    output channel (axis 0) or per tensor, 1 where the channel is all zero.  The quantize pass
    builds the same computation as IR (`weight_scale_ir`), so it runs when the weights load.
Requantisation: m = s_x * s_w / s_y = f * 2^e (frexp, f in [0.5, 1)); multiplier =
    round_half_to_even(f * 2^31) (2^31 -> 2^30, e + 1); shift = 31 - e, which must lie in [1, 62].
"""
from __future__ import annotations

import numpy as np

from ..builder import Builder
from ..ir import Value

QMAX_W = 127


def activation_qparams(lo: float, hi: float) -> tuple[np.float32, int]:
    """(scale, zero_point) of a uint8 per-tensor activation with calibrated range [lo, hi]."""
    lo, hi = min(float(lo), 0.0), max(float(hi), 0.0)
    scale = np.float32(1.0) if hi == lo else np.float32((hi - lo) / 255.0)
    if scale == 0:                           # a range below float32's resolution
        scale = np.float32(np.finfo(np.float32).tiny)
    zp = int(np.clip(np.rint(-lo / float(scale)), 0, 255))
    return scale, zp


def weight_scales(w: np.ndarray, per_channel: bool) -> np.ndarray:
    """float32 scales of int8 symmetric weights: max|w| / 127 per output channel (axis 0) or one."""
    a = np.abs(np.asarray(w, np.float32))
    m = a.reshape(a.shape[0], -1).max(axis=1) if per_channel else a.max()
    s = np.true_divide(m, np.float32(QMAX_W), dtype=np.float32)
    return np.where(s == 0, np.float32(1.0), s).astype(np.float32)


def weight_scale_ir(b: Builder, w: Value, per_channel: bool) -> Value:
    """`weight_scales` as IR nodes on the weight value `w` (weight-only: computed once per weights)."""
    axes = tuple(range(1 if per_channel else 0, w.type.rank))
    m = b.op("max", b.op("abs", w), axis=axes, keepdims=False)
    s = b.op("div", m, b.const(float(QMAX_W)))
    zero = b.op("eq", s, b.const(0.0))
    return b.op("where", zero, b.const(1.0), s)


def fixed_point_multipliers(m) -> tuple[np.ndarray, np.ndarray]:
    """(multiplier, shift) int32 arrays of real multipliers m >= 0 (float64); m == 0 gives (0, 31).
    Raises ValueError naming the channel when a shift falls outside [1, 62]."""
    m = np.asarray(m, np.float64)
    if not np.all(np.isfinite(m)) or np.any(m < 0):
        raise ValueError(f"the requantisation multiplier s_x * s_w / s_y must be finite and >= 0, got {m}")
    f, e = np.frexp(m)
    mult = np.rint(np.ldexp(f, 31))
    top = mult == float(1 << 31)
    mult = np.where(top, mult / 2, mult)
    shift = 31 - np.where(top, e + 1, e)
    nonzero = m != 0
    bad = ((shift < 1) | (shift > 62)) & nonzero
    if np.any(bad):
        i = int(np.flatnonzero(np.ravel(bad))[0])
        raise ValueError(f"the requantisation multiplier {np.ravel(m)[i]:.6g} (channel {i}) needs a shift of "
                         f"{int(np.ravel(shift)[i])}, outside [1, 62]: a weight channel or a scale is "
                         "too small to requantise in fixed point")
    shift = np.where(nonzero, shift, 31)
    return mult.astype(np.int32), shift.astype(np.int32)


def real_multiplier(s_x, s_w, s_y) -> np.ndarray:
    """m = s_x * s_w / s_y in float64 from float32 scales (the product is exact; the division rounds once)."""
    f64 = lambda v: np.asarray(v, np.float32).astype(np.float64)  # noqa: E731
    return f64(s_x) * f64(s_w) / f64(s_y)
