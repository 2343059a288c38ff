"""Layout: NCHW -> NHWC (channels last) where the target wants it.

TVM's CPU schedules are written for NHWC activations and HWIO weights
(`backends/tvm/schedules/cpu.py`); the NumPy reference and PyTorch run NCHW
(measured: docs/passes/layout.md).  On a target that wants NHWC, every
conv2d, max/avg/adaptive-avg pooling and batch norm of a rank-4 activation
becomes its ``layout="NHWC"`` twin (`compiler/ops/layout.py`), and the
layout travels with the data instead of being undone after each op:

* ops that do not care about the layout follow it: elementwise ops (their
  rank-4 operands taken in NHWC, scalars as they are), concat (axis
  renumbered) and sum/mean/max/min reductions (axes renumbered; without
  keepdims, a reduction whose remaining axes keep their order -- the global
  average (N, C, H, W) -> (N, C) -- gives the NCHW result directly);
* a transpose to NHWC is inserted only where an NCHW value enters (the
  model's input, an unconverted op's result), one per value however many
  ops read it, and a transpose back only where an NCHW consumer needs a
  converted value (flatten, linear, the graph's outputs), again once.

This is the sink-and-cancel of a naive "transpose around every op" rewrite
done in one forward walk: a pair that would meet between two converted ops
is never created.  `ctx.count` reports the converted ops, the transposes
left and the pairs a per-op rewrite would have made.

The pass works on the top-level graph of eval-mode graphs (training graphs
keep the layout their gradient rules were built in); nodes with bodies
(scan, fused regions) are boundaries.
"""
from __future__ import annotations

from ..builder import Builder
from ..clone import node_uses
from ..ir import Graph, Node, Value
from ..ops import OPS
from ..ops.layout import LAYOUT_OPS, NCHW, NHWC, TO_NCHW, TO_NHWC, layout_of
from ..ops.registry import ELEMENTWISE
from .pipeline import PassContext, register_pass
from .rewrite import replace_uses

# targets whose TVM build wants NCHW (the GPU dlight rules); every other TVM
# target is an LLVM CPU, whose schedules want NHWC
_GPU_TARGETS = ("cuda", "jetson-orin")
_REDUCTIONS = ("sum", "mean", "max", "min")
# elementwise ops whose broadcasting is not numpy's trailing-axes rule
# (prelu's weight goes along axis 1): they stay where the layout is NCHW
_CHANNEL_BOUND = ("prelu",)


def wanted_layout(backend: str, target: str | None) -> str:
    """The activation layout a backend/target runs convolutions fastest in."""
    if backend == "tvm" and (target or "cpu") not in _GPU_TARGETS:
        return NHWC
    return NCHW


@register_pass("layout", level=2, modes=("eval",),
               summary="NCHW -> NHWC where the target wants it, transposes only at the boundary")
def layout(g: Graph, ctx: PassContext) -> None:
    if wanted_layout(ctx.backend, ctx.target) != NHWC:
        return
    _ChannelsLast(g, ctx).run()


def _axis(a: int, rank: int) -> int:
    return a + rank if a < 0 else a


class _ChannelsLast:
    def __init__(self, g: Graph, ctx: PassContext):
        self.g, self.ctx = g, ctx
        self.twin: dict[int, Value] = {}      # NCHW value id -> the same tensor in NHWC
        self.direct: dict[int, Value] = {}    # value id -> its replacement (same layout)
        self.to_nhwc: dict[int, Value] = {}   # transposes made at the entry, per value
        self.converted = 0
        self.backs = 0                        # transposes made back to NCHW

    # -- the walk -------------------------------------------------------------
    def run(self) -> None:
        g = self.g
        nodes, g.nodes = g.nodes, []
        for node in nodes:
            self.ctx.node = node
            if not self._convert(node):
                for v in node_uses(node):
                    self._back(v)            # its NCHW operands, made before it
                g.nodes.append(node)
        self.ctx.node = None
        for v in list(g.outputs) + list(g.state_updates.values()):
            if v is not None:
                self._back(v)
        replace_uses(g, self.direct)
        left = len(self.to_nhwc) + self.backs
        self.ctx.count("converted", self.converted)
        self.ctx.count("transposes", left)
        self.ctx.count("transposes_avoided", 2 * self.converted - left)

    def _b(self, node: Node) -> Builder:
        return Builder(self.g, node.span, node.scope)

    def _back(self, v: Value | None) -> None:
        """Make the NCHW form of a converted value, once, where it is first needed."""
        if v is None or v.id not in self.twin or v.id in self.direct:
            return
        t = self.twin[v.id]
        p = t.producer
        self.backs += 1
        self.direct[v.id] = Builder(self.g, p.span if p else None, p.scope if p else "").op(
            "transpose", t, axes=TO_NCHW)

    def _nhwc(self, node: Node, v: Value) -> Value:
        """`v` (rank 4, NCHW) in NHWC: its twin, or a transpose made once."""
        if v.id in self.twin:
            return self.twin[v.id]
        v = self.direct.get(v.id, v)
        if v.id not in self.to_nhwc:
            self.to_nhwc[v.id] = self._b(node).op("transpose", v, axes=TO_NHWC)
        return self.to_nhwc[v.id]

    def _has_twin(self, v: Value | None) -> bool:
        return v is not None and v.id in self.twin

    # -- the rules ------------------------------------------------------------
    def _convert(self, node: Node) -> bool:
        if node.body is not None or not node.outputs:
            return False
        name = node.op.name
        if name in LAYOUT_OPS:
            return self._anchor(node)
        if ELEMENTWISE in node.op.groups and name not in _CHANNEL_BOUND:
            return self._elementwise(node)
        if name == "concat":
            return self._concat(node)
        if name in _REDUCTIONS:
            return self._reduction(node)
        return False

    def _twin_of(self, node: Node, inputs: list, attrs: dict) -> list[Value]:
        outs = self.g.add_node(OPS[node.op.name], inputs, attrs, node.span, node.scope)
        self.converted += 1
        return outs

    def _anchor(self, node: Node) -> bool:
        x = node.inputs[0]
        if layout_of(node) != NCHW or x is None or x.type.rank != 4:
            return False
        rest = [self.direct.get(v.id, v) if v is not None else None for v in node.inputs[1:]]
        outs = self._twin_of(node, [self._nhwc(node, x)] + rest, {**node.attrs, "layout": NHWC})
        self.twin[node.outputs[0].id] = outs[0]
        for old, new in zip(node.outputs[1:], outs[1:]):   # batch norm's statistics: layout-free
            self.direct[old.id] = new
        return True

    def _elementwise(self, node: Node) -> bool:
        ins = [v for v in node.inputs if v is not None]
        if not any(self._has_twin(v) for v in ins) or len(node.outputs) != 1 or node.outputs[0].type.rank != 4:
            return False
        if any(v.type.rank not in (0, 4) for v in ins):
            return False                      # a lower-rank broadcast operand: leave it NCHW
        new = [None if v is None else (self._nhwc(node, v) if v.type.rank == 4 else self.direct.get(v.id, v))
               for v in node.inputs]
        self.twin[node.outputs[0].id] = self._twin_of(node, new, node.attrs)[0]
        return True

    def _concat(self, node: Node) -> bool:
        ins = list(node.inputs)
        if not ins or not any(self._has_twin(v) for v in ins) or any(v is None or v.type.rank != 4 for v in ins):
            return False
        axis = TO_NHWC.index(_axis(node.attrs["axis"], 4))
        outs = self._twin_of(node, [self._nhwc(node, v) for v in ins], {**node.attrs, "axis": axis})
        self.twin[node.outputs[0].id] = outs[0]
        return True

    def _reduction(self, node: Node) -> bool:
        x = node.inputs[0]
        if not self._has_twin(x) or node.attrs["axis"] is None:
            return False
        ax = node.attrs["axis"]
        axes = tuple(_axis(a, 4) for a in (ax if isinstance(ax, (tuple, list)) else (ax,)))
        new_axes = tuple(sorted(TO_NHWC.index(a) for a in axes))
        kept = [TO_NHWC[i] for i in range(4) if i not in new_axes]    # NCHW axes, in NHWC order
        keepdims = bool(node.attrs["keepdims"])
        if not keepdims and kept != sorted(kept):
            return False                      # the result's axes would come out permuted
        y = self._twin_of(node, [self.twin[x.id]], {**node.attrs, "axis": new_axes})[0]
        if keepdims:
            self.twin[node.outputs[0].id] = y
        else:
            self.direct[node.outputs[0].id] = y
        return True
