"""Scaled dot-product attention, torch.nn.functional.scaled_dot_product_attention."""
from __future__ import annotations

from ...errors import ShapeError
from ..dims import add, mul, prod
from ..types import DType, TensorType, fmt_shape
from .common import broadcast_shapes, require_float, same_dim
from .registry import ATTENTION, defop

NAME = "scaled_dot_product_attention"


def _batch(q: TensorType, k: TensorType, v: TensorType) -> tuple:
    return broadcast_shapes(broadcast_shapes(q.shape[:-2], k.shape[:-2], NAME), v.shape[:-2], NAME)


def _sdpa(ts, attrs):
    q, k, v = ts[0], ts[1], ts[2]
    mask = ts[3] if len(ts) > 3 else None
    for what, t in (("query", q), ("key", k), ("value", v)):
        require_float(t, NAME, what)
        if t.rank < 2:
            raise ShapeError(f"{NAME}: {what} must have rank >= 2 (..., seq, features), got {t}")
    if not (q.dtype == k.dtype == v.dtype):
        raise ShapeError(f"{NAME}: query {q}, key {k} and value {v} must share a dtype")
    same_dim(q.shape[-1], k.shape[-1],
             f"{NAME}: query {q} and key {k} differ in the feature dimension ({q.shape[-1]} vs {k.shape[-1]})",
             "queries and keys must have the same last dimension E")
    same_dim(k.shape[-2], v.shape[-2],
             f"{NAME}: key {k} and value {v} differ in sequence length ({k.shape[-2]} vs {v.shape[-2]})",
             "keys and values must have the same number of positions S")
    batch = _batch(q, k, v)
    L, S = q.shape[-2], k.shape[-2]
    if mask is not None:
        if attrs["is_causal"]:
            raise ShapeError(f"{NAME}: an explicit attn_mask {mask} cannot be combined with is_causal=True",
                             "drop the mask or set is_causal=False")
        if mask.dtype != DType.bool and mask.dtype != q.dtype:
            raise ShapeError(f"{NAME}: attn_mask {mask} must be bool or have the query's dtype {q.dtype} (query {q})",
                             f"compare to get a bool mask, or cast it to {q.dtype}")
        target = batch + (L, S)
        try:
            got = broadcast_shapes(mask.shape, target, NAME)
        except ShapeError:
            got = None
        if got is None or len(got) != len(target) or any(a != b for a, b in zip(got, target)):
            raise ShapeError(f"{NAME}: attn_mask {mask} does not broadcast to the attention weights "
                             f"{fmt_shape(target)} (query {q}, key {k})",
                             "the mask must be broadcastable to (..., L, S)")
    scale = attrs["scale"]
    if scale is not None and (isinstance(scale, bool) or not isinstance(scale, (int, float))):
        raise ShapeError(f"{NAME}: scale must be a number or None, got {scale!r}")
    return TensorType(q.dtype, batch + (L, v.shape[-1]))


def _sdpa_macs(ins, outs, attrs):
    q, k, v = ins[0], ins[1], ins[2]
    b = prod(_batch(q, k, v))
    ls = mul(mul(b, q.shape[-2]), k.shape[-2])
    return add(mul(ls, q.shape[-1]), mul(ls, v.shape[-1]))


defop(NAME, "q k v attn_mask?", _sdpa, attrs={"is_causal": False, "scale": None}, macs=_sdpa_macs,
      groups={ATTENTION}, doc="softmax(q k^T * scale + mask) v over the last two axes; batch dims broadcast.")


# ---------------------------------------------------------------- VJP rule
# The backward recomputes the attention weights P = softmax(scores) from q and k
# (as FlashAttention does) and is made of matmuls and the softmax backward:
#   dV = P^T dO,  dP = dO V^T,  dS = P (dP - rowsum(dP P)),
#   dQ = scale dS K,  dK = scale dS^T Q,  d(float mask) = dS summed to its shape.
import math  # noqa: E402

from .reduce import count_value  # noqa: E402
from .registry import defvjp  # noqa: E402
from .vjp_util import scalar, sum_to  # noqa: E402


def _swap_last(b, x):
    axes = list(range(x.type.rank))
    axes[-1], axes[-2] = axes[-2], axes[-1]
    return b.op("transpose", x, axes=tuple(axes))


def _scale(b, node, q):
    s = node.attrs["scale"]
    if s is not None:
        return scalar(b, float(s), q)
    e = q.type.shape[-1]
    if isinstance(e, int):
        return scalar(b, 1.0 / math.sqrt(e), q)
    return b.op("rsqrt", count_value(b, (e,), q))


def _safe_softmax(b, s):
    """softmax over the last axis; rows that are entirely -inf give zeros (the kernel's rule)."""
    ninf = scalar(b, -math.inf, s)
    m = b.op("max", s, axis=-1, keepdims=True)
    m = b.op("where", b.op("eq", m, ninf), scalar(b, 0.0, s), m)
    e = b.op("exp", b.op("sub", s, m))
    den = b.op("sum", e, axis=-1, keepdims=True)
    den = b.op("where", b.op("eq", den, scalar(b, 0.0, s)), scalar(b, 1.0, s), den)
    return b.op("div", e, den)


def attention_weights(b, node):
    """(P, scale): the attention weights of a scaled_dot_product_attention node, recomputed."""
    q, k = node.inputs[0], node.inputs[1]
    mask = node.inputs[3] if len(node.inputs) > 3 else None
    scale = _scale(b, node, q)
    s = b.op("mul", b.op("matmul", q, _swap_last(b, k)), scale)
    if node.attrs["is_causal"]:
        L, S = q.type.shape[-2], k.type.shape[-2]
        rows = b.op("reshape", b.op("arange", stop=L), shape=(L, 1))
        cols = b.op("reshape", b.op("arange", stop=S), shape=(1, S))
        s = b.op("where", b.op("ge", rows, cols), s, scalar(b, -math.inf, s))
        return b.op("softmax", s, axis=-1), scale   # row i keeps column 0: never fully masked
    if mask is None:
        return b.op("softmax", s, axis=-1), scale
    if mask.type.dtype == DType.bool:
        s = b.op("where", mask, s, scalar(b, -math.inf, s))
    else:
        s = b.op("add", s, mask)
    return _safe_softmax(b, s), scale


@defvjp(NAME)
def _(b, node, g):
    q, k, v = node.inputs[0], node.inputs[1], node.inputs[2]
    mask = node.inputs[3] if len(node.inputs) > 3 else None
    go = g[0]
    p, scale = attention_weights(b, node)
    gv = sum_to(b, b.op("matmul", _swap_last(b, p), go), v.type.shape)
    gp = b.op("matmul", go, _swap_last(b, v))
    ds = b.op("mul", p, b.op("sub", gp, b.op("sum", b.op("mul", gp, p), axis=-1, keepdims=True)))
    dss = b.op("mul", ds, scale)
    gq = sum_to(b, b.op("matmul", dss, k), q.type.shape)
    gk = sum_to(b, b.op("matmul", _swap_last(b, dss), q), k.type.shape)
    gm = None
    if mask is not None and mask.type.dtype.is_float:
        gm = sum_to(b, ds, mask.type.shape)
    return [gq, gk, gv, gm]
