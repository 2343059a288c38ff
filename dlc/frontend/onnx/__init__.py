"""ONNX import: an `onnx.ModelProto` (or a file) -> dlc IR `Graph` in eval mode + weights.

    >>> from dlc.frontend.onnx import import_onnx        # doctest: +SKIP
    >>> m = import_onnx("resnet18.onnx")                  # doctest: +SKIP
    >>> m.graph, sorted(m.weights)[:2]                    # doctest: +SKIP

The converters live in `ops_*.py`, one table (`registry.CONVERTERS`) keyed by
(domain, op_type) with opset ranges.
"""
from __future__ import annotations

from . import (  # noqa: F401  (fill the converter table)
    ops_attention,
    ops_control,
    ops_einsum,
    ops_elementwise,
    ops_extra,
    ops_nn,
    ops_pool,
    ops_quant,
    ops_random,
    ops_reduce,
    ops_resize,
    ops_rnn,
    ops_shape,
)
from .importer import Imported, import_onnx
from .registry import CONVERTERS, supported_ops

__all__ = ["CONVERTERS", "Imported", "import_onnx", "supported_ops"]
