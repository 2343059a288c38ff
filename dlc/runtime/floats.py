"""Float storage shared by the NumPy reference kernels, the host-drawn random
tensors of compiled models and the deploy runtime.

NumPy has no bfloat16: a "bfloat16" tensor is float32 storage holding values
rounded to bfloat16 precision, the values a bf16 tensor would hold.  One
definition here keeps the reference and the deploy runtime bit-identical.
"""
from __future__ import annotations

import numpy as np

BF16_NAMES = ("bfloat16", "bf16")


def round_to_bf16(x) -> np.ndarray:
    """float32 values rounded to bfloat16 precision (round-to-nearest-even on
    the top 16 bits), kept in float32 storage.  Overflow goes to +-inf and nan
    stays nan, as torch's float32 -> bfloat16 conversion."""
    x = np.array(x, dtype=np.float32, order="C")   # a C-contiguous copy, 0-d kept
    bits = x.view(np.uint32).astype(np.uint64)
    lsb = (bits >> np.uint64(16)) & np.uint64(1)
    rounded = ((bits + np.uint64(0x7FFF) + lsb) & np.uint64(0xFFFF0000)).astype(np.uint32)
    out = rounded.view(np.float32)
    return np.where(np.isnan(x), np.float32(np.nan), out)


def to_float(values, dtype: str) -> np.ndarray:
    """`values` (float64, say) converted to the float dtype named `dtype`
    ("float16", "float32", "float64" or "bfloat16")."""
    with np.errstate(all="ignore"):   # overflow to inf is the conversion's result, as in torch
        if dtype in BF16_NAMES:
            return round_to_bf16(np.asarray(values).astype(np.float32))
        return np.asarray(values).astype(np.dtype(dtype))


__all__ = ["round_to_bf16", "to_float", "BF16_NAMES"]
