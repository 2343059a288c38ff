"""Backends: each a lowering of the IR behind one protocol (`protocol.Backend`).

The registry names each backend's module; a backend is imported on first
use, so importing dlc never imports torch or tvm:

    get_backend("tvm").compile(graph).run(inputs, weights)

Each backend lives in its own package and imports no other backend.
"""
from __future__ import annotations

import importlib

from ..errors import DlcError

# name -> (module defining BACKEND, one-line description)
REGISTRY = {
    "numpy": ("dlc.backends.numpy.backend", "the reference interpreter (always available)"),
    "torch": ("dlc.backends.torch.backend", "generated PyTorch code (needs torch: pip install 'dlc[torch]')"),
    "tvm": ("dlc.backends.tvm.backend",
            "TVM-compiled kernels for the host CPU (needs apache-tvm: pip install 'dlc[tvm]')"),
    "tvm-cuda": ("dlc.backends.tvm.cuda_backend",
                 "TVM-compiled kernels on the NVIDIA GPU (needs apache-tvm and a CUDA device)"),
}
AVAILABLE = {name: summary for name, (_, summary) in REGISTRY.items()}

_LOADED: dict = {}


def get_backend(name: str):
    """The backend called `name`, its dependency checked: a one-line `DlcError`
    names an unknown backend or the package a known one is missing."""
    b = _LOADED.get(name)
    if b is not None:
        return b
    entry = REGISTRY.get(name)
    if entry is None:
        raise DlcError(f"unknown backend '{name}'", hint="available backends: " + ", ".join(REGISTRY))
    b = importlib.import_module(entry[0]).BACKEND
    b.check_available()
    _LOADED[name] = b
    return b
