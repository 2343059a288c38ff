"""VJP rules of the shape ops (`shape`): each is built from differentiable IR
ops (an adjoint reshape, transpose, pad, slice, scatter or gather), so it can be
differentiated again."""
from __future__ import annotations

from ..dims import add, mul, sub
from .common import norm_axis
from .registry import defvjp
from .shape import _is_int
from .vjp_util import sum_to, zeros_like


@defvjp("reshape")
def _(b, node, g):
    return [b.op("reshape", g[0], shape=node.inputs[0].type.shape)]


@defvjp("transpose")
def _(b, node, g):
    axes = node.attrs["axes"]
    inverse = [0] * len(axes)
    for i, a in enumerate(axes):
        inverse[a] = i
    return [b.op("transpose", g[0], axes=tuple(inverse))]


@defvjp("expand")
def _(b, node, g):
    return [sum_to(b, g[0], node.inputs[0].type.shape)]


def _axis_of(node, rank):
    return norm_axis(node.attrs["axis"], rank, node.op.name)


@defvjp("concat")
def _(b, node, g):
    xs = node.inputs
    if len(xs) == 1:
        return [g[0]]
    ax = _axis_of(node, xs[0].type.rank)
    parts = b.op("split", g[0], sections=[x.type.shape[ax] for x in xs], axis=ax)
    return list(parts)


@defvjp("split")
def _(b, node, g):
    parts = [gi if gi is not None else zeros_like(b, o) for gi, o in zip(g, node.outputs)]
    if len(parts) == 1:
        return [parts[0]]
    return [b.op("concat", *parts, axis=node.attrs["axis"])]


def _pad_axis(b, v, ax, lo, hi):
    """Zeros before (`lo`) and after (`hi`) `v` along axis `ax`.  Known amounts may
    be negative (crop); symbolic ones use concat with zero blocks."""
    if _is_int(lo) and _is_int(hi):
        if lo == 0 and hi == 0:
            return v
        pads = [0] * (2 * (v.type.rank - ax))
        pads[-2], pads[-1] = lo, hi
        return b.op("pad", v, pad=pads, mode="constant", value=0.0)
    parts = []
    for n, where in ((lo, 0), (None, 1), (hi, 2)):
        if where == 1:
            parts.append(v)
        elif not (_is_int(n) and n == 0):
            shape = v.type.shape[:ax] + (n,) + v.type.shape[ax + 1:]
            parts.append(b.op("full", shape=shape, value=0.0, dtype=v.type.dtype.numpy_name))
    return b.op("concat", *parts, axis=ax) if len(parts) > 1 else v


def _reverse(b, v, ax):
    strides = [None] * v.type.rank
    strides[ax] = -1
    return b.op("strided_slice", v, begin=None, end=None, strides=strides)


def _slice_adjoint(b, v, ax, d, start, stop, step):
    """Scatter `v` (the slice's cotangent along axis `ax`) back into zeros of length `d`."""
    n = v.type.shape[ax]
    if not _is_int(d):
        return _symbolic_slice_adjoint(b, v, ax, d, start, step)
    first, _, s = slice(start, stop, step).indices(d)
    if n == 0:
        return b.op("full", shape=v.type.shape[:ax] + (d,) + v.type.shape[ax + 1:], value=0.0,
                    dtype=v.type.dtype.numpy_name)
    if s < 0:           # reverse, then it is a positive-step slice starting at the lowest index
        v = _reverse(b, v, ax)
        first, s = first + (n - 1) * s, -s
    if s > 1:           # interleave s - 1 zeros after every element
        shape = v.type.shape
        v = b.op("reshape", v, shape=shape[:ax] + (n, 1) + shape[ax + 1:])
        v = _pad_axis(b, v, ax + 1, 0, s - 1)
        v = b.op("reshape", v, shape=shape[:ax] + (n * s,) + shape[ax + 1:])
    return _pad_axis(b, v, ax, first, d - first - n * s)


def _symbolic_slice_adjoint(b, v, ax, d, start, step):
    """The adjoint on an axis of symbolic size, with the shape rule's assumption
    that the bounds are in range: the elements sit at first, first + s, ...,
    first + (n - 1)*s, and nothing past d."""
    n = v.type.shape[ax]

    def index(i):
        return add(d, i) if _is_int(i) and i < 0 else i
    s = 1 if step is None else step
    if s > 0:
        first = 0 if start is None else index(start)
    else:                     # walked backwards: reverse, then the lowest index comes first
        top = sub(d, 1) if start is None else index(start)
        first = add(top, mul(sub(n, 1), s))
        v, s = _reverse(b, v, ax), -s
    if s > 1:                 # s - 1 zeros after each element, less the ones after the last
        shape = v.type.shape
        v = b.op("reshape", v, shape=shape[:ax] + (n, 1) + shape[ax + 1:])
        v = _pad_axis(b, v, ax + 1, 0, s - 1)
        v = b.op("reshape", v, shape=shape[:ax] + (mul(n, s),) + shape[ax + 1:])
        ends = [None] * v.type.rank
        ends[ax] = add(mul(sub(n, 1), s), 1)
        v = b.op("strided_slice", v, begin=None, end=tuple(ends), strides=None)
    used = add(mul(sub(n, 1), s), 1)
    return _pad_axis(b, v, ax, first, sub(sub(d, first), used))


@defvjp("strided_slice")
def _(b, node, g):
    x = node.inputs[0]
    r = x.type.rank
    begin, end, strides = ([None] * r if node.attrs[k] is None else list(node.attrs[k])
                           for k in ("begin", "end", "strides"))
    v = g[0]
    for ax in range(r):
        bb, e, s = begin[ax], end[ax], 1 if strides[ax] is None else strides[ax]
        if bb is None and e is None and s == 1:
            continue
        v = _slice_adjoint(b, v, ax, x.type.shape[ax], bb, e, s)
    return [v]


@defvjp("pad")
def _(b, node, g):
    # constant: crop (negative pads pad back); the other modes fold the padded
    # borders back onto the elements they copy
    x = node.inputs[0]
    pads, mode = list(node.attrs["pad"]), node.attrs["mode"]
    v = g[0]
    if mode == "constant":
        return [b.op("pad", v, pad=[-p for p in pads], mode="constant", value=0.0)]
    r = x.type.rank
    for i in range(len(pads) // 2):
        ax = r - 1 - i
        lo, hi = pads[2 * i], pads[2 * i + 1]
        if lo == 0 and hi == 0:
            continue
        d = x.type.shape[ax]
        sizes = [s for s in (lo, d, hi) if not (_is_int(s) and s == 0)]
        parts = list(b.op("split", v, sections=sizes, axis=ax))
        left = parts.pop(0) if lo else None
        core = parts.pop(0)
        right = parts.pop(0) if hi else None
        adds = []
        if mode == "replicate":
            if lo:
                adds.append(_pad_axis(b, b.op("sum", left, axis=ax, keepdims=True), ax, 0, sub(d, 1)))
            if hi:
                adds.append(_pad_axis(b, b.op("sum", right, axis=ax, keepdims=True), ax, sub(d, 1), 0))
        elif mode == "reflect":
            # left pad i (0..lo-1) copies x[lo - i]; right pad j copies x[d - 2 - j]
            if lo:
                adds.append(_pad_axis(b, _reverse(b, left, ax), ax, 1, sub(d, 1 + lo)))
            if hi:
                adds.append(_pad_axis(b, _reverse(b, right, ax), ax, sub(d, 1 + hi), 1))
        else:  # circular: left pad copies x[d - lo:], right pad copies x[:hi]
            if lo:
                adds.append(_pad_axis(b, left, ax, sub(d, lo), 0))
            if hi:
                adds.append(_pad_axis(b, right, ax, 0, sub(d, hi)))
        for a in adds:
            core = b.op("add", core, a)
        v = core
    return [v]


@defvjp("gather")
def _(b, node, g):
    x, idx = node.inputs
    return [b.op("scatter_add", zeros_like(b, x), idx, g[0], axis=node.attrs["axis"]), None]


@defvjp("scatter_add")
def _(b, node, g):
    x, idx, src = node.inputs
    return [g[0], None, b.op("gather", g[0], idx, axis=node.attrs["axis"])]


@defvjp("index_select")
def _(b, node, g):
    # index_add: the cotangent rows are added back at their indices (repeats sum)
    x, idx = node.inputs
    gy = g[0]
    if x.type.rank == 0:
        return [b.op("reshape", b.op("sum", gy, axis=None, keepdims=False), shape=()), None]
    ax = _axis_of(node, x.type.rank)
    n = gy.type.shape[ax]
    shape = tuple(n if i == ax else 1 for i in range(x.type.rank))
    full_idx = b.op("expand", b.op("reshape", idx, shape=shape), shape=gy.type.shape)
    return [b.op("scatter_add", zeros_like(b, x), full_idx, gy, axis=ax), None]


@defvjp("tril", "triu")
def _(b, node, g):
    return [b.op(node.op.name, g[0], k=node.attrs["k"])]
