"""NumPy reference kernels: elementwise math, activations, where, softmax, cast.

Conventions shared by every kernel module of this backend:

* A kernel is a plain function.  Tensor arguments are positional (NumPy arrays,
  or None for an absent optional tensor); attributes are keyword-only, named and
  defaulted as in PyTorch, except that axes are ``axis``/``keepdims``.
* Results are computed in the input's dtype: float32 in, float32 out.  Python
  and NumPy scalar constants never widen a float32 computation to float64 (every
  constant goes through ``x.dtype.type``).  Comparisons return bool arrays.
* Mixed operand dtypes follow ``torch.result_type``: the category (bool < int <
  float) decides first, and a 0-d array only wins when it is of a higher
  category than the dimensioned operands (so ``f32[3] + f64[]`` is f32, unlike
  NumPy).  Integer operands of float-only math (exp, sigmoid, div...) become
  float32, PyTorch's default dtype.
* Kernels always return ``np.ndarray`` (0-d arrays, never NumPy scalars) and
  never emit floating-point warnings: inf/nan come out silently, as in PyTorch.
* Multi-output kernels return a tuple.
* dtype attributes are strings ("float16", "float32", "float64", "int8",
  "int32", "int64", "bool", also "uint8"/"int16").  NumPy has no bfloat16:
  "bfloat16" means float32 storage holding values rounded to bf16 precision
  (see `cast`).
"""
from __future__ import annotations

import functools
import math

import numpy as np

# one rounding rule for the reference, the host-drawn random tensors and the deploy runtime
from ....runtime.floats import round_to_bf16  # noqa: F401 - re-exported

# ---------------------------------------------------------------------------
# dtype helpers (shared with the other kernel modules)
# ---------------------------------------------------------------------------

_DTYPES = {
    "float16": np.float16, "f16": np.float16,
    "float32": np.float32, "f32": np.float32,
    "float64": np.float64, "f64": np.float64,
    "bfloat16": np.float32, "bf16": np.float32,   # stored as float32, see `cast`
    "int8": np.int8, "i8": np.int8,
    "int16": np.int16, "i16": np.int16,
    "int32": np.int32, "i32": np.int32,
    "int64": np.int64, "i64": np.int64,
    "uint8": np.uint8, "u8": np.uint8,
    "bool": np.bool_,
}
_BF16_NAMES = ("bfloat16", "bf16")


def dtype_name(dtype) -> str:
    """Canonical name of a dtype attribute (a string, a NumPy dtype, or an enum
    with a ``numpy_name`` such as the compiler's ``DType``)."""
    name = getattr(dtype, "numpy_name", None)
    if name is not None:
        return name
    if isinstance(dtype, str):
        if dtype not in _DTYPES:
            raise ValueError(f"unknown dtype {dtype!r}")
        return {"f16": "float16", "f32": "float32", "f64": "float64", "bf16": "bfloat16",
                "i8": "int8", "i16": "int16", "i32": "int32", "i64": "int64",
                "u8": "uint8"}.get(dtype, dtype)
    return np.dtype(dtype).name


def np_dtype(dtype) -> np.dtype:
    """The NumPy storage dtype for a dtype attribute ("bfloat16" -> float32)."""
    return np.dtype(_DTYPES[dtype_name(dtype)])


def _category(dt: np.dtype) -> int:
    if dt.kind == "b":
        return 0
    if dt.kind in "iu":
        return 1
    if dt.kind == "f":
        return 2
    return 3  # complex


def _promote_types(a, b) -> np.dtype:
    """torch.promote_types: a float beats any int or bool whatever its width."""
    a, b = np.dtype(a), np.dtype(b)
    ca, cb = _category(a), _category(b)
    if ca == cb:
        return np.promote_types(a, b)
    return a if ca > cb else b


def _combine_categories(higher, lower):
    # torch's c10 combine_categories; None plays ScalarType::Undefined
    if higher is None:
        return lower
    if lower is None:
        return higher
    if _category(higher) >= 2:
        return higher
    if _category(higher) == 0 or _category(lower) >= 2:
        return _promote_types(higher, lower)
    return higher


def result_type(*operands) -> np.dtype:
    """torch.result_type for NumPy arrays, NumPy scalars and Python numbers.

    Dimensioned arrays take priority over 0-d arrays and NumPy scalars, which
    take priority over Python numbers; a lower tier only matters when it is
    of a higher category (bool < int < float).  A Python float is float32
    (PyTorch's default dtype), a Python int is int64.
    """
    tiers = [None, None, None]  # dimensioned, zero-dim, wrapped python number
    for op in operands:
        if op is None:
            continue
        if isinstance(op, bool):
            tier, dt = 2, np.dtype(np.bool_)
        elif isinstance(op, int):
            tier, dt = 2, np.dtype(np.int64)
        elif isinstance(op, float) and not isinstance(op, np.floating):
            tier, dt = 2, np.dtype(np.float32)
        elif isinstance(op, complex) and not isinstance(op, np.complexfloating):
            tier, dt = 2, np.dtype(np.complex64)
        else:
            arr = np.asarray(op)
            tier, dt = (0 if arr.ndim > 0 else 1), arr.dtype
        tiers[tier] = dt if tiers[tier] is None else _promote_types(tiers[tier], dt)
    out = _combine_categories(tiers[0], _combine_categories(tiers[1], tiers[2]))
    if out is None:
        raise ValueError("result_type needs at least one operand")
    return np.dtype(out)


def as_array(x, dtype=None) -> np.ndarray:
    """``np.asarray`` that keeps 0-d arrays as arrays (never NumPy scalars)."""
    a = np.asarray(x)
    if dtype is not None and a.dtype != dtype:
        a = a.astype(dtype)
    return a


def as_float(x) -> np.ndarray:
    """The array itself if floating, else converted to float32 (torch's default)."""
    a = np.asarray(x)
    if a.dtype.kind != "f":
        a = a.astype(np.float32)
    return a


def _c(x: np.ndarray, v):
    """A constant in x's dtype, so that it never widens float32 to float64."""
    return x.dtype.type(v)


def quiet(fn):
    """Run a kernel with NumPy floating-point warnings off and wrap a NumPy
    scalar result back into a 0-d array."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with np.errstate(all="ignore"):
            out = fn(*args, **kwargs)
        if isinstance(out, tuple):
            return tuple(o if isinstance(o, np.ndarray) else np.asarray(o) for o in out)
        return out if isinstance(out, np.ndarray) else np.asarray(out)
    return wrapper


# ---------------------------------------------------------------------------
# erf: no SciPy.  Three float64 regions, each accurate to a few ulp:
#   |x| < 0.5   Maclaurin series  2/sqrt(pi) sum (-1)^n x^(2n+1) / (n! (2n+1))
#   |x| < 2.5   erf = 2/sqrt(pi) x e^(-x^2) sum (2x^2)^n / (2n+1)!!  (all terms
#               positive: no cancellation), summed innermost-first
#   |x| >= 2.5  erfc from its continued fraction
#               erfc x = e^(-x^2)/sqrt(pi) / (x + (1/2)/(x + 1/(x + (3/2)/(x + ...))))
#               evaluated bottom-up; erf = sign(x) (1 - erfc |x|)
# Measured against torch.erf (float64) on a dense grid: max relative error 1.3e-15.
# ---------------------------------------------------------------------------

_TWO_OVER_SQRTPI = 2.0 / math.sqrt(math.pi)
_INV_SQRTPI = 1.0 / math.sqrt(math.pi)


def _erf_f64(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    out = np.empty_like(x)
    ax = np.abs(x)
    small = ax < 0.5
    mid = (ax >= 0.5) & (ax < 2.5)
    big = ~(small | mid)            # includes inf and nan
    if small.any():
        v = x[small]
        z = v * v
        # forward sum; the terms shrink fast since z < 0.25
        term = np.ones_like(v)
        s = np.ones_like(v)
        for n in range(1, 16):
            term = term * (-z) / n
            s = s + term / (2 * n + 1)
        out[small] = _TWO_OVER_SQRTPI * v * s
    if mid.any():
        v = x[mid]
        z2 = 2.0 * v * v
        s = np.ones_like(v)
        for n in range(48, 0, -1):
            s = 1.0 + s * z2 / (2 * n + 1)
        out[mid] = _TWO_OVER_SQRTPI * v * np.exp(-v * v) * s
    if big.any():
        xb = x[big]
        v = np.abs(xb)
        f = v.copy()
        for k in range(60, 0, -1):
            f = v + (0.5 * k) / f
        erfc = np.exp(-v * v) * _INV_SQRTPI / f
        out[big] = np.copysign(1.0 - erfc, xb)   # nan stays nan
    return out


# ---------------------------------------------------------------------------
# unary math
# ---------------------------------------------------------------------------

@quiet
def neg(x):
    return np.negative(as_array(x))


@quiet
def abs(x):
    return np.abs(as_array(x))


@quiet
def exp(x):
    return np.exp(as_float(x))


@quiet
def log(x):
    return np.log(as_float(x))


@quiet
def log1p(x):
    return np.log1p(as_float(x))


@quiet
def sqrt(x):
    return np.sqrt(as_float(x))


@quiet
def rsqrt(x):
    x = as_float(x)
    return np.reciprocal(np.sqrt(x))


@quiet
def reciprocal(x):
    return np.reciprocal(as_float(x))


@quiet
def square(x):
    x = as_array(x)
    if x.dtype == np.bool_:      # torch.square(bool) is pow(x, 2) -> int64
        x = x.astype(np.int64)
    return np.multiply(x, x)


@quiet
def sin(x):
    return np.sin(as_float(x))


@quiet
def cos(x):
    return np.cos(as_float(x))


@quiet
def tanh(x):
    return np.tanh(as_float(x))


@quiet
def sigmoid(x):
    """1 / (1 + e^-x) without overflow: e = e^-|x| <= 1 on both branches."""
    x = as_float(x)
    e = np.exp(-np.abs(x))
    one = _c(x, 1)
    return np.where(x >= 0, one / (one + e), e / (one + e))


@quiet
def erf(x):
    """Error function (own float64 implementation, rounded to the input dtype)."""
    x = as_float(x)
    return _erf_f64(x).astype(x.dtype)


@quiet
def sign(x):
    """torch.sign: -1, 0 or 1; sign(nan) is 0 and sign(-0.0) is 0, as in PyTorch."""
    x = as_array(x)
    if x.dtype == np.bool_:
        return x.copy()
    pos = (x > 0).astype(x.dtype)
    negs = (x < 0).astype(x.dtype)
    return pos - negs


@quiet
def floor(x):
    x = as_array(x)
    return np.floor(x) if x.dtype.kind == "f" else x.copy()


@quiet
def ceil(x):
    x = as_array(x)
    return np.ceil(x) if x.dtype.kind == "f" else x.copy()


@quiet
def logical_not(x):
    return np.logical_not(as_array(x))


# ---------------------------------------------------------------------------
# activations
# ---------------------------------------------------------------------------

@quiet
def relu(x):
    x = as_array(x)
    return np.maximum(x, _c(x, 0))          # nan propagates, as torch.relu


def _clamp(x, lo, hi):
    # torch.clamp/hardtanh: nan stays nan (np.maximum/np.minimum propagate it)
    if lo is not None:
        x = np.maximum(x, _c(x, lo))
    if hi is not None:
        x = np.minimum(x, _c(x, hi))
    return x


@quiet
def relu6(x):
    return _clamp(as_array(x), 0, 6)


@quiet
def hardtanh(x, *, min_val=-1.0, max_val=1.0):
    return _clamp(as_float(x), min_val, max_val)


@quiet
def leaky_relu(x, *, negative_slope=0.01):
    x = as_float(x)
    return np.where(x > 0, x, x * _c(x, negative_slope))


@quiet
def elu(x, *, alpha=1.0):
    x = as_float(x)
    neg_part = _c(x, alpha) * np.expm1(np.minimum(x, _c(x, 0)))
    return np.where(x > 0, x, neg_part)


_SELU_ALPHA = 1.6732632423543772848170429916717
_SELU_SCALE = 1.0507009873554804934193349852946


@quiet
def selu(x):
    x = as_float(x)
    neg_part = _c(x, _SELU_ALPHA) * np.expm1(np.minimum(x, _c(x, 0)))
    return _c(x, _SELU_SCALE) * np.where(x > 0, x, neg_part)


@quiet
def gelu(x, *, approximate="none"):
    """torch's formulas: x/2 (1 + erf(x/sqrt 2)), or the tanh approximation
    x/2 (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))."""
    x = as_float(x)
    half, one = _c(x, 0.5), _c(x, 1)
    if approximate == "none":
        return x * half * (one + erf(x * _c(x, math.sqrt(0.5))))
    if approximate == "tanh":
        inner = _c(x, math.sqrt(2.0 / math.pi)) * (x + _c(x, 0.044715) * x * x * x)
        return half * x * (one + np.tanh(inner))
    raise ValueError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")


@quiet
def silu(x):
    x = as_float(x)
    return x * sigmoid(x)


@quiet
def softplus(x, *, beta=1.0, threshold=20.0):
    """log(1 + e^(beta x)) / beta, and x itself where beta x > threshold (torch)."""
    x = as_float(x)
    bx = x * _c(x, beta)
    soft = np.log1p(np.exp(np.minimum(bx, _c(x, threshold)))) / _c(x, beta)
    return np.where(bx > _c(x, threshold), x, soft)


@quiet
def hardsigmoid(x):
    x = as_float(x)
    return _clamp(x + _c(x, 3), 0, 6) / _c(x, 6)


@quiet
def hardswish(x):
    x = as_float(x)
    return x * _clamp(x + _c(x, 3), 0, 6) / _c(x, 6)


@quiet
def prelu(x, weight):
    """torch.prelu: one slope per channel (axis 1), or a single slope."""
    x = as_float(x)
    w = as_array(weight).astype(x.dtype, copy=False)
    if w.size == 1:
        w = w.reshape(())
    else:
        if x.ndim < 2 or w.ndim != 1 or x.shape[1] != w.shape[0]:
            raise ValueError(f"prelu: weight of shape {w.shape} does not match input of shape "
                             f"{x.shape} (one slope per channel, axis 1, or a single slope)")
        w = w.reshape((w.shape[0],) + (1,) * (x.ndim - 2))
    return np.where(x > 0, x, w * x)


# ---------------------------------------------------------------------------
# cast
# ---------------------------------------------------------------------------

@quiet
def cast(x, *, dtype):
    """Convert to `dtype`.  "bfloat16" has no NumPy type: the result is float32
    rounded to bf16 precision (RNE), the values a bf16 tensor would hold.
    Float -> int truncates toward zero; anything -> bool is ``x != 0``."""
    x = as_array(x)
    name = dtype_name(dtype)
    if name == "bfloat16":
        return round_to_bf16(x.astype(np.float32))
    target = np_dtype(name)
    if target == np.bool_:
        return x != 0
    return x.astype(target)


# ---------------------------------------------------------------------------
# binary ops (NumPy broadcasting, torch type promotion)
# ---------------------------------------------------------------------------

def _prep(a, b):
    dt = result_type(a, b)
    return as_array(a, dt), as_array(b, dt), dt


@quiet
def add(a, b):
    a, b, dt = _prep(a, b)
    if dt == np.bool_:
        return np.logical_or(a, b)
    return np.add(a, b)


@quiet
def sub(a, b):
    a, b, dt = _prep(a, b)
    if dt == np.bool_:
        raise TypeError("sub: subtraction of bool tensors is not supported (as in PyTorch)")
    return np.subtract(a, b)


@quiet
def mul(a, b):
    a, b, dt = _prep(a, b)
    if dt == np.bool_:
        return np.logical_and(a, b)
    return np.multiply(a, b)


@quiet
def div(a, b):
    """True division; integer operands give float32 (torch's default dtype)."""
    dt = result_type(a, b)
    if dt.kind != "f":
        dt = np.dtype(np.float32)
    return np.true_divide(as_array(a, dt), as_array(b, dt))


@quiet
def pow(a, b):
    a, b, dt = _prep(a, b)
    if dt == np.bool_:
        return np.logical_or(a, np.logical_not(b))   # x**y for bools
    return np.power(a, b)


@quiet
def maximum(a, b):
    a, b, _ = _prep(a, b)
    return np.maximum(a, b)          # nan propagates, as torch.maximum


@quiet
def minimum(a, b):
    a, b, _ = _prep(a, b)
    return np.minimum(a, b)


def _compare(ufunc):
    @quiet
    def kernel(a, b):
        a, b, _ = _prep(a, b)
        return ufunc(a, b)
    kernel.__name__ = ufunc.__name__
    kernel.__doc__ = f"Elementwise {ufunc.__name__} with broadcasting; returns bool."
    return kernel


eq = _compare(np.equal)
ne = _compare(np.not_equal)
lt = _compare(np.less)
le = _compare(np.less_equal)
gt = _compare(np.greater)
ge = _compare(np.greater_equal)


@quiet
def logical_and(a, b):
    return np.logical_and(as_array(a), as_array(b))


@quiet
def logical_or(a, b):
    return np.logical_or(as_array(a), as_array(b))


@quiet
def where(cond, a, b):
    """torch.where: cond is read as bool; a and b are promoted as a binary op."""
    a, b, _ = _prep(a, b)
    c = as_array(cond)
    if c.dtype != np.bool_:
        c = c != 0
    return np.where(c, a, b)


# ---------------------------------------------------------------------------
# softmax family
# ---------------------------------------------------------------------------

@quiet
def softmax(x, *, axis=-1):
    x = as_float(x)
    if x.ndim == 0:
        x1 = x.reshape(1)
        return softmax(x1, axis=0).reshape(())
    m = np.max(x, axis=axis, keepdims=True)
    e = np.exp(x - m)
    return e / np.sum(e, axis=axis, keepdims=True)


@quiet
def log_softmax(x, *, axis=-1):
    x = as_float(x)
    if x.ndim == 0:
        return log_softmax(x.reshape(1), axis=0).reshape(())
    m = np.max(x, axis=axis, keepdims=True)
    shifted = x - m
    return shifted - np.log(np.sum(np.exp(shifted), axis=axis, keepdims=True))


KERNELS = {
    # unary math
    "neg": neg, "abs": abs, "exp": exp, "log": log, "log1p": log1p, "sqrt": sqrt,
    "rsqrt": rsqrt, "reciprocal": reciprocal, "square": square, "sin": sin, "cos": cos,
    "tanh": tanh, "sigmoid": sigmoid, "erf": erf, "sign": sign, "floor": floor,
    "ceil": ceil, "logical_not": logical_not, "cast": cast,
    # activations
    "relu": relu, "relu6": relu6, "leaky_relu": leaky_relu, "elu": elu, "selu": selu,
    "gelu": gelu, "silu": silu, "softplus": softplus, "hardswish": hardswish,
    "hardsigmoid": hardsigmoid, "hardtanh": hardtanh, "prelu": prelu,
    # binary
    "add": add, "sub": sub, "mul": mul, "div": div, "pow": pow, "maximum": maximum,
    "minimum": minimum, "eq": eq, "ne": ne, "lt": lt, "le": le, "gt": gt, "ge": ge,
    "logical_and": logical_and, "logical_or": logical_or,
    # selection / normalisation
    "where": where, "softmax": softmax, "log_softmax": log_softmax,
}
