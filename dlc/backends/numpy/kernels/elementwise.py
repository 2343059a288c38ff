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

The family is in four modules: `dtypes` (the helpers above, shared by every
kernel module), `unary` (unary math, erf), `activations`, and this one (cast,
binary ops, where, softmax, and the family's ``KERNELS``); every kernel and
helper stays importable from here.
"""
from __future__ import annotations

import numpy as np

# one rounding rule for the reference, the host-drawn random tensors and the deploy runtime
from ....runtime.floats import round_to_bf16  # noqa: F401 - re-exported
from .activations import (  # noqa: F401 - re-exported
    elu,
    gelu,
    hardsigmoid,
    hardtanh,
    leaky_relu,
    prelu,
    relu,
    relu6,
    selu,
    silu,
    softplus,
)
from .dtypes import (  # noqa: F401 - re-exported
    as_array,
    as_float,
    dtype_name,
    np_dtype,
    quiet,
    result_type,
    _c,
    _category,
    _combine_categories,
    _DTYPES,
    _promote_types,
)
from .unary import (  # noqa: F401 - re-exported
    abs,
    ceil,
    cos,
    erf,
    exp,
    floor,
    log,
    log1p,
    logical_not,
    neg,
    reciprocal,
    rsqrt,
    sigmoid,
    sign,
    sin,
    sqrt,
    square,
    tanh,
)


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
    "gelu": gelu, "silu": silu, "softplus": softplus,
    "hardsigmoid": hardsigmoid, "hardtanh": hardtanh, "prelu": prelu,
    # binary
    "add": add, "sub": sub, "mul": mul, "div": div, "pow": pow, "maximum": maximum,
    "minimum": minimum, "eq": eq, "ne": ne, "lt": lt, "le": le, "gt": gt, "ge": ge,
    "logical_and": logical_and, "logical_or": logical_or,
    # selection / normalisation
    "where": where, "softmax": softmax, "log_softmax": log_softmax,
}
