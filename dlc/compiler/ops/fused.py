"""`fused`: a region of the graph that a backend runs as one kernel.

The fusion pass (`compiler/passes/fusion.py`) outlines a group of nodes into
one `fused` node whose `body` graph holds them, as a scan holds its cell.
Unlike a scan body, a fused body is closed: its inputs stand for the node's
operands one to one (parameters included) and it captures nothing, so a
backend can compile it as a standalone function.

    %3 = fused(x, @conv.weight, @conv.bias) {kind='conv_epilogue'}
        graph conv_epilogue(x0, x1, x2) { conv2d; add; relu; return }

`kind` names the pattern (`elementwise`, `conv_epilogue`, `matmul_epilogue`,
`layernorm`, `softmax`, `gelu`...): a backend may lower a kind it knows with
a fused call of its own (torch's `F.layer_norm`, TVM's one kernel) and runs
any other group through its decomposition, which is the body itself.  Autodiff
differentiates through the body too, so a fused graph trains.
"""
from __future__ import annotations

from ...errors import ShapeError
from .registry import CONTROL, defdecomp, defop, required

FUSED = "fused"

# The kinds the fusion passes make, and what a body of each kind holds (a
# backend that knows a kind may lower it with one call of its own; any other
# body runs through the decomposition):
KINDS = {
    "elementwise": "a chain of elementwise ops (unary, binary, activations, casts) over one shape",
    "conv_epilogue": "conv1d/conv2d/conv3d followed by bias add, activation and/or residual add",
    "matmul_epilogue": "matmul/linear followed by bias add, activation and/or residual add",
    "layernorm": "the mean/var/normalise/scale/shift pattern of a layer norm written out",
    "softmax": "max-subtract, exp, sum, divide (or log-softmax) over one axis",
    "gelu": "the erf or tanh form of GELU written out",
    "optimizer_update": "one parameter's optimizer update: its state updates and the new weight",
}


def _fused(node, ts, attrs):
    if attrs["kind"] not in KINDS:
        raise ShapeError(f"fused: unknown kind {attrs['kind']!r}", "kinds: " + ", ".join(KINDS))
    body = node.body
    if body is None:
        raise ShapeError("fused: the node has no body")
    if len(ts) != len(body.inputs):
        raise ShapeError(f"fused: {len(ts)} operands for a body of {len(body.inputs)} inputs")
    for i, (t, v) in enumerate(zip(ts, body.inputs)):
        if t != v.type:
            raise ShapeError(f"fused: operand {i} is {t}, the body's input {v.type}")
    return [o.type for o in body.outputs]


fused = defop(FUSED, "", _fused, attrs={"kind": required()}, groups={CONTROL}, variadic=True,
              wants_node=True, builtin="made by the fusion pass, not written in a spec",
              doc="A fused region: its body graph runs as one kernel (made by the fusion pass).")


@defdecomp(FUSED)
def _(b, inputs, attrs, node):
    """The body itself, copied in place of the node."""
    from ..clone import clone_into
    vmap = {v.id: x for v, x in zip(node.body.inputs, inputs)}
    return clone_into(node.body, b.graph, vmap)
