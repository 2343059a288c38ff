"""Mixed precision: `--precision bf16|fp16`, with torch.autocast's op policy.

The pass retypes the graph in place, node by node in program order:

* LOW ops (convolutions, matmul/linear, attention) compute in the low
  precision: their float operands (weights included) are cast down and their
  result is low.  Every backend accumulates their products in fp32 (NumPy:
  fp32 kernels on the rounded operands; torch: its bf16/fp16 kernels
  accumulate in fp32; TVM: the dense/conv compute upcasts to fp32 and rounds
  the result).
* FP32 ops (losses, softmax/log-softmax, normalisation, reductions that
  accumulate statistics, exp/log/pow...) take fp32 operands and give fp32:
  their low operands are cast up.  The list is torch.autocast's (CUDA) fp32
  list restricted to dlc's ops.
* KEEP ops (scan, fused, recurrent cells) run in fp32, as do the values their
  bodies capture.
* Every other op FOLLOWS its operands: all of one float type, it keeps it;
  mixed, they are cast to the widest (torch's type promotion).  A scalar
  constant (a rank-0 `full`) does not vote: `x * 0.5` stays bf16 as in torch.

Casts are inserted where types change; one cast per (value, type) is shared,
and `cast(cast(x, f32), bf16)` of a bf16 `x` is `x` itself (widening is
exact).  Graph inputs, outputs and state updates keep their types (outputs
are cast back).  In a training-step graph the backward ops follow the same
policy, so the backward convolutions run in low precision too while the
parameters and the optimizer update stay fp32 (the master weights).
"""
from __future__ import annotations

from ..builder import Builder
from ..ir import Graph, Node, Value
from ..ops import OPS
from ..types import DType
from .pipeline import PassContext, register_pass
from .rewrite import replace_uses

PRECISIONS = {"fp32": None, "bf16": DType.bf16, "fp16": DType.f16}

LOW_OPS = frozenset({"conv1d", "conv2d", "conv_transpose2d", "matmul", "linear", "scaled_dot_product_attention"})
FP32_OPS = frozenset({
    "softmax", "log_softmax", "logsumexp",
    "batch_norm", "layer_norm", "group_norm", "local_response_norm",
    "sum", "mean", "var", "std", "prod",
    "exp", "log", "log1p", "reciprocal", "rsqrt", "pow", "softplus",
})
KEEP_OPS = frozenset({"scan", "fused", "rnn", "lstm", "gru"})
_NARROWABLE = (DType.f32, DType.bf16, DType.f16)
# ops whose first operand is already typed by their own attribute, never retyped
_UNTOUCHED = frozenset({"cast"})


def op_policy(name: str) -> str:
    """'low', 'fp32', 'keep' or 'follow': what autocast does with op `name`."""
    if name in LOW_OPS:
        return "low"
    if name in KEEP_OPS:
        return "keep"
    if name in FP32_OPS or "loss" in OPS[name].groups:
        return "fp32"
    return "follow"


# level 1: selected from -O1 on like every pass (a no-op in fp32); `when` runs it at -O0 too
@register_pass("autocast", level=1, when=lambda opts: opts.precision != "fp32",
               summary="mixed precision (--precision bf16|fp16): torch.autocast's op policy")
def autocast(g: Graph, ctx: PassContext) -> None:
    low = PRECISIONS[ctx.precision]
    if low is None:
        return
    Autocaster(g, ctx, low).run()


class Autocaster:
    def __init__(self, g: Graph, ctx: PassContext, low: DType):
        self.g, self.ctx, self.low = g, ctx, low
        self.cache: dict[tuple[int, DType], Value] = {}
        self.cast_of: dict[int, Value] = {}          # a cast's result id -> its operand
        self.new_nodes: list[Node] = []

    def run(self) -> None:
        g = self.g
        keep_out = [v.type.dtype for v in g.outputs]
        keep_state = {k: v.type.dtype for k, v in g.state_updates.items()}
        for node in list(g.nodes):
            self.ctx.node = node
            self.visit(node)
        g.nodes = self.new_nodes
        g.outputs = [self.cast(v, dt) if v is not None else v for v, dt in zip(g.outputs, keep_out)]
        g.state_updates = {k: self.cast(v, keep_state[k]) for k, v in g.state_updates.items()}
        self.ctx.node = None

    # one node ------------------------------------------------------------------
    def visit(self, node: Node) -> None:
        name = node.op.name
        if node.op.name == "cast" and node.inputs[0] is not None:
            self.cast_of[node.outputs[0].id] = node.inputs[0]
        if name in _UNTOUCHED:
            self.new_nodes.append(node)
            return
        policy = op_policy(name)
        floats = [v for v in node.inputs if v is not None and v.type.dtype.is_float]
        target = self.target(policy, floats)
        if target is not None:
            node.inputs = tuple(self.cast(v, target) if v is not None and v.type.dtype in _NARROWABLE
                                and v.type.dtype != target else v for v in node.inputs)
        if node.body is not None and name != "fused":
            self.capture_fp32(node)
        self.new_nodes.append(node)
        self.retype(node)

    def target(self, policy: str, floats: list[Value]) -> DType | None:
        """The float type `node`'s float operands are cast to (None: leave them)."""
        if not floats:
            return None
        if policy == "low":     # as torch.autocast, float64 is never narrowed
            return self.low if all(v.type.dtype in _NARROWABLE for v in floats) else None
        if policy in ("fp32", "keep"):
            return DType.f32
        voters = [v for v in floats if not _scalar_constant(v)] or floats
        kinds = {v.type.dtype for v in voters}
        widest = max(kinds, key=lambda d: d.itemsize)
        if len(kinds) > 1 and widest.itemsize == 2:      # bf16 with fp16: neither holds the other
            widest = DType.f32
        return widest

    def capture_fp32(self, node: Node) -> None:
        """A scan body reads enclosing values directly: give it fp32 copies."""
        from ..clone import node_uses
        direct = {v.id for v in node.inputs if v is not None}
        mapping = {}
        for v in node_uses(node):
            if v.id not in direct and v.type.dtype in (DType.bf16, DType.f16):
                mapping[v.id] = self.cast(v, DType.f32)
        if mapping:
            replace_uses(node.body, mapping)
            self.ctx.count("captures_cast", len(mapping))

    def retype(self, node: Node) -> None:
        types = node.op.infer([v.type if v is not None else None for v in node.inputs], node.attrs, node)
        for v, t in zip(node.outputs, types):
            v.type = t

    # casts -----------------------------------------------------------------------
    def cast(self, v: Value, dtype: DType) -> Value:
        if v.type.dtype == dtype:
            return v
        src = self.cast_of.get(v.id)
        # cast(cast(x, f32), bf16) with x bf16: the widening was exact, x is the answer
        if src is not None and src.type.dtype == dtype and _exact_widening(dtype, v.type.dtype):
            self.ctx.count("cast_pairs_removed")
            return src
        key = (v.id, dtype)
        got = self.cache.get(key)
        if got is None:
            node = self.ctx.node
            b = Builder(self.g, node.span if node is not None else self.g.span, node.scope if node is not None else "")
            got = b.op("cast", v, dtype=dtype.numpy_name)
            self.new_nodes.append(self.g.nodes.pop())     # placed before the node being visited
            self.cache[key] = got
            self.cast_of[got.id] = v
            self.ctx.count("casts")
        return got


def _exact_widening(narrow: DType, wide: DType) -> bool:
    return narrow in (DType.bf16, DType.f16) and wide in (DType.f32, DType.f64)


def _scalar_constant(v: Value) -> bool:
    return v.type.rank == 0 and v.producer is not None and v.producer.op.name == "full"
