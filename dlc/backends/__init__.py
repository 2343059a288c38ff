"""Backends: each a lowering of the IR.  Loaded on demand, so importing dlc
never imports torch or tvm."""
from __future__ import annotations

from ..errors import DlcError

AVAILABLE = {"numpy": "the reference interpreter (always available)",
             "torch": "generated PyTorch code (needs torch: pip install 'dlc[torch]')",
             "tvm": "TVM-compiled kernels for the host CPU (needs apache-tvm: pip install 'dlc[tvm]')"}


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
    if name == "tvm":
        try:
            import tvm  # noqa: F401
        except ImportError:
            raise DlcError("the tvm backend needs Apache TVM", hint="pip install 'dlc[tvm]'") from None
        from . import tvm as tvm_backend
        return tvm_backend
    raise DlcError(f"unknown or not yet available backend '{name}'",
                   hint="available backends: " + ", ".join(AVAILABLE))
