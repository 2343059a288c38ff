"""Tensor types: a dtype and a shape of (possibly symbolic) dimensions."""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from .dims import Dim, DimLike, dim, prod


class DType(Enum):
    """Element types, named as in `.dln` (`f32`) with their NumPy names."""

    f16 = ("f16", "float16", 2)
    bf16 = ("bf16", "bfloat16", 2)
    f32 = ("f32", "float32", 4)
    f64 = ("f64", "float64", 8)
    i8 = ("i8", "int8", 1)
    u8 = ("u8", "uint8", 1)      # quantized activations (compiler/ops/quant.py)
    i32 = ("i32", "int32", 4)
    i64 = ("i64", "int64", 8)
    bool = ("bool", "bool", 1)

    def __init__(self, short: str, numpy_name: str, itemsize: int):
        self.short = short
        self.numpy_name = numpy_name
        self.itemsize = itemsize

    @property
    def is_float(self) -> bool:
        return self in (DType.f16, DType.bf16, DType.f32, DType.f64)

    @property
    def is_int(self) -> bool:
        return self in (DType.i8, DType.u8, DType.i32, DType.i64)

    @staticmethod
    def parse(name: str) -> "DType":
        for d in DType:
            if name in (d.short, d.numpy_name):
                return d
        raise KeyError(name)

    @staticmethod
    def from_numpy(np_dtype) -> "DType":
        return DType.parse(str(np_dtype))

    def __str__(self) -> str:
        return self.short

    def __repr__(self) -> str:
        return f"DType.{self.short}"


DTYPE_NAMES = [d.short for d in DType]


@dataclass(frozen=True)
class TensorType:
    """`f32[N, 3, 224, 224]`: every IR value has one."""

    dtype: DType
    shape: tuple[DimLike, ...]

    def __post_init__(self):
        object.__setattr__(self, "shape", tuple(dim(d) for d in self.shape))

    @property
    def rank(self) -> int:
        return len(self.shape)

    def numel(self) -> DimLike:
        return prod(self.shape)

    def nbytes(self) -> DimLike:
        return prod(self.shape) * self.dtype.itemsize if not isinstance(self.numel(), Dim) else self.numel() * self.dtype.itemsize

    def with_shape(self, shape) -> "TensorType":
        return TensorType(self.dtype, tuple(shape))

    def with_dtype(self, dtype: DType) -> "TensorType":
        return TensorType(dtype, self.shape)

    def concrete(self, env: dict[str, int]) -> "TensorType":
        return TensorType(self.dtype, tuple(d.evaluate(env) if isinstance(d, Dim) else d for d in self.shape))

    def symbols(self) -> set[str]:
        out: set[str] = set()
        for d in self.shape:
            if isinstance(d, Dim):
                out |= d.symbols()
        return out

    def __str__(self) -> str:
        return f"{self.dtype}[{', '.join(str(d) for d in self.shape)}]"


def fmt_shape(shape) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"
