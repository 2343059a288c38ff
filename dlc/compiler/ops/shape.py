"""Shape ops: reshape, transpose, concat, split, strided_slice, pad, gather,
index_select, expand, tril/triu, one_hot, and the operand-less constants
arange, full and sinusoidal_positions; scatter_add, the adjoint of gather.

Their VJP rules are in `shape_vjp` (the ops package imports it right after
this module).
"""
from __future__ import annotations

import functools
import math

from ...errors import ShapeError
from ..dims import Dim, add, as_dim, floordiv, known_equal, prod, sub
from ..types import DType, TensorType, fmt_shape
from .common import norm_axis, require_int, same_dim
from .registry import CONSTANT, SHAPE, defop, required


def dtype_attr(v, opname: str) -> DType:
    if isinstance(v, DType):
        return v
    try:
        return DType.parse(str(v))
    except KeyError:
        raise ShapeError(f"{opname}: unknown dtype {v!r}", "use one of f16, bf16, f32, f64, i8, i32, i64, bool")


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def shape_attr(v, opname: str, allow_minus_one: bool = False) -> tuple:
    """A shape attribute: an int or a list of ints / `Dim`s, all >= 0 (or -1)."""
    items = tuple(v) if isinstance(v, (list, tuple)) else (v,)
    for d in items:
        if isinstance(d, Dim):
            continue
        if not _is_int(d) or (d < 0 and not (allow_minus_one and d == -1)):
            extra = " or -1" if allow_minus_one else ""
            raise ShapeError(f"{opname}: shape entries must be non-negative integers{extra}, got {fmt_shape(items)}")
    return tuple(d.value if isinstance(d, Dim) and d.is_const else d for d in items)


def _reshape(ts, attrs):
    x = ts[0]
    shape = shape_attr(attrs["shape"], "reshape", allow_minus_one=True)
    holes = [i for i, d in enumerate(shape) if _is_int(d) and d == -1]
    if len(holes) > 1:
        raise ShapeError(f"reshape: only one -1 is allowed, got {fmt_shape(shape)} (input {x})",
                         "spell out all dimensions but one")
    numel = x.numel()
    if holes:
        known = prod(d for d in shape if not (_is_int(d) and d == -1))
        inferred = as_dim(numel).exact_div(known) if known != 0 else None
        if inferred is None:
            raise ShapeError(f"reshape: cannot reshape {x} ({numel} elements) into {fmt_shape(shape)}: "
                             f"{numel} is not divisible by {known}",
                             "make the explicit dimensions multiply to a divisor of the element count")
        shape = shape[:holes[0]] + (inferred,) + shape[holes[0] + 1:]
    elif known_equal(prod(shape), numel) is not True:
        raise ShapeError(f"reshape: cannot reshape {x} ({numel} elements) into {fmt_shape(shape)} "
                         f"({prod(shape)} elements)",
                         "the element count must stay the same; use -1 for one dimension to infer it")
    return x.with_shape(shape)


defop("reshape", "x", _reshape, attrs={"shape": required()}, groups={SHAPE},
      doc="Same elements, new shape; one -1 is inferred.")


def _transpose(ts, attrs):
    x = ts[0]
    axes = tuple(reversed(range(x.rank))) if attrs["axes"] is None else tuple(attrs["axes"])
    if len(axes) != x.rank or not all(_is_int(a) for a in axes):
        raise ShapeError(f"transpose: axes {list(axes)} must name each of the {x.rank} axes of {x} once",
                         f"give a permutation of 0..{x.rank - 1}")
    norm = [norm_axis(a, x.rank, "transpose") for a in axes]
    if sorted(norm) != list(range(x.rank)):
        raise ShapeError(f"transpose: axes {list(axes)} are not a permutation of the axes of {x}",
                         f"give each of 0..{x.rank - 1} exactly once")
    return x.with_shape(x.shape[a] for a in norm)


defop("transpose", "x", _transpose, attrs={"axes": required()}, groups={SHAPE},
      doc="Permute the axes (numpy.transpose).")


def _concat(ts, attrs):
    if not ts or any(t is None for t in ts):
        raise ShapeError("concat needs at least one tensor")
    first = ts[0]
    ax = norm_axis(attrs["axis"], first.rank, "concat")
    total = first.shape[ax]
    for t in ts[1:]:
        if t.dtype != first.dtype:
            raise ShapeError(f"concat: dtypes differ: {first} and {t}", "cast one of them first")
        if t.rank != first.rank:
            raise ShapeError(f"concat: ranks differ: {first} and {t}")
        for i, (a, b) in enumerate(zip(first.shape, t.shape)):
            if i != ax:
                same_dim(a, b, f"concat along axis {ax}: {first} and {t} differ in dimension {i} ({a} vs {b})",
                         "all dimensions except the concatenation axis must match")
        total = add(total, t.shape[ax])
    return first.with_shape(first.shape[:ax] + (total,) + first.shape[ax + 1:])


defop("concat", "*xs", _concat, attrs={"axis": 0}, groups={SHAPE}, variadic=True,
      doc="Join tensors along an existing axis.")


def _split(ts, attrs):
    x = ts[0]
    ax = norm_axis(attrs["axis"], x.rank, "split")
    d = x.shape[ax]
    sec = attrs["sections"]
    if _is_int(sec):
        if sec <= 0:
            raise ShapeError(f"split: the number of sections must be positive, got {sec}")
        size = as_dim(d).exact_div(sec)
        if size is None:
            raise ShapeError(f"split: dimension {ax} of {x} ({d}) does not divide into {sec} equal sections",
                             "pass a list of section sizes instead")
        sizes = [size] * sec
    elif isinstance(sec, (list, tuple)) and sec:
        sizes = list(shape_attr(sec, "split"))
        total = functools.reduce(add, sizes, 0)
        if known_equal(total, d) is not True:
            raise ShapeError(f"split: section sizes {fmt_shape(sizes)} sum to {total}, "
                             f"but dimension {ax} of {x} is {d}", "the sizes must add up to the dimension")
    else:
        raise ShapeError(f"split: sections must be a positive int or a non-empty list of sizes, got {sec!r}")
    return [x.with_shape(x.shape[:ax] + (s,) + x.shape[ax + 1:]) for s in sizes]


defop("split", "x", _split, attrs={"sections": required(), "axis": 0}, groups={SHAPE},
      doc="Cut along an axis into n equal parts or parts of given sizes; several results.")


def _slice_len(d, b, e, s, ax, x):
    if s is None:
        s = 1
    if not _is_int(s) or s == 0:
        raise ShapeError(f"strided_slice: stride on axis {ax} of {x} must be a non-zero int, got {s!r}",
                         "use 1 for every element, -1 to reverse")
    for v in (b, e):
        if v is not None and not (_is_int(v) or isinstance(v, Dim)):
            raise ShapeError(f"strided_slice: begin/end on axis {ax} must be ints, dimensions or None, got {v!r}")
    b, e = (v.value if isinstance(v, Dim) and v.is_const else v for v in (b, e))
    if _is_int(d) and all(v is None or _is_int(v) for v in (b, e)):
        return len(range(*slice(b, e, s).indices(d)))
    if _is_int(d):
        raise ShapeError(f"strided_slice: axis {ax} of {x} has the known size {d} but the bounds "
                         f"[{_bound(b)}:{_bound(e)}] are symbolic",
                         "slice a known axis with known bounds, or keep the axis symbolic")
    return _symbolic_slice_len(d, b, e, s, ax, x)


def _bound(v) -> str:
    return "" if v is None else str(v)


def _symbolic_slice_len(d, b, e, s, ax, x):
    """The length of [b:e:s] on an axis of symbolic size d.  Bounds are taken to
    be in range, as a user slicing `x[:, :T - 1]` means them: a negative constant
    counts from the end (the axis is assumed that long), anything else is an
    index in [0, d]."""
    def index(v):
        return add(d, v) if _is_int(v) and v < 0 else v
    if s > 0:
        start, stop = (0 if b is None else index(b)), (d if e is None else index(e))
        span = sub(stop, start)
    else:
        start, stop = (sub(d, 1) if b is None else index(b)), (-1 if e is None else index(e))
        span = sub(start, stop)
    n = floordiv(add(span, abs(s) - 1), abs(s))
    if _is_int(n) and n <= 0:
        raise ShapeError(f"strided_slice: [{_bound(b)}:{_bound(e)}:{s}] on axis {ax} of {x} is empty",
                         "dlc sizes are at least 1: check the bounds")
    return n


def _strided_slice(ts, attrs):
    x = ts[0]
    begin, end, strides = ([None] * x.rank if attrs[k] is None else list(attrs[k])
                           for k in ("begin", "end", "strides"))
    if not (len(begin) == len(end) == len(strides) == x.rank):
        raise ShapeError(f"strided_slice: begin/end/strides need one entry per axis of {x}, "
                         f"got {len(begin)}/{len(end)}/{len(strides)}", "use None for an axis kept whole")
    shape = list(x.shape)
    for ax, (b, e, s) in enumerate(zip(begin, end, strides)):
        shape[ax] = _slice_len(x.shape[ax], b, e, s, ax, x)
    return x.with_shape(shape)


defop("strided_slice", "x", _strided_slice,
      attrs={"begin": required(), "end": required(), "strides": None}, groups={SHAPE},
      builtin="indexing: x[a:b:s, ...]",
      doc="x[b0:e0:s0, b1:e1:s1, ...] with Python slice semantics.")


def _pad(ts, attrs):
    x = ts[0]
    pad = list(attrs["pad"]) if isinstance(attrs["pad"], (list, tuple)) else None
    if pad is None or len(pad) % 2 or len(pad) // 2 > x.rank or not all(_is_int(p) for p in pad):
        raise ShapeError(f"pad: pad must be an even-length list of ints (last dimension first) covering at most "
                         f"{x.rank} dimensions of {x}, got {attrs['pad']!r}",
                         "e.g. pad=[1, 1] pads the last dimension by one on each side")
    mode = attrs["mode"]
    if mode not in ("constant", "reflect", "replicate", "circular"):
        raise ShapeError(f"pad: unknown mode {mode!r}", "use constant, reflect, replicate or circular")
    shape = list(x.shape)
    for i in range(len(pad) // 2):
        ax = x.rank - 1 - i
        lo, hi = pad[2 * i], pad[2 * i + 1]
        d = shape[ax]
        if mode != "constant" and (lo < 0 or hi < 0):
            raise ShapeError(f"pad: negative padding is only allowed in constant mode, got {pad}")
        if mode == "reflect" and _is_int(d) and (lo >= d or hi >= d):
            raise ShapeError(f"pad: reflect padding ({lo}, {hi}) must be smaller than dimension {ax} of {x} ({d})",
                             "use replicate or constant padding, or pad less")
        if mode == "circular" and _is_int(d) and (lo > d or hi > d):
            raise ShapeError(f"pad: circular padding ({lo}, {hi}) exceeds dimension {ax} of {x} ({d})")
        new = add(d, lo + hi)
        if _is_int(new) and new < 0:
            raise ShapeError(f"pad: padding {pad} makes dimension {ax} of {x} negative")
        shape[ax] = new
    return x.with_shape(shape)


defop("pad", "x", _pad, attrs={"pad": required(), "mode": "constant", "value": 0.0}, groups={SHAPE},
      doc="torch.nn.functional.pad: (left, right) pairs, last dimension first.")


def _gather(ts, attrs):
    x, idx = ts
    require_int(idx, "gather", "index")
    if idx.rank != x.rank:
        raise ShapeError(f"gather: index {idx} must have the same rank as the input {x}",
                         "unsqueeze the index to the input's rank, or use index_select")
    ax = norm_axis(attrs["axis"], x.rank, "gather")
    for i, (a, b) in enumerate(zip(x.shape, idx.shape)):
        if i != ax and _is_int(a) and _is_int(b) and b > a:
            raise ShapeError(f"gather: index {idx} is larger than input {x} in dimension {i}",
                             "outside the gather axis the index may not exceed the input")
    return x.with_shape(idx.shape)


defop("gather", "x index", _gather, attrs={"axis": required()}, groups={SHAPE},
      doc="torch.gather: out[i][j] = x[index[i][j]][j] along `axis`.")


def _index_select(ts, attrs):
    x, idx = ts
    require_int(idx, "index_select", "index")
    if idx.rank > 1:
        raise ShapeError(f"index_select: index must be 1-D, got {idx} (input {x})", "flatten the index, or use gather")
    ax = norm_axis(attrs["axis"], x.rank, "index_select")
    n = idx.shape[0] if idx.rank else 1
    return x.with_shape(x.shape[:ax] + (n,) + x.shape[ax + 1:])


defop("index_select", "x index", _index_select, attrs={"axis": required()}, groups={SHAPE},
      doc="Pick entries of `axis` by a 1-D index tensor.")


def _expand(ts, attrs):
    x = ts[0]
    shape = shape_attr(attrs["shape"], "expand", allow_minus_one=True)
    if len(shape) < x.rank:
        raise ShapeError(f"expand: target {fmt_shape(shape)} has fewer dimensions than {x}")
    lead = len(shape) - x.rank
    out = []
    for i, want in enumerate(shape):
        if i < lead:
            if _is_int(want) and want == -1:
                raise ShapeError(f"expand: -1 is not allowed for the new leading dimension {i} of {fmt_shape(shape)} "
                                 f"(input {x})", "give new leading dimensions an explicit size")
            out.append(want)
            continue
        have = x.shape[i - lead]
        if _is_int(want) and want == -1:
            out.append(have)
        elif have == 1 or known_equal(have, want) is True:
            out.append(want)
        else:
            raise ShapeError(f"expand: cannot expand {x} to {fmt_shape(shape)}: dimension {i} is {have}, not 1",
                             "only size-1 dimensions can be expanded; use -1 to keep a dimension")
    return x.with_shape(out)


defop("expand", "x", _expand, attrs={"shape": required()}, groups={SHAPE},
      doc="torch.Tensor.expand: broadcast size-1 dims to a larger shape (-1 keeps).")


def _tri(name):
    def infer(ts, attrs):
        if ts[0].rank < 2:
            raise ShapeError(f"{name} needs a tensor of rank >= 2, got {ts[0]}", "it acts on the last two axes")
        if not _is_int(attrs["k"]):
            raise ShapeError(f"{name}: k must be an int, got {attrs['k']!r}")
        return ts[0]
    return infer


defop("tril", "x", _tri("tril"), attrs={"k": 0}, groups={SHAPE}, doc="Zero above the k-th diagonal.")
defop("triu", "x", _tri("triu"), attrs={"k": 0}, groups={SHAPE}, doc="Zero below the k-th diagonal.")


def _one_hot(ts, attrs):
    idx = ts[0]
    require_int(idx, "one_hot")
    n = attrs["num_classes"]
    if not (_is_int(n) and n > 0) and not isinstance(n, Dim):
        raise ShapeError(f"one_hot: num_classes must be a positive int, got {n!r} (indices {idx})",
                         "give num_classes explicitly: the compiler cannot infer it from the data")
    return TensorType(dtype_attr(attrs["dtype"], "one_hot"), idx.shape + (n,))


defop("one_hot", "indices", _one_hot, attrs={"num_classes": -1, "dtype": "float32"},
      groups={SHAPE}, nondiff=True, doc="Class indices to one-hot vectors along a new last axis.")


# operand-less constants -------------------------------------------------------
def _arange(ts, attrs):
    start, stop, step = (v.value if isinstance(v, Dim) and v.is_const else v
                         for v in (attrs["start"], attrs["stop"], attrs["step"]))
    dt = dtype_attr(attrs["dtype"], "arange")
    if step == 0 or not isinstance(step, (int, float)):
        raise ShapeError(f"arange: step must be a non-zero number, got {step!r}")
    if isinstance(stop, Dim) or isinstance(start, Dim):
        if not (_is_int(step) and step > 0 and not isinstance(start, float) and not isinstance(stop, float)):
            raise ShapeError(f"arange({start}, {stop}, {step}): a symbolic range needs an int step > 0")
        n = floordiv(add(sub(stop, start), step - 1), step)
    else:
        if not all(isinstance(v, (int, float)) for v in (start, stop)):
            raise ShapeError(f"arange: start and stop must be numbers, got {start!r}, {stop!r}")
        n = max(0, math.ceil((stop - start) / step))
    return TensorType(dt, (n,))


defop("arange", "", _arange, attrs={"start": 0, "stop": required(), "step": 1, "dtype": "int64"},
      groups={CONSTANT}, nondiff=True, doc="numpy.arange(start, stop, step) as a 1-D tensor.")


def _full(ts, attrs):
    shape = shape_attr(attrs["shape"], "full")
    v = attrs["value"]
    if not isinstance(v, (int, float)):
        raise ShapeError(f"full: value must be a number, got {v!r}", "e.g. value=0.0")
    return TensorType(dtype_attr(attrs["dtype"], "full"), shape)


defop("full", "", _full, attrs={"shape": required(), "value": required(), "dtype": "float32"},
      groups={CONSTANT}, doc="A tensor of the given shape filled with `value`.")


def _sinusoidal(ts, attrs):
    length, d = attrs["length"], attrs["dim"]
    for what, v in (("length", length), ("dim", d)):
        if not (isinstance(v, Dim) or (_is_int(v) and v > 0)):
            raise ShapeError(f"sinusoidal_positions: {what} must be a positive int, got {v!r}")
    dt = dtype_attr(attrs["dtype"], "sinusoidal_positions")
    if not dt.is_float:
        raise ShapeError(f"sinusoidal_positions: dtype must be a float type, got {dt}")
    return TensorType(dt, (length, d))


def sinusoidal_table(length: int, dim: int):
    """The op's value in float64, shape (length, dim) (Vaswani et al. 2017):
    pe[pos, 2i] = sin(pos / 10000^(2i/dim)), pe[pos, 2i+1] = cos(same).
    Every backend rounds this one table to the op's dtype."""
    import numpy as np
    pos = np.arange(length, dtype=np.float64)[:, None]
    two_i = np.arange(0, dim, 2, dtype=np.float64)
    angle = pos / np.power(10000.0, two_i / dim)
    pe = np.zeros((length, dim), dtype=np.float64)
    pe[:, 0::2] = np.sin(angle)
    pe[:, 1::2] = np.cos(angle[:, : dim // 2])
    return pe


defop("sinusoidal_positions", "", _sinusoidal,
      attrs={"length": required(), "dim": required(), "dtype": "float32"}, groups={CONSTANT}, doc="The Transformer's fixed sin/cos position table, (length, dim).")


# scatter_add: the adjoint of gather (and, with an expanded index, of index_select)
def _scatter_add(ts, attrs):
    x, idx, src = ts
    require_int(idx, "scatter_add", "index")
    if idx.rank != x.rank:
        raise ShapeError(f"scatter_add: index {idx} must have the same rank as the input {x}")
    if src.dtype != x.dtype:
        raise ShapeError(f"scatter_add: src {src} must have the input's dtype {x.dtype} (input {x})",
                         f"cast it to {x.dtype} first")
    msg = f"scatter_add: src {src} must have the index's shape {fmt_shape(idx.shape)}"
    if src.rank != idx.rank:
        raise ShapeError(msg)
    for a, b in zip(src.shape, idx.shape):
        same_dim(a, b, msg)
    ax = norm_axis(attrs["axis"], x.rank, "scatter_add")
    for i, (a, b) in enumerate(zip(x.shape, idx.shape)):
        if i != ax and _is_int(a) and _is_int(b) and b > a:
            raise ShapeError(f"scatter_add: index {idx} is larger than input {x} in dimension {i}",
                             "outside the scatter axis the index may not exceed the input")
    return x


defop("scatter_add", "x index src", _scatter_add, attrs={"axis": required()}, groups={SHAPE},
      builtin="internal: the VJP of gather makes it",
      doc="torch.Tensor.scatter_add: out = x, then out[index[i][j]][j] += src[i][j] along `axis` "
          "(repeated indices add up); src has the index's shape.  The adjoint of gather.")


# the VJP rules of these ops are in `shape_vjp`
