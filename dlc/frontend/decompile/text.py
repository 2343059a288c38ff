"""How IR values, sizes, types and attributes are spelled in `.dln` text."""
from __future__ import annotations

import functools
import math
import re

from ...compiler.dims import Dim
from ...compiler.types import DType, TensorType
from ...errors import DlcValueError

KEYWORDS = frozenset("""import as const model block train on param buffer for in if elif else return assert
example and or not true false none step""".split())

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_LAYER_NAME = re.compile(r"[A-Za-z0-9_]+(\.[A-Za-z0-9_]+)*")


@functools.lru_cache(maxsize=1)
def reserved_names() -> frozenset:
    """Names a variable must not take: keywords, and builtins a spec may call
    (a variable named `relu` would hide the function)."""
    from ..builtins import BUILTINS
    return KEYWORDS | frozenset(BUILTINS)


def is_ident(s: str) -> bool:
    return bool(_IDENT.fullmatch(s)) and s not in KEYWORDS


def identifier(s: str, fallback: str = "v") -> str:
    """`s` made a valid identifier: other characters become `_`, a leading digit gets a prefix."""
    out = re.sub(r"[^A-Za-z0-9_]+", "_", s).strip("_")
    if not out:
        out = fallback
    if out[0].isdigit():
        out = f"{fallback}{out}"
    if out in KEYWORDS:
        out += "_"
    return out


def layer_name(s: str) -> str:
    """`s` made a valid `name="..."` of a layer: words separated by dots."""
    if _LAYER_NAME.fullmatch(s):
        return s
    parts = [re.sub(r"[^A-Za-z0-9_]+", "_", p).strip("_") for p in s.split(".")]
    parts = [p for p in parts if p]
    return ".".join(parts) or "layer"


def lit(v) -> str:
    """A compile-time value as a `.dln` literal."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if v is None:
        return "none"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            raise DlcValueError(f"the value {v} has no .dln literal")
        if math.isinf(v):
            return "1e999" if v > 0 else "-1e999"      # the float literal overflows to infinity
        return repr(v)
    if isinstance(v, Dim):
        return dim(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"').replace("{", "{{").replace("}", "}}") + '"'
    if isinstance(v, DType):
        return v.short
    if isinstance(v, tuple):
        inner = ", ".join(lit(x) for x in v)
        return f"({inner},)" if len(v) == 1 else f"({inner})"
    if isinstance(v, list):
        return "[" + ", ".join(lit(x) for x in v) + "]"
    raise DlcValueError(f"the attribute value {v!r} has no .dln literal")


def dim(d) -> str:
    """A size: an int, or a symbolic expression over the model's dimension names."""
    return str(d)


def dtype_name(numpy_name: str) -> str:
    return DType.parse(numpy_name).short


def type_text(t: TensorType) -> str:
    return str(t)


def block_type_text(t: TensorType) -> str:
    """A block parameter's declared type: symbolic dimension names are bound
    (so the body may use them), every other size is `_`."""
    dims = [str(d) if isinstance(d, Dim) and _IDENT.fullmatch(str(d)) else "_" for d in t.shape]
    return f"{t.dtype}[{', '.join(dims)}]"
