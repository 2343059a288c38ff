"""Input constructors shared by the per-op backend tests (torch, TVM).

Each returns ``make(rng, dt) -> array`` (or a list of arrays, spliced into
the operands); `dt` is the float dtype under test.
"""
from __future__ import annotations

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
