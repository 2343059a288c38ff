"""A `Loop` whose body needs its iteration number at import time (a Slice whose bounds are
`iter`/`iter + 1`, a Reshape to a size computed from it) cannot be dlc's `scan`: a scan body has
one static type for every step.  With a known, small trip count the loop is unrolled instead: each
step's body is converted with the iteration number as a constant, so those operands fold, and the
scan outputs are the steps' values stacked on a new leading axis (ONNX Loop's scan outputs)."""
from __future__ import annotations

import numpy as np

from ...errors import DlcError
from .context import Ctx
from .loader import tensor_to_numpy

MAX_UNROLL = 64       # steps: beyond that the graph grows too much for an import-time expansion


def needs_iteration_value(err: DlcError) -> bool:
    """Did converting the body as a scan fail on an operand that must be known at import time?"""
    return "must be known when the model is imported" in err.message


class Snapshot:
    """The root graph's parameters and weights before the scan attempt: a failed attempt may have
    materialized the body's constants as parameters, which the unrolled copy makes again."""

    def __init__(self, cx: Ctx):
        self.root = cx.root
        self.params = len(cx.root.g.params)
        self.layers = len(cx.root.g.layers)
        self.weights = set(cx.weights)
        self.names = set(cx.root._names)

    def restore(self) -> None:
        r = self.root
        dropped = [p.name for p in r.g.params[self.params:]]
        del r.g.params[self.params:]
        del r.g.layers[self.layers:]
        for name in dropped:
            if name not in self.weights:
                r.weights.pop(name, None)
        r._names.intersection_update(self.names)


def unroll(cx: Ctx, node, body_gp, trips: int, carries: list) -> list:
    """Convert `Loop` node `node` as `trips` copies of its body; its outputs (final carries, then the
    stacked scan outputs)."""
    if trips > MAX_UNROLL:
        raise cx.error(f"Loop whose body needs its iteration number at import time runs {trips} steps; dlc "
                       f"unrolls such loops up to {MAX_UNROLL} steps")
    from .importer import convert_node
    b_in = list(body_gp.input)
    n_carry = len(carries)
    state = list(carries)
    steps: list[list] = []
    outer = (cx.node, cx.node_index, cx.span)
    try:
        for it in range(trips):
            sub = cx.child(cx.g)
            cx.root.evaluated.clear()       # body values differ from step to step
            sub.set(b_in[0].name, np.array(it, dtype=np.int64))
            sub.set(b_in[1].name, np.array(True))
            for t in body_gp.initializer:     # the body's own constants
                sub.set(t.name, tensor_to_numpy(t, cx.base_dir, "Loop body initializer"))
            for vi, v in zip(b_in[2:], state):
                sub.set(vi.name, v)
            for i, n in enumerate(body_gp.node):
                convert_node(sub, i, n)
            cond = sub.known(body_gp.output[0].name)
            if cond is None or not bool(np.asarray(cond).reshape(-1)[0]):
                raise sub.error("the unrolled Loop's condition is not known to stay true at import time")
            outs = [sub.const(vo.name) if sub.const(vo.name) is not None else sub.val(vo.name)
                    for vo in body_gp.output[1:]]
            state = outs[:n_carry]
            steps.append([sub.val(vo.name) for vo in body_gp.output[1 + n_carry:]])
    except DlcError as e:
        raise cx.error(f"in the unrolled Loop body: {e.message}", e.hint) from None
    finally:
        cx.node, cx.node_index, cx.span = outer
        cx.root.evaluated.clear()
    finals = [v if not isinstance(v, np.ndarray) else cx.materialize(v, node.output[k])
              for k, v in enumerate(state)]
    return finals + [_stack(cx, [s[k] for s in steps]) for k in range(len(body_gp.output) - 1 - n_carry)]


def _stack(cx: Ctx, values: list):
    if not values:
        raise cx.error("a Loop with zero steps has scan outputs of unknown shape")
    shape = tuple(values[0].type.shape)
    rows = [cx.op("reshape", v, shape=(1,) + shape) for v in values]
    return rows[0] if len(rows) == 1 else cx.op("concat", *rows, axis=0)
