"""Reverse-mode symbolic differentiation of the IR.

`vjp(graph, outputs, cotangents, wrt)` appends the backward pass to `graph`
as ordinary IR nodes, built from each op's VJP rule (`OpDef.vjp`, defined
beside the op), or, for an op without one, by differentiating the op's
decomposition (`compiler/decompose.py`).  Because the result is IR, it can
be printed, verified, lowered by every backend and differentiated again
(Hessian-vector products, gradient penalties).

Each backward node carries the span of the forward node it differentiates,
so `dlc grad` traces every gradient to a `.dln` line.
"""
from __future__ import annotations

from ..errors import DlcError, Span
from .builder import Builder
from .ir import Graph, Node, Value, free_values


class NoVJPRule(DlcError):
    """An op on the path from the loss to a parameter has no VJP rule."""


def captures(node: Node) -> list[Value]:
    """Values a scan body uses from enclosing graphs (implicit operands)."""
    return free_values(node.body) if node.body is not None else []


def _depends_on(g: Graph, wrt: list[Value]) -> set[int]:
    """Ids of values that depend on any of `wrt` (forward reachability)."""
    live = {v.id for v in wrt}
    for node in g.nodes:
        operands = [v for v in node.inputs if v is not None] + captures(node)
        if any(v.id in live for v in operands) and not node.op.nondiff:
            for o in node.outputs:
                live.add(o.id)
    return live


def vjp(g: Graph, outputs: list[Value], cotangents: list[Value], wrt: list[Value],
        span: Span | None = None) -> list[Value | None]:
    """Append the backward pass of `outputs` to `g`; returns d(outputs . cotangents)/d(wrt).

    A None result means the gradient is identically zero (no path).
    """
    live = _depends_on(g, wrt)
    ct: dict[int, Value] = {}
    b0 = Builder(g, span)

    def accumulate(v: Value, grad: Value, b: Builder):
        if grad.type != v.type:
            raise AssertionError(f"VJP produced {grad.type} for operand {v.type}")
        if v.id in ct:
            ct[v.id] = b.op("add", ct[v.id], grad)
        else:
            ct[v.id] = grad

    for o, c in zip(outputs, cotangents):
        if o.id in live:
            accumulate(o, c, b0)
    forward = list(g.nodes)
    for node in reversed(forward):
        gs = [ct.get(o.id) for o in node.outputs]
        if all(x is None for x in gs):
            continue
        operands = list(node.inputs)
        caps = captures(node)
        if not any(v is not None and v.id in live for v in operands + caps):
            continue
        if node.op.nondiff:
            continue
        if node.op.vjp is None and node.op.decompose is not None:
            from .decompose import vjp_by_decomposition
            b = Builder(g, node.span, node.scope)
            for v, gi in zip(operands, vjp_by_decomposition(b, node, gs)):
                if v is not None and gi is not None and v.id in live:
                    accumulate(v, gi, b)
            continue
        if node.op.vjp is None:
            raise NoVJPRule(f"no VJP rule for '{node.op.name}'", node.span,
                            "this op cannot be differentiated yet")
        b = Builder(g, node.span, node.scope)
        result = node.op.vjp(b, node, gs)
        extra = {}
        if isinstance(result, tuple) and len(result) == 2 and isinstance(result[1], dict):
            result, extra = result
        for v, gi in zip(operands, result):
            if v is not None and gi is not None and v.id in live:
                accumulate(v, gi, b)
        for v in caps:
            gi = extra.get(v.id)
            if gi is not None and v.id in live:
                accumulate(v, gi, b)
    return [ct.get(v.id) for v in wrt]


def grad(g: Graph, loss: Value, wrt: list[Value], span: Span | None = None) -> list[Value | None]:
    """Gradient of a scalar `loss` with respect to `wrt`, appended to `g`."""
    if loss.type.shape != ():
        raise DlcError(f"the loss must be a scalar, got {loss.type}", span,
                       "reduce it, e.g. mean(...) or a loss with reduction=\"mean\"")
    one = Builder(g, span).const(1.0, loss.type.dtype)
    return vjp(g, [loss], [one], wrt, span)


from .ops.vjp_util import or_zeros, ones_like, sum_to, zeros_like  # noqa: E402,F401  (re-exported)
