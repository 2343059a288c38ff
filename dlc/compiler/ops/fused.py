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
# body runs through the decomposition).  Common to all: the body's inputs are
# the node's operands in first-use order, parameters included; the scalar
# constants (`full` of shape ()) only the region reads are nodes of the body,
# ahead of the rest; nothing random, no scan, no fused node is inside.
KINDS = {
    "elementwise": "ops of the elementwise group (unary, binary, comparisons, where, activations, casts) "
                   "whose results all have the region's one shape (operands may broadcast into it); "
                   "one result, the last node's",
    "conv_epilogue": "a conv1d/conv2d/conv3d node (operands: input, weight, bias or none), then a chain in "
                     "which each node reads the previous one's result: `add` (bias or residual; the "
                     "previous result on either side, the other operand from outside) or a unary "
                     "activation (relu, relu6, gelu, silu, sigmoid, tanh...); one result, the last node's",
    "matmul_epilogue": "a matmul or linear node, then the same chain as a conv_epilogue: `add` (bias or "
                       "residual, either side) and unary activations; one result, the last node's",
    "layernorm": "mean over trailing axes (keepdims), d = x - mean, the variance as mean(d*d | square(d) | "
                 "d**2) or var(x, correction=0) over the same axes, `add` of a scalar eps constant, then "
                 "sqrt + div or rsqrt + mul; optionally `mul` by gamma then `add` of beta (operands after "
                 "x); inputs x[, gamma[, beta]], one result",
    "softmax": "exp(t) / sum(exp(t)) with t = x - max(x) (or t = x), or the log-softmax "
               "t - log(sum(exp(t))) / t - logsumexp(t); one axis set (keepdims) for every reduction; "
               "one input x, one result",
    "gelu": "GELU written out, one input x, one result equal to gelu(x) to 1e-12 in float64: the body "
            "holds `erf` (exact form) or `tanh` (approximate='tanh')",
    "optimizer_update": "one parameter's optimizer update: inputs the parameter, its gradient, its state, "
                        "lr, step and values several updates share; results its new state and new "
                        "weight, in the order the body computes them",
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
