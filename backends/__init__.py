"""Backends: each a lowering of the IR.  Loaded on demand, so importing dlc
never imports torch or tvm."""
from __future__ import annotations

from ..errors import DlcError

AVAILABLE = {"numpy": "the reference interpreter (always available)",
             "torch": "generated PyTorch code (needs torch: pip install 'dlc[torch]')"}


def get_backend(name: str):
    if name == "numpy":
        from .numpy import interpreter
        return interpreter
    if name == "torch":
        try:
            import torch  # noqa: F401
        except ImportError:
            raise DlcError("the torch backend needs PyTorch", hint="pip install 'dlc[torch]'") from None
        from . import torch as torch_backend
        return torch_backend
    raise DlcError(f"unknown or not yet available backend '{name}'",
                   hint="available backends: " + ", ".join(AVAILABLE))
