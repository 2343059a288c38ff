"""NumPy reference kernels for the neural-network ops, with PyTorch semantics.

Every kernel is a plain function: tensor arguments are positional NumPy arrays
(``None`` for an absent optional tensor), attributes are keyword-only and named
and defaulted as in ``torch.nn.functional``.  Results are computed in the dtype
of the main input (float32 in, float32 out) and multi-output kernels return a
tuple.  Everything is vectorised: convolutions use im2col views plus one BLAS
matmul (or, for depthwise convolutions, a short loop over the kernel taps);
pooling combines the strided slices of each window tap, one axis at a time.
No kernel loops over pixels or batch elements.

The recurrent kernels (rnn, lstm, gru) live in :mod:`.recurrent`.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ....compiler.ops.conv import conv_pads, ntuple  # attribute normalisation, with the OpDefs
from ....runtime.random import dropout_mask  # the one dropout stream (TVM and the deploy runtime draw it too)

__all__ = [
    "KERNELS",
    "adaptive_avg_pool1d",
    "adaptive_avg_pool2d",
    "adaptive_max_pool2d",
    "avg_pool1d",
    "avg_pool2d",
    "batch_norm",
    "conv1d",
    "conv2d",
    "conv_transpose2d",
    "dropout",
    "dropout_mask",
    "embedding",
    "group_norm",
    "layer_norm",
    "local_response_norm",
    "max_pool1d",
    "max_pool2d",
    "scaled_dot_product_attention",
]


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------


def _float_dtype(x: np.ndarray) -> np.dtype:
    """The dtype a kernel computes in: the input's own if floating, else float64."""
    return x.dtype if np.issubdtype(x.dtype, np.floating) else np.dtype(np.float64)


def _cast(a: np.ndarray | None, dtype: np.dtype) -> np.ndarray | None:
    """Cast an optional operand to the compute dtype (no copy when it already matches)."""
    return None if a is None else np.asarray(a).astype(dtype, copy=False)


def _channel_shape(ndim: int, channels: int) -> tuple[int, ...]:
    """Shape that broadcasts a per-channel vector over an (N, C, *spatial) tensor."""
    return (1, channels) + (1,) * (ndim - 2)


# --------------------------------------------------------------------------
# convolution
# --------------------------------------------------------------------------


def _conv_nd(x, w, b, stride, padding, dilation, groups, nd):
    """N-d cross-correlation (torch convNd) for x (N, C, *spatial), w (O, C/groups, *k)."""
    x = np.asarray(x)
    dtype = _float_dtype(x)
    x = x.astype(dtype, copy=False)
    w = _cast(w, dtype)
    b = _cast(b, dtype)
    if x.ndim != nd + 2 or w.ndim != nd + 2:
        raise ValueError(
            f"conv{nd}d expects {nd + 2}-d input and weight, got {x.shape} and {w.shape}"
        )
    n, c = x.shape[:2]
    out_ch, cg = w.shape[:2]
    kernel = w.shape[2:]
    stride = ntuple(stride, nd, "stride")
    dilation = ntuple(dilation, nd, "dilation")
    if groups < 1 or c != cg * groups or out_ch % groups:
        raise ValueError(
            f"channel mismatch: input has {c} channels, weight {w.shape} with groups={groups}"
        )
    pads = conv_pads(padding, nd, kernel, dilation, stride)
    if any(p != (0, 0) for p in pads):
        x = np.pad(x, ((0, 0), (0, 0)) + pads)
    eff = tuple(d * (k - 1) + 1 for k, d in zip(kernel, dilation))
    out_sp = tuple((size - e) // s + 1 for size, e, s in zip(x.shape[2:], eff, stride))
    if any(o < 1 for o in out_sp):
        raise ValueError(
            f"conv{nd}d: kernel larger than the padded input {x.shape[2:]}"
        )

    # patches[n, c, *o, *k]: a strided view, nothing copied yet.
    win = sliding_window_view(x, eff, axis=tuple(range(2, nd + 2)))
    sel = (slice(None), slice(None))
    sel += tuple(slice(None, None, s) for s in stride)
    sel += tuple(slice(None, None, d) for d in dilation)
    patches = win[sel]

    og = out_ch // groups
    if cg == 1 and groups > 1:
        # Depthwise conv: the im2col matmul would have an
        # inner dimension of 1 and degrade to many tiny GEMVs; accumulating one
        # broadcast multiply per kernel tap is several times faster.
        wg = w.reshape((groups, og) + kernel)
        out = tmp = None
        for tap in np.ndindex(*kernel):
            xt = patches[(Ellipsis,) + tap][:, :, None]  # (N, G, 1, *o)
            wt = wg[(Ellipsis,) + tap].reshape((groups, og) + (1,) * nd)
            if out is None:
                out = xt * wt
                tmp = np.empty_like(out)
            else:
                np.multiply(xt, wt, out=tmp)
                out += tmp
        out = out.reshape((n, out_ch) + out_sp)
    else:
        # im2col: (N, G, Cg*K, P) columns, then one batched BLAS matmul over (N, G).
        k_total = int(np.prod(kernel))
        p_total = int(np.prod(out_sp))
        if groups == 1 and p_total * n <= (1 << 22):
            # one large GEMM over all images: (O, C*K) @ (C*K, N*P) keeps BLAS busy
            # where per-image products would be small
            perm = (1,) + tuple(range(nd + 2, 2 * nd + 2)) + (0,) + tuple(range(2, nd + 2))
            cols = patches.transpose(perm).reshape(cg * k_total, n * p_total)
            out = (w.reshape(out_ch, cg * k_total) @ cols).reshape((out_ch, n) + out_sp)
            out = np.ascontiguousarray(np.moveaxis(out, 0, 1))
        else:
            perm = (0, 1) + tuple(range(nd + 2, 2 * nd + 2)) + tuple(range(2, nd + 2))
            cols = patches.transpose(perm).reshape(n, groups, cg * k_total, p_total)
            wm = w.reshape(groups, og, cg * k_total)
            out = np.matmul(wm, cols).reshape((n, out_ch) + out_sp)
    if b is not None:
        out += b.reshape(_channel_shape(out.ndim, out_ch))
    return out


def conv1d(x, w, b=None, *, stride=1, padding=0, dilation=1, groups=1):
    """1-d convolution: x (N, C, L), w (O, C/groups, k); padding int, "valid" or "same"."""
    return _conv_nd(x, w, b, stride, padding, dilation, groups, 1)


def conv2d(x, w, b=None, *, stride=1, padding=0, dilation=1, groups=1):
    """2-d convolution: x (N, C, H, W), w (O, C/groups, kh, kw); padding int, pair, "valid", "same"."""
    return _conv_nd(x, w, b, stride, padding, dilation, groups, 2)


def _conv_transpose_nd(x, w, b, stride, padding, output_padding, groups, dilation, nd):
    """N-d transposed convolution (the adjoint of convNd), computed as GEMM + col2im."""
    x = np.asarray(x)
    dtype = _float_dtype(x)
    x = x.astype(dtype, copy=False)
    w = _cast(w, dtype)
    b = _cast(b, dtype)
    if x.ndim != nd + 2 or w.ndim != nd + 2:
        raise ValueError(
            f"conv_transpose{nd}d expects {nd + 2}-d input and weight, got {x.shape} and {w.shape}"
        )
    n, c = x.shape[:2]
    in_sp = x.shape[2:]
    kernel = w.shape[2:]
    if groups < 1 or w.shape[0] != c or c % groups:
        raise ValueError(
            f"channel mismatch: input has {c} channels, weight {w.shape} with groups={groups}"
        )
    stride = ntuple(stride, nd, "stride")
    padding = ntuple(padding, nd, "padding")
    output_padding = ntuple(output_padding, nd, "output_padding")
    dilation = ntuple(dilation, nd, "dilation")
    for op, s, d in zip(output_padding, stride, dilation):
        # same rule as torch: the extra rows must be reachable by stride or dilation.
        if op >= max(s, d):
            raise ValueError(
                "output_padding must be smaller than either stride or dilation"
            )
    cg = c // groups
    og = w.shape[1]
    out_ch = og * groups
    full = tuple(
        (i - 1) * s + d * (k - 1) + 1 + op
        for i, s, d, k, op in zip(in_sp, stride, dilation, kernel, output_padding)
    )
    out_sp = tuple(f - 2 * p for f, p in zip(full, padding))
    if any(o < 1 for o in out_sp):
        raise ValueError(f"conv_transpose{nd}d: non-positive output size {out_sp}")

    # GEMM: every input pixel contributes w[c, o, *k] * x to its k-neighbourhood.
    k_total = int(np.prod(kernel))
    p_total = int(np.prod(in_sp))
    wt = w.reshape(groups, cg, og * k_total).transpose(0, 2, 1)  # (G, Og*K, Cg)
    cols = np.matmul(wt, x.reshape(n, groups, cg, p_total))  # (N, G, Og*K, P)
    cols = cols.reshape((n, out_ch) + kernel + in_sp)

    # col2im: scatter-add each kernel tap as one strided slice (loop over taps only).
    out = np.zeros((n, out_ch) + full, dtype)
    for tap in np.ndindex(*kernel):
        dst = tuple(
            slice(t * d, t * d + (i - 1) * s + 1, s)
            for t, d, i, s in zip(tap, dilation, in_sp, stride)
        )
        out[(slice(None), slice(None)) + dst] += cols[(slice(None), slice(None)) + tap]
    crop = tuple(slice(p, p + o) for p, o in zip(padding, out_sp))
    out = np.ascontiguousarray(out[(slice(None), slice(None)) + crop])
    if b is not None:
        out += b.reshape(_channel_shape(out.ndim, out_ch))
    return out


def conv_transpose2d(
    x, w, b=None, *, stride=1, padding=0, output_padding=0, groups=1, dilation=1
):
    """2-d transposed convolution: x (N, Cin, H, W), w (Cin, Cout/groups, kh, kw)."""
    return _conv_transpose_nd(
        x, w, b, stride, padding, output_padding, groups, dilation, 2
    )


# --------------------------------------------------------------------------
# pooling
# --------------------------------------------------------------------------


def _pool_out_size(size, k, s, p, d, ceil_mode) -> int:
    """torch's pooling_output_shape, including its ceil_mode correction."""
    num = size + 2 * p - d * (k - 1) - 1
    out = (num + (s - 1 if ceil_mode else 0)) // s + 1
    # in ceil mode the last window must still start inside the input or left padding
    if ceil_mode and (out - 1) * s >= size + p:
        out -= 1
    if out < 1:
        raise ValueError(
            f"pooling output size is {out}: input {size} too small for kernel {k}"
        )
    return out


def _pool_params(x, nd, kernel_size, stride, padding, dilation, ceil_mode):
    k = ntuple(kernel_size, nd, "kernel_size")
    # torch: stride=None (or an empty list) means stride = kernel_size
    if stride is None or (
        not isinstance(stride, (int, np.integer)) and len(stride) == 0
    ):
        s = k
    else:
        s = ntuple(stride, nd, "stride")
    p = ntuple(padding, nd, "padding")
    d = ntuple(dilation, nd, "dilation")
    if x.ndim < nd + 1:
        raise ValueError(f"pool{nd}d expects at least {nd + 1}-d input, got {x.shape}")
    for kk, pp in zip(k, p):
        if pp > kk // 2:
            raise ValueError("pad should be at most half of kernel size")
    sizes = x.shape[-nd:]
    out = tuple(_pool_out_size(*a, ceil_mode) for a in zip(sizes, k, s, p, d))
    return k, s, p, d, out


def _pool_pad(x, k, s, p, d, out, fill):
    """Pad x's trailing axes: p low, and high enough for ceil_mode windows that run past the end."""
    nd = len(k)
    sizes = x.shape[-nd:]
    hi = tuple(
        max(0, (o - 1) * ss + dd * (kk - 1) + 1 - (n + pp))
        for o, ss, dd, kk, n, pp in zip(out, s, d, k, sizes, p)
    )
    if any(p) or any(hi):
        pads = ((0, 0),) * (x.ndim - nd) + tuple(zip(p, hi))
        x = np.pad(x, pads, constant_values=fill)
    return x


def _pool_reduce(x, k, s, d, out, ufunc):
    """Reduce each window of the (already padded) trailing axes with a binary ufunc.

    Max and sum over a box are separable, so this reduces one axis at a time
    (innermost first) and, per axis, combines the k strided tap slices with
    ``ufunc(..., out=)``.  This is an order of magnitude faster than reducing
    a 2-d window view, whose tiny inner axes defeat NumPy's reduction loops.
    """
    nd = len(k)
    for i in reversed(range(nd)):
        axis = x.ndim - nd + i
        span = (out[i] - 1) * s[i] + 1

        def tap(j, x=x, axis=axis, i=i, span=span):
            sel = [slice(None)] * x.ndim
            sel[axis] = slice(j * d[i], j * d[i] + span, s[i])
            return x[tuple(sel)]

        acc = tap(0).copy()
        for j in range(1, k[i]):
            ufunc(acc, tap(j), out=acc)
        x = acc
    return x


def _max_pool(x, nd, kernel_size, stride, padding, dilation, ceil_mode):
    x = np.asarray(x)
    k, s, p, d, out = _pool_params(
        x, nd, kernel_size, stride, padding, dilation, ceil_mode
    )
    # torch pads max pooling with -inf so padding never wins the max
    fill = -np.inf if np.issubdtype(x.dtype, np.floating) else np.iinfo(x.dtype).min
    # np.maximum propagates NaN, as torch's max pooling does
    return _pool_reduce(_pool_pad(x, k, s, p, d, out, fill), k, s, d, out, np.maximum)


def max_pool1d(x, *, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False):
    """1-d max pooling over the last axis of x (N, C, L) or (C, L)."""
    return _max_pool(x, 1, kernel_size, stride, padding, dilation, ceil_mode)


def max_pool2d(x, *, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False):
    """2-d max pooling over the last two axes of x (N, C, H, W) or (C, H, W)."""
    return _max_pool(x, 2, kernel_size, stride, padding, dilation, ceil_mode)


def _avg_divisor(size, k, s, p, out, count_include_pad) -> np.ndarray:
    """Per-position divisor along one axis, exactly as torch's avg_pool kernels count."""
    start = np.arange(out) * s - p
    # the window is clipped to the padded extent (ceil_mode overhang never counts) ...
    end = np.minimum(start + k, size + p)
    if count_include_pad:
        return end - start
    # ... and, without count_include_pad, to the real input as well.
    return np.minimum(end, size) - np.maximum(start, 0)


def _avg_pool(
    x, nd, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override
):
    x = np.asarray(x)
    dtype = _float_dtype(x)
    x = x.astype(dtype, copy=False)
    k, s, p, d, out = _pool_params(x, nd, kernel_size, stride, padding, 1, ceil_mode)
    total = _pool_reduce(_pool_pad(x, k, s, p, d, out, 0), k, s, d, out, np.add)
    if divisor_override:
        return total / dtype.type(divisor_override)
    # the window area is separable, so the divisor is an outer product of 1-d counts
    div = np.ones((), dtype)
    for axis, (n, kk, ss, pp, o) in enumerate(zip(x.shape[-nd:], k, s, p, out)):
        counts = _avg_divisor(n, kk, ss, pp, o, count_include_pad).astype(dtype)
        div = np.multiply.outer(div, counts) if axis else counts
    return total / div


def avg_pool1d(
    x, *, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True
):
    """1-d average pooling over the last axis of x (N, C, L) or (C, L)."""
    return _avg_pool(
        x, 1, kernel_size, stride, padding, ceil_mode, count_include_pad, None
    )


def avg_pool2d(
    x,
    *,
    kernel_size,
    stride=None,
    padding=0,
    ceil_mode=False,
    count_include_pad=True,
    divisor_override=None,
):
    """2-d average pooling over the last two axes of x (N, C, H, W) or (C, H, W)."""
    return _avg_pool(
        x,
        2,
        kernel_size,
        stride,
        padding,
        ceil_mode,
        count_include_pad,
        divisor_override,
    )


def _adaptive_sizes(x, nd, output_size) -> tuple[int, ...]:
    if isinstance(output_size, (int, np.integer)) or output_size is None:
        output_size = (output_size,) * nd
    output_size = tuple(output_size)
    if len(output_size) == 1:
        output_size *= nd
    if len(output_size) != nd or x.ndim < nd + 1:
        raise ValueError(f"bad output_size {output_size!r} for input {x.shape}")
    # torch: None keeps that input dimension
    return tuple(
        x.shape[x.ndim - nd + i] if o is None else int(o)
        for i, o in enumerate(output_size)
    )


def _adaptive_axis(x, axis, out, reduce_max):
    """Adaptive pooling along one axis with torch's bins [floor(i*n/out), ceil((i+1)*n/out))."""
    n = x.shape[axis]
    if out < 1:
        raise ValueError("adaptive pooling output size must be positive")
    if out == n:
        return x
    if n % out == 0:
        # equal, non-overlapping bins: a reshape and a plain reduction
        shape = x.shape[:axis] + (out, n // out) + x.shape[axis + 1 :]
        xr = x.reshape(shape)
        return xr.max(axis=axis + 1) if reduce_max else xr.mean(axis=axis + 1)
    i = np.arange(out)
    start = (i * n) // out
    end = -((-(i + 1) * n) // out)
    kmax = int((end - start).max())
    idx = start[:, None] + np.arange(kmax)[None, :]
    valid = idx < end[:, None]
    # Bins have different lengths; gather the longest length and clamp the
    # overhang onto the bin's last element (harmless for max, masked for mean).
    idx = np.minimum(idx, end[:, None] - 1)
    g = np.take(x, idx, axis=axis)  # axis -> (out, kmax)
    if reduce_max:
        return g.max(axis=axis + 1)
    bshape = (out, kmax) + (1,) * (x.ndim - axis - 1)
    total = np.where(valid.reshape(bshape), g, 0).sum(axis=axis + 1)
    counts = (end - start).astype(x.dtype).reshape((out,) + (1,) * (x.ndim - axis - 1))
    return total / counts


def _adaptive_pool(x, nd, output_size, reduce_max):
    x = np.asarray(x)
    if not reduce_max:
        x = x.astype(_float_dtype(x), copy=False)
    sizes = _adaptive_sizes(x, nd, output_size)
    # Bins are rectangular, so pooling axis by axis is exact for max and mean.
    for i, out in enumerate(sizes):
        x = _adaptive_axis(x, x.ndim - nd + i, out, reduce_max)
    return np.ascontiguousarray(x)


def adaptive_avg_pool1d(x, *, output_size):
    """Adaptive average pooling over the last axis."""
    return _adaptive_pool(x, 1, output_size, False)


def adaptive_avg_pool2d(x, *, output_size):
    """Adaptive average pooling over the last two axes; output_size int, pair (None = keep)."""
    return _adaptive_pool(x, 2, output_size, False)


def adaptive_max_pool2d(x, *, output_size):
    """Adaptive max pooling over the last two axes (values only, no indices)."""
    return _adaptive_pool(x, 2, output_size, True)


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
    dtype = _float_dtype(x)
    x = x.astype(dtype, copy=False)
    if x.ndim < 2:
        raise ValueError(f"batch_norm expects (N, C, *) input, got {x.shape}")
    c = x.shape[1]
    bshape = _channel_shape(x.ndim, c)
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
        mean = _cast(running_mean, dtype)
        var = _cast(running_var, dtype)
        new_mean, new_var = running_mean, running_var
        invstd = 1 / np.sqrt(var + dtype.type(eps))
        y = (x - mean.reshape(bshape)) * invstd.reshape(bshape)
    if weight is not None:
        y *= _cast(weight, dtype).reshape(bshape)
    if bias is not None:
        y += _cast(bias, dtype).reshape(bshape)
    return y, new_mean, new_var


def layer_norm(x, weight=None, bias=None, *, normalized_shape, eps=1e-5):
    """Layer norm over the trailing ``normalized_shape`` dims (biased variance)."""
    x = np.asarray(x)
    dtype = _float_dtype(x)
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
        y *= _cast(weight, dtype)
    if bias is not None:
        y += _cast(bias, dtype)
    return y


def group_norm(x, weight=None, bias=None, *, num_groups, eps=1e-5):
    """Group norm for x (N, C, *): statistics per (sample, group of C/num_groups channels)."""
    x = np.asarray(x)
    dtype = _float_dtype(x)
    x = x.astype(dtype, copy=False)
    n, c = x.shape[:2]
    if c % num_groups:
        raise ValueError(
            f"num_channels {c} must be divisible by num_groups {num_groups}"
        )
    xg = x.reshape(n, num_groups, -1)
    y = _normalized(*scaled_moments(xg, (-1,)), eps, dtype).reshape(x.shape)
    bshape = _channel_shape(x.ndim, c)
    if weight is not None:
        y *= _cast(weight, dtype).reshape(bshape)
    if bias is not None:
        y += _cast(bias, dtype).reshape(bshape)
    return y


def local_response_norm(x, *, size, alpha=1e-4, beta=0.75, k=1.0):
    """LRN across channels, torch's formula for x (N, C, *):

    y = x / (k + alpha/size * sum_{c' in window(c)} x[c']^2) ** beta,
    where window(c) = [c - size//2, c + (size-1)//2], zero-padded at the edges.
    """
    x = np.asarray(x)
    dtype = _float_dtype(x)
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


# --------------------------------------------------------------------------
# dropout, embedding, attention
# --------------------------------------------------------------------------


def dropout(x, *, p=0.5, training=True, seed=0):
    """Inverted dropout with a reproducible NumPy mask (torch's RNG stream is not reproduced).

    Not training or p == 0: x unchanged.  p == 1: x * 0 (as torch).  Otherwise
    x * mask / (1 - p) with mask = dropout_mask(x.shape, p, seed).
    """
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")
    x = np.asarray(x)
    if not training or p == 0:
        return x
    dtype = _float_dtype(x)
    x = x.astype(dtype, copy=False)
    if p == 1:
        return x * dtype.type(0)
    # torch multiplies by a noise tensor holding 0 or 1/(1-p); do the same
    noise = dropout_mask(x.shape, p, seed).astype(dtype) * dtype.type(1.0 / (1.0 - p))
    return x * noise


def embedding(indices, weight, *, padding_idx=None):
    """Row lookup weight[indices].

    padding_idx only changes gradients in torch (the forward is a plain lookup),
    so here it is validated and otherwise ignored.
    """
    idx = np.asarray(indices)
    weight = np.asarray(weight)
    if not np.issubdtype(idx.dtype, np.integer):
        raise TypeError(f"embedding indices must be integers, got {idx.dtype}")
    v = weight.shape[0]
    if padding_idx is not None and not -v <= padding_idx < v:
        raise ValueError("padding_idx must be within num_embeddings")
    # numpy would silently wrap negative indices; torch raises
    if idx.size and (idx.min() < 0 or idx.max() >= v):
        raise IndexError(f"embedding index out of range for {v} embeddings")
    return weight[idx]


def scaled_dot_product_attention(
    q, k, v, attn_mask=None, *, is_causal=False, scale=None
):
    """softmax(q @ k^T * scale + mask) @ v for q (..., L, E), k (..., S, E), v (..., S, Ev).

    A bool mask marks positions that may be attended (True); a float mask is
    added to the scores; masks broadcast against (..., L, S).  is_causal uses
    torch's top-left aligned lower-triangular (L, S) mask.  Rows in which every
    position is masked produce zeros, as torch 2.x does.
    """
    q = np.asarray(q)
    dtype = _float_dtype(q)
    q = q.astype(dtype, copy=False)
    k = _cast(k, dtype)
    v = _cast(v, dtype)
    L, E = q.shape[-2:]
    S = k.shape[-2]
    if scale is None:
        scale = 1.0 / math.sqrt(E)
    scores = np.matmul(q, np.swapaxes(k, -1, -2)) * dtype.type(scale)
    if is_causal:
        if attn_mask is not None:
            raise ValueError("explicit attn_mask should not be set when is_causal=True")
        attn_mask = np.tril(np.ones((L, S), dtype=bool))
    if attn_mask is not None:
        attn_mask = np.asarray(attn_mask)
        if attn_mask.dtype == np.bool_:
            scores = np.where(attn_mask, scores, dtype.type(-np.inf))
        else:
            scores = scores + attn_mask.astype(dtype, copy=False)
    # stable softmax; a fully masked row has max -inf, shift it by 0 instead so it
    # yields exp(-inf) = 0 everywhere rather than NaN, then divide by 1 not 0.
    row_max = scores.max(axis=-1, keepdims=True)
    row_max = np.where(np.isfinite(row_max), row_max, dtype.type(0))
    e = np.exp(scores - row_max)
    denom = e.sum(axis=-1, keepdims=True)
    probs = e / np.where(denom == 0, dtype.type(1), denom)
    return np.matmul(probs, v)


KERNELS = {
    "conv1d": conv1d,
    "conv2d": conv2d,
    "conv_transpose2d": conv_transpose2d,
    "max_pool1d": max_pool1d,
    "max_pool2d": max_pool2d,
    "avg_pool1d": avg_pool1d,
    "avg_pool2d": avg_pool2d,
    "adaptive_avg_pool1d": adaptive_avg_pool1d,
    "adaptive_avg_pool2d": adaptive_avg_pool2d,
    "adaptive_max_pool2d": adaptive_max_pool2d,
    "batch_norm": batch_norm,
    "layer_norm": layer_norm,
    "group_norm": group_norm,
    "local_response_norm": local_response_norm,
    "dropout": dropout,
    "embedding": embedding,
    "scaled_dot_product_attention": scaled_dot_product_attention,
}


# --------------------------------------------------------------------------
# backward helpers: pooling argmax indices and row scatter-add (used by the
# VJP rules of max pooling and embedding)
# --------------------------------------------------------------------------


def _first_max_update(best, idx, val, pos, valid=None):
    """torch's max-pool comparison: take `val` when it is > the best so far or NaN."""
    upd = val > best
    if np.issubdtype(val.dtype, np.floating):
        upd |= np.isnan(val)
    if valid is not None:
        upd &= valid
    np.copyto(best, val, where=upd)
    np.copyto(idx, np.broadcast_to(pos, idx.shape), where=upd)


def _lowest(dtype):
    return -np.inf if np.issubdtype(dtype, np.floating) else np.iinfo(dtype).min


def max_pool2d_indices(x, *, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False):
    """The argmax of each max_pool2d window, as torch's ``return_indices``: int64,
    the flat index ``h * W + w`` into the input plane.  Ties go to the first
    maximum in row-major window order, a NaN wins (the last NaN), and a window of
    only -inf picks its first in-bounds element, exactly as torch's CPU kernel."""
    x = np.asarray(x)
    k, s, p, d, out = _pool_params(x, 2, kernel_size, stride, padding, dilation, ceil_mode)
    H, W = x.shape[-2:]
    xp = _pool_pad(x, k, s, p, d, out, _lowest(x.dtype))
    rows0 = np.arange(out[0]) * s[0] - p[0]
    cols0 = np.arange(out[1]) * s[1] - p[1]
    span = ((out[0] - 1) * s[0] + 1, (out[1] - 1) * s[1] + 1)
    y = _pool_reduce(xp, k, s, d, out, np.maximum)
    taps = k[0] * k[1]
    tdt = np.min_scalar_type(taps - 1)
    # which tap of each window holds the max, as a small unsigned int; it is
    # updated branch-free, t += hit * (tap - t) in wrap-around arithmetic,
    # because masked writes with scattered masks are several times slower
    first = (-(-np.maximum(-rows0, 0) // d[0]))[:, None] * k[1] + (-(-np.maximum(-cols0, 0) // d[1]))[None, :]
    t = np.empty(x.shape[:-2] + out, tdt)
    t[...] = first.astype(tdt)          # a window of only -inf keeps its first in-bounds element
    delta = np.empty_like(t)

    def blend(hit, j):
        np.subtract(tdt.type(j), t, out=delta)
        np.multiply(delta, hit, out=delta, casting="unsafe")
        np.add(t, delta, out=t)

    def tap(a, bb):
        return xp[..., a * d[0] : a * d[0] + span[0] : s[0], bb * d[1] : bb * d[1] + span[1] : s[1]]

    # the first tap equal to the window max: visit the taps last to first so the
    # earliest match is written last; padding taps are masked out
    for a, bb in reversed(list(np.ndindex(*k))):
        hit = tap(a, bb) == y
        r, c = rows0 + a * d[0], cols0 + bb * d[1]
        vr, vc = (r >= 0) & (r < H), (c >= 0) & (c < W)
        if not (vr.all() and vc.all()):
            hit &= vr[:, None] & vc[None, :]
        blend(hit, a * k[1] + bb)
    # torch lets every NaN win the comparison, so a window with NaNs points at its last NaN
    if np.issubdtype(x.dtype, np.floating) and np.isnan(y).any():
        for a, bb in np.ndindex(*k):
            blend(np.isnan(tap(a, bb)), a * k[1] + bb)
    ta, tb = np.divmod(t, tdt.type(k[1]))
    rows = rows0[:, None] + ta.astype(np.int64) * d[0]
    rows *= W
    rows += cols0[None, :]
    rows += tb.astype(np.int64) * d[1]
    return rows


def _adaptive_bins(n, out):
    i = np.arange(out)
    start = (i * n) // out
    end = -((-(i + 1) * n) // out)
    return start, end


def adaptive_max_pool2d_indices(x, *, output_size):
    """The argmax of each adaptive_max_pool2d bin as a flat ``h * W + w`` index into
    the input plane (torch's ``return_indices``), with torch's tie rule: the first
    maximum in row-major order, or the last NaN."""
    x = np.asarray(x)
    oh, ow = _adaptive_sizes(x, 2, output_size)
    H, W = x.shape[-2:]
    sh, eh = _adaptive_bins(H, oh)
    sw, ew = _adaptive_bins(W, ow)
    idx = np.empty(x.shape[:-2] + (oh, ow), np.int64)
    idx[...] = sh[:, None] * W + sw[None, :]
    best = np.full(x.shape[:-2] + (oh, ow), _lowest(x.dtype), x.dtype)
    for a in range(int((eh - sh).max())):
        r = sh + a
        vr = r < eh
        r = np.minimum(r, H - 1)
        for bb in range(int((ew - sw).max())):
            c = sw + bb
            vc = c < ew
            c = np.minimum(c, W - 1)
            val = x[..., r[:, None], c[None, :]]
            _first_max_update(best, idx, val, r[:, None] * W + c[None, :], vr[:, None] & vc[None, :])
    return idx


def scatter_add_rows(indices, updates, *, num_rows):
    """out = zeros(num_rows, D); out[indices[i]] += updates[i] (repeated indices sum).

    ``updates`` has shape indices.shape + (D,); this is the adjoint of
    ``embedding(indices, table)`` with respect to the table."""
    idx = np.asarray(indices)
    upd = np.asarray(updates)
    if not np.issubdtype(idx.dtype, np.integer):
        raise TypeError(f"scatter_add_rows indices must be integers, got {idx.dtype}")
    if upd.shape[:-1] != idx.shape:
        raise ValueError(f"scatter_add_rows: updates {upd.shape} do not match indices {idx.shape} + (D,)")
    num_rows = int(num_rows)
    flat = idx.reshape(-1).astype(np.intp, copy=False)
    if flat.size and (flat.min() < 0 or flat.max() >= num_rows):
        raise IndexError(f"scatter_add_rows index out of range for {num_rows} rows")
    out = np.zeros((num_rows, upd.shape[-1]), upd.dtype)
    np.add.at(out, flat, upd.reshape(-1, upd.shape[-1]))
    return out


__all__ += ["adaptive_max_pool2d_indices", "max_pool2d_indices", "scatter_add_rows"]
KERNELS.update({
    "max_pool2d_indices": max_pool2d_indices,
    "adaptive_max_pool2d_indices": adaptive_max_pool2d_indices,
    "scatter_add_rows": scatter_add_rows,
})
