"""TVM lowerings of matrix products and reductions (sum, mean, logsumexp,
var/std with Bessel's correction, argmax).

Registered into `lowering.LOWERING`; see that module for the conventions.
"""
from __future__ import annotations

from ...compiler.dims import Dim
from .lowering import arg_as, cast, lowers, ndim, norm_axis, out_dtype, scalar, _op


# ---------------------------------------------------------------------------
# linear algebra
# ---------------------------------------------------------------------------

@lowers("matmul")
def _matmul(low, node, args, env):
    dt = out_dtype(node)
    return low.emit(_op().matmul(arg_as(low, node, args, 0, dt), arg_as(low, node, args, 1, dt)))


@lowers("linear")
def _linear(low, node, args, env):
    dt = out_dtype(node)
    x, w = arg_as(low, node, args, 0, dt), arg_as(low, node, args, 1, dt)
    b = arg_as(low, node, args, 2, dt) if len(args) > 2 and args[2] is not None else None
    return low.emit(_op().linear(x, w, b))


# ---------------------------------------------------------------------------
# reductions
# ---------------------------------------------------------------------------

def _axes(node, i=0):
    axis = node.attrs.get("axis")
    r = ndim(node, i)
    if axis is None:
        return None
    if isinstance(axis, (list, tuple)):
        return sorted(norm_axis(a, r) for a in axis)
    return [norm_axis(axis, r)]


def _count(low, node, axes):
    shape = node.inputs[0].type.shape
    dims = range(len(shape)) if axes is None else axes
    n = 1
    for a in dims:
        n = n * shape[a]
    return n


@lowers("sum", "prod", "mean", "max", "min")
def _reduce(low, node, args, env):
    op = _op()
    dt = out_dtype(node)
    x = arg_as(low, node, args, 0, dt)
    axes = _axes(node)
    keep = bool(node.attrs["keepdims"])
    if ndim(node) == 0:
        return x
    fn = {"sum": op.sum, "prod": op.prod, "mean": op.mean, "max": op.max, "min": op.min}[node.op.name]
    if dt == "bool":
        # TVM has no identity for a bool max/min ("Cannot decide min_value");
        # as uint8 max is any and min is all, and an empty max/min gives
        # False/True, as NumPy's identities
        return low.emit(op.astype(fn(op.astype(x, "uint8"), axes, keep), "bool"))
    return low.emit(fn(x, axes, keep))


@lowers("logsumexp")
def _logsumexp(low, node, args, env):
    op = _op()
    dt = out_dtype(node)
    x = arg_as(low, node, args, 0, dt)
    axes = _axes(node)
    keep = bool(node.attrs["keepdims"])
    m = low.emit(op.max(x, axes, True))
    # a row of -inf gives -inf, not NaN: shift by 0 there (as the reference)
    m = low.emit(op.where(op.isfinite(m), m, scalar(low, 0, dt)))
    s = low.emit(op.log(op.sum(op.exp(op.subtract(x, m)), axes, True)))
    y = low.emit(op.add(s, m))
    if not keep:
        y = low.emit(op.squeeze(y, axes))
    return y


@lowers("var", "std")
def _var(low, node, args, env):
    op = _op()
    dt = out_dtype(node)
    x = arg_as(low, node, args, 0, dt)
    axes = _axes(node)
    keep = bool(node.attrs["keepdims"])
    v = low.emit(op.variance(x, axes, keep))
    corr = node.attrs["correction"]
    if corr:
        v = low.emit(op.multiply(v, bessel_factor(low, _count(low, node, axes), corr, dt)))
    if node.op.name == "std":
        v = low.emit(op.sqrt(v))
    return v


def bessel_factor(low, count, corr, dt):
    """n / (n - corr) as a scalar: a constant when the sample count n is
    known, else computed at run time from the symbolic shape (so a symbolic
    batch needs no recompile)."""
    from tvm import relax
    op = _op()
    if isinstance(count, int) or (isinstance(count, Dim) and count.is_const):
        n = int(count.value if isinstance(count, Dim) else count)
        return scalar(low, n / (n - corr) if n - corr > 0 else float("inf"), dt)
    n = low.emit(op.shape_to_tensor(relax.ShapeExpr([low.prim(count)])))
    n = low.emit(op.reshape(op.astype(n, dt), []))
    return low.emit(op.divide(n, op.subtract(n, scalar(low, corr, dt))))


@lowers("argmax", "argmin")
def _argmax(low, node, args, env):
    op = _op()
    x = args[0]
    axis = node.attrs["axis"]
    keep = bool(node.attrs["keepdims"])
    fn = op.argmax if node.op.name == "argmax" else op.argmin
    if axis is None:
        x = low.emit(op.reshape(x, [-1]))
        y = low.emit(fn(x, 0, False))
        if keep:
            y = low.emit(op.reshape(y, [1] * ndim(node)))
    else:
        y = low.emit(fn(x, norm_axis(axis, ndim(node)), keep))
    return cast(low, y, "int64", out_dtype(node))
