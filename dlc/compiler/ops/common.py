"""Helpers shared by the shape rules of every op family."""
from __future__ import annotations

from ...errors import ShapeError
from ..dims import Dim, DimLike, add, floordiv, known_equal, mul, sub
from ..types import DType, TensorType, fmt_shape


def pair(v, n: int = 2, what: str = "value") -> tuple:
    """An int or an n-tuple as an n-tuple (PyTorch's `_pair`)."""
    if isinstance(v, (list, tuple)):
        if len(v) != n:
            raise ShapeError(f"{what} needs {n} values, got {len(v)}")
        return tuple(v)
    return (v,) * n


def broadcast_shapes(a: tuple, b: tuple, opname: str = "broadcast") -> tuple:
    """NumPy broadcasting with symbolic dims: equal, or one of them is 1."""
    out = []
    for i in range(1, max(len(a), len(b)) + 1):
        da = a[-i] if i <= len(a) else 1
        db = b[-i] if i <= len(b) else 1
        if da == 1:
            out.append(db)
        elif db == 1 or da == db:
            out.append(da)
        else:
            raise ShapeError(
                f"{opname}: shapes {fmt_shape(a)} and {fmt_shape(b)} do not broadcast "
                f"(dimension {len(out) and -i or -i}: {da} vs {db})",
                "broadcasting needs each pair of trailing dimensions to be equal or 1")
        # keep going from the back
    return tuple(reversed(out))


def promote(a: DType, b: DType, opname: str) -> DType:
    """Result dtype of a binary op: equal dtypes, or bool/int widened.

    Mixing two different float types (or a float with an int) is an error
    rather than a silent promotion: a compiler should make precision visible.
    """
    if a == b:
        return a
    if a == DType.bool:
        return b
    if b == DType.bool:
        return a
    if a.is_int and b.is_int:
        return a if a.itemsize >= b.itemsize else b
    raise ShapeError(f"{opname}: operands have different dtypes {a} and {b}",
                     f"convert one explicitly, e.g. cast(x, {a if a.is_float else b})")


def require_float(t: TensorType, opname: str, what: str = "input") -> None:
    if not t.dtype.is_float:
        raise ShapeError(f"{opname} needs a floating-point {what}, got {t}",
                         "cast it first, e.g. cast(x, f32)")


def require_int(t: TensorType, opname: str, what: str = "indices") -> None:
    if not t.dtype.is_int:
        raise ShapeError(f"{opname} needs integer {what}, got {t}", "class indices are i64 tensors")


def require_rank(t: TensorType, ranks, opname: str, what: str = "input") -> None:
    ranks = (ranks,) if isinstance(ranks, int) else tuple(ranks)
    if t.rank not in ranks:
        want = " or ".join(str(r) for r in ranks)
        raise ShapeError(f"{opname} expects a rank-{want} {what}, got {t}")


def norm_axis(axis: int, rank: int, opname: str) -> int:
    if not -rank <= axis < max(rank, 1):
        raise ShapeError(f"{opname}: axis {axis} is out of range for a rank-{rank} tensor")
    return axis % rank if rank else 0


def same_dim(a: DimLike, b: DimLike, message: str, hint: str | None = None) -> None:
    """Fail unless two dims are provably equal."""
    eq = known_equal(a, b)
    if eq is False or (eq is None and a != b):
        raise ShapeError(message, hint)


def positive(v, what: str, opname: str) -> None:
    if isinstance(v, int) and v <= 0:
        raise ShapeError(f"{opname}: {what} must be positive, got {v}")


def conv_out(size: DimLike, k: int, s: int, p: int, d: int, opname: str, ceil: bool = False) -> DimLike:
    """(size + 2p - d(k-1) - 1) / s + 1, PyTorch's output-size formula."""
    eff = d * (k - 1) + 1
    num = sub(add(size, 2 * p), eff)
    if isinstance(num, int) and num < 0:
        raise ShapeError(f"{opname}: input size {size} (padded to {add(size, 2 * p)}) is smaller "
                         f"than the kernel extent {eff}",
                         "use a smaller kernel, more padding, or a larger input")
    if ceil:
        out = add(floordiv(add(num, s - 1), s), 1)
        # PyTorch: the last window must start inside the input or left padding
        if isinstance(out, int) and isinstance(size, int) and (out - 1) * s >= size + p:
            out -= 1
        return out
    return add(floordiv(num, s), 1)


def scalar_type(dtype: DType) -> TensorType:
    return TensorType(dtype, ())


__all__ = ["pair", "broadcast_shapes", "promote", "require_float", "require_int", "require_rank",
           "norm_axis", "same_dim", "positive", "conv_out", "Dim", "mul", "scalar_type"]
