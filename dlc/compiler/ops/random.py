"""Sampling ops with no operands: randn and uniform, seeded explicitly."""
from __future__ import annotations

from ...errors import ShapeError
from ..types import TensorType
from .registry import RANDOM, defop, required
from .shape import dtype_attr, shape_attr


def _sampler(name: str):
    def infer(ts, attrs):
        shape = shape_attr(attrs["shape"], name)
        dt = dtype_attr(attrs["dtype"], name)
        if not dt.is_float:
            raise ShapeError(f"{name}: dtype must be a float type, got {dt}", "sample in f32 and cast afterwards")
        seed = attrs["seed"]
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ShapeError(f"{name}: seed must be a non-negative int, got {seed!r}")
        if name == "uniform":
            lo, hi = attrs["low"], attrs["high"]
            if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (lo, hi)) or lo > hi:
                raise ShapeError(f"uniform: need numbers low <= high, got low={lo!r}, high={hi!r}", "swap low and high")
        return TensorType(dt, shape)
    return infer


defop("randn", "", _sampler("randn"), attrs={"shape": required(), "seed": required(), "dtype": "float32"},
      groups={RANDOM}, nondiff=True, doc="Standard normal samples of the given shape.")
defop("uniform", "", _sampler("uniform"),
      attrs={"shape": required(), "low": 0.0, "high": 1.0, "seed": required(), "dtype": "float32"},
      groups={RANDOM}, nondiff=True, doc="Uniform samples in [low, high) of the given shape.")
