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
    # spec parameter -> the graph parameter it copies: a weight several layers shared in the graph
    # (an exporter's deduplicated initialisers) is untied, one parameter per layer call
    copies: dict = field(default_factory=dict)


def decompile(graph: Graph, name: str = "Net") -> Decompiled:
    """The `.dln` text of `graph` as a model called `name`."""
    text, names, copies, stats = write_model(live_graph(graph), name)
    return Decompiled(text, names, stats, copies)


def live_graph(graph: Graph) -> Graph:
    """`graph` without the nodes nothing needs (a person writes no dead statement; an importer leaves
    some, e.g. the Transpose of a MatMul it read as `linear`).  A shallow copy: `graph` is unchanged."""
    import copy

    from ...compiler.clone import node_uses
    live = {v.id for v in graph.outputs} | {v.id for v in graph.state_updates.values()}
    keep = []
    for node in reversed(graph.nodes):
        if any(o.id in live for o in node.outputs):
            keep.append(node)
            live.update(v.id for v in node_uses(node))
    if len(keep) == len(graph.nodes):
        return graph
    out = copy.copy(graph)
    out.nodes = keep[::-1]
    return out


__all__ = ["Decompiled", "decompile", "rename_weights"]


def rename_weights(d: Decompiled, weights: dict, spec_graph: Graph | None = None) -> dict:
    """`weights` (keyed by the graph's parameter names) keyed by the spec's.

    With `spec_graph` (the decompiled text elaborated), buffers the spec's
    layers create that the graph lacked (an imported batch norm's
    `num_batches_tracked`) are added as zeros; a missing trainable parameter
    is an error."""
    import numpy as np

    from ...errors import DlcValueError
    out = {d.param_names.get(k, k): v for k, v in weights.items()}
    for spec_name, gname in d.copies.items():
        if gname in weights:
            out[spec_name] = weights[gname]
    if spec_graph is not None:
        for p in spec_graph.params:
            if p.name in out:
                continue
            if p.kind != "buffer":
                raise DlcValueError(f"decompile: no weights for the spec's parameter '{p.name}'", p.param.span)
            out[p.name] = np.zeros(tuple(int(s) for s in p.type.shape), p.type.dtype.numpy_name)
    return out
