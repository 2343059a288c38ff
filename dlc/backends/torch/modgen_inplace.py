"""In-place activations and residual adds in the generated module's forward.

A hand-written module writes ``nn.ReLU(inplace=True)`` and ``out += identity``;
the generated one now does the same where autograd allows it, by the rule of
`lowering_fused` (see its module doc): the operand overwritten is made by a
layer or op that returns a new tensor and does not keep its result for its
backward (a conv, linear or norm layer, an add), is read by this op alone and
is no output of the model; the in-place op's own backward does not need the
old value (``relu_`` and ``F.relu6(..., inplace=True)`` keep their result,
``add_`` keeps nothing).  Both train and eval mode stay correct: nothing a
backward needs is ever overwritten.

    x = F.relu6(batch_norm, inplace=True)
    out = conv_out.add_(identity)
"""
from __future__ import annotations

from ...compiler.ir import Graph, Node, Value, free_values
from .lowering_fused import _FRESH, _SAVES_RESULT

_SAVES = _SAVES_RESULT | {"relu6"}     # hardtanh_ (relu6 in place) keeps its result
_INPLACE_UNARY = {"relu": "{x}.relu_()", "relu6": "F.relu6({x}, inplace=True)"}


class InPlace:
    """Which nodes of a module graph's top level the forward writes in place."""

    def __init__(self, g: Graph):
        self.uses: dict[int, int] = {}
        for n in g.nodes:
            for v in n.inputs:
                if v is not None:
                    self.uses[v.id] = self.uses.get(v.id, 0) + 1
            if n.body is not None:           # a body's captures are read at every step: never overwritten
                for v in free_values(n.body):
                    self.uses[v.id] = self.uses.get(v.id, 0) + 2
        for v in list(g.outputs) + list(g.state_updates.values()):
            if v is not None:
                self.uses[v.id] = self.uses.get(v.id, 0) + 2
        self.writer: dict[int, str] = {}

    def made(self, node: Node, in_place: bool = False) -> None:
        """Record who wrote `node`'s results (`in_place`: its in-place form)."""
        if len(node.outputs) == 1 or node.op.name == "batch_norm":   # batch norm: (y, statistics)
            op = node.op.name
            self.writer[node.outputs[0].id] = ("add" if op == "add" else op) if in_place or op in _FRESH else ""

    def _temporary(self, v: Value | None, result: Value) -> bool:
        if v is None or v.kind != "node" or self.uses.get(v.id) != 1:
            return False
        op = self.writer.get(v.id)
        return op in _FRESH and op not in _SAVES and v.type == result.type

    def statement(self, gen, node: Node) -> str | None:
        """``y = <in-place expression>`` for `node`, or None to write it as usual."""
        op, ins = node.op.name, node.inputs
        if len(node.outputs) != 1:
            return None
        out = node.outputs[0]
        if op in _INPLACE_UNARY and self._temporary(ins[0], out):
            expr = _INPLACE_UNARY[op].format(x=gen.name_of(ins[0]))
        elif op == "add" and len(ins) == 2 and ins[0] is not ins[1]:
            t, u = (ins[0], ins[1]) if self._temporary(ins[0], out) else (ins[1], ins[0])
            if not self._temporary(t, out):
                return None
            expr = f"{gen.name_of(t)}.add_({gen.name_of(u)})"
        else:
            return None
        return f"{gen.define(out, op)} = {expr}"
