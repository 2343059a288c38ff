"""ONNX import at the API level: import a model and run it on any backend.

    >>> from dlc.onnx_import import import_onnx, run_imported      # doctest: +SKIP
    >>> imp = import_onnx("resnet18.onnx")                          # doctest: +SKIP
    >>> run_imported(imp, {"x": x}, backend="tvm", bind={"N": 1})  # doctest: +SKIP

(The importer itself, `dlc.frontend.onnx`, never imports a backend.)
"""
from __future__ import annotations

from .frontend.onnx import Imported, import_onnx


def run_imported(imp: Imported, inputs: dict, backend: str = "numpy", bind: dict | None = None) -> dict:
    """One forward pass of the imported graph on `backend` (as imported, without the optimisation
    pipeline); the outputs by name."""
    from .backends import get_backend
    outs, _ = get_backend(backend).run(imp.graph, inputs, imp.weights, bind=dict(bind or {}))
    return outs


__all__ = ["Imported", "import_onnx", "run_imported"]
