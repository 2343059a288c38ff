"""Elementwise ONNX ops: activations, arithmetic, comparisons, Where, Clip, Cast, Constant."""
from __future__ import annotations

import math

import numpy as np

from .context import NP_TO_DTYPE, Ctx
from .loader import ONNX_TO_NUMPY, dtype_name, tensor_to_numpy
from .registry import converter

UNARY = {"Relu": "relu", "Sigmoid": "sigmoid", "Tanh": "tanh", "Exp": "exp", "Log": "log", "Sqrt": "sqrt",
         "Neg": "neg", "Abs": "abs", "Floor": "floor", "Ceil": "ceil", "Sign": "sign", "Sin": "sin", "Cos": "cos",
         "Erf": "erf", "Reciprocal": "reciprocal", "HardSwish": "hardswish", "Not": "logical_not"}
BINARY = {"Add": "add", "Sub": "sub", "Mul": "mul", "Div": "div", "Pow": "pow",
          "Equal": "eq", "Less": "lt", "LessOrEqual": "le", "Greater": "gt", "GreaterOrEqual": "ge",
          "And": "logical_and", "Or": "logical_or", "Xor": "ne", "Max": "maximum", "Min": "minimum"}
# import-time folding of shape arithmetic (int64 / object arrays of Dims)
_FOLD = {"Add": lambda a, b: a + b, "Sub": lambda a, b: a - b, "Mul": lambda a, b: a * b,
         "Equal": lambda a, b: np.asarray(a == b), "Less": lambda a, b: np.asarray(a < b),
         "Greater": lambda a, b: np.asarray(a > b), "Max": np.maximum, "Min": np.minimum,
         "And": np.logical_and, "Or": np.logical_or, "Xor": np.logical_xor}
_FOLD_LIMIT = 1 << 16


def _known_all(cx: Ctx, node):
    vals = [cx.const(n) for n in node.input if n]
    if vals and all(v is not None for v in vals) and all(v.size <= _FOLD_LIMIT for v in vals):
        return vals
    return None


@converter(*(k for k in UNARY if k != "Not"), since=6)
@converter("Not", since=1)      # Not-1 is its only version
def unary(cx: Ctx, node):
    known = cx.const(node.input[0])
    if known is not None and (known.dtype == object or known.dtype.kind in "iub") and known.size <= _FOLD_LIMIT \
            and node.op_type in _FOLD_UNARY:
        return np.asarray(_FOLD_UNARY[node.op_type](known))
    return cx.op(UNARY[node.op_type], cx.val(node.input[0]))


_FOLD_UNARY = {"Neg": lambda a: -a, "Abs": abs, "Not": np.logical_not}


@converter("Identity", since=1)
def identity(cx: Ctx, node):
    if node.input[0] in cx.initializers:     # a tied weight (torch.onnx writes shared parameters this way)
        cx.alias[node.output[0]] = cx.alias.get(node.input[0], node.input[0])
    v = cx.const(node.input[0])
    return v if v is not None else cx.val(node.input[0])


@converter(*BINARY, since=7)
def binary(cx: Ctx, node):
    if node.op_type in ("Max", "Min") and len(node.input) != 2:
        return variadic(cx, node)
    known = _known_all(cx, node)
    if known is not None:
        a, b = known
        if node.op_type in _FOLD and (a.dtype == object or b.dtype == object or a.dtype.kind in "iub"):
            return np.asarray(_FOLD[node.op_type](a, b))
        if node.op_type == "Div" and (a.dtype == object or b.dtype == object):
            return np.asarray(a // b)
        if node.op_type == "Div" and a.dtype.kind in "iu" and b.dtype.kind in "iu" and (b != 0).all():
            q = np.abs(a) // np.abs(b)                     # ONNX truncates toward zero
            return (q * np.sign(a) * np.sign(b)).astype(a.dtype)
    if node.op_type == "Add":
        from .ops_nn import fuse_linear_bias
        fused = fuse_linear_bias(cx, node)
        if fused is not None:
            return fused
    a, b = cx.val(node.input[0]), cx.val(node.input[1])
    op = BINARY[node.op_type]
    if op == "div" and not a.type.dtype.is_float:
        return _int_div(cx, a, b)
    if op == "pow" and b.type.dtype != a.type.dtype:
        b = cx.op("cast", b, dtype=a.type.dtype.numpy_name)
    if op == "pow" and not a.type.dtype.is_float:
        f = cx.op("pow", cx.op("cast", a, dtype="float64"), cx.op("cast", b, dtype="float64"))
        return cx.op("cast", f, dtype=a.type.dtype.numpy_name)
    return cx.op(op, a, b)


def _int_div(cx: Ctx, a, b):
    """ONNX integer Div truncates toward zero."""
    q = cx.op("div", cx.op("cast", a, dtype="float64"), cx.op("cast", b, dtype="float64"))
    t = cx.op("mul", cx.op("sign", q), cx.op("floor", cx.op("abs", q)))
    return cx.op("cast", t, dtype=a.type.dtype.numpy_name)


@converter("Sum", "Mean", since=8)
def variadic(cx: Ctx, node):
    op = {"Sum": "add", "Mean": "add", "Max": "maximum", "Min": "minimum"}[node.op_type]
    vals = [cx.val(n) for n in node.input]
    out = vals[0]
    for v in vals[1:]:
        out = cx.op(op, out, v)
    if node.op_type == "Mean" and len(vals) > 1:
        out = cx.op("div", out, cx.scalar(float(len(vals)), out))
    return out


@converter("Max", "Min", since=12)
def max_min(cx: Ctx, node):
    return binary(cx, node) if len(node.input) == 2 else variadic(cx, node)


@converter("Where", since=9)
def where(cx: Ctx, node):
    known = _known_all(cx, node)
    if known is not None and all(k.dtype == object or k.dtype.kind in "iub" for k in known):
        return np.where(known[0].astype(bool), known[1], known[2])
    return cx.op("where", *(cx.val(n) for n in node.input))


def _attr_f(node, name, default):
    return float(Ctx.attrs(node).get(name, default))


@converter("LeakyRelu", since=6)
def leaky_relu(cx: Ctx, node):
    return cx.op("leaky_relu", cx.val(node.input[0]), negative_slope=_attr_f(node, "alpha", 0.01))


@converter("Elu", since=6)
def elu(cx: Ctx, node):
    return cx.op("elu", cx.val(node.input[0]), alpha=_attr_f(node, "alpha", 1.0))


@converter("Selu", since=6)
def selu(cx: Ctx, node):
    x = cx.val(node.input[0])
    alpha, gamma = _attr_f(node, "alpha", 1.67326319217681884765625), _attr_f(node, "gamma", 1.05070102214813232421875)
    if math.isclose(alpha, 1.6732632423543772, rel_tol=1e-6) and math.isclose(gamma, 1.0507009873554805, rel_tol=1e-6):
        return cx.op("selu", x)
    # gamma * (x > 0 ? x : alpha * (exp(x) - 1)) = gamma * elu(x, alpha)
    return cx.op("mul", cx.op("elu", x, alpha=alpha), cx.scalar(gamma, x))


@converter("Celu", since=12)
def celu(cx: Ctx, node):
    x = cx.val(node.input[0])
    alpha = _attr_f(node, "alpha", 1.0)
    # max(0, x) + min(0, alpha * (exp(x / alpha) - 1)) = alpha * elu(x / alpha)
    return cx.op("mul", cx.op("elu", cx.op("div", x, cx.scalar(alpha, x))), cx.scalar(alpha, x))


@converter("HardSigmoid", since=6)
def hard_sigmoid(cx: Ctx, node):
    x = cx.val(node.input[0])
    alpha, beta = _attr_f(node, "alpha", 0.2), _attr_f(node, "beta", 0.5)
    if math.isclose(alpha, 1 / 6, rel_tol=1e-6) and beta == 0.5:
        return cx.op("hardsigmoid", x)
    lin = cx.op("add", cx.op("mul", x, cx.scalar(alpha, x)), cx.scalar(beta, x))
    return cx.op("hardtanh", lin, min_val=0.0, max_val=1.0)


@converter("Softplus", since=1)
def softplus(cx: Ctx, node):
    # log(exp(x) + 1) without torch's linear threshold
    x = cx.val(node.input[0])
    return cx.op("softplus", x, beta=1.0, threshold=float("inf"))


@converter("Softsign", since=1)
def softsign(cx: Ctx, node):
    x = cx.val(node.input[0])
    return cx.op("div", x, cx.op("add", cx.op("abs", x), cx.scalar(1.0, x)))


@converter("Mish", since=18)
def mish(cx: Ctx, node):
    x = cx.val(node.input[0])
    return cx.op("mul", x, cx.op("tanh", cx.op("softplus", x, beta=1.0, threshold=float("inf"))))


@converter("ThresholdedRelu", since=10)
def thresholded_relu(cx: Ctx, node):
    x = cx.val(node.input[0])
    return cx.op("where", cx.op("gt", x, cx.scalar(_attr_f(node, "alpha", 1.0), x)), x, cx.scalar(0.0, x))


@converter("Gelu", since=20)
def gelu(cx: Ctx, node):
    approx = Ctx.attrs(node).get("approximate", b"none")
    approx = approx.decode() if isinstance(approx, bytes) else approx
    return cx.op("gelu", cx.val(node.input[0]), approximate=approx)


@converter("PRelu", since=9)
def prelu(cx: Ctx, node):
    x, slope = cx.val(node.input[0]), cx.val(node.input[1])
    n = slope.type.numel()
    if slope.type.rank >= 1 and x.type.rank >= 2 and (n == 1 or (slope.type.shape[0] == x.type.shape[1]
                                                                  and n == slope.type.shape[0])):
        if slope.type.rank != 1:
            slope = cx.op("reshape", slope, shape=(n,))
        return cx.layer("prelu", x, slope)
    # general broadcasting slope: x < 0 ? slope * x : x
    return cx.op("where", cx.op("lt", x, cx.scalar(0.0, x)), cx.op("mul", x, slope), x)


@converter("Clip", since=11)
def clip(cx: Ctx, node):
    x = cx.val(node.input[0])
    lo = cx.const(node.input[1]) if len(node.input) > 1 and node.input[1] else None
    hi = cx.const(node.input[2]) if len(node.input) > 2 and node.input[2] else None
    has_lo = len(node.input) > 1 and bool(node.input[1])
    has_hi = len(node.input) > 2 and bool(node.input[2])
    if x.type.dtype.is_float and lo is not None and hi is not None and float(lo) <= float(hi):
        return cx.op("hardtanh", x, min_val=float(lo), max_val=float(hi))
    out = x
    if has_lo:
        out = cx.op("maximum", out, cx.val(node.input[1]))
    if has_hi:
        out = cx.op("minimum", out, cx.val(node.input[2]))
    return out


@converter("Cast", since=6)
def cast(cx: Ctx, node):
    to = int(Ctx.attrs(node)["to"])
    np_dt = ONNX_TO_NUMPY.get(to)
    if np_dt is None or np.dtype(np_dt).name not in NP_TO_DTYPE:
        raise cx.error(f"Cast to {dtype_name(to)} is not supported: dlc has no such element type")
    known = cx.const(node.input[0])
    if known is not None and (known.dtype == object or known.dtype.kind in "iub" or known.size == 1) \
            and known.size <= _FOLD_LIMIT:
        if known.dtype == object and np.dtype(np_dt).kind in "iu":
            return known
        return np.asarray(known).astype(np_dt)
    x = cx.val(node.input[0])
    if x.type.dtype == NP_TO_DTYPE[np.dtype(np_dt).name]:
        return x
    return cx.op("cast", x, dtype=np.dtype(np_dt).name)


@converter("CastLike", since=15)
def cast_like(cx: Ctx, node):
    known = cx.const(node.input[0])
    like = cx.val(node.input[1])
    if known is not None and known.size == 1 and known.dtype != object:
        return known.astype(like.type.dtype.numpy_name)
    x = cx.val(node.input[0])
    return x if x.type.dtype == like.type.dtype else cx.op("cast", x, dtype=like.type.dtype.numpy_name)


@converter("Constant", since=1)
def constant(cx: Ctx, node):
    a = node.attribute[0] if len(node.attribute) == 1 else None
    if a is None:
        raise cx.error("Constant needs exactly one value attribute")
    if a.name == "value":
        return tensor_to_numpy(a.t, cx.base_dir, "Constant value")
    simple = {"value_float": (np.float32, lambda: a.f), "value_floats": (np.float32, lambda: list(a.floats)),
              "value_int": (np.int64, lambda: a.i), "value_ints": (np.int64, lambda: list(a.ints))}
    if a.name in simple:
        dt, get = simple[a.name]
        return np.asarray(get(), dtype=dt)
    raise cx.error(f"Constant with a {a.name} attribute is not supported (dlc has no string or sparse tensors)")
