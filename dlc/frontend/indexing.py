"""Indexing and slicing: `x[:, 0]`, `x[..., :d]`, `x[:, -1, :]`, tuple items."""
from __future__ import annotations

from ..compiler.dims import Dim, dim as _dim, known_equal
from ..errors import DlcTypeError
from . import ast as A
from .values import describe, is_int, is_tensor


def index_value(frame, v, e: A.Index):
    if isinstance(v, (tuple, list, str)):
        if len(e.items) != 1:
            raise DlcTypeError(f"{describe(v)} takes one index", e.span, "write t[i] or t[a:b]")
        it = e.items[0]
        if isinstance(it, A.Slice):
            parts = [frame.eval(p) if p is not None else None for p in (it.start, it.stop, it.step)]
            for p, src in zip(parts, (it.start, it.stop, it.step)):
                if p is not None and (isinstance(p, bool) or not isinstance(p, int)):
                    raise DlcTypeError(f"slice bounds must be ints, got {describe(p)}", src.span,
                                       "write bounds as integers, e.g. t[1:3]")
            if parts[2] == 0:
                raise DlcTypeError("slice step cannot be zero", it.span, "use a step of 1 or more, or -1")
            return v[slice(*parts)]
        i = frame.eval(it)
        if isinstance(i, bool) or not isinstance(i, int):
            raise DlcTypeError(f"an index must be an int, got {describe(i)}", it.span,
                               "index tuples and lists with integers, e.g. t[0]")
        if not -len(v) <= i < len(v):
            raise DlcTypeError(f"index {i} is out of range for {describe(v)}", it.span,
                               f"valid indices are {-len(v)}..{len(v) - 1}" if v else "it is empty")
        return v[i]
    if not is_tensor(v):
        raise DlcTypeError(f"{describe(v)} cannot be indexed", e.span,
                           "only tensors, tuples, lists and strings can be indexed")
    return index_tensor(frame, v, e)


def index_tensor(frame, x, e: A.Index):
    t = x.type
    items = list(e.items)
    n_ell = sum(isinstance(i, A.Ellipsis_) for i in items)
    if n_ell > 1:
        raise DlcTypeError("only one ... is allowed in an index", e.span, "remove the extra ...")
    n_real = len(items) - n_ell
    if n_real > t.rank:
        raise DlcTypeError(f"too many indices ({n_real}) for {t}", e.span,
                           f"a rank-{t.rank} tensor takes at most {t.rank} indices")
    if n_ell:
        k = items.index(next(i for i in items if isinstance(i, A.Ellipsis_)))
        items = items[:k] + [None] * (t.rank - n_real) + items[k + 1:]
    else:
        items = items + [None] * (t.rank - n_real)
    begin, end, strides, drop = [], [], [], []
    trivial = True
    for axis, it in enumerate(items):
        size = t.shape[axis]
        if it is None:
            begin.append(None), end.append(None), strides.append(1)
            continue
        if isinstance(it, A.Slice):
            b, s_, st = (_int_or_none(frame, p) for p in (it.start, it.stop, it.step))
            if isinstance(st, Dim):
                raise DlcTypeError(f"a slice step must be a known int, got the symbolic {st}", it.step.span,
                                   "steps are constants, e.g. x[:, ::2]")
            if st == 0:
                raise DlcTypeError("slice step cannot be zero", it.span, "use a step of 1 or more, or -1")
            begin.append(b), end.append(s_), strides.append(1 if st is None else st)
            if not (b is None and s_ is None and st in (None, 1)):
                trivial = False
            continue
        i = frame.eval(it)
        if is_tensor(i):
            raise DlcTypeError("indexing with a tensor is not supported", it.span,
                               "use gather(x, axis, index) or index_select(x, axis, index)")
        if isinstance(i, bool) or not is_int(i):
            raise DlcTypeError(f"an index must be an int or a slice, got {describe(i)}", it.span,
                               "e.g. x[:, 0] or x[..., :4]")
        if isinstance(i, Dim) and isinstance(size, int):
            raise DlcTypeError(f"the symbolic index {i} on axis {axis} of {t}, whose size is known", it.span,
                               "index a known axis with an int")
        if isinstance(size, int) and not -size <= i < size:
            raise DlcTypeError(f"index {i} is out of range for axis {axis} of {t}", it.span,
                               f"valid indices are {-size}..{size - 1}")
        stop = None if isinstance(i, int) and i == -1 else i + 1
        begin.append(i), end.append(stop if not isinstance(stop, Dim) else _dim(stop)), strides.append(1)
        drop.append(axis)
        trivial = False
    y = x
    if not trivial:
        y = frame.emit("strided_slice", [x], {"begin": tuple(begin), "end": tuple(end),
                                              "strides": tuple(strides)}, e.span)
    if drop:
        shape = tuple(d for a, d in enumerate(y.type.shape) if a not in drop)
        y = frame.emit("reshape", [y], {"shape": shape}, e.span)
    return y


def _int_or_none(frame, p):
    if p is None:
        return None
    v = frame.eval(p)
    if v is None:
        return None
    if isinstance(v, bool) or not is_int(v):
        raise DlcTypeError(f"slice bounds must be ints or dimensions, got {describe(v)}", p.span,
                           "e.g. x[:, 1:3] or x[:, :T - 1]")
    return _dim(v)
