"""Less common ops expressible in dlc's IR: losses, old Softmax, trigonometric and hyperbolic
functions from exp/sin/cos, IsNaN/IsInf, Mod, Lp norms, MeanVarianceNormalization."""
from __future__ import annotations

import numpy as np

from ...compiler.dims import prod
from .context import Ctx
from .registry import converter


def _s(v):
    return v.decode() if isinstance(v, bytes) else v


@converter("SoftmaxCrossEntropyLoss", "NegativeLogLikelihoodLoss", since=13)
def class_loss(cx: Ctx, node):
    a = Ctx.attrs(node)
    x, t = cx.val(node.input[0]), cx.val(node.input[1])
    w = cx.opt(node, 2)
    reduction = _s(a.get("reduction", "mean"))
    ignore = int(a["ignore_index"]) if "ignore_index" in a else -(1 << 62)   # none: no class index is ignored
    t = t if t.type.dtype.short == "i64" else cx.op("cast", t, dtype="int64")
    args = (x, t) + ((w,) if w is not None else ())
    if node.op_type == "NegativeLogLikelihoodLoss":
        return cx.op("nll_loss", *args, ignore_index=ignore, reduction=reduction)
    loss = cx.op("cross_entropy", *args, ignore_index=ignore, reduction=reduction)
    if len(node.output) > 1 and node.output[1]:
        return [loss, cx.op("log_softmax", x, axis=1)]
    return loss


@converter("Softmax", "LogSoftmax", "Hardmax", since=1, until=13)
def softmax_2d(cx: Ctx, node):
    """Before opset 13 the input is coerced to 2-D at `axis` (default 1)."""
    x = cx.val(node.input[0])
    axis = Ctx.attrs(node).get("axis", 1) % max(x.type.rank, 1)
    flat = cx.op("reshape", x, shape=(prod(x.type.shape[:axis]), prod(x.type.shape[axis:])))
    if node.op_type == "Hardmax":
        idx = cx.op("argmax", flat, axis=1, keepdims=True)
        hot = cx.op("eq", idx, cx.op("arange", start=0, stop=flat.type.shape[1], step=1, dtype="int64"))
        y = cx.op("cast", hot, dtype=x.type.dtype.numpy_name)
    else:
        y = cx.op("softmax" if node.op_type == "Softmax" else "log_softmax", flat, axis=1)
    return cx.op("reshape", y, shape=tuple(x.type.shape))


@converter("Tan", "Sinh", "Cosh", since=7)
def trig(cx: Ctx, node):
    x = cx.val(node.input[0])
    if node.op_type == "Tan":
        return cx.op("div", cx.op("sin", x), cx.op("cos", x))
    e, ne = cx.op("exp", x), cx.op("exp", cx.op("neg", x))
    s = cx.op("sub" if node.op_type == "Sinh" else "add", e, ne)
    return cx.op("mul", s, cx.scalar(0.5, x))


@converter("IsNaN", since=9)
def isnan(cx: Ctx, node):
    x = cx.val(node.input[0])
    return cx.op("ne", x, x)


@converter("IsInf", since=10)
def isinf(cx: Ctx, node):
    a = Ctx.attrs(node)
    x = cx.val(node.input[0])
    pos = cx.op("eq", x, cx.scalar(float("inf"), x))
    neg = cx.op("eq", x, cx.scalar(float("-inf"), x))
    if not a.get("detect_negative", 1):
        return pos
    if not a.get("detect_positive", 1):
        return neg
    return cx.op("logical_or", pos, neg)


@converter("Mod", since=10)
def mod(cx: Ctx, node):
    fmod = Ctx.attrs(node).get("fmod", 0)
    ka, kb = cx.const(node.input[0]), cx.const(node.input[1])
    if not fmod and all(k is not None and k.dtype.kind in "iu" and k.size <= 4096 for k in (ka, kb)) \
            and (kb != 0).all():
        return np.mod(ka, kb)      # shape arithmetic
    a, b = cx.val(node.input[0]), cx.val(node.input[1])
    dt = a.type.dtype.numpy_name
    fa, fb = (v if v.type.dtype.is_float else cx.op("cast", v, dtype="float64") for v in (a, b))
    r = _fmod(cx, fa, fb)
    if not fmod:   # Python's (NumPy's) floored %: a nonzero remainder takes the divisor's sign
        zero = cx.scalar(0.0, r)
        flip = cx.op("lt", cx.op("mul", r, fb), zero)    # opposite signs, neither 0 (an overflow keeps its sign)
        r = cx.op("add", r, cx.op("where", flip, fb, zero))
        # a zero remainder is +0 or -0 as the divisor (np.mod(0, -2) = -0)
        signed_zero = cx.op("where", cx.op("lt", fb, zero), cx.scalar(-0.0, r), zero)
        r = cx.op("where", cx.op("eq", r, zero), signed_zero, r)
    return r if a.type.dtype.is_float else cx.op("cast", r, dtype=dt)


def _fmod(cx: Ctx, a, b):
    """C's fmod: a - trunc(a / b) * b, with its edge cases: a finite `a` modulo an infinite `b` is `a`,
    a zero remainder has the sign of `a`; an infinite `a` or a zero `b` gives NaN (through the arithmetic)."""
    q = cx.op("div", a, b)
    q = cx.op("mul", cx.op("sign", q), cx.op("floor", cx.op("abs", q)))
    r = cx.op("sub", a, cx.op("mul", q, b))
    inf = cx.scalar(float("inf"), a)
    finite_by_inf = cx.op("logical_and", cx.op("eq", cx.op("abs", b), inf), cx.op("lt", cx.op("abs", a), inf))
    r = cx.op("where", finite_by_inf, a, r)
    zero = cx.scalar(0.0, r)
    return cx.op("where", cx.op("eq", r, zero), cx.op("mul", a, zero), r)


def _lp(cx: Ctx, x, p: int, axes, keep: bool):
    if p == 1:
        return cx.op("sum", cx.op("abs", x), axis=axes, keepdims=keep)
    if p == 2:
        return cx.op("sqrt", cx.op("sum", cx.op("mul", x, x), axis=axes, keepdims=keep))
    raise cx.error(f"p={p} is not supported (1 or 2)")


@converter("LpNormalization", since=1)
def lp_normalization(cx: Ctx, node):
    a = Ctx.attrs(node)
    x = cx.val(node.input[0])
    n = _lp(cx, x, int(a.get("p", 2)), (a.get("axis", -1) % x.type.rank,), True)
    # a slice of zeros (norm 0) stays zeros, as ONNX's reference: divide it by 1, not 0
    n = cx.op("where", cx.op("eq", n, cx.scalar(0.0, n)), cx.scalar(1.0, n), n)
    return cx.op("div", x, n)


@converter("GlobalLpPool", since=2)
def global_lp_pool(cx: Ctx, node):
    x = cx.val(node.input[0])
    return _lp(cx, x, int(Ctx.attrs(node).get("p", 2)), tuple(range(2, x.type.rank)), True)


@converter("MeanVarianceNormalization", since=13)
def mvn(cx: Ctx, node):
    x = cx.val(node.input[0])
    axes = tuple(a % x.type.rank for a in Ctx.attrs(node).get("axes", [0, 2, 3]))
    mean = cx.op("mean", x, axis=axes, keepdims=True)
    var = cx.op("var", x, axis=axes, keepdims=True, correction=0)
    return cx.op("div", cx.op("sub", x, mean), cx.op("sqrt", cx.op("add", var, cx.scalar(1e-9, var))))


@converter("Shrink", since=9)
def shrink(cx: Ctx, node):
    a = Ctx.attrs(node)
    x = cx.val(node.input[0])
    lam, bias = float(a.get("lambd", 0.5)), float(a.get("bias", 0.0))
    lo = cx.op("add", x, cx.scalar(bias, x))
    hi = cx.op("sub", x, cx.scalar(bias, x))
    out = cx.op("where", cx.op("lt", x, cx.scalar(-lam, x)), lo, cx.scalar(0, x))
    return cx.op("where", cx.op("gt", x, cx.scalar(lam, x)), hi, out)


@converter("Swish", since=24)
def swish(cx: Ctx, node):
    x = cx.val(node.input[0])
    alpha = float(Ctx.attrs(node).get("alpha", 1.0))
    return cx.op("mul", x, cx.op("sigmoid", cx.op("mul", x, cx.scalar(alpha, x))))


@converter("DepthToSpace", "SpaceToDepth", since=13)
def depth_space(cx: Ctx, node):
    """The reshape/transpose/reshape of the ONNX definition (DCR or CRD order)."""
    a = Ctx.attrs(node)
    x = cx.val(node.input[0])
    bs = int(a["blocksize"])
    n, c, h, w = x.type.shape
    if node.op_type == "DepthToSpace":
        if _s(a.get("mode", "DCR")) == "DCR":
            y = cx.op("reshape", x, shape=(n, bs, bs, c // (bs * bs), h, w))
            y = cx.op("transpose", y, axes=(0, 3, 4, 1, 5, 2))
        else:
            y = cx.op("reshape", x, shape=(n, c // (bs * bs), bs, bs, h, w))
            y = cx.op("transpose", y, axes=(0, 1, 4, 2, 5, 3))
        return cx.op("reshape", y, shape=(n, c // (bs * bs), h * bs, w * bs))
    y = cx.op("reshape", x, shape=(n, c, h // bs, bs, w // bs, bs))
    crd = _s(a.get("mode", "DCR")) == "CRD"
    y = cx.op("transpose", y, axes=(0, 1, 3, 5, 2, 4) if crd else (0, 3, 5, 1, 2, 4))
    return cx.op("reshape", y, shape=(n, c * bs * bs, h // bs, w // bs))


@converter("RMSNormalization", since=23)
def rms_norm(cx: Ctx, node):
    a = Ctx.attrs(node)
    x, scale = cx.val(node.input[0]), cx.val(node.input[1])
    r = x.type.rank
    axes = tuple(range(a.get("axis", -1) % r, r))
    eps = float(a.get("epsilon", 1e-5))
    ms = cx.op("mean", cx.op("mul", x, x), axis=axes, keepdims=True)
    return cx.op("mul", cx.op("mul", x, cx.op("rsqrt", cx.op("add", ms, cx.scalar(eps, ms)))), scale)


@converter("CumSum", since=11)
def cumsum(cx: Ctx, node):
    """A product with a triangular matrix of ones along the axis (float data)."""
    x = cx.val(node.input[0])
    a = Ctx.attrs(node)
    axis = int(cx.need_const(node.input[1], "CumSum's axis").reshape(-1)[0]) % x.type.rank
    n = x.type.shape[axis]
    if not isinstance(n, int):
        raise cx.error("CumSum along a symbolic dimension is not supported")
    if not x.type.dtype.is_float:
        return _int_cumsum(cx, x, axis, n, bool(a.get("reverse", 0)), bool(a.get("exclusive", 0)))
    ones = np.ones((n, n), dtype=x.type.dtype.numpy_name)
    # y[j] = sum_i x[i] * T[i, j]: T[i, j] = 1 where i <= j (inclusive), i < j (exclusive); reversed: i >= j
    rev, excl = bool(a.get("reverse", 0)), bool(a.get("exclusive", 0))
    tri = np.tril(ones, -1 if excl else 0) if rev else np.triu(ones, 1 if excl else 0)
    t = cx.materialize(tri, f"{node.output[0]}_triangle")
    perm = [i for i in range(x.type.rank) if i != axis] + [axis]
    xt = x if axis == x.type.rank - 1 else cx.op("transpose", x, axes=tuple(perm))
    y = cx.op("matmul", xt, t)
    if axis == x.type.rank - 1:
        return y
    inv = [perm.index(i) for i in range(x.type.rank)]
    return cx.op("transpose", y, axes=tuple(inv))


@converter("EyeLike", since=9)
def eye_like(cx: Ctx, node):
    from .loader import ONNX_TO_NUMPY
    x = cx.val(node.input[0])
    a = Ctx.attrs(node)
    shp = x.type.shape
    if len(shp) != 2 or not all(isinstance(d, int) for d in shp):
        raise cx.error("EyeLike needs a 2-D input of known size")
    dt = np.dtype(ONNX_TO_NUMPY[int(a["dtype"])]) if "dtype" in a else np.dtype(x.type.dtype.numpy_name)
    return np.eye(shp[0], shp[1], int(a.get("k", 0)), dtype=dt)


@converter("Round", since=11)
def round_(cx: Ctx, node):
    return round_half_even(cx, cx.val(node.input[0]))


def round_half_even(cx: Ctx, x):
    """Round half to even from floor: r = floor(x + 0.5), minus one on an exact tie with odd r."""
    half = cx.scalar(0.5, x)
    up = cx.op("add", x, half)
    r = cx.op("floor", up)
    tie = cx.op("eq", up, r)
    odd = cx.op("ne", cx.op("sub", r, cx.op("mul", cx.op("floor", cx.op("mul", r, half)), cx.scalar(2.0, x))),
                cx.scalar(0.0, x))
    return cx.op("where", cx.op("logical_and", tie, odd), cx.op("sub", r, cx.scalar(1.0, x)), r)


def _int_cumsum(cx: Ctx, x, axis: int, n: int, reverse: bool, exclusive: bool):
    """An exact integer prefix sum (dlc's matmul accumulates integers in floating point): log2(n)
    steps y += y shifted by 1, 2, 4... along the axis (Hillis-Steele); exclusive shifts once more."""
    y, k = x, 1
    while k < n:
        y = cx.op("add", y, _shift(cx, y, axis, n, k, reverse))
        k *= 2
    return _shift(cx, y, axis, n, 1, reverse) if exclusive and n else y


def _shift(cx: Ctx, y, axis: int, n: int, k: int, reverse: bool):
    """y moved k places along `axis` (toward the end, or the start when `reverse`), zeros coming in."""
    r = y.type.rank
    pad = [0, 0] * (r - 1 - axis) + ([0, k] if reverse else [k, 0])
    padded = cx.op("pad", y, pad=pad, mode="constant", value=0.0)
    begin, end = [None] * r, [None] * r
    begin[axis], end[axis] = (k, k + n) if reverse else (0, n)
    return cx.op("strided_slice", padded, begin=begin, end=end)
