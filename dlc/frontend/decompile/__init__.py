"""IR graph -> a readable `.dln` spec (the inverse of the frontend).

    >>> from dlc.frontend.decompile import decompile
    >>> d = decompile(graph, name="ResNet18")
    >>> d.text                 # a spec that elaborates to an equivalent graph
    >>> d.param_names          # graph parameter name -> the spec's parameter name

Layer ops whose weights are their own become layer calls named after the
weights' paths, so the spec's parameter names equal the graph's; anything
no pattern covers falls back to one op per statement with `param`
declarations, so every eval graph the frontend or the ONNX importer builds
decompiles.  See docs/decompile.md.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ...compiler.ir import Graph
from .model import write_model


@dataclass
class Decompiled:
    text: str
    # graph parameter name -> the spec's parameter name (equal wherever the structure allows)
    param_names: dict = field(default_factory=dict)
    # counts: statements, fallback (low-level statements and param declarations), layer_calls, blocks, loops
    stats: dict = field(default_factory=dict)


def decompile(graph: Graph, name: str = "Net") -> Decompiled:
    """The `.dln` text of `graph` as a model called `name`."""
    text, names, stats = write_model(graph, name)
    return Decompiled(text, names, stats)


__all__ = ["Decompiled", "decompile"]
