"""Dynamic loss scaling inside the training-step graph (`--precision fp16`).

With `build_train_step(..., loss_scaling=True)` the step graph takes one more
input, `loss_scale` (f32[]), differentiates `loss * loss_scale` (so that small
fp16 gradients do not flush to zero), divides every gradient by the scale in
fp32 (the unscale of torch's GradScaler), and counts the non-finite gradient
entries.  When there is any, the step is skipped: every updated parameter
and optimizer state is the old one (`where(ok, new, old)`), as GradScaler
skips `optimizer.step()`.  The count is the output `loss_scale:nonfinite`;
the host (`dlc.mixed_precision.GradScaler`) reads it to halve or grow the
scale.  Batch-norm running statistics still update, as in torch (the
forward ran).
"""
from __future__ import annotations

from .builder import Builder
from .ir import Graph, Value
from .types import DType, TensorType

LOSS_SCALE = "loss_scale"
NONFINITE = "loss_scale:nonfinite"
_FLT_MAX = 3.4028234663852886e38


def scale_input(g: Graph) -> Value:
    return g.add_input(LOSS_SCALE, TensorType(DType.f32, ()))


def unscale(b: Builder, grads: list[Value], scale: Value) -> tuple[list[Value], Value]:
    """(each gradient / scale, the number of non-finite gradient entries as f32[])."""
    out, count = [], None
    for gr in grads:
        g32 = b.op("div", gr, scale)      # f32 even once autocast has made gr low: scale is f32 and votes
        out.append(g32)
        # |g| <= FLT_MAX is false exactly for inf and NaN
        bad = b.op("logical_not", b.op("le", b.op("abs", g32), b.const(_FLT_MAX, DType.f32)))
        n = b.op("sum", b.op("cast", bad, dtype="float32"), axis=None, keepdims=False)
        count = n if count is None else b.op("add", count, n)
    if count is None:
        count = b.const(0.0, DType.f32)
    return out, count


def skip_if_nonfinite(g: Graph, b: Builder, count: Value, outs: list[Value], names: list[str]) -> None:
    """Updated parameters/state -> the old ones when `count` > 0; adds the
    count as the output `loss_scale:nonfinite` (in place on outs/names)."""
    ok = b.op("eq", count, b.const(0.0, DType.f32))
    olds = {f"param:{p.name}": p for p in g.params}
    olds.update({f"state:{v.name}": v for v in g.inputs})
    for i, name in enumerate(names):
        old = olds.get(name)
        if old is not None and old.type == outs[i].type:
            outs[i] = b.op("where", ok, outs[i], old)
    outs.append(count)
    names.append(NONFINITE)
