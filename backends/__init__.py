"""Backends: each a lowering of the IR.  Loaded on demand, so importing dlc
never imports torch or tvm."""
from __future__ import annotations

from ..errors import DlcError

AVAILABLE = {"numpy": "the reference interpreter (always available)"}


def get_backend(name: str):
    if name == "numpy":
        from .numpy import interpreter
        return interpreter
    raise DlcError(f"unknown or not yet available backend '{name}'",
                   hint="available backends: " + ", ".join(AVAILABLE))
