"""IR graph -> ONNX nodes: each IR node through the op table, else through
its decomposition (a fused region's body, gelu...), else a located error."""
from __future__ import annotations

from onnx import helper

from ...compiler.decompose import decomposition
from ...compiler.dims import Dim
from ...compiler.ir import Graph, Node
from ...errors import DlcError
from .emitter import Emitter, onnx_dtype
from .table import TABLE, load_all


def value_info(name: str, type_):
    shape = [str(d) if isinstance(d, Dim) and not d.is_const else int(d) for d in type_.shape]
    return helper.make_tensor_value_info(name, onnx_dtype(type_.dtype), shape)


def emit_graph(e: Emitter, g: Graph, live: set[int] | None = None) -> None:
    """Emit `g`'s nodes; with `live`, only those making a value in it."""
    for node in g.nodes:
        if live is None or any(o.id in live for o in node.outputs):
            emit_node(e, node)


def emit_node(e: Emitter, node: Node) -> None:
    load_all()
    env = e.env
    if node.outputs and all(v.id in env for v in node.outputs):
        return          # computed ahead of time (export_graph's `folded`)
    x = [None if v is None else env[v.id] for v in node.inputs]
    fn = TABLE.get(node.op.name)
    outer, e.node = e.node, node
    try:
        if fn is not None:
            outs = fn(e, node, x)
        elif node.op.decompose is not None:
            outs = _emit_decomposition(e, node, x)
        else:
            raise DlcError(f"op '{node.op.name}' has no ONNX mapping", node.span,
                           "see `missing_ops()` in dlc/backends/onnx/table.py for the ops without one")
    finally:
        e.node = outer
    if len(outs) != len(node.outputs):
        raise AssertionError(f"the ONNX mapping of {node.op.name} gave {len(outs)} results, not {len(node.outputs)}")
    for v, name in zip(node.outputs, outs):
        env[v.id] = name


def _emit_decomposition(e: Emitter, node: Node, x: list) -> list[str]:
    sub = decomposition(node)
    present = [n for n in x if n is not None]
    for s, n in zip(sub.inputs, present):
        e.env[s.id] = n
    emit_graph(e, sub)
    return [e.env[v.id] for v in sub.outputs]


def emit_body(e: Emitter, body: Graph, name: str):
    """A scan body as an ONNX subgraph; the values it captures from enclosing
    graphs are read by name, as ONNX subgraphs may."""
    sub = Emitter(e.opset, root=e.root)
    sub.env = dict(e.env)
    inputs = []
    for v in body.inputs:
        n = sub.fresh(f"{name}.in")
        sub.env[v.id] = n
        inputs.append(value_info(n, v.type))
    emit_graph(sub, body)
    outputs = []
    for i, v in enumerate(body.outputs):
        n = sub.fresh(f"{name}.out{i}")
        sub.nodes.append(helper.make_node("Identity", [sub.env[v.id]], [n], name=sub.fresh(f"n.{n}")))
        outputs.append(value_info(n, v.type))
    return helper.make_graph(sub.nodes, sub.fresh(name), inputs, outputs)
