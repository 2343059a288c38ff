"""The ONNX exporter: a dlc IR graph and its weights -> an `onnx.ModelProto`.

It lowers the IR op by op through a table keyed by op name (`table.TABLE`);
an op without an entry goes through its decomposition, and an op with neither
is a `DlcError` naming the op and its `.dln` line.  Importing this package
needs the `onnx` package; nothing here imports another backend.
"""
from __future__ import annotations

from .export import DEFAULT_OPSET, OPSETS, export_graph, save_model
from .table import TABLE, missing_ops

__all__ = ["DEFAULT_OPSET", "OPSETS", "TABLE", "export_graph", "missing_ops", "save_model"]
