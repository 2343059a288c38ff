"""onnx.ModelProto -> a dlc IR `Graph` (eval mode) and its weights.

The graph is the one the `.dln` frontend builds for the same layers:
`conv2d`/`batch_norm`/`linear`... nodes on `param` values named as the ONNX
initializers, shapes as attributes, dynamic dimensions as symbolic dims.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ...compiler.dims import Dim
from ...compiler.ir import Graph, Value
from ...compiler.passes.dce import dce_graph
from ...compiler.types import TensorType
from ...errors import DlcError, DlcNameError, DlcValueError, Span, register_source
from . import const_eval, registry
from .context import NP_TO_DTYPE, Ctx, scope_from_node_name
from .fold import collapse_concats
from .loader import ONNX_TO_NUMPY, check_dims, dtype_name, read_model, tensor_to_numpy
from .qdq import lower_qdq
from .stack import drop_identity_relayouts

# the converter table's ranges decide per op (those whose semantics changed before opset 7, e.g.
# broadcasting arithmetic, are registered from the version that dlc's semantics match)
MIN_OPSET = 1
MAX_NODES = 1_000_000


@dataclass
class Imported:
    """An imported model: the graph, its weights by parameter name, and what the import decided."""

    graph: Graph
    weights: dict[str, np.ndarray]
    opset: int
    frozen_inputs: list[str] = field(default_factory=list)
    qdq: dict[str, int] = field(default_factory=dict)   # QDQ layers lowered to int8 ops (qdq.py)


def import_onnx(source, *, name: str | None = None, input_values: dict | None = None,
                bind: dict | None = None, qdq: str = "int8") -> Imported:
    """Import an ONNX model (a path or an `onnx.ModelProto`).

    `input_values` gives graph inputs a value at import time: an input that a
    shape-like operand needs (a Reshape's target shape, Slice bounds) then
    becomes a constant, as dlc compiles static shapes.  `bind` fixes dynamic
    dimensions to sizes.  `qdq="int8"` lowers QDQ layers (DequantizeLinear ->
    Conv/Gemm/MatMul -> QuantizeLinear) to qconv2d/qdense; `"fake"` keeps
    them as imported (float layers between quantize/dequantize ops).
    """
    if qdq not in ("int8", "fake"):
        raise DlcValueError(f"qdq={qdq!r}: give 'int8' (lower QDQ layers to int8 ops) or 'fake'", None)
    if isinstance(source, (str, Path)):
        model = read_model(source)
        base_dir, label = Path(source).parent, str(source)
    else:
        model, base_dir, label = source, None, f"<{getattr(source.graph, 'name', '') or 'model'}>"
    register_source(label, "")   # no source text to echo: errors name the node instead
    opsets = _opsets(model, label)
    g = Graph(_graph_name(name or model.graph.name), mode="eval", span=Span(label, 1, 1))
    cx = Ctx(g, base_dir, opsets, label)
    cx.frozen = {k: np.asarray(v) for k, v in (input_values or {}).items()}
    cx.bind = dict(bind or {})
    build_graph(cx, model.graph)
    # what folding at import left unused (an exporter's re-layout of a weight the layer now reads directly,
    # the layers of a stacked recurrent op): rows of a tensor joined again in order are the tensor
    collapse_concats(g)
    drop_identity_relayouts(g)
    dce_graph(g)
    from .patterns import recognise_patterns
    recognise_patterns(g, cx.weights)       # an exporter's expanded gelu/attention chains -> the ops again
    lowered = dict(lower_qdq(g, cx.weights)) if qdq == "int8" else {}
    return Imported(g, cx.weights, opsets[""], cx.dropped_inputs, lowered)


def _graph_name(name: str) -> str:
    n = re.sub(r"\W", "_", name or "").strip("_")
    return n[:1].upper() + n[1:] if n and not n[0].isdigit() else "Net"


def _opsets(model, label: str) -> dict[str, int]:
    out = {}
    for o in model.opset_import:
        out[registry.normalize_domain(o.domain)] = int(o.version)
    if "" not in out:
        raise DlcValueError(f"{label}: the model imports no version of the default ONNX domain",
                            Span(label, 1, 1))
    if out[""] < MIN_OPSET:
        raise DlcValueError(f"{label}: opset {out['']} is older than the oldest dlc imports ({MIN_OPSET})",
                            Span(label, 1, 1), "convert it first: onnx.version_converter.convert_version(m, 17)")
    return out


def input_type(cx: Ctx, vi) -> TensorType:
    t = vi.type
    if not t.HasField("tensor_type"):
        raise DlcValueError(f"{cx.label}: graph input '{vi.name}' is not a tensor", cx.g.span,
                            "dlc imports models whose inputs are tensors (no sequences, maps or optionals)")
    code = t.tensor_type.elem_type
    np_dt = ONNX_TO_NUMPY.get(code)
    if np_dt is None or np.dtype(np_dt).name not in NP_TO_DTYPE:
        raise DlcValueError(f"{cx.label}: graph input '{vi.name}' has element type {dtype_name(code)}, "
                            "which dlc does not support", cx.g.span)
    if not t.tensor_type.HasField("shape"):
        raise DlcValueError(f"{cx.label}: graph input '{vi.name}' has no shape (unknown rank)", cx.g.span)
    dims = []
    for i, d in enumerate(t.tensor_type.shape.dim):
        if d.HasField("dim_value"):
            dims.append(check_dims([d.dim_value], f"graph input '{vi.name}'")[0])
            continue
        sym = re.sub(r"\W", "_", d.dim_param) if d.HasField("dim_param") and d.dim_param else ""
        if not sym or not re.match(r"[A-Za-z_]", sym):
            sym = re.sub(r"\W", "_", f"{vi.name}_d{i}")
            sym = sym if re.match(r"[A-Za-z_]", sym) else "d_" + sym
        if sym in cx.bind:
            dims.append(int(cx.bind[sym]))
        else:
            cx.g.dims.setdefault(sym, None)
            dims.append(Dim.symbol(sym))
    return TensorType(NP_TO_DTYPE[np.dtype(np_dt).name], tuple(dims))


def build_graph(cx: Ctx, gp) -> None:
    """Fill `cx.g` from the GraphProto `gp`: initializers, inputs, nodes, outputs."""
    for t in gp.initializer:
        arr = tensor_to_numpy(t, cx.base_dir, "initializer")
        cx.initializers[t.name] = arr
        cx.set(t.name, arr)
    for t in gp.sparse_initializer:
        raise DlcValueError(f"{cx.label}: sparse initializer '{t.values.name}' is not supported", cx.g.span)
    for vi in gp.input:
        if vi.name in cx.initializers:
            continue        # an initializer listed as an input (IR version < 4): a weight, not a model input
        v = cx.g.add_input(re.sub(r"\W", "_", vi.name) or "input", input_type(cx, vi))
        cx.set(vi.name, v)
    if len(gp.node) > MAX_NODES:
        raise DlcValueError(f"{cx.label}: {len(gp.node)} nodes, more than dlc imports ({MAX_NODES})", cx.g.span)
    for node in gp.node:
        for n in node.input:
            cx.uses[n] = cx.uses.get(n, 0) + 1
    for vo in gp.output:
        cx.uses[vo.name] = cx.uses.get(vo.name, 0) + 1
    for i, node in enumerate(gp.node):
        convert_node(cx, i, node)
    cx.node = None
    for vo in gp.output:
        if not cx.has(vo.name):
            raise DlcNameError(f"{cx.label}: graph output '{vo.name}' is not computed by any node", cx.g.span)
        cx.g.outputs.append(cx.val(vo.name))
        cx.g.output_names.append(re.sub(r"\W", "_", vo.name) or f"output{len(cx.g.outputs)}")
    cx.dropped_inputs = _drop_folded_inputs(cx)


def _drop_folded_inputs(cx: Ctx) -> list[str]:
    """A graph input given a value (`input_values=`) whose every use was folded at import time (a
    shape, a trip count...) is no input of the compiled model.  An input also read by nodes whose
    results nothing needs (the float chain `Cast(n) -> Div -> Ceil` that computed a shape, kept in the
    graph as it was converted) drops too, with those nodes.  Returns the dropped inputs' names."""
    from ...compiler.clone import node_uses, prune
    given = {n: cx.env[n] for n in cx.frozen_used if isinstance(cx.env.get(n), Value)}
    if not given:
        return []
    live = {v.id for v in cx.g.outputs} | {v.id for v in cx.g.state_updates.values()}
    for node in reversed(cx.g.nodes):
        if any(o.id in live for o in node.outputs):
            live.update(v.id for v in node_uses(node))
    dead = sorted(n for n, v in given.items() if v.id not in live)
    if any(n in cx.frozen_as_tensor for n in dead):
        prune(cx.g)
    gone = {given[n].id for n in dead}
    cx.g.inputs = [v for v in cx.g.inputs if v.id not in gone]
    return dead


def convert_node(cx: Ctx, i: int, node) -> None:
    cx.node, cx.node_index = node, i
    cx.span = Span(cx.label, i + 1, 1)
    cx.scope = scope_from_node_name(node.name)
    domain = registry.normalize_domain(node.domain)
    if domain not in cx.opsets and domain != "":
        raise cx.error(f"domain {node.domain!r} is not imported by the model (opset_import)", None, DlcNameError)
    version = cx.opsets.get(domain)
    conv = registry.lookup(domain, node.op_type, version)
    if conv is None:
        where = f"domain {node.domain!r}" if domain else "the default domain"
        raise cx.error(f"op {node.op_type} of {where} is not supported by dlc's ONNX importer", None,
                       DlcNameError)
    if isinstance(conv, list):
        ranges = ", ".join(f"{c.since}+" if c.until is None else f"{c.since}-{c.until - 1}" for c in conv)
        raise cx.error(f"{node.op_type} at opset {version} is not supported (supported opsets: {ranges})")
    for name in node.input:
        if name and not cx.has(name):
            raise cx.error(f"operand '{name}' is not defined before it is used",
                           "the graph is not topologically sorted or refers to a missing value", DlcNameError)
    try:
        outs = conv.fn(cx, node)
    except DlcError:
        raise
    except (ValueError, TypeError, IndexError, KeyError, ZeroDivisionError, OverflowError, AttributeError) as e:
        # a converter met a malformed node (a missing input, an attribute of the wrong type)
        raise cx.error(f"malformed node: {type(e).__name__}: {e}") from None
    outs = list(outs) if isinstance(outs, (list, tuple)) else [outs]
    for k, name in enumerate(node.output):
        if not name:
            continue
        if k >= len(outs) or outs[k] is None:
            raise cx.error(f"output {k} ('{name}') of {node.op_type} is not supported")
        out = outs[k]
        if not isinstance(out, (Value, np.ndarray)):     # a folded scalar (a NumPy scalar or a Dim)
            arr = np.empty((), dtype=object) if isinstance(out, Dim) else None
            if arr is not None:
                arr[()] = out
            out = arr if arr is not None else np.asarray(out)
        cx.set(name, out)
    const_eval.register(cx, node)
