"""NumPy reference kernels: reductions.

Every reduction takes ``(x, *, axis=None, keepdims=False)``; ``axis`` is None
(all axes), an int or a tuple of ints, negatives allowed.  As in PyTorch an
empty tuple also means all axes.  Results keep the input's float dtype;
integer and bool inputs of sum/prod give int64 (torch's rule), and of
mean/var/std/logsumexp give float32.
"""
from __future__ import annotations

import builtins

import numpy as np

from .dtypes import as_array, as_float, quiet


def _axes(axis, ndim: int):
    """Normalised tuple of non-negative axes (None or () -> all axes)."""
    if axis is None:
        return tuple(range(ndim))
    if isinstance(axis, (int, np.integer)):
        axis = (int(axis),)
    axis = tuple(int(a) for a in axis)
    if not axis:
        return tuple(range(ndim))
    rank = builtins.max(ndim, 1)
    out = []
    for a in axis:
        if not -rank <= a < rank:
            raise ValueError(f"axis {a} is out of range for a rank-{ndim} tensor")
        a = a % rank if ndim else 0
        if a in out:
            raise ValueError(f"axis {a} appears more than once in {axis}")
        out.append(a)
    return tuple(out)


def _np_axis(axes, ndim):
    # NumPy wants () for 0-d arrays (axis 0 of a scalar, which torch accepts)
    return axes if ndim else None


def _count(x, axes):
    n = 1
    for a in axes:
        n *= x.shape[a] if x.ndim else 1
    return n


def _int_acc(x):
    """torch.sum/prod of bool or integer tensors accumulate in int64."""
    return np.int64 if x.dtype.kind in "biu" else x.dtype


@quiet
def sum(x, *, axis=None, keepdims=False):
    x = as_array(x)
    axes = _axes(axis, x.ndim)
    return np.sum(x, axis=_np_axis(axes, x.ndim), keepdims=keepdims, dtype=_int_acc(x))


@quiet
def prod(x, *, axis=None, keepdims=False):
    x = as_array(x)
    axes = _axes(axis, x.ndim)
    return np.prod(x, axis=_np_axis(axes, x.ndim), keepdims=keepdims, dtype=_int_acc(x))


@quiet
def mean(x, *, axis=None, keepdims=False):
    x = as_float(x)
    axes = _axes(axis, x.ndim)
    return np.mean(x, axis=_np_axis(axes, x.ndim), keepdims=keepdims, dtype=x.dtype)


@quiet
def max(x, *, axis=None, keepdims=False):
    """torch.amax: values only; nan propagates."""
    x = as_array(x)
    axes = _axes(axis, x.ndim)
    return np.max(x, axis=_np_axis(axes, x.ndim), keepdims=keepdims)


@quiet
def min(x, *, axis=None, keepdims=False):
    """torch.amin: values only; nan propagates."""
    x = as_array(x)
    axes = _axes(axis, x.ndim)
    return np.min(x, axis=_np_axis(axes, x.ndim), keepdims=keepdims)


@quiet
def logsumexp(x, *, axis=None, keepdims=False):
    """log(sum(exp(x))) shifted by the max, as torch: an infinite max is
    replaced by 0 so that all -inf gives -inf and any +inf gives +inf."""
    x = as_float(x)
    axes = _np_axis(_axes(axis, x.ndim), x.ndim)
    m = np.max(x, axis=axes, keepdims=True)
    m = np.where(np.isinf(m), np.zeros_like(m), m)
    s = np.sum(np.exp(x - m), axis=axes, keepdims=True)
    out = np.log(s) + m
    if not keepdims:
        out = np.squeeze(out, axis=axes) if axes is not None else out.reshape(())
    return out


@quiet
def var(x, *, axis=None, keepdims=False, correction=1):
    """sum((x - mean)^2) / max(0, N - correction); N - correction <= 0 gives
    inf (or nan), as torch.var."""
    x = as_float(x)
    axes = _axes(axis, x.ndim)
    npax = _np_axis(axes, x.ndim)
    mu = np.mean(x, axis=npax, keepdims=True, dtype=x.dtype)
    d = x - mu
    ss = np.sum(d * d, axis=npax, keepdims=keepdims, dtype=x.dtype)
    n = _count(x, axes)
    denom = x.dtype.type(builtins.max(0, n - correction))
    return ss / denom


@quiet
def std(x, *, axis=None, keepdims=False, correction=1):
    return np.sqrt(var(x, axis=axis, keepdims=keepdims, correction=correction))


def _arg(fn, x, axis, keepdims):
    x = as_array(x)
    if axis is None:
        out = fn(x.reshape(-1), axis=0)
        out = np.asarray(out, dtype=np.int64)
        return out.reshape((1,) * x.ndim) if keepdims else out.reshape(())
    if isinstance(axis, (tuple, list)):
        if len(axis) != 1:
            raise ValueError("argmax/argmin reduce over a single axis")
        axis = axis[0]
    if x.ndim == 0:
        if axis not in (0, -1):
            raise ValueError(f"axis {axis} is out of range for a rank-0 tensor")
        return np.zeros((), dtype=np.int64)
    return np.asarray(fn(x, axis=int(axis), keepdims=keepdims), dtype=np.int64)


@quiet
def argmax(x, *, axis=None, keepdims=False):
    """Index of the first maximum (a nan counts as the maximum), int64."""
    return _arg(np.argmax, x, axis, keepdims)


@quiet
def argmin(x, *, axis=None, keepdims=False):
    """Index of the first minimum (a nan counts as the minimum), int64."""
    return _arg(np.argmin, x, axis, keepdims)


KERNELS = {
    "sum": sum, "mean": mean, "max": max, "min": min, "prod": prod,
    "logsumexp": logsumexp, "var": var, "std": std, "argmax": argmax, "argmin": argmin,
}
