"""NumPy reference kernels: activations (relu and its clamped variants, elu,
selu, gelu, silu, softplus, hardsigmoid, prelu), with PyTorch's formulas and
the conventions of `elementwise`."""
from __future__ import annotations

import math

import numpy as np

from .dtypes import as_array, as_float, quiet, _c
from .unary import erf, sigmoid


# ---------------------------------------------------------------------------
# activations
# ---------------------------------------------------------------------------

@quiet
def relu(x):
    x = as_array(x)
    return np.maximum(x, _c(x, 0))          # nan propagates, as torch.relu


def _clamp(x, lo, hi):
    # torch.clamp/hardtanh: nan stays nan (np.maximum/np.minimum propagate it)
    # the second bound is applied in place: no temporary of x's size
    y = x
    if lo is not None:
        y = np.maximum(x, _c(x, lo))
    if hi is not None:
        # (np.maximum of a 0-d array is a NumPy scalar, which cannot be an `out`)
        y = np.minimum(y, _c(x, hi), out=y if isinstance(y, np.ndarray) and y is not x else None)
    return y


@quiet
def relu6(x):
    return _clamp(as_array(x), 0, 6)


@quiet
def hardtanh(x, *, min_val, max_val):
    return _clamp(as_float(x), min_val, max_val)


@quiet
def leaky_relu(x, *, negative_slope):
    x = as_float(x)
    return np.where(x > 0, x, x * _c(x, negative_slope))


@quiet
def elu(x, *, alpha):
    x = as_float(x)
    neg_part = _c(x, alpha) * np.expm1(np.minimum(x, _c(x, 0)))
    return np.where(x > 0, x, neg_part)


_SELU_ALPHA = 1.6732632423543772848170429916717
_SELU_SCALE = 1.0507009873554804934193349852946


@quiet
def selu(x):
    x = as_float(x)
    neg_part = _c(x, _SELU_ALPHA) * np.expm1(np.minimum(x, _c(x, 0)))
    return _c(x, _SELU_SCALE) * np.where(x > 0, x, neg_part)


@quiet
def gelu(x, *, approximate):
    """torch's formulas: x/2 (1 + erf(x/sqrt 2)), or the tanh approximation
    x/2 (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))."""
    x = as_float(x)
    half, one = _c(x, 0.5), _c(x, 1)
    if approximate == "none":
        return x * half * (one + erf(x * _c(x, math.sqrt(0.5))))
    if approximate == "tanh":
        inner = _c(x, math.sqrt(2.0 / math.pi)) * (x + _c(x, 0.044715) * x * x * x)
        return half * x * (one + np.tanh(inner))
    raise ValueError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")


@quiet
def silu(x):
    x = as_float(x)
    return x * sigmoid(x)


@quiet
def softplus(x, *, beta, threshold):
    """log(1 + e^(beta x)) / beta, and x itself where beta x > threshold (torch)."""
    x = as_float(x)
    bx = x * _c(x, beta)
    soft = np.log1p(np.exp(np.minimum(bx, _c(x, threshold)))) / _c(x, beta)
    return np.where(bx > _c(x, threshold), x, soft)


@quiet
def hardsigmoid(x):
    x = as_float(x)
    return _clamp(x + _c(x, 3), 0, 6) / _c(x, 6)


@quiet
def prelu(x, weight):
    """torch.prelu: one slope per channel (axis 1), or a single slope."""
    x = as_float(x)
    w = as_array(weight).astype(x.dtype, copy=False)
    if w.size == 1:
        w = w.reshape(())
    else:
        if x.ndim < 2 or w.ndim != 1 or x.shape[1] != w.shape[0]:
            raise ValueError(f"prelu: weight of shape {w.shape} does not match input of shape "
                             f"{x.shape} (one slope per channel, axis 1, or a single slope)")
        w = w.reshape((w.shape[0],) + (1,) * (x.ndim - 2))
    return np.where(x > 0, x, w * x)
