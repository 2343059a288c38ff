"""NumPy reference kernels: shape ops, matmul/linear and constants.

Shape ops return views of their input where NumPy can (reshape, transpose,
strided_slice with positive steps, expand), as the PyTorch ops do: treat
kernel outputs as immutable.  `expand` returns a read-only broadcast view.
Index arguments (gather, index_select, one_hot) are bounds-checked: negative
or too-large indices raise IndexError, as in PyTorch.
"""
from __future__ import annotations

import math

import numpy as np

from .dtypes import as_array, dtype_name, np_dtype, quiet, result_type
from .elementwise import cast


def _norm_axis(axis: int, ndim: int, what: str = "axis") -> int:
    rank = ndim if ndim else 1
    if not -rank <= axis < rank:
        raise ValueError(f"{what} {axis} is out of range for a rank-{ndim} tensor")
    return axis % rank


def _finish_dtype(arr: np.ndarray, dtype) -> np.ndarray:
    """Convert a float64/int64 construction to the requested dtype attribute."""
    return cast(arr, dtype=dtype)


# ---------------------------------------------------------------------------
# matrix products
# ---------------------------------------------------------------------------

@quiet
def matmul(a, b):
    """torch.matmul / np.matmul: 1-D operands are promoted to a matrix and the
    added dimension removed; batch dimensions broadcast."""
    dt = result_type(a, b)
    a, b = as_array(a, dt), as_array(b, dt)
    if a.ndim == 0 or b.ndim == 0:
        raise ValueError("matmul: both operands need at least one dimension")
    return np.matmul(a, b)


@quiet
def linear(x, w, b=None):
    """torch.nn.functional.linear: x @ w.T + b."""
    dt = result_type(x, w) if b is None else result_type(x, w, b)
    x, w = as_array(x, dt), as_array(w, dt)
    y = np.matmul(x, w.T)
    if b is not None:
        y += as_array(b, dt)      # y is fresh: no second array of the output's size
    return y


# ---------------------------------------------------------------------------
# shape manipulation
# ---------------------------------------------------------------------------

@quiet
def reshape(x, *, shape):
    x = as_array(x)
    shape = (shape,) if isinstance(shape, (int, np.integer)) else tuple(int(s) for s in shape)
    if sum(1 for s in shape if s == -1) > 1:
        raise ValueError(f"reshape: only one dimension can be -1, got {shape}")
    return np.reshape(x, shape)


@quiet
def transpose(x, *, axes):
    """torch.permute: `axes` is a full permutation (negatives allowed)."""
    x = as_array(x)
    axes = tuple(_norm_axis(int(a), x.ndim) for a in axes)
    if sorted(axes) != list(range(x.ndim)):
        raise ValueError(f"transpose: axes {axes} are not a permutation of {x.ndim} dimensions")
    return np.transpose(x, axes)


@quiet
def concat(*xs, axis=0):
    """torch.cat: operands promoted to a common dtype (torch's rules)."""
    if not xs:
        raise ValueError("concat needs at least one tensor")
    dt = result_type(*[as_array(x) for x in xs])
    arrs = [as_array(x, dt) for x in xs]
    if arrs[0].ndim == 0:
        raise ValueError("concat: zero-dimensional tensors cannot be concatenated")
    axis = _norm_axis(axis, arrs[0].ndim)
    return np.concatenate(arrs, axis=axis)


@quiet
def split(x, *, sections, axis=0):
    """Split along `axis` into `sections` equal chunks (an int, which must
    divide the dimension), or into pieces of the listed sizes.  A tuple."""
    x = as_array(x)
    axis = _norm_axis(axis, x.ndim)
    n = x.shape[axis]
    if isinstance(sections, (int, np.integer)):
        k = int(sections)
        if k <= 0 or n % k:
            raise ValueError(f"split: {k} sections do not divide a dimension of size {n}")
        sizes = [n // k] * k
    else:
        sizes = [int(s) for s in sections]
        if any(s < 0 for s in sizes) or sum(sizes) != n:
            raise ValueError(f"split: sizes {sizes} do not add up to the dimension size {n}")
    out, start = [], 0
    for s in sizes:
        idx = [slice(None)] * x.ndim
        idx[axis] = slice(start, start + s)
        out.append(x[tuple(idx)])
        start += s
    return tuple(out)


def _opt_list(v, ndim, what):
    if v is None:
        return [None] * ndim
    v = list(v)
    if len(v) != ndim:
        raise ValueError(f"strided_slice: {what} needs one entry per axis ({ndim}), got {len(v)}")
    return v


@quiet
def strided_slice(x, *, begin, end, strides=None):
    """x[b0:e0:s0, b1:e1:s1, ...] with Python slice semantics: None, negative
    indices, out-of-range clamping and negative steps all as in Python."""
    x = as_array(x)
    begin = _opt_list(begin, x.ndim, "begin")
    end = _opt_list(end, x.ndim, "end")
    strides = _opt_list(strides, x.ndim, "strides")
    idx = []
    for b, e, s in zip(begin, end, strides):
        s = 1 if s is None else int(s)
        if s == 0:
            raise ValueError("strided_slice: a stride cannot be zero")
        idx.append(slice(None if b is None else int(b), None if e is None else int(e), s))
    out = x[tuple(idx)]
    if any(s.step < 0 for s in idx):
        out = np.ascontiguousarray(out)   # no negative strides escape (torch has none)
    return out


_PAD_MODES = {"constant": "constant", "reflect": "reflect", "replicate": "edge",
              "circular": "wrap"}


@quiet
def pad(x, *, pad, mode="constant", value=0.0):
    """torch.nn.functional.pad: `pad` lists (before, after) pairs starting from
    the LAST dimension.  Negative amounts crop.  Modes: constant, reflect
    (mirror without repeating the edge), replicate (repeat the edge),
    circular (wrap around)."""
    x = as_array(x)
    pad = [int(p) for p in pad]
    if len(pad) % 2 or len(pad) // 2 > x.ndim:
        raise ValueError(f"pad: {len(pad)} values do not describe (before, after) pairs for a "
                         f"rank-{x.ndim} tensor")
    if mode not in _PAD_MODES:
        raise ValueError(f"pad: unknown mode {mode!r}; expected one of {sorted(_PAD_MODES)}")
    widths = [(0, 0)] * x.ndim
    for i in range(len(pad) // 2):
        widths[x.ndim - 1 - i] = (pad[2 * i], pad[2 * i + 1])
    # negative padding: crop first, then pad with the non-negative parts
    crop = tuple(slice(-min(lo, 0), x.shape[d] + min(hi, 0)) for d, (lo, hi) in enumerate(widths))
    if any(lo < 0 or hi < 0 for lo, hi in widths):
        x = x[crop]
    widths = [(max(lo, 0), max(hi, 0)) for lo, hi in widths]
    for d, (lo, hi) in enumerate(widths):
        n = x.shape[d]
        if mode == "reflect" and (lo >= n or hi >= n) and (lo or hi):
            raise ValueError(f"pad: reflect padding ({lo}, {hi}) must be smaller than the "
                             f"dimension size {n}")
        if mode in ("replicate", "circular") and n == 0 and (lo or hi):
            raise ValueError(f"pad: {mode} padding of an empty dimension")
        if mode == "circular" and (lo > n or hi > n):
            raise ValueError(f"pad: circular padding ({lo}, {hi}) must not exceed the "
                             f"dimension size {n}")
    if mode == "constant":
        return np.pad(x, widths, mode="constant", constant_values=x.dtype.type(value))
    return np.pad(x, widths, mode=_PAD_MODES[mode])


def _check_index(index: np.ndarray, size: int, op: str):
    if index.dtype.kind not in "iu":
        raise TypeError(f"{op}: index must be an integer tensor, got {index.dtype}")
    if index.size and (index.min() < 0 or index.max() >= size):
        bad = index.min() if index.min() < 0 else index.max()
        raise IndexError(f"{op}: index {bad} is out of bounds for dimension of size {size}")


@quiet
def gather(x, index, *, axis):
    """torch.gather: out[i][j][k] = x[index[i][j][k]][j][k] (axis 0).  `index`
    has x's rank and may be smaller than x in every other dimension."""
    x = as_array(x)
    index = as_array(index)
    if index.ndim != x.ndim:
        raise ValueError(f"gather: index rank {index.ndim} differs from input rank {x.ndim}")
    if x.ndim == 0:
        _check_index(index, 1, "gather")
        return x.copy()
    axis = _norm_axis(axis, x.ndim)
    for d in range(x.ndim):
        if d != axis and index.shape[d] > x.shape[d]:
            raise ValueError(f"gather: index shape {index.shape} exceeds input shape {x.shape} "
                             f"in dimension {d}")
    _check_index(index, x.shape[axis], "gather")
    sub = x[tuple(slice(None) if d == axis else slice(0, index.shape[d]) for d in range(x.ndim))]
    return np.take_along_axis(sub, index.astype(np.intp, copy=False), axis=axis)


@quiet
def index_select(x, index, *, axis):
    """torch.index_select: pick the entries `index` (1-D, or 0-d meaning one
    entry) along `axis`."""
    x = as_array(x)
    index = as_array(index)
    if index.ndim > 1:
        raise ValueError("index_select: index must be 0-d or 1-D")
    index = index.reshape(-1)
    if x.ndim == 0:
        _check_index(index, 1, "index_select")
        return x.reshape(()).copy() if index.size == 1 else np.repeat(x, index.size)
    axis = _norm_axis(axis, x.ndim)
    _check_index(index, x.shape[axis], "index_select")
    return np.take(x, index.astype(np.intp, copy=False), axis=axis)


@quiet
def expand(x, *, shape):
    """torch.Tensor.expand: size-1 dimensions broadcast to `shape`; -1 keeps a
    dimension; new leading dimensions may be added (not as -1)."""
    x = as_array(x)
    shape = (shape,) if isinstance(shape, (int, np.integer)) else tuple(int(s) for s in shape)
    lead = len(shape) - x.ndim
    if lead < 0:
        raise ValueError(f"expand: target shape {shape} has fewer dimensions than input {x.shape}")
    target = []
    for i, s in enumerate(shape):
        if i < lead:
            if s < 0:
                raise ValueError(f"expand: new leading dimension {i} cannot be {s}")
            target.append(s)
            continue
        cur = x.shape[i - lead]
        if s == -1:
            target.append(cur)
        elif cur == s or cur == 1:
            target.append(s)
        else:
            raise ValueError(f"expand: dimension {i} of size {cur} cannot be expanded to {s} "
                             f"(input {x.shape}, target {shape})")
    return np.broadcast_to(x, tuple(target))


@quiet
def tril(x, *, k=0):
    x = as_array(x)
    if x.ndim < 2:
        raise ValueError("tril needs a tensor of rank >= 2")
    return np.tril(x, k=k)


@quiet
def triu(x, *, k=0):
    x = as_array(x)
    if x.ndim < 2:
        raise ValueError("triu needs a tensor of rank >= 2")
    return np.triu(x, k=k)


# ---------------------------------------------------------------------------
# constants
# ---------------------------------------------------------------------------

@quiet
def one_hot(indices, *, num_classes=-1, dtype="float32"):
    """F.one_hot, but in `dtype` (float32 by default, not int64).
    num_classes=-1 means max(indices) + 1."""
    indices = as_array(indices)
    if indices.dtype.kind not in "iu":
        raise TypeError(f"one_hot: indices must be integers, got {indices.dtype}")
    if num_classes is None or num_classes < 0:
        num_classes = int(indices.max()) + 1 if indices.size else 0
    _check_index(indices, num_classes, "one_hot")
    hot = indices[..., None] == np.arange(num_classes, dtype=indices.dtype)
    return _finish_dtype(hot, dtype)


@quiet
def arange(*, start=0, stop, step=1, dtype="int64"):
    """torch.arange: length ceil((stop - start) / step); float values are
    start + i*step computed in float64, then rounded to `dtype`."""
    if step == 0:
        raise ValueError("arange: step must be nonzero")
    n = math.ceil((stop - start) / step)
    n = max(n, 0)
    name = dtype_name(dtype)
    target = np_dtype(name)
    if target.kind in "iub" and all(isinstance(v, (int, np.integer)) for v in (start, stop, step)):
        return (int(start) + int(step) * np.arange(n, dtype=np.int64)).astype(target)
    vals = float(start) + float(step) * np.arange(n, dtype=np.float64)
    if target.kind in "iu":
        return np.trunc(vals).astype(target)
    return _finish_dtype(vals, name)


@quiet
def full(*, shape, value, dtype="float32"):
    shape = (shape,) if isinstance(shape, (int, np.integer)) else tuple(int(s) for s in shape)
    name = dtype_name(dtype)
    if name == "bfloat16":
        return cast(np.full(shape, value, dtype=np.float32), dtype=name)
    return np.full(shape, value, dtype=np_dtype(name))


@quiet
def sinusoidal_positions(*, length, dim, dtype="float32"):
    """Vaswani et al. (2017) positional encoding, shape (length, dim):
    pe[pos, 2i] = sin(pos / 10000^(2i/dim)), pe[pos, 2i+1] = cos(same).
    Computed in float64, then rounded to `dtype`."""
    from ....compiler.ops.shape import sinusoidal_table   # the table is defined with its op
    return _finish_dtype(sinusoidal_table(int(length), int(dim)), dtype)


KERNELS = {
    "matmul": matmul, "linear": linear,
    "reshape": reshape, "transpose": transpose, "concat": concat, "split": split,
    "strided_slice": strided_slice, "pad": pad, "gather": gather,
    "index_select": index_select, "expand": expand, "tril": tril, "triu": triu,
    "one_hot": one_hot, "arange": arange, "full": full,
    "sinusoidal_positions": sinusoidal_positions,
}


@quiet
def scatter_add(x, index, src, *, axis):
    """torch.Tensor.scatter_add (out of place): out = x.copy(), then
    out[index[i][j][k]][j][k] += src[i][j][k] (axis 0); repeated indices add
    up.  `src` has the index's shape; `index` has x's rank and may be smaller
    than x in every other dimension (the rest of x is left as is)."""
    x = as_array(x)
    index = as_array(index)
    src = as_array(src, x.dtype)
    if index.ndim != x.ndim:
        raise ValueError(f"scatter_add: index rank {index.ndim} differs from input rank {x.ndim}")
    if src.shape != index.shape:
        raise ValueError(f"scatter_add: src shape {src.shape} differs from index shape {index.shape}")
    out = np.array(x, copy=True)
    if x.ndim == 0:
        _check_index(index, 1, "scatter_add")
        return out + src
    axis = _norm_axis(axis, x.ndim)
    for d in range(x.ndim):
        if d != axis and index.shape[d] > x.shape[d]:
            raise ValueError(f"scatter_add: index shape {index.shape} exceeds input shape {x.shape} "
                             f"in dimension {d}")
    _check_index(index, x.shape[axis], "scatter_add")
    coords = list(np.indices(index.shape, sparse=True))
    coords[axis] = index.astype(np.intp, copy=False)
    np.add.at(out, tuple(coords), src)
    return out


KERNELS["scatter_add"] = scatter_add
