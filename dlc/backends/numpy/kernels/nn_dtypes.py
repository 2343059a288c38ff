"""dtype helpers shared by the neural-network kernels (convolution, pooling,
normalisation, attention): which float type a kernel computes in, and how a
per-channel vector broadcasts."""
from __future__ import annotations

import numpy as np


def float_dtype(x: np.ndarray) -> np.dtype:
    """The dtype a kernel computes in: the input's own if floating, else float64."""
    return x.dtype if np.issubdtype(x.dtype, np.floating) else np.dtype(np.float64)


def cast_operand(a: np.ndarray | None, dtype: np.dtype) -> np.ndarray | None:
    """Cast an optional operand to the compute dtype (no copy when it already matches)."""
    return None if a is None else np.asarray(a).astype(dtype, copy=False)


def channel_shape(ndim: int, channels: int) -> tuple[int, ...]:
    """Shape that broadcasts a per-channel vector over an (N, C, *spatial) tensor."""
    return (1, channels) + (1,) * (ndim - 2)

