"""A small helper for building IR programmatically (VJP rules, optimizer
updates, training programs), as the elaborator does for `.dln` source.

    b = Builder(graph, span)
    y = b.op("mul", x, b.const(0.5, x.type.dtype))

Every node it adds carries `span` (the `.dln` location it derives from) and
`scope`, so generated code stays traceable to the user's source.
"""
from __future__ import annotations

from ..errors import Span
from .ir import Graph, Value
from .ops import OPS
from .types import DType, TensorType


class Builder:
    def __init__(self, graph: Graph, span: Span | None = None, scope: str = ""):
        self.graph = graph
        self.span = span
        self.scope = scope

    def op(self, name: str, *inputs, **attrs):
        """Append op `name`; returns one Value, or a tuple for multi-result ops."""
        outs = self.graph.add_node(OPS[name], list(inputs), attrs, self.span, self.scope)
        return outs[0] if len(outs) == 1 else tuple(outs)

    def const(self, value, dtype: DType | str = DType.f32, shape: tuple = ()) -> Value:
        dt = dtype if isinstance(dtype, DType) else DType.parse(dtype)
        return self.op("full", shape=tuple(shape), value=value, dtype=dt.numpy_name)

    def scalar_like(self, value, like: Value) -> Value:
        return self.const(value, like.type.dtype)

    def input(self, name: str, type: TensorType) -> Value:
        return self.graph.add_input(name, type)

    def at(self, span: Span | None, scope: str | None = None) -> "Builder":
        """The same builder, attributing new nodes to another source span."""
        return Builder(self.graph, span if span is not None else self.span,
                       self.scope if scope is None else scope)
