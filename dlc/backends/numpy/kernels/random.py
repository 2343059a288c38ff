"""NumPy reference kernels: seeded random sampling.

The streams themselves are defined once, in `dlc.runtime.random` (the TVM
backend and the deploy runtime draw there too).  Samples come from
``np.random.default_rng(seed)`` (PCG64; `seed` an int or a
tuple of ints) and are always drawn in float64, then rounded to `dtype`, so
one seed gives the same values in every float dtype up to rounding.  They
cannot reproduce torch's generator: only the distribution matches.
"""
from __future__ import annotations

import numpy as np

from ....runtime import random as _streams
from .dtypes import dtype_name, np_dtype


def _float_dtype(dtype) -> str:
    name = dtype_name(dtype)
    if np_dtype(name).kind != "f":
        raise ValueError(f"random sampling needs a floating dtype, got {name!r}")
    return name


def randn(*, shape, seed, dtype="float32"):
    """Standard normal samples of `shape`."""
    return _streams.normal(shape, seed, _float_dtype(dtype))


def uniform(*, shape, low=0.0, high=1.0, seed, dtype="float32"):
    """Uniform samples in [low, high).  A value that rounds up to `high` in a
    narrow dtype is moved to the largest representable value below it, so the
    interval stays half-open in every dtype."""
    return _streams.uniform(shape, seed, low, high, _float_dtype(dtype))


KERNELS = {"randn": randn, "uniform": uniform}
