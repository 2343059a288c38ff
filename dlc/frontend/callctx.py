"""What a builtin function or layer sees when the elaborator calls it."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..compiler.dims import Dim
from ..compiler.ir import Init, ParamInfo, Value
from ..compiler.types import DType, TensorType
from ..errors import DlcTypeError, DlcValueError, ShapeError, Span
from .values import describe, is_int, is_tensor

if TYPE_CHECKING:
    from .elaborate import Frame


class CallCtx:
    """Gives builtins the current frame, the call's span, and checked helpers.

    Layers get a hierarchical `name` (their parameter prefix) and create
    parameters with `param()`; every op they emit is tagged with that scope so
    `dlc info` can attribute MACs to the layer.
    """

    def __init__(self, frame: "Frame", span: Span, fname: str, name: str | None = None):
        self.frame = frame
        self.span = span
        self.fname = fname
        self.name = name
        self.param_names: list[str] = []

    @property
    def mode(self) -> str:
        return self.frame.ctx.mode

    @property
    def training(self) -> bool:
        return self.frame.ctx.mode == "train"

    # emitting --------------------------------------------------------------
    def op(self, opname: str, *inputs, **attrs):
        """Emit a primitive; returns a Value, or a tuple for multi-output ops."""
        try:
            return self.frame.emit(opname, list(inputs), attrs, self.span, scope=self.name)
        except DlcTypeError as e:
            if e.hint is None:
                e.hint = self.signature_hint()
            raise

    def full_name(self, local: str) -> str:
        """The full name of this layer's parameter `local` (a state update's key)."""
        return f"{self.name}.{local}" if self.name else local

    def param(self, local: str, shape, init: Init, dtype: DType = DType.f32, buffer: bool = False,
              trainable: bool = True) -> Value:
        full = self.full_name(local)
        v = self.frame.ctx.add_param(full, TensorType(dtype, tuple(shape)), init, buffer, trainable,
                                     self.span)
        self.param_names.append(full)
        return v

    def scalar(self, value, like: Value) -> Value:
        """A 0-d constant of `like`'s dtype."""
        return self.op("full", shape=(), value=value, dtype=like.type.dtype.numpy_name)

    def seed(self) -> int:
        """A fresh random stream id, stable for a given spec."""
        return self.frame.ctx.next_stream()

    # argument checks ----------------------------------------------------------
    def fail(self, message: str, hint: str | None = None, cls=DlcTypeError):
        if hint is None:
            hint = self.signature_hint()
        raise cls(message, self.span, hint)

    def signature_hint(self) -> str | None:
        """`signature: dense(x, units, bias=true)` for the builtin being called."""
        from .builtins import BUILTINS, signatures
        from .values import Builtin
        b = BUILTINS.get(self.fname)
        if isinstance(b, Builtin):
            try:
                return signatures(b)
            except (TypeError, ValueError):
                return None
        return None

    def tensor(self, v, what: str = "input") -> Value:
        if not is_tensor(v):
            self.fail(f"{self.fname}: {what} must be a tensor, got {describe(v)}")
        return v

    def float_tensor(self, v, what: str = "input") -> Value:
        v = self.tensor(v, what)
        if not v.type.dtype.is_float:
            self.fail(f"{self.fname}: {what} must be a floating-point tensor, got {v.type}",
                      "convert it with cast(x, f32)")
        return v

    def int(self, v, what: str, minimum: int | None = 1) -> int:
        if isinstance(v, Dim) and v.is_const:
            v = v.value
        if isinstance(v, Dim):
            self.fail(f"{self.fname}: {what} must be a known integer, got the symbolic {v}",
                      "bind the dimension (--bind) or give the size explicitly")
        if not is_int(v):
            self.fail(f"{self.fname}: {what} must be an int, got {describe(v)}")
        if minimum is not None and v < minimum:
            self.fail(f"{self.fname}: {what} must be >= {minimum}, got {v}", cls=DlcValueError)
        return int(v)

    def dim(self, v, what: str):
        """An int or a symbolic dimension, positive when known."""
        if not is_int(v):
            self.fail(f"{self.fname}: {what} must be an int, got {describe(v)}")
        if isinstance(v, int) and v <= 0:
            self.fail(f"{self.fname}: {what} must be positive, got {v}", cls=DlcValueError)
        return v

    def ints(self, v, n: int, what: str, minimum: int | None = 1) -> tuple:
        if isinstance(v, (tuple, list)):
            if len(v) != n:
                self.fail(f"{self.fname}: {what} needs {n} values, got {len(v)}")
            return tuple(self.int(x, what, minimum) for x in v)
        return (self.int(v, what, minimum),) * n

    def number(self, v, what: str) -> float:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            self.fail(f"{self.fname}: {what} must be a number, got {describe(v)}")
        try:
            return float(v)
        except OverflowError:
            self.fail(f"{self.fname}: {what} is too large for a float", cls=DlcValueError)

    def finite(self, v, what: str) -> float:
        """A number that is neither infinite nor NaN (before converting it to an int)."""
        x = self.number(v, what)
        if x != x or x in (float("inf"), float("-inf")):
            self.fail(f"{self.fname}: {what} must be a finite number, got {x}", cls=DlcValueError)
        return v if isinstance(v, int) else x

    def prob(self, v, what: str = "p") -> float:
        p = self.number(v, what)
        if not 0.0 <= p <= 1.0:
            self.fail(f"{self.fname}: {what} must be between 0 and 1, got {p:g}", cls=DlcValueError)
        return p

    def boolean(self, v, what: str) -> bool:
        if not isinstance(v, bool):
            self.fail(f"{self.fname}: {what} must be true or false, got {describe(v)}")
        return v

    def choice(self, v, options, what: str) -> str:
        if v not in options:
            self.fail(f"{self.fname}: {what} must be one of {', '.join(map(repr, options))}, got {v!r}")
        return v

    def axis(self, v, x: Value, what: str = "axis") -> int:
        a = self.int(v, what, minimum=None)
        r = x.type.rank
        if not -r <= a < max(r, 1):
            self.fail(f"{self.fname}: {what} {a} is out of range for {x.type}")
        return a % r if r else 0

    def checked(self, fn, *args, **kwargs) -> Any:
        """Run a shape computation, reporting `ShapeError` at this call."""
        try:
            return fn(*args, **kwargs)
        except ShapeError as e:
            raise DlcTypeError(e.message, self.span, e.hint or self.signature_hint()) from None
