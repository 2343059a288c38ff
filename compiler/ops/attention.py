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
