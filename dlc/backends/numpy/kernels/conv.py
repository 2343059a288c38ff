"""NumPy reference convolutions (conv1d/2d/3d, conv_transpose2d/3d), with
PyTorch semantics: im2col views plus one BLAS matmul, or, for depthwise
convolutions, a short loop over the kernel taps."""
from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ....compiler.ops.conv import conv_pads, ntuple  # attribute normalisation, with the OpDefs
from .dtypes import cast_operand, channel_shape, float_dtype


# --------------------------------------------------------------------------
# convolution
# --------------------------------------------------------------------------


def _conv_operands(x, w, b, nd: int, opname: str):
    """x, w and b (or None) in x's compute dtype, with x and w checked to be (nd + 2)-d."""
    x = np.asarray(x)
    dtype = float_dtype(x)
    x = x.astype(dtype, copy=False)
    w = cast_operand(w, dtype)
    b = cast_operand(b, dtype)
    if x.ndim != nd + 2 or w.ndim != nd + 2:
        raise ValueError(
            f"{opname} expects {nd + 2}-d input and weight, got {x.shape} and {w.shape}"
        )
    return x, w, b, dtype


def _conv_nd(x, w, b, stride, padding, dilation, groups, nd):
    """N-d cross-correlation (torch convNd) for x (N, C, *spatial), w (O, C/groups, *k)."""
    x, w, b, dtype = _conv_operands(x, w, b, nd, f"conv{nd}d")
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
            wm = w.reshape(out_ch, cg * k_total)
            if k_total > p_total:
                # a large window over few positions (a weight gradient): copy the
                # columns position-major, whose inner axis is a run of the window's
                # row, and hand BLAS the transpose
                perm = (0,) + tuple(range(2, nd + 2)) + (1,) + tuple(range(nd + 2, 2 * nd + 2))
                cols = patches.transpose(perm).reshape(n * p_total, cg * k_total).T
            else:
                perm = (1,) + tuple(range(nd + 2, 2 * nd + 2)) + (0,) + tuple(range(2, nd + 2))
                cols = patches.transpose(perm).reshape(cg * k_total, n * p_total)
            out = (wm @ cols).reshape((out_ch, n) + out_sp)
            out = np.ascontiguousarray(np.moveaxis(out, 0, 1))
        else:
            perm = (0, 1) + tuple(range(nd + 2, 2 * nd + 2)) + tuple(range(2, nd + 2))
            cols = patches.transpose(perm).reshape(n, groups, cg * k_total, p_total)
            wm = w.reshape(groups, og, cg * k_total)
            out = np.matmul(wm, cols).reshape((n, out_ch) + out_sp)
    if b is not None:
        out += b.reshape(channel_shape(out.ndim, out_ch))
    return out


def conv1d(x, w, b=None, *, stride=1, padding=0, dilation=1, groups=1):
    """1-d convolution: x (N, C, L), w (O, C/groups, k); padding int, "valid" or "same"."""
    return _conv_nd(x, w, b, stride, padding, dilation, groups, 1)


def conv2d(x, w, b=None, *, stride=1, padding=0, dilation=1, groups=1):
    """2-d convolution: x (N, C, H, W), w (O, C/groups, kh, kw); padding int, pair, "valid", "same"."""
    return _conv_nd(x, w, b, stride, padding, dilation, groups, 2)


def conv3d(x, w, b=None, *, stride=1, padding=0, dilation=1, groups=1):
    """3-d convolution: x (N, C, D, H, W), w (O, C/groups, kd, kh, kw); padding int, triple, "valid", "same"."""
    return _conv_nd(x, w, b, stride, padding, dilation, groups, 3)


def _conv_transpose_nd(x, w, b, stride, padding, output_padding, groups, dilation, nd):
    """N-d transposed convolution (the adjoint of convNd), computed as GEMM + col2im."""
    x, w, b, dtype = _conv_operands(x, w, b, nd, f"conv_transpose{nd}d")
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
        out += b.reshape(channel_shape(out.ndim, out_ch))
    return out


def conv_transpose2d(
    x, w, b=None, *, stride=1, padding=0, output_padding=0, groups=1, dilation=1
):
    """2-d transposed convolution: x (N, Cin, H, W), w (Cin, Cout/groups, kh, kw)."""
    return _conv_transpose_nd(
        x, w, b, stride, padding, output_padding, groups, dilation, 2
    )


def conv_transpose3d(
    x, w, b=None, *, stride=1, padding=0, output_padding=0, groups=1, dilation=1
):
    """3-d transposed convolution: x (N, Cin, D, H, W), w (Cin, Cout/groups, kd, kh, kw)."""
    return _conv_transpose_nd(
        x, w, b, stride, padding, output_padding, groups, dilation, 3
    )
