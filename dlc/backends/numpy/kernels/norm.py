"""NumPy reference normalisation (batch, layer, group, local response), with
PyTorch semantics; moments are taken on power-of-two scaled data so a large
input does not overflow."""
from __future__ import annotations

import numpy as np

from .dtypes import cast_operand, channel_shape, float_dtype


# --------------------------------------------------------------------------
# normalisation
# --------------------------------------------------------------------------


def _pow2_scale(amax):
    """2**floor(log2(amax)) where amax > 1 and finite, else 1.  Dividing by a
    power of two is exact, so the scaled statistics are the true ones."""
    _, e = np.frexp(amax)                       # amax = m * 2**e with m in [0.5, 1)
    s = np.ldexp(np.ones_like(amax), e - 1)
    return np.where(np.isfinite(amax) & (amax > 1), s, 1).astype(amax.dtype)


def scaled_moments(x, axes):
    """(x / s, mean, biased variance, s) over `axes`, with s a power of two per
    slice that keeps the squares finite: layer_norm([1e30, 0, 0, 0, 0]) is
    [2, -0.5, ...], not 0 (whose variance 6.4e59 overflows float32).  The
    variance is two-pass, so nearly equal values do not cancel to 0."""
    with np.errstate(over="ignore", invalid="ignore"):
        amax = np.max(np.abs(x), axis=axes, keepdims=True, initial=0)   # NaN propagates; s is then 1
        scale = _pow2_scale(amax)
        xs = x / scale
        mean = xs.mean(axis=axes, keepdims=True)
        var = np.square(xs - mean).mean(axis=axes, keepdims=True)
    return xs, mean, var, scale


def _normalized(xs, mean, var, scale, eps, dtype):
    """(x - mean) / sqrt(var + eps) from scaled statistics: eps scales by 1/s^2."""
    with np.errstate(over="ignore", invalid="ignore"):
        return (xs - mean) / np.sqrt(var + dtype.type(eps) / np.square(scale))


def batch_norm(
    x,
    running_mean,
    running_var,
    weight=None,
    bias=None,
    *,
    training=False,
    momentum=0.1,
    eps=1e-5,
):
    """Batch norm over x (N, C, *). Returns (y, new_running_mean, new_running_var).

    Training normalises with the biased batch variance and updates the running
    stats like torch (momentum weighting, unbiased variance).  Eval normalises
    with the running stats and returns them unchanged.  The inputs are never
    modified in place.
    """
    x = np.asarray(x)
    dtype = float_dtype(x)
    x = x.astype(dtype, copy=False)
    if x.ndim < 2:
        raise ValueError(f"batch_norm expects (N, C, *) input, got {x.shape}")
    c = x.shape[1]
    bshape = channel_shape(x.ndim, c)
    if training:
        axes = (0,) + tuple(range(2, x.ndim))
        count = x.size // c
        if count <= 1:
            raise ValueError(
                f"expected more than 1 value per channel when training, got input {x.shape}"
            )
        xs, mean_s, var_s, scale = scaled_moments(x, axes)
        y = _normalized(xs, mean_s, var_s, scale, eps, dtype)
        with np.errstate(over="ignore"):
            mean = (mean_s * scale).reshape(c)
            var = (var_s * np.square(scale)).reshape(c)  # biased: what the batch is normalised with
        new_mean, new_var = running_mean, running_var
        if running_mean is not None:
            rm = np.asarray(running_mean)
            new_mean = ((1 - momentum) * rm + momentum * mean).astype(rm.dtype)
        if running_var is not None:
            rv = np.asarray(running_var)
            # the running estimate uses the unbiased variance, like torch
            unbiased = var * (count / (count - 1))
            new_var = ((1 - momentum) * rv + momentum * unbiased).astype(rv.dtype)
    else:
        if running_mean is None or running_var is None:
            raise ValueError(
                "batch_norm in eval mode needs running_mean and running_var"
            )
        mean = cast_operand(running_mean, dtype)
        var = cast_operand(running_var, dtype)
        new_mean, new_var = running_mean, running_var
        invstd = 1 / np.sqrt(var + dtype.type(eps))
        y = np.subtract(x, mean.reshape(bshape))   # (x - mean) * invstd, without a temporary
        y *= invstd.reshape(bshape)
    if weight is not None:
        y *= cast_operand(weight, dtype).reshape(bshape)
    if bias is not None:
        y += cast_operand(bias, dtype).reshape(bshape)
    return y, new_mean, new_var


def layer_norm(x, weight=None, bias=None, *, normalized_shape, eps=1e-5):
    """Layer norm over the trailing ``normalized_shape`` dims (biased variance)."""
    x = np.asarray(x)
    dtype = float_dtype(x)
    x = x.astype(dtype, copy=False)
    if isinstance(normalized_shape, (int, np.integer)):
        normalized_shape = (normalized_shape,)
    shape = tuple(int(s) for s in normalized_shape)
    k = len(shape)
    if k == 0 or x.shape[x.ndim - k :] != shape:
        raise ValueError(f"normalized_shape {shape} does not match input {x.shape}")
    axes = tuple(range(x.ndim - k, x.ndim))
    y = _normalized(*scaled_moments(x, axes), eps, dtype)
    if weight is not None:
        y *= cast_operand(weight, dtype)
    if bias is not None:
        y += cast_operand(bias, dtype)
    return y


def group_norm(x, weight=None, bias=None, *, num_groups, eps=1e-5):
    """Group norm for x (N, C, *): statistics per (sample, group of C/num_groups channels)."""
    x = np.asarray(x)
    dtype = float_dtype(x)
    x = x.astype(dtype, copy=False)
    n, c = x.shape[:2]
    if c % num_groups:
        raise ValueError(
            f"num_channels {c} must be divisible by num_groups {num_groups}"
        )
    xg = x.reshape(n, num_groups, -1)
    y = _normalized(*scaled_moments(xg, (-1,)), eps, dtype).reshape(x.shape)
    bshape = channel_shape(x.ndim, c)
    if weight is not None:
        y *= cast_operand(weight, dtype).reshape(bshape)
    if bias is not None:
        y += cast_operand(bias, dtype).reshape(bshape)
    return y


def local_response_norm(x, *, size, alpha=1e-4, beta=0.75, k=1.0):
    """LRN across channels, torch's formula for x (N, C, *):

    y = x / (k + alpha/size * sum_{c' in window(c)} x[c']^2) ** beta,
    where window(c) = [c - size//2, c + (size-1)//2], zero-padded at the edges.
    """
    x = np.asarray(x)
    dtype = float_dtype(x)
    x = x.astype(dtype, copy=False)
    if x.ndim < 3:
        raise ValueError(
            f"local_response_norm expects 3-d or higher input, got {x.shape}"
        )
    pads = [(0, 0)] * x.ndim
    pads[1] = (size // 2, (size - 1) // 2)
    sq = np.pad(x * x, pads)
    c = x.shape[1]
    # running sum of `size` shifted channel slices (a loop over window taps only)
    window_sum = sq[:, 0:c].copy()
    for j in range(1, size):
        window_sum += sq[:, j : j + c]
    # torch averages (sum/size, zeros included) and then scales by alpha
    div = (
        window_sum / dtype.type(size) * dtype.type(alpha) + dtype.type(k)
    ) ** dtype.type(beta)
    return x / div

