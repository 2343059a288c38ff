"""Elementwise ops: unary math, activations, broadcasting binaries, where, cast.

Families are registered in bulk, as JAX's `deflinear`: one line per op.
"""
from __future__ import annotations

from ...errors import ShapeError
from ..types import DType, TensorType
from .common import broadcast_shapes, norm_axis, promote, require_float
from .registry import (OPS, ACTIVATION, BINARY, COMPARISON, ELEMENTWISE, UNARY, defop, required)


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
ACTIVATIONS = {
    "relu": {}, "relu6": {}, "leaky_relu": {"negative_slope": 0.01}, "elu": {"alpha": 1.0},
    "selu": {}, "gelu": {"approximate": "none"}, "silu": {},
    "softplus": {"beta": 1.0, "threshold": 20.0}, "hardswish": {}, "hardsigmoid": {},
    "hardtanh": {"min_val": -1.0, "max_val": 1.0},
}
NONDIFF_UNARY = {"floor", "ceil", "sign"}

for _name, _attrs in FLOAT_UNARY.items():
    defop(_name, "x", _unary_float(_name), attrs=_attrs, groups={ELEMENTWISE, UNARY},
          nondiff=_name in NONDIFF_UNARY)
for _name, _attrs in ACTIVATIONS.items():
    defop(_name, "x", _unary_float(_name), attrs=_attrs, groups={ELEMENTWISE, UNARY, ACTIVATION})
for _name in ("neg", "abs", "square"):
    defop(_name, "x", _unary_any(_name), groups={ELEMENTWISE, UNARY})
defop("sign", "x", _unary_any("sign"), groups={ELEMENTWISE, UNARY}, nondiff=True)


def _gelu_check(ts, attrs):
    if attrs["approximate"] not in ("none", "tanh"):
        raise ShapeError(f"gelu: approximate must be 'none' or 'tanh', got {attrs['approximate']!r}")
    require_float(ts[0], "gelu")
    return ts[0]


OPS["gelu"].infer_fn = _gelu_check


def _logical_not(ts, attrs):
    if ts[0].dtype != DType.bool:
        raise ShapeError(f"logical_not needs a bool tensor, got {ts[0]}")
    return ts[0]


defop("logical_not", "x", _logical_not, groups={ELEMENTWISE, UNARY}, nondiff=True)


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
          nondiff=True)


def _logical(name):
    def infer(ts, attrs):
        if ts[0].dtype != DType.bool or ts[1].dtype != DType.bool:
            raise ShapeError(f"{name} needs bool operands, got {ts[0]} and {ts[1]}")
        return TensorType(DType.bool, broadcast_shapes(ts[0].shape, ts[1].shape, name))
    return infer


for _name in ("logical_and", "logical_or"):
    defop(_name, "a b", _logical(_name), groups={ELEMENTWISE, BINARY}, nondiff=True)


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
