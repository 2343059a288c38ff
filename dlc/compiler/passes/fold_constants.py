"""Constant folding: a node whose operands are all compile-time constants
becomes one constant node, when the result is small to describe.

The constants are the operand-less `full` and `arange` nodes.  What folds:

    elementwise op of fulls         -> full      (add, sub, mul, div, sqrt, max, ==, where, cast...)
    reshape/expand/transpose/slice/
    pad/concat/split of fulls       -> full      (the same value in the new shape, symbolic dims kept)
    sum/mean/max/min of a full      -> full      (sum and mean only where the result is exact)
    arange * c, arange + c (ints)   -> arange    (dimension arithmetic: start, stop, step are
                                                  `Dim`s, e.g. the row offsets of a pooling VJP)

and, where folding exposed one, the algebraic identities of `canonicalize`
(x * 1, x + 0...).  Nothing is materialised: a folded result is again a
`full` or an `arange`, which each backend fills itself, so a big tensor never
becomes a constant in the IR.

Folding must not change a single bit of what -O0 computes: values are
computed with NumPy in the node's own dtype, and only with ops whose result
is correctly rounded there (+, -, *, /, sqrt, comparisons...), so the
backends, which compute the same IEEE operation at run time, agree exactly.
Transcendental functions (exp, tanh, pow...) differ between libraries in
the last bit and are not folded; neither are bf16/f16 values (their
rounding is a backend's choice) nor results that are inf or nan.
"""
from __future__ import annotations

import math

import numpy as np

from ..builder import Builder
from ..dims import add, is_symbolic, mul, prod, sub
from ..ir import Graph, Node, Value
from ..ops.reduce import reduce_axes
from ..ops.registry import CONSTANT, ELEMENTWISE, REDUCTION, SHAPE
from ..types import DType
from .canonicalize import IDENTITY_OPS, algebraic_identity, full_value, producer, rewrite_nodes
from .dce import dce_graph
from .pipeline import PassContext, register_pass

# dtypes whose arithmetic NumPy rounds the way every backend does
_EXACT_DTYPES = {DType.f32, DType.f64, DType.i8, DType.i32, DType.i64, DType.bool}
_MANTISSA_BITS = {DType.f32: 24, DType.f64: 53}


def _np(dt: DType):
    return np.dtype(dt.numpy_name)


def _binary(fn, bool_fn=None, float_only=False):
    def ev(a, b, out: DType):
        if a.dtype == np.bool_ and b.dtype == np.bool_ and out == DType.bool:
            return None if bool_fn is None else bool_fn(a, b)
        if float_only and not out.is_float:
            return None
        dt = _np(out) if out != DType.bool else np.result_type(a, b)
        return fn(a.astype(dt), b.astype(dt))
    return ev


def _compare(fn):
    def ev(a, b, out: DType):
        dt = np.result_type(a, b)
        return fn(a.astype(dt), b.astype(dt))
    return ev


def _unary(fn, float_only=False, no_bool=True):
    def ev(a, out: DType):
        if (no_bool and a.dtype == np.bool_) or (float_only and a.dtype.kind != "f"):
            return None
        return fn(a)
    return ev


def _cast(a: np.ndarray, out: DType):
    if out == DType.bool:
        return a != 0
    if out.is_int and a.dtype.kind == "f" and not abs(float(a)) < 2.0 ** 62:
        return None        # off the integer range: what a backend gives is its own business
    return a.astype(_np(out))


# op -> NumPy evaluation on 0-d arrays in their IR dtypes; each is a single
# correctly rounded IEEE operation (or exact), as the backends compute it
_EVAL = {
    "add": _binary(np.add, np.logical_or), "sub": _binary(np.subtract), "mul": _binary(np.multiply, np.logical_and),
    "div": _binary(np.true_divide, float_only=True), "maximum": _binary(np.maximum), "minimum": _binary(np.minimum),
    "eq": _compare(np.equal), "ne": _compare(np.not_equal), "lt": _compare(np.less), "le": _compare(np.less_equal),
    "gt": _compare(np.greater), "ge": _compare(np.greater_equal),
    "logical_and": _compare(np.logical_and), "logical_or": _compare(np.logical_or),
    "logical_not": _unary(np.logical_not, no_bool=False),
    "neg": _unary(np.negative), "abs": _unary(np.abs), "square": _unary(lambda a: a * a),
    "sqrt": _unary(np.sqrt, float_only=True), "reciprocal": _unary(np.reciprocal, float_only=True),
    "floor": _unary(np.floor, float_only=True), "ceil": _unary(np.ceil, float_only=True),
    "cast": lambda a, out: _cast(a, out),
    "where": lambda c, a, b, out: np.where(c.astype(bool), a, b).astype(_np(out)),
}


def _scalar(v: Value):
    """A `full`'s value as a 0-d NumPy array of its dtype, or None."""
    value = full_value(v)
    if value is None or v.type.dtype not in _EXACT_DTYPES:
        return None
    return np.asarray(value).astype(_np(v.type.dtype))


def _python(a: np.ndarray, dt: DType):
    """The fill value for a `full` of dtype `dt` holding `a`, or None (inf/nan, or a value off the dtype)."""
    a = np.asarray(a).astype(_np(dt))
    if dt.is_float:
        v = float(a)
        return v if math.isfinite(v) else None
    return int(a) if dt.is_int else int(bool(a))


def _full(b: Builder, out: Value, value) -> list[Value] | None:
    if value is None:
        return None
    return [b.op("full", shape=tuple(out.type.shape), value=value, dtype=out.type.dtype.numpy_name)]


def _fold_elementwise(n: Node, b: Builder):
    ev = _EVAL.get(n.op.name)
    out = n.outputs[0]
    if ev is None or out.type.dtype not in _EXACT_DTYPES or any(v is None for v in n.inputs):
        return None
    args = [_scalar(v) for v in n.inputs]
    if any(a is None for a in args):
        return None
    with np.errstate(all="ignore"):
        result = ev(*args, out.type.dtype)
    return None if result is None else _full(b, out, _python(result, out.type.dtype))


def _fold_shape(n: Node, b: Builder):
    """A shape op moves or repeats elements: of fulls of one value, it is that full again."""
    xs = [v for v in n.inputs if v is not None]
    values = [full_value(v) for v in xs]
    dtypes = {v.type.dtype for v in xs} | {o.type.dtype for o in n.outputs}
    if not xs or any(v is None for v in values) or len(dtypes) != 1:
        return None
    if n.op.name in ("gather", "index_select", "scatter_add", "one_hot", "tril", "triu"):
        return None        # these read indices or write zeros: not one value
    if len(set(values)) != 1:
        return None
    if n.op.name == "pad" and n.attrs["mode"] == "constant" and n.attrs["value"] != values[0] and \
            any(p != 0 for p in n.attrs["pad"]):
        return None
    out = []
    for o in n.outputs:
        out += _full(b, o, values[0]) or []
    return out


def _exact_multiple(value, count: int, dt: DType) -> bool:
    """Whether every partial sum of `count` copies of `value` is exact in `dt`,
    so any summation order gives value * count exactly."""
    if dt.is_int or dt == DType.bool:
        return True
    if value == 0:
        return True
    m, _ = math.frexp(value)                 # value = m * 2**e, 0.5 <= |m| < 1
    odd = abs(int(m * 2 ** 53))
    while odd and odd % 2 == 0:
        odd //= 2
    return count * odd <= 2 ** _MANTISSA_BITS[dt] and math.isfinite(value * count)


def _fold_reduction(n: Node, b: Builder):
    x, out = n.inputs[0], n.outputs[0]
    value = full_value(x)
    if value is None or n.op.name not in ("sum", "mean", "max", "min") or x.type.dtype not in _EXACT_DTYPES:
        return None
    count = prod(x.type.shape[a] for a in reduce_axes(n.attrs["axis"], x.type.rank, n.op.name, x.type))
    if is_symbolic(count) or count == 0:
        return None
    if n.op.name in ("max", "min"):
        return _full(b, out, value)
    if not _exact_multiple(value, count, x.type.dtype):
        return None
    total = _python(np.asarray(value * count if x.type.dtype.is_float else int(value) * count), out.type.dtype)
    return _full(b, out, value if n.op.name == "mean" else total)


def _fold_arange(n: Node, b: Builder):
    """arange * c and arange + c (c a constant int): an arange again, its
    bounds computed as dimensions (they may be symbolic)."""
    if n.op.name not in ("mul", "add"):
        return None
    for i in (0, 1):
        ar, c = producer(n.inputs[i], "arange"), full_value(n.inputs[1 - i])
        if ar is None or c is None or n.inputs[1 - i].type.rank != 0 or not n.inputs[1 - i].type.dtype.is_int:
            continue
        a = ar.attrs
        if not (isinstance(a["step"], int) and a["step"] > 0 and not isinstance(a["start"], float)
                and not isinstance(a["stop"], float) and n.outputs[0].type.dtype.is_int):
            return None
        c, length = int(c), ar.outputs[0].type.shape[0]
        if n.op.name == "add":
            start, step = add(a["start"], c), a["step"]
        elif c > 0:
            start, step = mul(a["start"], c), a["step"] * c
        else:
            return None
        # the last element plus one: the length stays `length` exactly (no floor division appears)
        stop = add(add(start, mul(step, sub(length, 1))), 1)
        return [b.op("arange", start=start, stop=stop, step=step, dtype=n.outputs[0].type.dtype.numpy_name)]
    return None


def fold_rule(n: Node, b: Builder):
    """The folding of one node, or None."""
    if n.body is not None or CONSTANT in n.op.groups:
        return None
    for rule, group in ((_fold_elementwise, ELEMENTWISE), (_fold_shape, SHAPE), (_fold_reduction, REDUCTION)):
        if group in n.op.groups:
            out = rule(n, b)
            if out is not None:
                return "folded", out
    out = _fold_arange(n, b)
    if out is not None:
        return "arange", out
    if n.op.name in IDENTITY_OPS:
        out = algebraic_identity(n, b)
        return None if out is None else ("identity", out)
    return None


@register_pass("fold_constants", level=1,
               summary="fold ops of constants (full, arange) into one constant, dimension arithmetic included")
def fold_constants(g: Graph, ctx: PassContext) -> None:
    for op, k in rewrite_nodes(g, ctx, fold_rule).items():
        ctx.count(op, k)
    dce_graph(g)
