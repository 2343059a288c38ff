"""Reductions: sum, mean, max, min, prod, logsumexp, var, std, argmax, argmin.

All take `axis` (None for every axis, an int or a tuple of ints) and
`keepdims`, as NumPy does; reduced axes disappear or become 1.
"""
from __future__ import annotations

from ...errors import ShapeError
from ..types import DType, TensorType
from .common import require_float
from .registry import REDUCTION, defop


def reduce_axes(axis, rank: int, opname: str, t: TensorType) -> tuple[int, ...]:
    """The normalised, sorted axes a reduction removes."""
    if axis is None:
        return tuple(range(rank))
    axes = tuple(axis) if isinstance(axis, (list, tuple)) else (axis,)
    out = []
    for a in axes:
        if isinstance(a, bool) or not isinstance(a, int):
            raise ShapeError(f"{opname}: axis must be an int or a tuple of ints, got {axis!r}")
        if not -rank <= a < max(rank, 1) or rank == 0:
            raise ShapeError(f"{opname}: axis {a} is out of range for {t} (rank {rank})",
                             f"valid axes are {-rank}..{rank - 1}" if rank else
                             "a scalar has no axes; use axis=None")
        a %= rank
        if a in out:
            raise ShapeError(f"{opname}: axis {a} is repeated in {axis!r} (input {t})", "list each axis once")
        out.append(a)
    return tuple(sorted(out))


def reduced_shape(t: TensorType, axes: tuple[int, ...], keepdims: bool) -> tuple:
    if keepdims:
        return tuple(1 if i in axes else d for i, d in enumerate(t.shape))
    return tuple(d for i, d in enumerate(t.shape) if i not in axes)


def _reduction(name: str, kind: str):
    """kind: 'float' (needs floats), 'acc' (sum/prod: ints widen to i64), 'any', 'arg'."""

    def infer(ts, attrs):
        x = ts[0]
        axes = reduce_axes(attrs["axis"], x.rank, name, x)
        if name in ("var", "std"):
            c = attrs["correction"]
            if isinstance(c, bool) or not isinstance(c, (int, float)) or c < 0:
                raise ShapeError(f"{name}: correction must be a non-negative number, got {c!r}",
                                 "use 1 for the unbiased estimate, 0 for the population one")
        shape = reduced_shape(x, axes, bool(attrs["keepdims"]))
        if kind == "float":
            require_float(x, name)
            dt = x.dtype
        elif kind == "acc":
            dt = x.dtype if x.dtype.is_float else DType.i64
        elif kind == "arg":
            if attrs["axis"] is not None and isinstance(attrs["axis"], (list, tuple)):
                raise ShapeError(f"{name} takes a single axis or None, got {attrs['axis']!r} (input {x})",
                                 "reshape the axes into one first, or reduce one axis at a time")
            if x.dtype == DType.bool:
                raise ShapeError(f"{name} is not defined on bool tensors, got {x}")
            dt = DType.i64
        else:
            dt = x.dtype
        return TensorType(dt, shape)

    return infer


_BASE = {"axis": None, "keepdims": False}
_REDUCTIONS = {
    "sum": ("acc", {}, "Sum over the given axes."),
    "prod": ("acc", {}, "Product over the given axes."),
    "mean": ("float", {}, "Arithmetic mean over the given axes."),
    "max": ("any", {}, "Maximum over the given axes (gradient flows to the maxima)."),
    "min": ("any", {}, "Minimum over the given axes (gradient flows to the minima)."),
    "logsumexp": ("float", {}, "log(sum(exp(x))) over the given axes, computed stably."),
    "var": ("float", {"correction": 1}, "Variance with Bessel-style `correction` (ddof)."),
    "std": ("float", {"correction": 1}, "Standard deviation with `correction` (ddof)."),
    "argmax": ("arg", {}, "Index (i64) of the maximum along an axis; not differentiable."),
    "argmin": ("arg", {}, "Index (i64) of the minimum along an axis; not differentiable."),
}

for _name, (_kind, _extra, _doc) in _REDUCTIONS.items():
    defop(_name, "x", _reduction(_name, _kind), attrs={**_BASE, **_extra}, groups={REDUCTION},
          nondiff=_kind == "arg", doc=_doc)


# ---------------------------------------------------------------- VJP rules
from .registry import defvjp  # noqa: E402


def _axes(node):
    ax = node.attrs["axis"]
    r = node.inputs[0].type.rank
    if ax is None:
        return tuple(range(r))
    ax = ax if isinstance(ax, (tuple, list)) else (ax,)
    return tuple(sorted(a % r for a in ax)) if r else ()


def _unreduce(b, node, g):
    """Broadcast a reduced cotangent back to the input's shape."""
    x = node.inputs[0]
    if not node.attrs.get("keepdims"):
        shape = tuple(1 if i in _axes(node) else d for i, d in enumerate(x.type.shape))
        g = b.op("reshape", g, shape=shape)
    return b.op("expand", g, shape=x.type.shape)


@defvjp("sum")
def _(b, node, g):
    return [_unreduce(b, node, g[0])]


@defvjp("mean")
def _(b, node, g):
    x = node.inputs[0]
    count = 1
    for a in _axes(node):
        count = count * x.type.shape[a]
    gx = _unreduce(b, node, g[0])
    from ..dims import Dim
    if isinstance(count, Dim):
        n = b.op("cast", b.op("sum", b.op("full", shape=tuple(x.type.shape[a] for a in _axes(node)), value=1.0,
                                          dtype="float64"), axis=None, keepdims=False), dtype=x.type.dtype.numpy_name)
        return [b.op("div", gx, n)]
    return [b.op("div", gx, b.op("full", shape=(), value=float(count), dtype=x.type.dtype.numpy_name))]


def count_value(b, dims, like):
    """The number of elements of a block of `dims` as a 0-d Value in `like`'s dtype
    (a constant when the dims are known, computed at run time when symbolic)."""
    from ..dims import Dim
    n = 1
    for d in dims:
        n = n * d
    if isinstance(n, Dim) and n.is_const:
        n = n.value
    if not isinstance(n, Dim):
        return b.op("full", shape=(), value=float(n), dtype=like.type.dtype.numpy_name)
    ones = b.op("full", shape=tuple(dims), value=1.0, dtype="float64")
    return b.op("cast", b.op("sum", ones, axis=None, keepdims=False), dtype=like.type.dtype.numpy_name)


def _keep(b, node, v):
    """A reduced value (result or cotangent) with the reduced axes kept as 1s."""
    if node.attrs.get("keepdims"):
        return v
    x = node.inputs[0]
    axes = _axes(node)
    shape = tuple(1 if i in axes else d for i, d in enumerate(x.type.shape))
    return v if v.type.shape == shape else b.op("reshape", v, shape=shape)


def _sum_keep(b, node, v):
    """sum over the node's reduced axes, keepdims (v has the input's shape)."""
    if not _axes(node):
        return v
    return b.op("sum", v, axis=node.attrs["axis"], keepdims=True)


def _k(b, value, like):
    return b.op("full", shape=(), value=value, dtype=like.type.dtype.numpy_name)


@defvjp("max", "min")
def _(b, node, g):
    # torch.amax/amin: the gradient is shared evenly among the tied extrema
    x, y = node.inputs[0], node.outputs[0]
    if not x.type.dtype.is_float:
        return [None]
    hit = b.op("cast", b.op("eq", x, _keep(b, node, y)), dtype=x.type.dtype.numpy_name)
    share = b.op("div", _keep(b, node, g[0]), _sum_keep(b, node, hit))
    return [b.op("mul", share, hit)]


@defvjp("prod")
def _(b, node, g):
    # d prod / d x_i = product of the others.  Zeros are handled exactly: with no
    # zero it is P / x_i; with one zero only that element gets the product of
    # the others; with two or more every gradient is 0.  (Second derivatives at
    # inputs holding exact zeros are not exact: the one-zero branch treats the
    # other elements' gradients as the constant 0.)
    x = node.inputs[0]
    if not x.type.dtype.is_float:
        return [None]
    if not _axes(node):          # a 0-d input: the product is the element itself
        return [g[0]]
    zero = b.op("eq", x, _k(b, 0.0, x))
    nz = _sum_keep(b, node, b.op("cast", zero, dtype=x.type.dtype.numpy_name))
    safe = b.op("where", zero, _k(b, 1.0, x), x)
    p = b.op("prod", safe, axis=node.attrs["axis"], keepdims=True)
    one_zero_here = b.op("logical_and", b.op("eq", nz, _k(b, 1.0, x)), zero)
    d = b.op("where", b.op("eq", nz, _k(b, 0.0, x)), b.op("div", p, safe),
             b.op("where", one_zero_here, p, _k(b, 0.0, x)))
    return [b.op("mul", _keep(b, node, g[0]), d)]


@defvjp("logsumexp")
def _(b, node, g):
    x, y = node.inputs[0], node.outputs[0]
    w = b.op("exp", b.op("sub", x, _keep(b, node, y)))
    return [b.op("mul", _keep(b, node, g[0]), w)]


def _var_terms(b, node):
    """(x - mean, max(0, N - correction)) for var/std."""
    x = node.inputs[0]
    mu = b.op("mean", x, axis=node.attrs["axis"], keepdims=True)
    n = count_value(b, [x.type.shape[a] for a in _axes(node)], x)
    denom = b.op("maximum", b.op("sub", n, _k(b, float(node.attrs["correction"]), x)), _k(b, 0.0, x))
    return b.op("sub", x, mu), denom


@defvjp("var")
def _(b, node, g):
    # d var / dx = 2 (x - mean) / (N - correction)
    x = node.inputs[0]
    dev, denom = _var_terms(b, node)
    scale = b.op("div", b.op("mul", _keep(b, node, g[0]), _k(b, 2.0, x)), denom)
    return [b.op("mul", scale, dev)]


@defvjp("std")
def _(b, node, g):
    # d std / dx = (x - mean) / ((N - correction) std)
    dev, denom = _var_terms(b, node)
    scale = b.op("div", _keep(b, node, g[0]), b.op("mul", denom, _keep(b, node, node.outputs[0])))
    return [b.op("mul", scale, dev)]
