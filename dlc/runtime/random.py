"""Seeded random tensors: the one definition of dlc's random streams.

The NumPy reference kernels (randn, uniform, dropout), the TVM backend's
host-drawn random inputs and the deploy runtime all draw here, so a model
gives the same numbers wherever it runs.  Samples come from
``np.random.default_rng(seed)`` (PCG64; `seed` an int or a tuple of ints, in
compiled models the pair (run seed, the op's stream)), are drawn in float64
and then rounded to the requested float dtype, so one seed gives the same
values in every float dtype up to rounding.  Torch's generator is not
reproduced: only the distributions match.

Pure NumPy: importing this module imports nothing else of dlc but
`runtime.floats`.
"""
from __future__ import annotations

import numpy as np

from .floats import BF16_NAMES, round_to_bf16, to_float


def generator(seed) -> np.random.Generator:
    """The generator of stream `seed` (an int or a tuple of ints)."""
    if seed is None:
        raise ValueError("a seed is required: random kernels are deterministic")
    if isinstance(seed, (list, tuple)):
        seed = [int(s) for s in seed]
    else:
        seed = int(seed)
    return np.random.default_rng(seed)


def _shape(shape) -> tuple[int, ...]:
    if isinstance(shape, (int, np.integer)):
        return (int(shape),)
    return tuple(int(s) for s in shape)


def normal(shape, seed, dtype: str = "float32") -> np.ndarray:
    """Standard normal samples of `shape` (the `randn` op)."""
    vals = generator(seed).standard_normal(_shape(shape), dtype=np.float64)
    return to_float(vals, dtype)


def _largest_below(v: float, dtype: str):
    """The largest value of float dtype `dtype` strictly below v."""
    t = to_float(np.asarray(v, dtype=np.float64), dtype)
    if float(t) < v:
        return t
    if dtype not in BF16_NAMES:
        return np.nextafter(t, t.dtype.type(-np.inf))
    bits = np.asarray(t, dtype=np.float32).view(np.uint32)
    if float(t) > 0:
        bits = bits - np.uint32(0x10000)
    elif float(t) < 0:
        bits = bits + np.uint32(0x10000)
    else:
        bits = np.uint32(0x80010000)
    return np.asarray(bits, dtype=np.uint32).view(np.float32)


def uniform(shape, seed, low: float = 0.0, high: float = 1.0, dtype: str = "float32") -> np.ndarray:
    """Uniform samples in [low, high) (the `uniform` op).  A value that rounds
    up to `high` in a narrow dtype is moved to the largest representable value
    below it, so the interval stays half-open in every dtype."""
    if not high >= low:
        raise ValueError(f"uniform: high ({high}) must be >= low ({low})")
    u = generator(seed).random(_shape(shape), dtype=np.float64)
    vals = float(low) + (float(high) - float(low)) * u
    out = to_float(vals, dtype)
    if high > low:
        too_big = out.astype(np.float64) >= float(high)
        if too_big.any():
            out = np.where(too_big, _largest_below(float(high), dtype), out).astype(out.dtype)
    return out


def dropout_mask(shape, p: float, seed) -> np.ndarray:
    """Boolean keep-mask of ``dropout``: default_rng(seed).random(shape) >= p.

    ``seed`` is an int or a tuple of ints, passed straight to default_rng, so
    any caller can regenerate exactly the mask a dropout call used.
    """
    return np.random.default_rng(seed).random(tuple(shape)) >= p


def draw_random(kind: str, shape, dtype: str, attrs: dict, run_seed: int) -> np.ndarray:
    """The host-drawn tensor of one random op of a compiled model (dropout
    noise, randn, uniform), drawn exactly as the NumPy reference draws it:
    stream (run_seed, the op's seed attribute)."""
    seed = (run_seed, attrs["seed"])
    if kind == "dropout":
        p = attrs["p"]
        return (dropout_mask(shape, p, seed).astype(dtype) * np.asarray(1.0 / (1.0 - p), dtype))
    if kind == "randn":
        return np.asarray(normal(shape, seed, dtype))
    if kind == "uniform":
        return np.asarray(uniform(shape, seed, attrs["low"], attrs["high"], dtype))
    raise ValueError(f"unknown random input kind {kind!r}")


__all__ = ["generator", "normal", "uniform", "dropout_mask", "draw_random", "round_to_bf16"]
