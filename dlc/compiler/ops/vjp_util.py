"""Helpers shared by VJP rules.  A rule receives a Builder `b` (see
compiler/builder.py), the forward node and the cotangents of its results."""
from __future__ import annotations


def sum_to(b, x, shape: tuple):
    """Reduce a broadcast gradient back to `shape` (NumPy broadcasting inverted)."""
    shape = tuple(shape)
    if x.type.shape == shape:
        return x
    lead = x.type.rank - len(shape)
    axes = list(range(lead))
    for i, d in enumerate(shape):
        if d == 1 and x.type.shape[lead + i] != 1:
            axes.append(lead + i)
    y = b.op("sum", x, axis=tuple(axes), keepdims=False) if axes else x
    if y.type.shape != shape:
        y = b.op("reshape", y, shape=shape)
    return y


def zeros_like(b, v):
    return b.op("full", shape=v.type.shape, value=0.0, dtype=v.type.dtype.numpy_name)


def ones_like(b, v):
    return b.op("full", shape=v.type.shape, value=1.0, dtype=v.type.dtype.numpy_name)


def or_zeros(b, g, like):
    return g if g is not None else zeros_like(b, like)


def scalar(b, value, like):
    """A 0-d constant in `like`'s dtype."""
    return b.op("full", shape=(), value=value, dtype=like.type.dtype.numpy_name)


def as_float(b, mask, like):
    """A bool mask as 0/1 in `like`'s dtype."""
    return b.op("cast", mask, dtype=like.type.dtype.numpy_name)
