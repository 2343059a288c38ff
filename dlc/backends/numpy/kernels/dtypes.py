"""dtype helpers shared by every NumPy kernel module: dtype names and torch's
type promotion (`result_type`), operands as arrays (`as_array`, `as_float`:
integers become float32, PyTorch's default), constants in an operand's dtype,
the `quiet` wrapper (no floating-point warnings, 0-d arrays never scalars), and
the neural-network kernels' compute dtype (`float_dtype`: the input's own if
floating, else float64) and per-channel broadcasting."""
from __future__ import annotations

import functools

import numpy as np

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
    if len(operands) == 2:          # the common case, two arrays of one dtype: that dtype
        a, b = operands
        if type(a) is np.ndarray and type(b) is np.ndarray:
            if a.dtype == b.dtype:
                return a.dtype
            if (a.ndim == 0) != (b.ndim == 0) and a.dtype.kind == b.dtype.kind == "f":
                return a.dtype if a.ndim else b.dtype    # a 0-d float never widens a float tensor
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
        return as_arrays(out)
    # the kernel without the errstate, for a caller that has switched the
    # warnings off already (the interpreter, for a whole run)
    wrapper.unquiet = fn      # its results still need as_arrays
    return wrapper


def as_arrays(out):
    """A kernel's result with NumPy scalars wrapped back into 0-d arrays."""
    if isinstance(out, tuple):
        return tuple(o if isinstance(o, np.ndarray) else np.asarray(o) for o in out)
    return out if isinstance(out, np.ndarray) else np.asarray(out)


# ---------------------------------------------------------------------------
# the neural-network kernels' compute dtype
# ---------------------------------------------------------------------------

def float_dtype(x: np.ndarray) -> np.dtype:
    """The dtype a kernel computes in: the input's own if floating, else float64."""
    return x.dtype if np.issubdtype(x.dtype, np.floating) else np.dtype(np.float64)


def cast_operand(a: np.ndarray | None, dtype: np.dtype) -> np.ndarray | None:
    """Cast an optional operand to the compute dtype (no copy when it already matches)."""
    return None if a is None else np.asarray(a).astype(dtype, copy=False)


def channel_shape(ndim: int, channels: int) -> tuple[int, ...]:
    """Shape that broadcasts a per-channel vector over an (N, C, *spatial) tensor."""
    return (1, channels) + (1,) * (ndim - 2)

