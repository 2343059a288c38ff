"""NumPy reference pooling (max, average, adaptive), with PyTorch semantics,
and the argmax indices max pooling's VJP rule scatters through.  Each
combines the strided slices of each window tap, one axis at a time."""
from __future__ import annotations

import numpy as np

from ....compiler.ops.conv import ntuple  # attribute normalisation, with the OpDefs
from ....compiler.ops.pool import avg_pool_counts  # the divisor rule, with the OpDefs
from .dtypes import float_dtype


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


def max_pool3d(x, *, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False):
    """3-d max pooling over the last three axes of x (N, C, D, H, W) or (C, D, H, W)."""
    return _max_pool(x, 3, kernel_size, stride, padding, dilation, ceil_mode)


def _avg_pool(
    x, nd, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override, dilation=1
):
    x = np.asarray(x)
    dtype = float_dtype(x)
    x = x.astype(dtype, copy=False)
    k, s, p, d, out = _pool_params(x, nd, kernel_size, stride, padding, dilation, ceil_mode)
    total = _pool_reduce(_pool_pad(x, k, s, p, d, out, 0), k, s, d, out, np.add)
    # total is a fresh array: divide it in place (no second array of the output's size)
    if divisor_override:
        total /= dtype.type(divisor_override)
        return total
    # the window area is separable, so the divisor is an outer product of 1-d counts
    div = np.ones((), dtype)
    for axis, (n, kk, ss, pp, dd, o) in enumerate(zip(x.shape[-nd:], k, s, p, d, out)):
        counts = np.asarray(avg_pool_counts(n, kk, ss, pp, dd, o, count_include_pad), dtype)
        div = np.multiply.outer(div, counts) if axis else counts
    total /= div
    return total


def avg_pool1d(
    x, *, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True, dilation=1
):
    """1-d average pooling over the last axis of x (N, C, L) or (C, L)."""
    return _avg_pool(
        x, 1, kernel_size, stride, padding, ceil_mode, count_include_pad, None, dilation
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
    dilation=1,
):
    """2-d average pooling over the last two axes of x (N, C, H, W) or (C, H, W)."""
    return _avg_pool(
        x, 2, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override, dilation
    )


def avg_pool3d(
    x,
    *,
    kernel_size,
    stride=None,
    padding=0,
    ceil_mode=False,
    count_include_pad=True,
    divisor_override=None,
    dilation=1,
):
    """3-d average pooling over the last three axes of x (N, C, D, H, W) or (C, D, H, W)."""
    return _avg_pool(
        x, 3, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override, dilation
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
        x = x.astype(float_dtype(x), copy=False)
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
# backward helpers: the argmax indices of max pooling (used by its VJP rule)
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


def _max_pool_indices(x, nd, kernel_size, stride, padding, dilation, ceil_mode):
    """The argmax of each max-pooling window, as torch's ``return_indices``: int64,
    the row-major flat index into the input plane (``h * W + w`` in 2-D).  Ties go
    to the first maximum in row-major window order, a NaN wins (the last NaN), and
    a window of only -inf picks its first in-bounds element, exactly as torch's CPU
    kernel."""
    x = np.asarray(x)
    k, s, p, d, out = _pool_params(x, nd, kernel_size, stride, padding, dilation, ceil_mode)
    sizes = x.shape[-nd:]
    xp = _pool_pad(x, k, s, p, d, out, _lowest(x.dtype))
    starts = [np.arange(o) * ss - pp for o, ss, pp in zip(out, s, p)]
    span = [(o - 1) * ss + 1 for o, ss in zip(out, s)]
    y = _pool_reduce(xp, k, s, d, out, np.maximum)

    def along(i, v):
        """v (a 1-d array over output axis i) shaped to broadcast over the output grid."""
        return v.reshape((1,) * i + (-1,) + (1,) * (nd - 1 - i))

    tap_stride = [int(np.prod(k[i + 1:])) for i in range(nd)]
    tdt = np.min_scalar_type(int(np.prod(k)) - 1)
    # which tap of each window holds the max, as a small unsigned int; it is
    # updated branch-free, t += hit * (tap - t) in wrap-around arithmetic,
    # because masked writes with scattered masks are several times slower
    first = sum(along(i, -(-np.maximum(-starts[i], 0) // d[i])) * tap_stride[i] for i in range(nd))
    t = np.empty(x.shape[:-nd] + out, tdt)
    t[...] = first.astype(tdt)          # a window of only -inf keeps its first in-bounds element
    delta = np.empty_like(t)

    def blend(hit, j):
        np.subtract(tdt.type(j), t, out=delta)
        np.multiply(delta, hit, out=delta, casting="unsafe")
        np.add(t, delta, out=t)

    def tap(taps):
        return xp[(Ellipsis,) + tuple(slice(a * dd, a * dd + sp, ss) for a, dd, sp, ss in zip(taps, d, span, s))]

    def tap_id(taps):
        return sum(a * ts for a, ts in zip(taps, tap_stride))

    # the first tap equal to the window max: visit the taps last to first so the
    # earliest match is written last; padding taps are masked out
    for taps in reversed(list(np.ndindex(*k))):
        hit = tap(taps) == y
        for i, a in enumerate(taps):
            pos = starts[i] + a * d[i]
            ok = (pos >= 0) & (pos < sizes[i])
            if not ok.all():
                hit &= along(i, ok)
        blend(hit, tap_id(taps))
    # torch lets every NaN win the comparison, so a window with NaNs points at its last NaN
    if np.issubdtype(x.dtype, np.floating) and np.isnan(y).any():
        for taps in np.ndindex(*k):
            blend(np.isnan(tap(taps)), tap_id(taps))
    # the tap back to input coordinates (the divisions in the small tap dtype: int64 ones are slow)
    flat, rem = None, t
    for i in range(nd):
        a, rem = np.divmod(rem, tdt.type(tap_stride[i])) if i < nd - 1 else (rem, None)
        coord = a.astype(np.int64)
        coord *= d[i]
        coord += along(i, starts[i])
        if flat is None:
            flat = coord
        else:
            flat *= sizes[i]
            flat += coord
    return flat


def max_pool2d_indices(x, *, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False):
    """The argmax of each max_pool2d window as a flat ``h * W + w`` index (torch's ``return_indices``)."""
    return _max_pool_indices(x, 2, kernel_size, stride, padding, dilation, ceil_mode)


def max_pool3d_indices(x, *, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False):
    """The argmax of each max_pool3d window as a flat ``(d * H + h) * W + w`` index (torch's ``return_indices``)."""
    return _max_pool_indices(x, 3, kernel_size, stride, padding, dilation, ceil_mode)


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

