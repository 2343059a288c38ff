"""Per-op lowering of the dlc IR to PyTorch source text.

`LOWERING[op]` turns one node into the Python line(s) a person would write
with `torch` and `F` (torch.nn.functional):

    LOWERING["conv2d"](["x", "w", "b"], {"stride": (2, 2), "padding": (1, 1), ...}, ["y"])
    -> 'y = F.conv2d(x, w, b, stride=(2, 2), padding=(1, 1))'

Signature: ``fn(args, attrs, out_names, *, dims=None, in_types=None) -> str``.

* `args`: the operands as source expressions (variable names), None for an
  absent optional operand.  Variadic ops (concat, rnn, lstm, gru) get them all.
* `attrs`: the node's attributes, rendered with `render` (never interpolated).
* `out_names`: the variables the result(s) are assigned to.
* `dims`: symbolic dimension name -> source expression (``{"N": "N"}`` when
  the generated function has bound ``N = x.shape[0]``); attributes holding
  `Dim`s (``reshape(shape=(N, 400))``) are rendered through it.
* `in_types`: the operands' `TensorType`s when known.  They only make the
  code shorter (``F.pad`` instead of the rank-agnostic ``_pad`` helper, no
  ``.long()`` on an index that already is int64); without them the emitted
  code is generic and still correct.

The emitted code may use the variables ``seed`` (the run seed, combined with
each random op's `seed` attribute as the NumPy backend does) and ``device``
(where operand-free ops create tensors), and the helpers in `HELPERS`, which
the code generator defines once in the generated file when they are used.

Semantics follow the NumPy reference kernels; where they cannot be matched
bit for bit it is by design: dropout/randn/uniform draw from torch's
generator (same distribution, other values), and bfloat16 is a real
torch.bfloat16 tensor (the NumPy backend stores it as rounded float32).

This module holds the table, the safe literal rendering and the registration
helpers every lowering shares; the helper sources live in `lowering_helpers`
and the op families register themselves from their own modules:
`lowering_elementwise`, `lowering_reduce`, `lowering_shape`, `lowering_nn`,
`lowering_recurrent` and `lowering_loss`.
"""
from __future__ import annotations

import math
import numbers
from collections.abc import Callable

import numpy as np

from ...compiler.dims import Dim, FloorDiv
from ...compiler.types import DType, TensorType
from .lowering_helpers import HELPERS, helpers_used  # noqa: F401 - re-exported

__all__ = ["HELPERS", "LOWERING", "helpers_used", "render", "string_literal", "torch_dtype"]

# ---------------------------------------------------------------------------
# safe literal rendering
# ---------------------------------------------------------------------------

# characters kept as they are in string literals; everything else is escaped,
# so no text from a model (names, paths) reaches the source unescaped -- not
# even quotes, backslashes or bidirectional-override characters
_PLAIN = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.:/- ")


def string_literal(s: str) -> str:
    """A double-quoted Python string literal for `s` with every character
    outside ``[A-Za-z0-9_.:/- ]`` written as an escape (``\\x27``)."""
    if not isinstance(s, str):
        raise TypeError(f"not a string: {type(s).__name__}")
    out = []
    for c in s:
        o = ord(c)
        if c in _PLAIN:
            out.append(c)
        elif o < 0x100:
            out.append(f"\\x{o:02x}")
        elif o < 0x10000:
            out.append(f"\\u{o:04x}")
        else:
            out.append(f"\\U{o:08x}")
    return '"' + "".join(out) + '"'


_TORCH_DTYPES = {"float16": "float16", "bfloat16": "bfloat16", "float32": "float32",
                 "float64": "float64", "int8": "int8", "int16": "int16", "int32": "int32",
                 "int64": "int64", "uint8": "uint8", "bool": "bool",
                 "f16": "float16", "bf16": "bfloat16", "f32": "float32", "f64": "float64",
                 "i8": "int8", "i16": "int16", "i32": "int32", "i64": "int64", "u8": "uint8"}


def torch_dtype(dtype) -> str:
    """``torch.float32`` for a dtype attribute ("float32", "f32" or a `DType`)."""
    name = dtype.numpy_name if isinstance(dtype, DType) else dtype
    if not isinstance(name, str) or name not in _TORCH_DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}")
    return "torch." + _TORCH_DTYPES[name]


def _mono_key(mono: tuple) -> str:
    return "*".join(a if isinstance(a, str) else str(a) for a in mono)


def _dim_src(d: Dim, dims: dict[str, str]) -> str:
    """Source for a symbolic dimension: ``4 * N + 4``, ``(H + 1) // 2``."""
    if d.is_const:
        return repr(int(d.value))
    parts: list[tuple[int, str]] = []
    for mono in sorted(d.terms, key=lambda m: (-len(m), _mono_key(m))):
        c = d.terms[mono]
        factors = []
        for a in mono:
            if isinstance(a, FloorDiv):
                factors.append(f"({_dim_src(a.num, dims)}) // {int(a.den)}")
            else:
                if a not in dims:
                    raise ValueError(f"no source expression for the symbolic dimension {a!r}")
                factors.append(dims[a])
        if not factors:
            body = repr(abs(int(c)))
        elif abs(c) == 1:
            body = " * ".join(factors)
        else:
            body = " * ".join([repr(abs(int(c)))] + factors)
        parts.append((c, body))
    out = ("-" if parts[0][0] < 0 else "") + parts[0][1]
    for c, body in parts[1:]:
        out += (" - " if c < 0 else " + ") + body
    return out


def render(value, dims: dict[str, str] | None = None) -> str:
    """Python source for an attribute value.

    Only None, bools, ints, floats (inf/nan as ``float("inf")``), strings
    (`string_literal`), `Dim`s (through `dims`: symbol -> source expression),
    `DType`s (``torch.float32``) and tuples/lists of these are accepted;
    anything else raises TypeError, so no unchecked text becomes code.
    """
    dims = dims or {}
    if value is None:
        return "None"
    if isinstance(value, (bool, np.bool_)):
        return "True" if value else "False"
    if isinstance(value, numbers.Integral):
        return repr(int(value))
    if isinstance(value, numbers.Real):
        f = float(value)
        if math.isnan(f):
            return 'float("nan")'
        if math.isinf(f):
            return 'float("inf")' if f > 0 else '-float("inf")'
        return repr(f)
    if isinstance(value, str):
        return string_literal(value)
    if isinstance(value, Dim):
        return _dim_src(value, dims)
    if isinstance(value, DType):
        return torch_dtype(value)
    if isinstance(value, tuple):
        items = [render(v, dims) for v in value]
        return "(" + ", ".join(items) + ("," if len(items) == 1 else "") + ")"
    if isinstance(value, list):
        return "[" + ", ".join(render(v, dims) for v in value) + "]"
    raise TypeError(f"cannot render an attribute value of type {type(value).__name__}")


# ---------------------------------------------------------------------------
# the lowering table
# ---------------------------------------------------------------------------

LOWERING: dict[str, Callable[..., str]] = {}


class _Lines(str):
    """Complete statements (not an expression to assign)."""


class _Op:
    """What one lowering sees: operands, attributes, outputs and helpers."""

    def __init__(self, args, attrs, outs, dims, in_types):
        self.args = list(args)
        self.attrs = attrs
        self.outs = list(outs)
        self.dims = dims or {}
        self.types = list(in_types) if in_types is not None else None

    def __getitem__(self, i):
        return self.args[i] if i < len(self.args) else None

    def r(self, v) -> str:
        return render(v, self.dims)

    def a(self, key) -> str:
        return render(self.attrs[key], self.dims)

    def type(self, i) -> TensorType | None:
        if self.types is None or i >= len(self.types):
            return None
        return self.types[i]

    def rank(self, i) -> int | None:
        t = self.type(i)
        return t.rank if t is not None else None

    def kw(self, *specs) -> list[str]:
        """``name=value`` for the attributes that differ from their defaults.

        Each spec is (attr, default) or (attr, default, keyword name)."""
        out = []
        for spec in specs:
            key, default = spec[0], spec[1]
            name = spec[2] if len(spec) > 2 else key
            v = self.attrs.get(key, default)
            if not _is_default(v, default):
                out.append(f"{name}={self.r(v)}")
        return out

    def long(self, i) -> str:
        """Operand i as an int64 tensor (torch wants LongTensor class targets and one-hot indices)."""
        t = self.type(i)
        if t is not None and t.dtype == DType.i64:
            return self[i]
        return f"{self[i]}.long()"


def _is_default(v, default) -> bool:
    """Whether attribute value `v` is the op's default (a uniform tuple counts: (1, 1) == 1)."""
    if isinstance(v, (list, tuple)):
        if isinstance(default, (list, tuple)):
            return tuple(v) == tuple(default)
        return len(v) > 0 and all(_is_default(x, default) for x in v)
    if default is None or v is None:
        return v is None and default is None
    if isinstance(v, (bool, np.bool_)) or isinstance(default, bool):
        return isinstance(v, (bool, np.bool_)) and isinstance(default, bool) and bool(v) == default
    if isinstance(v, (Dim, str)) or isinstance(default, str):
        return isinstance(v, str) and v == default
    return isinstance(v, numbers.Real) and v == default


def _call(fn: str, *parts) -> str:
    return f"{fn}({', '.join(p for p in parts if p)})"


def _trim_none(args: list) -> list[str]:
    """Positional optional operands: trailing None dropped, inner ones written as None."""
    args = list(args)
    while args and args[-1] is None:
        args.pop()
    return ["None" if a is None else a for a in args]


def _register(names, multi: bool = False):
    """Register `fn(o: _Op) -> expression | _Lines` for `names`.

    With `multi` the expression is a sequence with one item per output."""
    if isinstance(names, str):
        names = (names,)

    def deco(fn):
        def lower(args, attrs, out_names, *, dims=None, in_types=None) -> str:
            o = _Op(args, attrs, out_names, dims, in_types)
            src = fn(o)
            if isinstance(src, _Lines):
                return str(src)
            outs = list(out_names)
            if multi:
                lhs = f"({outs[0]},)" if len(outs) == 1 else ", ".join(outs)
            else:
                if len(outs) != 1:
                    raise ValueError(f"{names[0]} has one result, got {len(outs)} names")
                lhs = outs[0]
            return f"{lhs} = {src}"
        for n in names:
            lower.__name__ = f"lower_{n}"
            LOWERING[n] = lower
        lower.__doc__ = fn.__doc__
        return fn
    return deco


# the op families register themselves into LOWERING, in this order
from . import lowering_elementwise, lowering_reduce, lowering_shape  # noqa: E402,F401,I001
from . import lowering_nn, lowering_recurrent, lowering_loss, lowering_quant  # noqa: E402,F401,I001


# control -------------------------------------------------------------------------------

def _lower_scan(args, attrs, out_names, *, dims=None, in_types=None) -> str:
    """scan owns a body graph, so `funcgen` lowers it (to a Python for loop over
    the scanned axis, the body inlined, per-step outputs stacked with torch.stack)."""
    raise ValueError("scan is lowered by dlc.backends.torch.funcgen.generate_function: it needs its body graph")


LOWERING["scan"] = _lower_scan
