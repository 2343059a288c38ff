"""How the torch code generator writes a `fused` region (`ops/fused.py`).

A region of a kind PyTorch has one call for becomes that call:

    layernorm        F.layer_norm(x, x.shape[-k:], weight, bias, eps)
    softmax          torch.softmax(x, dim=a) / torch.log_softmax(x, dim=a)
    gelu             F.gelu(x) / F.gelu(x, approximate="tanh"), as the body is written
    matmul_epilogue  F.linear(x, w, b) / torch.addmm(b, x, w) with the bias add
                     folded in, then the epilogue in place (below)

when its body is that pattern (`fused_patterns`); any other body, and every
`elementwise` and `conv_epilogue` region, is written op by op as the
decomposition path writes it, except that an op whose operand is a temporary
of the region is done in place (``h = h.add_(r)``, ``h = h.relu_()``) where
autograd allows it.  That is exactly when

* the temporary is made inside the region by an op that returns a new tensor
  (never a view or an alias of an operand), is read by this op alone, is no
  result of the region, and has the op's result type (shape and dtype: an
  in-place op cannot broadcast or promote);
* the op that made it does not keep its *result* for its backward (relu,
  tanh, sigmoid, exp, sqrt, rsqrt, softmax do; add, mul, matmul, linear,
  conv, gelu and an in-place add do not), since overwriting a saved tensor
  fails in backward; and
* the in-place op's own backward does not need the old value: add_ and sub_
  need nothing, relu_/tanh_/sigmoid_/exp_ keep their result, neg_ nothing,
  and mul_/div_ only when the other operand is a constant (made by `full`,
  so it never requires grad and the gradient with respect to it, which would
  need the old value, is never asked for).

So the generated code is right with and without autograd, in either mode.
"""
from __future__ import annotations

from types import SimpleNamespace

from ...compiler.ir import Graph, Node, Value
from ..fused_patterns import const_of, match_gelu, match_layernorm, match_softmax
from .lowering import render, string_literal

# ops whose result is always a new tensor (never a view of an operand)
_FRESH = frozenset({
    "add", "sub", "mul", "div", "pow", "maximum", "minimum", "neg", "exp", "log", "log1p", "sqrt", "rsqrt",
    "tanh", "sigmoid", "relu", "relu6", "gelu", "silu", "erf", "abs", "square", "reciprocal", "leaky_relu",
    "elu", "selu", "softplus", "hardtanh", "hardsigmoid", "where", "conv1d", "conv2d", "conv3d",
    "conv_transpose2d", "linear", "matmul", "layer_norm", "softmax", "log_softmax", "batch_norm",
})
# ops whose backward reads their result (PyTorch's derivatives.yaml: `result`)
_SAVES_RESULT = frozenset({"exp", "sqrt", "rsqrt", "tanh", "sigmoid", "relu", "elu", "selu", "softmax",
                           "log_softmax", "reciprocal"})
# in-place unary methods: each one's backward reads its result or nothing
_UNARY_INPLACE = {"relu": "relu_", "tanh": "tanh_", "sigmoid": "sigmoid_", "exp": "exp_", "neg": "neg_"}


class _Region:
    """The bookkeeping of one region being written: uses, who last wrote what."""

    def __init__(self, body: Graph, outer: dict[int, Value]):
        self.body, self.outer = body, outer
        self.uses: dict[int, int] = {}
        for n in body.nodes:
            for v in n.inputs:
                if v is not None:
                    self.uses[v.id] = self.uses.get(v.id, 0) + 1
        self.results = {v.id for v in body.outputs}
        self.writer: dict[int, str] = {}      # value id -> op that made it (its in-place op, if one)

    def temporary(self, v: Value | None, result: Value) -> bool:
        """Whether `v` may be overwritten by the op making `result` (see the module doc)."""
        if v is None or v.kind != "node" or v.id in self.results or self.uses.get(v.id) != 1:
            return False
        op = self.writer.get(v.id)
        return op in _FRESH and op not in _SAVES_RESULT and v.type == result.type


def _inplace(region: _Region, node: Node, names) -> str | None:
    """``t.add_(u)`` (the expression) when `node` can be written in place, else None."""
    op, out = node.op.name, node.outputs[0]
    ins = node.inputs
    if op in _UNARY_INPLACE and len(ins) == 1 and region.temporary(ins[0], out):
        return f"{names(ins[0])}.{_UNARY_INPLACE[op]}()"
    if op not in ("add", "sub", "mul", "div") or len(ins) != 2:
        return None
    order = [(ins[0], ins[1])] + ([(ins[1], ins[0])] if op in ("add", "mul") else [])
    for t, u in order:
        if not region.temporary(t, out) or u is t:
            continue
        if op in ("mul", "div") and (const_of(u, region.outer) is None or u.type.rank != 0):
            continue
        return f"{names(t)}.{op}_({names(u)})"
    return None


def _emit_ops(gen, region: _Region, nodes, out: list, indent: str) -> None:
    for n in nodes:
        expr = _inplace(region, n, gen.name_of) if len(n.outputs) == 1 else None
        if expr is None:
            gen._emit_nodes(SimpleNamespace(nodes=[n]), out, indent)   # as the decomposition path writes it
            if len(n.outputs) == 1:
                region.writer[n.outputs[0].id] = n.op.name
            elif n.op.name == "batch_norm":    # (y, new statistics): y is new, the statistics may be the buffers
                region.writer[n.outputs[0].id] = "batch_norm"
            continue
        y = gen.define(n.outputs[0], n.op.name)
        out.append(f"{indent}{y} = {expr}")
        # an in-place unary op keeps its result as the out-of-place one does; add_/sub_/mul_/div_ keep nothing
        region.writer[n.outputs[0].id] = n.op.name if n.op.name in _UNARY_INPLACE else "add"


def _ancestors(values, body: Graph) -> list[Node]:
    """The body nodes `values` depend on, in body order."""
    need, seen = [v for v in values if v is not None], set()
    while need:
        v = need.pop()
        p = v.producer
        if v.kind == "node" and p is not None and id(p) not in seen:
            seen.add(id(p))
            need += [u for u in p.inputs if u is not None]
    return [n for n in body.nodes if id(n) in seen]


# ---------------------------------------------------------------- the fused calls
def _call_layernorm(gen, body, outer):
    m = match_layernorm(body, outer)
    if m is None:
        return None
    k = m.ndims
    ns = f"{gen.name_of(m.x)}.shape[-{k}:]"

    def vec(v):
        if v is None:
            return "None"
        name = gen.name_of(v)
        return name if v.type.rank == k else f"{name}.reshape({name}.shape[-{k}:])"
    return [m.x, m.weight, m.bias], \
        lambda: f"F.layer_norm({gen.name_of(m.x)}, {ns}, {vec(m.weight)}, {vec(m.bias)}, {render(m.eps)})"


def _call_softmax(gen, body, outer):
    m = match_softmax(body, outer)
    if m is None:
        return None
    fn = "torch.log_softmax" if m.log else "torch.softmax"
    return [m.x], lambda: f"{fn}({gen.name_of(m.x)}, dim={m.axis})"


def _call_gelu(gen, body, outer):
    m = match_gelu(body, outer)
    if m is None:
        return None
    x, approx = m
    tail = "" if approx == "none" else f", approximate={string_literal(approx)}"
    return [x], lambda: f"F.gelu({gen.name_of(x)}{tail})"


_CALLS = {"layernorm": _call_layernorm, "softmax": _call_softmax, "gelu": _call_gelu}


def _matmul_head(gen, region: _Region, out: list, indent: str) -> set[int]:
    """The region's matmul/linear with its bias add folded in: F.linear or
    torch.addmm.  Returns the ids of the body nodes written."""
    body = region.body
    head = next((n for n in body.nodes if n.op.name in ("linear", "matmul")), None)
    if head is None:
        return set()
    h = head.outputs[0]
    x, w = head.inputs[0], head.inputs[1]
    bias_node = next((n for n in body.nodes if n.op.name == "add" and h in n.inputs), None)
    bias = None
    if bias_node is not None and region.uses.get(h.id) == 1 and h.id not in region.results:
        other = bias_node.inputs[1] if bias_node.inputs[0] is h else bias_node.inputs[0]
        last = h.type.shape[-1]
        if other is not h and other.type.rank == 1 and other.type.shape[0] == last \
                and other.type.dtype == h.type.dtype and bias_node.outputs[0].type == h.type:
            bias = other
    has_bias = head.op.name == "linear" and len(head.inputs) > 2 and head.inputs[2] is not None
    plain_matmul = head.op.name == "matmul" and w.type.rank == 2 and x.type.rank >= 2
    if bias is None or has_bias or not (head.op.name == "linear" or plain_matmul):
        return set()
    _emit_ops(gen, region, _ancestors([x, w, bias], body), out, indent)
    X, W, B = gen.name_of(x), gen.name_of(w), gen.name_of(bias)
    if head.op.name == "linear":
        call = f"F.linear({X}, {W}, {B})"
    elif x.type.rank == 2:
        call = f"torch.addmm({B}, {X}, {W})"
    else:
        call = f"F.linear({X}, {W}.t(), {B})"
    y = gen.define(bias_node.outputs[0], "linear")
    out.append(f"{indent}{y} = {call}")
    region.writer[bias_node.outputs[0].id] = "linear"
    return {id(head), id(bias_node)} | {id(n) for n in _ancestors([x, w, bias], body)}


def emit_fused(gen, node: Node, out: list, indent: str, location: str) -> None:
    """Write `node`, a fused region, into `out` (see the module doc)."""
    body = node.body
    outer = {b.id: v for b, v in zip(body.inputs, node.inputs)}
    for b, v in zip(body.inputs, node.inputs):
        gen.names[b.id] = gen.name_of(v)
    for o, bo in zip(node.outputs, body.outputs):       # results keep the names the graph gives them
        gen.hints.setdefault(bo.id, o.name or gen.hints.get(o.id) or node.attrs["kind"])
    start = len(out)
    region = _Region(body, outer)
    kind = node.attrs["kind"]
    call = _CALLS[kind](gen, body, outer) if kind in _CALLS else None
    if call is not None:
        operands, expr = call
        _emit_ops(gen, region, _ancestors(operands, body), out, indent)
        y = gen.define(body.outputs[0], kind)
        out.append(f"{indent}{y} = {expr()}")
    else:
        done = _matmul_head(gen, region, out, indent) if kind == "matmul_epilogue" else set()
        _emit_ops(gen, region, [n for n in body.nodes if id(n) not in done], out, indent)
    for o, bo in zip(node.outputs, body.outputs):
        gen.names[o.id] = gen.name_of(bo)
    if len(out) > start and not out[start].endswith(location):   # an op written as usual has it already
        out[start] += location
