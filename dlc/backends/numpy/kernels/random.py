"""NumPy reference kernels: seeded random sampling.

Samples come from ``np.random.default_rng(seed)`` (PCG64; `seed` an int or a
tuple of ints) and are always drawn in float64, then rounded to `dtype`, so
one seed gives the same values in every float dtype up to rounding.  They
cannot reproduce torch's generator: only the distribution matches.
"""
from __future__ import annotations

import numpy as np

from .elementwise import cast, dtype_name, np_dtype


def _rng(seed) -> np.random.Generator:
    if seed is None:
        raise ValueError("a seed is required: random kernels are deterministic")
    if isinstance(seed, (list, tuple)):
        seed = [int(s) for s in seed]
    else:
        seed = int(seed)
    return np.random.default_rng(seed)


def _shape(shape):
    if isinstance(shape, (int, np.integer)):
        return (int(shape),)
    return tuple(int(s) for s in shape)


def _float_dtype(dtype) -> str:
    name = dtype_name(dtype)
    if np_dtype(name).kind != "f":
        raise ValueError(f"random sampling needs a floating dtype, got {name!r}")
    return name


def randn(*, shape, seed, dtype="float32"):
    """Standard normal samples of `shape`."""
    name = _float_dtype(dtype)
    vals = _rng(seed).standard_normal(_shape(shape), dtype=np.float64)
    return cast(vals, dtype=name)


def _largest_below(v: float, name: str):
    """The largest value of dtype `name` strictly below v."""
    dt = np_dtype(name)
    t = cast(np.asarray(v, dtype=np.float64), dtype=name)
    if float(t) < v:
        return t
    if name != "bfloat16":
        return np.nextafter(t, dt.type(-np.inf))
    bits = np.asarray(t, dtype=np.float32).view(np.uint32)
    if float(t) > 0:
        bits = bits - np.uint32(0x10000)
    elif float(t) < 0:
        bits = bits + np.uint32(0x10000)
    else:
        bits = np.uint32(0x80010000)
    return np.asarray(bits, dtype=np.uint32).view(np.float32)


def uniform(*, shape, low=0.0, high=1.0, seed, dtype="float32"):
    """Uniform samples in [low, high).  A value that rounds up to `high` in a
    narrow dtype is moved to the largest representable value below it, so the
    interval stays half-open in every dtype."""
    name = _float_dtype(dtype)
    if not high >= low:
        raise ValueError(f"uniform: high ({high}) must be >= low ({low})")
    u = _rng(seed).random(_shape(shape), dtype=np.float64)
    vals = float(low) + (float(high) - float(low)) * u
    out = cast(vals, dtype=name)
    if high > low:
        too_big = out.astype(np.float64) >= float(high)
        if too_big.any():
            out = np.where(too_big, _largest_below(float(high), name), out).astype(out.dtype)
    return out


KERNELS = {"randn": randn, "uniform": uniform}
