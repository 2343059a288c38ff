"""Input constructors shared by the per-op backend tests (torch, TVM).

Each returns ``make(rng, dt) -> array`` (or a list of arrays, spliced into
the operands); `dt` is the float dtype under test.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from operator import attrgetter

import numpy as np

def R(*shp, lo=-3.0, hi=3.0):
    return lambda rng, dt: rng.uniform(lo, hi, size=shp).astype(dt)


def N(*shp):
    return lambda rng, dt: rng.standard_normal(shp).astype(dt)


def POS(*shp, lo=0.1, hi=5.0):
    return R(*shp, lo=lo, hi=hi)


def PROB(*shp):
    return R(*shp, lo=0.02, hi=0.98)


def RI(*shp, lo=-2, hi=3):
    """integer-valued floats: ties for comparisons, argmax, max pooling"""
    return lambda rng, dt: rng.integers(lo, hi, size=shp).astype(dt)


def I(*shp, lo=0, hi=5, dtype=np.int64):
    return lambda rng, dt: rng.integers(lo, hi, size=shp).astype(dtype)


def B(*shp):
    return lambda rng, dt: rng.random(size=shp) < 0.5


def V(values, dtype=None):
    return lambda rng, dt: np.array(values, dtype=dtype or dt)


def DIST(*shp, axis=-1):
    def make(rng, dt):
        z = rng.standard_normal(shp)
        e = np.exp(z - z.max(axis=axis, keepdims=True))
        return (e / e.sum(axis=axis, keepdims=True)).astype(dt)
    return make


def T(*shp, C, ignore=None, every=3, dtype=np.int64):
    """class-index targets in [0, C), every `every`-th set to `ignore`"""
    def make(rng, dt):
        t = rng.integers(0, C, size=shp).astype(dtype)
        if ignore is not None:
            t.reshape(-1)[::every] = ignore
        return t
    return make


def MASK(*shp, p=0.3):
    def make(rng, dt):
        m = rng.random(shp) >= p
        m[..., 0] = True
        return m
    return make


def FMASK(*shp):
    def make(rng, dt):
        m = rng.standard_normal(shp)
        m[rng.random(shp) < 0.25] = -np.inf
        m[..., 0] = 0.0
        return m.astype(dt)
    return make


# ---------------------------------------------------------------------------
# The per-op table shared by every backend test and the gradient tests: one
# row per op (or attribute variant).  The NumPy test compares the op with
# `torch` (a path under the torch module, called with the row's attributes as
# keywords), the torch and TVM lowering tests compare with the NumPy
# interpreter, and the VJP tests compare the gradient with torch.autograd and
# finite differences.  An op added as a decomposition needs only its row here.
# ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Row:
    op: str
    inputs: list
    attrs: dict = field(default_factory=dict)
    torch: str = ""          # e.g. "nn.functional.silu"; default: nn.functional.<op>

    @property
    def id(self) -> str:
        return self.op + "".join(f"-{k}={v}" for k, v in self.attrs.items())

    def ref(self, *tensors):
        import torch
        fn = attrgetter(self.torch or f"nn.functional.{self.op}")(torch)
        return fn(*tensors, **self.attrs)


OP_ROWS = [
    Row("relu6", [R(3, 4, lo=-9, hi=9)]),
    Row("leaky_relu", [R(3, 4)]),
    Row("silu", [R(3, 4, lo=-8, hi=8)]),
    Row("softplus", [R(3, 4, lo=-30, hi=30)]),
    Row("hardsigmoid", [R(3, 5, lo=-5, hi=5)]),
    Row("hardswish", [R(3, 5, lo=-5, hi=5)]),
    Row("hardtanh", [R(3, 4)]),
    Row("gelu", [R(3, 4, lo=-6, hi=6)]),
]
