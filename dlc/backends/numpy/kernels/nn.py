"""NumPy reference kernels for the neural-network ops, with PyTorch semantics.

Every kernel is a plain function: tensor arguments are positional NumPy arrays
(``None`` for an absent optional tensor), attributes are keyword-only and named
and defaulted as in ``torch.nn.functional``.  Results are computed in the dtype
of the main input (float32 in, float32 out) and multi-output kernels return a
tuple.  Everything is vectorised: convolutions use im2col views plus one BLAS
matmul (or, for depthwise convolutions, a short loop over the kernel taps);
pooling combines the strided slices of each window tap, one axis at a time.
No kernel loops over pixels or batch elements.

The kernels live by family: convolutions in :mod:`.conv`, pooling in
:mod:`.pooling`, normalisation in :mod:`.norm`; this module holds dropout,
embedding and attention, and gathers every family's kernels into ``KERNELS``
(all of them stay importable from here).  The recurrent kernels (rnn, lstm,
gru) live in :mod:`.recurrent`.
"""

from __future__ import annotations

import math

import numpy as np

from ....runtime.random import dropout_mask  # the one dropout stream (TVM and the deploy runtime draw it too)
from .conv import conv1d, conv2d, conv3d, conv_transpose2d, conv_transpose3d
from .dtypes import cast_operand, float_dtype
from .norm import batch_norm, group_norm, layer_norm, local_response_norm, scaled_moments  # noqa: F401
from .pooling import (
    adaptive_avg_pool1d,
    adaptive_avg_pool2d,
    adaptive_max_pool2d,
    adaptive_max_pool2d_indices,
    avg_pool1d,
    avg_pool2d,
    avg_pool3d,
    max_pool1d,
    max_pool2d,
    max_pool2d_indices,
    max_pool3d,
    max_pool3d_indices,
)

__all__ = [
    "KERNELS",
    "adaptive_avg_pool1d",
    "adaptive_avg_pool2d",
    "adaptive_max_pool2d",
    "avg_pool1d",
    "avg_pool2d",
    "avg_pool3d",
    "batch_norm",
    "conv1d",
    "conv2d",
    "conv3d",
    "conv_transpose2d",
    "conv_transpose3d",
    "dropout",
    "dropout_mask",
    "embedding",
    "group_norm",
    "layer_norm",
    "local_response_norm",
    "max_pool1d",
    "max_pool2d",
    "max_pool3d",
    "scaled_dot_product_attention",
]



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
    dtype = float_dtype(x)
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
    dtype = float_dtype(q)
    q = q.astype(dtype, copy=False)
    k = cast_operand(k, dtype)
    v = cast_operand(v, dtype)
    L, E = q.shape[-2:]
    S = k.shape[-2]
    if scale is None:
        scale = 1.0 / math.sqrt(E)
    # the softmax below works in place on `scores`: one array of (..., L, S), not four
    scores = np.matmul(q, np.swapaxes(k, -1, -2))
    scores *= dtype.type(scale)
    if is_causal:
        if attn_mask is not None:
            raise ValueError("explicit attn_mask should not be set when is_causal=True")
        attn_mask = np.tril(np.ones((L, S), dtype=bool))
    if attn_mask is not None:
        attn_mask = np.asarray(attn_mask)
        if attn_mask.dtype == np.bool_:
            scores = np.where(attn_mask, scores, dtype.type(-np.inf))
        elif np.broadcast_shapes(scores.shape, attn_mask.shape) == scores.shape:
            scores += attn_mask.astype(dtype, copy=False)
        else:
            scores = scores + attn_mask.astype(dtype, copy=False)
    # stable softmax; a fully masked row has max -inf, shift it by 0 instead so it
    # yields exp(-inf) = 0 everywhere rather than NaN, then divide by 1 not 0.
    row_max = scores.max(axis=-1, keepdims=True)
    row_max = np.where(np.isfinite(row_max), row_max, dtype.type(0))
    scores -= row_max
    e = np.exp(scores, out=scores)
    denom = e.sum(axis=-1, keepdims=True)
    e /= np.where(denom == 0, dtype.type(1), denom)
    return np.matmul(e, v)



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



KERNELS = {
    "conv1d": conv1d,
    "conv2d": conv2d,
    "conv3d": conv3d,
    "conv_transpose2d": conv_transpose2d,
    "conv_transpose3d": conv_transpose3d,
    "max_pool1d": max_pool1d,
    "max_pool2d": max_pool2d,
    "max_pool3d": max_pool3d,
    "avg_pool1d": avg_pool1d,
    "avg_pool2d": avg_pool2d,
    "avg_pool3d": avg_pool3d,
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



def _with_layout(fn):
    """`fn` (an NCHW kernel) taking ``layout="NHWC"`` too: the input transposed
    to NCHW and the first result back, so an NHWC op computes exactly what its
    NCHW twin does (the layout pass must not change a single bit here)."""
    def kernel(x, *args, layout="NCHW", **attrs):
        if layout == "NCHW":
            return fn(x, *args, **attrs)
        if layout != "NHWC" or np.ndim(x) != 4:
            raise ValueError(f"{fn.__name__}: layout {layout!r} needs a rank-4 NHWC input, got {np.shape(x)}")
        out = fn(np.transpose(x, (0, 3, 1, 2)), *args, **attrs)
        if isinstance(out, tuple):
            return (np.transpose(out[0], (0, 2, 3, 1)),) + out[1:]
        return np.transpose(out, (0, 2, 3, 1))
    kernel.__name__ = fn.__name__
    return kernel


for _name in ("conv2d", "max_pool2d", "avg_pool2d", "adaptive_avg_pool2d", "batch_norm"):
    KERNELS[_name] = _with_layout(KERNELS[_name])


__all__ += ["adaptive_max_pool2d_indices", "max_pool2d_indices", "max_pool3d_indices", "scatter_add_rows"]
KERNELS.update({
    "max_pool2d_indices": max_pool2d_indices,
    "max_pool3d_indices": max_pool3d_indices,
    "adaptive_max_pool2d_indices": adaptive_max_pool2d_indices,
    "scatter_add_rows": scatter_add_rows,
})
