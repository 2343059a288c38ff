"""Activations: elementwise, float-only, one operand `x`, PyTorch semantics.

Each is one `defop` with its attributes and defaults, and most carry a
decomposition into primitive ops (`defdecomp`), which a backend lowers when
it has no kernel of its own (`compiler/decompose.py`).  A VJP rule is kept
where PyTorch's gradient differs from the decomposition's at the kinks
(hardtanh's bounds, softplus's threshold), or is cheaper than
differentiating the decomposition; an activation without one is
differentiated through its decomposition.

Adding an activation is one `defop` plus a `@defdecomp` here (its `.dln`
builtin comes from the registry entry) and one row of the per-op test table,
`tests/op_inputs.py` `OP_ROWS`.

Decompositions keep PyTorch's NaN and inf behaviour: a comparison with NaN
is false, so `where(x > 0, x, ...)` passes NaN through its second branch, and
`maximum`/`minimum` propagate NaN on every backend.
"""
from __future__ import annotations

import math

from .common import require_float
from .registry import ACTIVATION, ELEMENTWISE, UNARY, defdecomp, defop, defvjp
from .vjp_util import as_float, scalar


def _float_unary(name):
    def infer(ts, attrs):
        require_float(ts[0], name)
        return ts[0]
    return infer


def _gelu_infer(ts, attrs):
    from ...errors import ShapeError
    if attrs["approximate"] not in ("none", "tanh"):
        raise ShapeError(f"gelu: approximate must be 'none' or 'tanh', got {attrs['approximate']!r}")
    require_float(ts[0], "gelu")
    return ts[0]


def activation(name: str, **attrs):
    """Register a float activation `name(x, **attrs)` (the defaults are the values)."""
    infer = _gelu_infer if name == "gelu" else _float_unary(name)
    return defop(name, "x", infer, attrs=attrs, groups={ELEMENTWISE, UNARY, ACTIVATION})


# relu stays a primitive: every backend has a one-instruction kernel for it
defop("relu", "x", _float_unary("relu"), groups={ELEMENTWISE, UNARY, ACTIVATION})
activation("relu6")
activation("leaky_relu", negative_slope=0.01)
activation("elu", alpha=1.0)
activation("selu")
activation("gelu", approximate="none")
activation("silu")
activation("softplus", beta=1.0, threshold=20.0)
activation("hardsigmoid")
activation("hardswish")
activation("hardtanh", min_val=-1.0, max_val=1.0)


def _mul(b, *xs):
    out = xs[0]
    for x in xs[1:]:
        out = b.op("mul", out, x)
    return out


# ---------------------------------------------------------------- decompositions
@defdecomp("hardtanh")
def _(b, ins, a):
    # torch.clamp: NaN stays NaN (maximum/minimum propagate it)
    (x,) = ins
    return b.op("minimum", b.op("maximum", x, scalar(b, a["min_val"], x)), scalar(b, a["max_val"], x))


@defdecomp("relu6")
def _(b, ins, a):
    return b.op("hardtanh", ins[0], min_val=0.0, max_val=6.0)   # F.relu6 is hardtanh(x, 0, 6)


@defdecomp("hardsigmoid")
def _(b, ins, a):
    (x,) = ins
    return b.op("div", b.op("relu6", b.op("add", x, scalar(b, 3.0, x))), scalar(b, 6.0, x))


@defdecomp("hardswish")
def _(b, ins, a):
    # x * relu6(x + 3) / 6, multiplied before dividing as torch does
    (x,) = ins
    r = b.op("relu6", b.op("add", x, scalar(b, 3.0, x)))
    return b.op("div", b.op("mul", x, r), scalar(b, 6.0, x))


@defdecomp("leaky_relu")
def _(b, ins, a):
    (x,) = ins
    return b.op("where", b.op("gt", x, scalar(b, 0.0, x)), x, b.op("mul", x, scalar(b, a["negative_slope"], x)))


@defdecomp("silu")
def _(b, ins, a):
    return b.op("mul", ins[0], b.op("sigmoid", ins[0]))


@defdecomp("softplus")
def _(b, ins, a):
    # log(1 + e^(beta x)) / beta, and x itself where beta x > threshold; the
    # exponent is clamped at the threshold so the unused branch cannot overflow
    (x,) = ins
    bx = b.op("mul", x, scalar(b, a["beta"], x))
    th = scalar(b, a["threshold"], x)
    soft = b.op("div", b.op("log1p", b.op("exp", b.op("minimum", bx, th))), scalar(b, a["beta"], x))
    return b.op("where", b.op("gt", bx, th), x, soft)


@defdecomp("gelu")
def _(b, ins, a):
    (x,) = ins
    half, one = scalar(b, 0.5, x), scalar(b, 1.0, x)
    if a["approximate"] == "tanh":
        # x/2 (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
        cube = _mul(b, scalar(b, 0.044715, x), x, x, x)
        inner = b.op("mul", scalar(b, math.sqrt(2.0 / math.pi), x), b.op("add", x, cube))
        return _mul(b, half, x, b.op("add", one, b.op("tanh", inner)))
    # x/2 (1 + erf(x / sqrt 2))
    return _mul(b, x, half, b.op("add", one, b.op("erf", b.op("mul", x, scalar(b, math.sqrt(0.5), x)))))


# ---------------------------------------------------------------- VJP rules
def _unary(name):
    def deco(fn):
        defvjp(name)(lambda b, node, g: [fn(b, node.inputs[0], node.outputs[0], g[0], node.attrs)])
        return fn
    return deco


@_unary("relu")
def _(b, x, y, g, a):
    return b.op("mul", g, as_float(b, b.op("gt", x, scalar(b, 0.0, x)), x))


@_unary("relu6")
def _(b, x, y, g, a):
    inside = b.op("logical_and", b.op("gt", x, scalar(b, 0.0, x)), b.op("lt", x, scalar(b, 6.0, x)))
    return b.op("mul", g, as_float(b, inside, x))


@_unary("hardtanh")
def _(b, x, y, g, a):
    inside = b.op("logical_and", b.op("gt", x, scalar(b, a["min_val"], x)), b.op("lt", x, scalar(b, a["max_val"], x)))
    return b.op("mul", g, as_float(b, inside, x))


@_unary("leaky_relu")
def _(b, x, y, g, a):
    slope = b.op("where", b.op("gt", x, scalar(b, 0.0, x)), scalar(b, 1.0, x), scalar(b, a["negative_slope"], x))
    return b.op("mul", g, slope)


@_unary("elu")
def _(b, x, y, g, a):
    # x > 0: 1; else alpha * exp(x) = y + alpha
    d = b.op("where", b.op("gt", x, scalar(b, 0.0, x)), scalar(b, 1.0, x), b.op("add", y, scalar(b, a["alpha"], y)))
    return b.op("mul", g, d)


_SELU_ALPHA = 1.6732632423543772848170429916717
_SELU_SCALE = 1.0507009873554804934193349852946


@_unary("selu")
def _(b, x, y, g, a):
    neg = _mul(b, scalar(b, _SELU_SCALE * _SELU_ALPHA, x), b.op("exp", x))
    d = b.op("where", b.op("gt", x, scalar(b, 0.0, x)), scalar(b, _SELU_SCALE, x), neg)
    return b.op("mul", g, d)


@_unary("silu")
def _(b, x, y, g, a):
    s = b.op("sigmoid", x)
    # s + x s (1 - s)
    return b.op("mul", g, b.op("add", s, _mul(b, x, s, b.op("sub", scalar(b, 1.0, s), s))))


@_unary("gelu")
def _(b, x, y, g, a):
    if a["approximate"] == "tanh":
        k = math.sqrt(2.0 / math.pi)
        x2 = b.op("square", x)
        inner = _mul(b, scalar(b, k, x), b.op("add", x, _mul(b, scalar(b, 0.044715, x), x2, x)))
        t = b.op("tanh", inner)
        dinner = _mul(b, scalar(b, k, x), b.op("add", scalar(b, 1.0, x), _mul(b, scalar(b, 3 * 0.044715, x), x2)))
        half = scalar(b, 0.5, x)
        d = b.op("add", _mul(b, half, b.op("add", scalar(b, 1.0, x), t)),
                 _mul(b, half, x, b.op("sub", scalar(b, 1.0, x), b.op("square", t)), dinner))
        return b.op("mul", g, d)
    cdf = _mul(b, scalar(b, 0.5, x), b.op("add", scalar(b, 1.0, x), b.op("erf", b.op("mul", x, scalar(b, 1 / math.sqrt(2), x)))))
    pdf = _mul(b, scalar(b, 1 / math.sqrt(2 * math.pi), x), b.op("exp", _mul(b, scalar(b, -0.5, x), x, x)))
    return b.op("mul", g, b.op("add", cdf, b.op("mul", x, pdf)))


@_unary("softplus")
def _(b, x, y, g, a):
    bx = b.op("mul", x, scalar(b, a["beta"], x))
    d = b.op("where", b.op("gt", bx, scalar(b, a["threshold"], x)), scalar(b, 1.0, x), b.op("sigmoid", bx))
    return b.op("mul", g, d)


@_unary("hardsigmoid")
def _(b, x, y, g, a):
    inside = b.op("logical_and", b.op("gt", x, scalar(b, -3.0, x)), b.op("lt", x, scalar(b, 3.0, x)))
    return _mul(b, g, as_float(b, inside, x), scalar(b, 1.0 / 6.0, x))
