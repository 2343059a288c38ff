"""Resampling kernels: interpolate (separable, one axis at a time, with the
taps and weights of `compiler.ops.resample.axis_taps`, torch's arithmetic)
and pixel_shuffle/pixel_unshuffle (a reshape and a transpose)."""
from __future__ import annotations

import numpy as np

from ....compiler.ops.resample import axis_taps, output_sizes
from ....compiler.types import DType, TensorType
from .pooling import adaptive_avg_pool1d, adaptive_avg_pool2d


def _type_of(x) -> TensorType:
    return TensorType(DType.from_numpy(x.dtype), tuple(int(d) for d in x.shape))


def interpolate(x, *, size=None, scale_factor=None, mode="nearest", align_corners=None,
                recompute_scale_factor=None):
    attrs = {"size": size, "scale_factor": scale_factor, "mode": mode, "align_corners": align_corners,
             "recompute_scale_factor": recompute_scale_factor}
    outs, scales = output_sizes(_type_of(x), attrs)
    if mode == "area":
        pool = adaptive_avg_pool2d if len(outs) == 2 else adaptive_avg_pool1d
        return pool(x, output_size=tuple(outs) if len(outs) == 2 else outs[0])
    y = x
    for i, (m, scale) in enumerate(zip(outs, scales)):
        axis = 2 + i
        idx, weights = axis_taps(y.shape[axis], m, mode, align_corners, scale,
                                 x.dtype if x.dtype.kind == "f" else np.float32, len(outs))
        view = (m,) + (1,) * (y.ndim - 1 - axis)
        acc = None
        for ix, w in zip(idx, weights):
            t = np.take(y, ix, axis=axis)
            if w is not None:
                t = t * w.reshape(view)
            acc = t if acc is None else acc + t
        y = acc
    return np.ascontiguousarray(y, dtype=x.dtype)


def pixel_shuffle(x, *, upscale_factor=1):
    r = upscale_factor
    *lead, c, h, w = x.shape
    k = len(lead)
    t = x.reshape(*lead, c // (r * r), r, r, h, w)
    t = t.transpose(*range(k), *(k + i for i in (0, 3, 1, 4, 2)))
    return np.ascontiguousarray(t.reshape(*lead, c // (r * r), h * r, w * r))


def pixel_unshuffle(x, *, downscale_factor=1):
    r = downscale_factor
    *lead, c, h, w = x.shape
    k = len(lead)
    t = x.reshape(*lead, c, h // r, r, w // r, r)
    t = t.transpose(*range(k), *(k + i for i in (0, 2, 4, 1, 3)))
    return np.ascontiguousarray(t.reshape(*lead, c * r * r, h // r, w // r))


KERNELS = {"interpolate": interpolate, "pixel_shuffle": pixel_shuffle, "pixel_unshuffle": pixel_unshuffle}
