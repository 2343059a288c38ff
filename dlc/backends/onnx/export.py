"""A dlc IR graph and its weights as an `onnx.ModelProto`.

    model = export_graph(graph, weights, opset=17)
    save_model(model, "model.onnx")             # atomically

Inputs keep their names and their symbolic dimensions as named ONNX dims
(`N`, `T`); parameters and buffers are initializers named exactly as the
graph's parameters (`layer1.0.conv1.weight`); every node carries the `.dln`
line it came from in `doc_string` and `metadata_props`.
"""
from __future__ import annotations

import hashlib

import numpy as np
import onnx
from onnx import helper, numpy_helper

from ...compiler.ir import Graph
from ...errors import DlcError
from ...runtime.atomic import atomic_write
from .emitter import Emitter
from .lower import emit_graph, value_info

OPSETS = range(17, 22)
DEFAULT_OPSET = 17
IR_VERSION = 10            # onnx 1.16+: node metadata_props; onnxruntime 1.17+ reads it


def export_graph(graph: Graph, weights: dict, *, opset: int = DEFAULT_OPSET, noise_inputs: bool = False,
                 source: str | None = None, producer_version: str = "", trainable_inputs: bool = False,
                 extra_defaults: dict | None = None, folded: dict | None = None) -> onnx.ModelProto:
    """`graph` (any mode; already through the pipeline if wanted) as an ONNX model.

    `noise_inputs`: each random op (randn, uniform) becomes a graph input named
    `noise.<scope>` instead of an ONNX random op, so a caller can feed the
    same noise dlc drew (ONNX's generators are not dlc's).
    `trainable_inputs`: the parameters are graph inputs too (their
    initializers are then defaults a caller may override: a training step's
    current weights); `extra_defaults`: default values for inputs by name
    (a training step's fresh optimizer state).  `folded`: {value id: (name,
    array)}, values computed ahead (from the weights alone) that become
    initializers; the nodes that made them are left out.
    """
    if opset not in OPSETS:
        raise DlcError(f"ONNX opset {opset} is not supported", hint=f"use an opset from {OPSETS[0]} to {OPSETS[-1]}")
    e = Emitter(opset)
    e.env, e.noise = {}, ([] if noise_inputs else None)
    inputs = []
    for v in graph.inputs:
        e.env[v.id] = e.reserve(v.name)
        inputs.append(value_info(v.name, v.type))
    defaults = [numpy_helper.from_array(np.asarray(extra_defaults[v.name]).astype(v.type.dtype.numpy_name), v.name)
                for v in graph.inputs if v.name in (extra_defaults or {})]
    e.bind_symbols([(v.name, v.type) for v in graph.inputs])
    for vid, (name, arr) in (folded or {}).items():
        e.env[vid] = e.fresh(name)
        e.initializers.append(numpy_helper.from_array(np.asarray(arr), e.env[vid]))
    params = []
    used = _used_ids(graph, set(folded or ()))
    for p in graph.params:
        if p.id not in used:      # e.g. a batch norm's statistics once folded into its conv
            continue
        if p.name not in weights:
            raise DlcError(f"no weights for parameter '{p.name}'", p.param.span)
        arr = np.asarray(weights[p.name]).astype(p.type.dtype.numpy_name, copy=False)
        want = tuple(int(d) for d in p.type.shape)
        if arr.shape != want:
            raise DlcError(f"weight '{p.name}' has shape {arr.shape}, the model expects {p.type}", p.param.span)
        e.env[p.id] = e.reserve(p.name)
        params.append(numpy_helper.from_array(arr, p.name))
        if trainable_inputs:
            inputs.append(value_info(p.name, p.type))
    emit_graph(e, graph, live=used)
    outputs = []
    for name, v in zip(graph.output_names, graph.outputs):
        if e.env[v.id] == name and name not in {o.name for o in outputs}:   # an input returned as it is
            outputs.append(value_info(name, v.type))
            continue
        # a name an input or parameter already has: ONNX names are unique, the output gets a suffix
        out = e.fresh(f"{name}.out") if e.taken(name) else e.reserve(name)
        e.nodes.append(helper.make_node("Identity", [e.env[v.id]], [out], name=e.fresh(f"n.output.{name}")))
        outputs.append(value_info(out, v.type))
    for name, v in graph.state_updates.items():       # train mode: the buffers' new values
        out = e.reserve(f"update:{name}")
        e.nodes.append(helper.make_node("Identity", [e.env[v.id]], [out], name=e.fresh(f"n.{out}")))
        outputs.append(value_info(out, v.type))
    inputs += e.noise or []
    g = helper.make_graph(e.nodes, graph.name, inputs, outputs, initializer=params + defaults + e.initializers)
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)], producer_name="dlc",
                              producer_version=producer_version, ir_version=IR_VERSION)
    meta = {"dlc.mode": graph.mode}
    if source is not None:
        meta["dlc.source"] = source
        if graph.span is not None:
            meta["dlc.model_span"] = str(graph.span)
    if graph.dims:
        meta["dlc.dims"] = ",".join(f"{k}={v}" for k, v in graph.dims.items())
    helper.set_model_props(model, meta)
    if graph.span is not None:
        model.doc_string = f"exported by dlc from {graph.span}"
    return model


def _used_ids(graph: Graph, folded: set[int]) -> set[int]:
    """Ids of the values the outputs need (folded values are leaves); the
    top-level nodes making none of them are left out of the export."""
    from ...compiler.clone import node_uses
    live = {v.id for v in graph.outputs} | {v.id for v in graph.state_updates.values()}
    for n in reversed(graph.nodes):
        outs = [o.id for o in n.outputs]
        if any(o in live and o not in folded for o in outs):
            live.update(v.id for v in node_uses(n) if v is not None)
    return live


def save_model(model: onnx.ModelProto, path) -> str:
    """Write `model` to `path` atomically; returns its sha256."""
    data = model.SerializeToString()
    if len(data) >= 2 ** 31:
        raise DlcError(f"the ONNX model is {len(data) / 2**30:.1f} GiB; protobuf files stop at 2 GiB")
    atomic_write(path, data)
    return hashlib.sha256(data).hexdigest()
