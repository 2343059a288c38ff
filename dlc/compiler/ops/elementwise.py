"""Elementwise ops: unary math, broadcasting binaries, where, cast, prelu, softmax.

The activations are in `activation.py`.

Families are registered in bulk, as JAX's `deflinear`: one line per op.
"""
from __future__ import annotations

from ...errors import ShapeError
from ..types import DType, TensorType
from .common import broadcast_shapes, norm_axis, promote, require_float
from .registry import (ACTIVATION, BINARY, COMPARISON, ELEMENTWISE, UNARY, defop, required)


def _unary_float(name):
    def infer(ts, attrs):
        require_float(ts[0], name)
        return ts[0]
    return infer


def _unary_any(name):
    def infer(ts, attrs):
        if ts[0].dtype == DType.bool:
            raise ShapeError(f"{name} is not defined on bool tensors")
        return ts[0]
    return infer


# float-only math and activations, with their attributes
FLOAT_UNARY = {
    "exp": {}, "log": {}, "log1p": {}, "sqrt": {}, "rsqrt": {}, "reciprocal": {},
    "sin": {}, "cos": {}, "tanh": {}, "sigmoid": {}, "erf": {}, "floor": {}, "ceil": {},
}
NONDIFF_UNARY = {"floor", "ceil", "sign"}

for _name, _attrs in FLOAT_UNARY.items():
    defop(_name, "x", _unary_float(_name), attrs=_attrs, groups={ELEMENTWISE, UNARY},
          nondiff=_name in NONDIFF_UNARY)
for _name in ("neg", "abs", "square"):
    defop(_name, "x", _unary_any(_name), groups={ELEMENTWISE, UNARY},
          builtin="the unary operator -x" if _name == "neg" else None)
defop("sign", "x", _unary_any("sign"), groups={ELEMENTWISE, UNARY}, nondiff=True)


def _logical_not(ts, attrs):
    if ts[0].dtype != DType.bool:
        raise ShapeError(f"logical_not needs a bool tensor, got {ts[0]}")
    return ts[0]


defop("logical_not", "x", _logical_not, groups={ELEMENTWISE, UNARY}, nondiff=True,
      builtin="the operator `not x`")


def _cast(ts, attrs):
    try:
        dt = attrs["dtype"] if isinstance(attrs["dtype"], DType) else DType.parse(attrs["dtype"])
    except KeyError:
        raise ShapeError(f"cast: unknown dtype {attrs['dtype']!r}")
    return ts[0].with_dtype(dt)


defop("cast", "x", _cast, attrs={"dtype": required()}, groups={ELEMENTWISE, UNARY},
      doc="Convert the element type; differentiable between float types.")


def _binary(name, result=None, need_float=False):
    def infer(ts, attrs):
        a, b = ts
        dt = promote(a.dtype, b.dtype, name)
        if need_float and not dt.is_float:
            raise ShapeError(f"{name} needs floating-point operands, got {a} and {b}")
        try:
            shape = broadcast_shapes(a.shape, b.shape, name)
        except ShapeError as e:
            raise ShapeError(f"{name}: shapes do not match: {a} and {b}", e.hint) from None
        return TensorType(result or dt, shape)
    return infer


for _name in ("add", "sub", "mul", "maximum", "minimum"):
    defop(_name, "a b", _binary(_name), groups={ELEMENTWISE, BINARY})
for _name in ("div", "pow"):
    defop(_name, "a b", _binary(_name, need_float=True), groups={ELEMENTWISE, BINARY})
for _name in ("eq", "ne", "lt", "le", "gt", "ge"):
    defop(_name, "a b", _binary(_name, DType.bool), groups={ELEMENTWISE, BINARY, COMPARISON},
          nondiff=True, builtin="the comparison operators == != < <= > >=")


def _logical(name):
    def infer(ts, attrs):
        if ts[0].dtype != DType.bool or ts[1].dtype != DType.bool:
            raise ShapeError(f"{name} needs bool operands, got {ts[0]} and {ts[1]}")
        return TensorType(DType.bool, broadcast_shapes(ts[0].shape, ts[1].shape, name))
    return infer


for _name in ("logical_and", "logical_or"):
    defop(_name, "a b", _logical(_name), groups={ELEMENTWISE, BINARY}, nondiff=True,
          builtin="the operators `a and b`, `a or b`")


def _prelu(ts, attrs):
    x, w = ts
    require_float(x, "prelu")
    if w.rank != 1:
        raise ShapeError(f"prelu weight must be 1-D, got {w}")
    if w.shape[0] != 1 and (x.rank < 2 or x.shape[1] != w.shape[0]):
        raise ShapeError(f"prelu: weight {w} does not match the channels of {x}",
                         "the weight has one slope per channel (axis 1) or a single slope")
    return x


defop("prelu", "x weight", _prelu, groups={ELEMENTWISE, ACTIVATION})


def _where(ts, attrs):
    c, a, b = ts
    if c.dtype != DType.bool:
        raise ShapeError(f"where: the condition must be bool, got {c}",
                         "compare first, e.g. where(x > 0, x, y)")
    dt = promote(a.dtype, b.dtype, "where")
    shape = broadcast_shapes(broadcast_shapes(c.shape, a.shape, "where"), b.shape, "where")
    return TensorType(dt, shape)


defop("where", "cond a b", _where, groups={ELEMENTWISE})


def _softmax(name):
    def infer(ts, attrs):
        require_float(ts[0], name)
        norm_axis(attrs["axis"], ts[0].rank, name)
        return ts[0]
    return infer


defop("softmax", "x", _softmax("softmax"), attrs={"axis": -1}, groups={ACTIVATION})
defop("log_softmax", "x", _softmax("log_softmax"), attrs={"axis": -1}, groups={ACTIVATION})


# ---------------------------------------------------------------- VJP rules
# Each rule returns one cotangent per operand (None: zero).  Rules are built
# from differentiable IR ops, so they can be differentiated again.
import math  # noqa: E402

from .registry import defvjp  # noqa: E402
from .vjp_util import as_float, scalar, sum_to  # noqa: E402


def _mul(b, *xs):
    out = xs[0]
    for x in xs[1:]:
        out = b.op("mul", out, x)
    return out


def _unary(name):
    def deco(fn):
        defvjp(name)(lambda b, node, g: [fn(b, node.inputs[0], node.outputs[0], g[0], node.attrs)])
        return fn
    return deco


@_unary("neg")
def _(b, x, y, g, a):
    return b.op("neg", g)


@_unary("abs")
def _(b, x, y, g, a):
    return b.op("mul", g, b.op("sign", x))


@_unary("square")
def _(b, x, y, g, a):
    return _mul(b, g, x, scalar(b, 2.0, x))


@_unary("exp")
def _(b, x, y, g, a):
    return b.op("mul", g, y)


@_unary("log")
def _(b, x, y, g, a):
    return b.op("div", g, x)


@_unary("log1p")
def _(b, x, y, g, a):
    return b.op("div", g, b.op("add", x, scalar(b, 1.0, x)))


@_unary("sqrt")
def _(b, x, y, g, a):
    return b.op("div", g, b.op("mul", y, scalar(b, 2.0, y)))


@_unary("rsqrt")
def _(b, x, y, g, a):
    # d/dx x^-1/2 = -1/2 x^-3/2 = -1/2 y^3
    return _mul(b, g, scalar(b, -0.5, y), y, y, y)


@_unary("reciprocal")
def _(b, x, y, g, a):
    return b.op("neg", _mul(b, g, y, y))


@_unary("sin")
def _(b, x, y, g, a):
    return b.op("mul", g, b.op("cos", x))


@_unary("cos")
def _(b, x, y, g, a):
    return b.op("neg", b.op("mul", g, b.op("sin", x)))


@_unary("tanh")
def _(b, x, y, g, a):
    return b.op("mul", g, b.op("sub", scalar(b, 1.0, y), b.op("square", y)))


@_unary("sigmoid")
def _(b, x, y, g, a):
    return _mul(b, g, y, b.op("sub", scalar(b, 1.0, y), y))


@_unary("erf")
def _(b, x, y, g, a):
    return _mul(b, g, scalar(b, 2.0 / math.sqrt(math.pi), x), b.op("exp", b.op("neg", b.op("square", x))))


@defvjp("cast")
def _(b, node, g):
    x = node.inputs[0]
    if not x.type.dtype.is_float or not node.outputs[0].type.dtype.is_float:
        return [None]
    return [b.op("cast", g[0], dtype=x.type.dtype.numpy_name)]


@defvjp("add")
def _(b, node, g):
    a, c = node.inputs
    return [sum_to(b, g[0], a.type.shape), sum_to(b, g[0], c.type.shape)]


@defvjp("sub")
def _(b, node, g):
    a, c = node.inputs
    return [sum_to(b, g[0], a.type.shape), sum_to(b, b.op("neg", g[0]), c.type.shape)]


@defvjp("mul")
def _(b, node, g):
    a, c = node.inputs
    return [sum_to(b, b.op("mul", g[0], c), a.type.shape), sum_to(b, b.op("mul", g[0], a), c.type.shape)]


@defvjp("div")
def _(b, node, g):
    a, c = node.inputs
    ga = b.op("div", g[0], c)
    gc = b.op("neg", b.op("div", b.op("mul", ga, a), c))
    return [sum_to(b, ga, a.type.shape), sum_to(b, gc, c.type.shape)]


@defvjp("pow")
def _(b, node, g):
    a, c = node.inputs
    y = node.outputs[0]
    # d/da a^c = c a^(c-1);  d/dc a^c = a^c log a (defined for a > 0)
    ga = _mul(b, g[0], c, b.op("pow", a, b.op("sub", c, scalar(b, 1.0, c))))
    safe = b.op("where", b.op("gt", a, scalar(b, 0.0, a)), a, scalar(b, 1.0, a))
    gc = _mul(b, g[0], y, b.op("log", safe))
    return [sum_to(b, ga, a.type.shape), sum_to(b, gc, c.type.shape)]


def _minmax(pick_first_op):
    def rule(b, node, g):
        a, c = node.inputs
        # ties split the gradient evenly, as PyTorch does
        first = as_float(b, b.op(pick_first_op, a, c), a)
        eq = as_float(b, b.op("eq", a, c), a)
        wa = b.op("add", first, b.op("mul", eq, scalar(b, 0.5, a)))
        wc = b.op("sub", scalar(b, 1.0, a), wa)
        return [sum_to(b, b.op("mul", g[0], wa), a.type.shape), sum_to(b, b.op("mul", g[0], wc), c.type.shape)]
    return rule


defvjp("maximum")(_minmax("gt"))
defvjp("minimum")(_minmax("lt"))


@defvjp("where")
def _(b, node, g):
    cond, a, c = node.inputs
    zero = scalar(b, 0.0, node.outputs[0])
    return [None, sum_to(b, b.op("where", cond, g[0], zero), a.type.shape),
            sum_to(b, b.op("where", cond, zero, g[0]), c.type.shape)]


@defvjp("prelu")
def _(b, node, g):
    x, w = node.inputs
    pos = b.op("gt", x, scalar(b, 0.0, x))
    if w.type.shape[0] == 1 or x.type.rank < 2:
        wb = w if x.type.rank >= 1 else b.op("reshape", w, shape=())
    else:
        wb = b.op("reshape", w, shape=(w.type.shape[0],) + (1,) * (x.type.rank - 2))
    gx = b.op("where", pos, g[0], b.op("mul", g[0], wb))
    gw_full = b.op("where", pos, scalar(b, 0.0, x), b.op("mul", g[0], x))
    if w.type.shape[0] == 1:
        gw = b.op("reshape", b.op("sum", gw_full, axis=None, keepdims=False), shape=(1,))
    else:
        axes = tuple(i for i in range(x.type.rank) if i != 1)
        gw = b.op("sum", gw_full, axis=axes, keepdims=False)
    return [gx, gw]


@defvjp("softmax")
def _(b, node, g):
    y = node.outputs[0]
    ax = node.attrs["axis"]
    dot = b.op("sum", b.op("mul", g[0], y), axis=ax, keepdims=True)
    return [b.op("mul", y, b.op("sub", g[0], dot))]


@defvjp("log_softmax")
def _(b, node, g):
    y = node.outputs[0]
    ax = node.attrs["axis"]
    s = b.op("sum", g[0], axis=ax, keepdims=True)
    return [b.op("sub", g[0], b.op("mul", b.op("exp", y), s))]
