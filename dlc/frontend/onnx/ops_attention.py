"""ONNX Attention (opsets 23-25) -> dlc's IR, with the semantics of onnx's reference
(`onnx.reference.ops.op_attention`), which the node tests' expected outputs come from.

The plain cases (a bool or float mask, is_causal without a cache, no extra output, fp32/fp64)
become one `scaled_dot_product_attention` node.  The others are written out:

    bias = mask (padded to the keys with -inf/False) + causal + sliding window + KV padding
    S    = (Q * sqrt(scale)) @ (K^T * sqrt(scale))          (after grouped-query head repeat)
    S    = softcap * tanh(S / softcap)                      (softcap > 0)
    P    = softmax(S + bias)        a row whose every key is masked gives zeros, not NaN
    Y    = P @ V;  present_key/value = past ++ K/V;  qk_matmul_output by qk_matmul_output_mode

The causal and window frontiers are bottom-right aligned: a query at index i sees key j when
j <= i + offset, with offset = the past length (internal cache), nonpad_kv_seqlen[b] - L
(external cache: per batch, computed at run time) or 0.  fp16/bf16 are written out too and
each op rounds to the input type, as the reference computes in that type (a fused softmax in
fp32 differs from it by more than the tests' tolerance).
"""
from __future__ import annotations

import numpy as np

from .context import Ctx
from .registry import converter

_MODES = (0, 1, 2, 3)       # qk_matmul_output: raw (or softcapped) scores, + bias, softmax


@converter("Attention", since=23)
def attention(cx: Ctx, node):
    a = Ctx.attrs(node)
    q, k, v = (cx.val(n) for n in node.input[:3])
    packed = q.type.rank == 3
    if packed:
        q = _heads(cx, q, int(a.get("q_num_heads") or 0))
        k = _heads(cx, k, int(a.get("kv_num_heads") or 0))
        v = _heads(cx, v, int(a.get("kv_num_heads") or 0))
    elif q.type.rank != 4 or k.type.rank != 4 or v.type.rank != 4:
        raise cx.error(f"Attention needs 3-D or 4-D Q, K and V, got ranks {q.type.rank}, {k.type.rank}, "
                       f"{v.type.rank}")
    past_k, past_v, nonpad = cx.opt(node, 4), cx.opt(node, 5), cx.opt(node, 6)
    if (past_k is None) != (past_v is None):
        raise cx.error("Attention needs past_key and past_value together")
    if nonpad is not None and past_k is not None:
        raise cx.error("Attention's nonpad_kv_seqlen cannot be combined with past_key/past_value")
    if past_k is not None:         # the internal KV cache: past positions first
        k, v = cx.op("concat", past_k, k, axis=2), cx.op("concat", past_v, v, axis=2)
    present = [k, v]
    hq, hk = q.type.shape[1], k.type.shape[1]
    if hq != hk:
        if not isinstance(hq, int) or not isinstance(hk, int) or hq % hk:
            raise cx.error(f"Attention with {hq} query heads and {hk} key/value heads (not a multiple)")
        k, v = _repeat_heads(cx, k, hq // hk), _repeat_heads(cx, v, hq // hk)
    past_len = past_k.type.shape[2] if past_k is not None else 0
    mask, causal = _bias(cx, node, a, q, k, past_len, nonpad)
    mode = int(a.get("qk_matmul_output_mode", 0))
    if mode not in _MODES:
        raise cx.error(f"Attention's qk_matmul_output_mode={mode} is not one of {_MODES}")
    want_qk = len(node.output) > 3 and bool(node.output[3])
    softcap = float(a.get("softcap", 0.0) or 0.0)
    precision = _softmax_dtype(cx, a, q)
    scale = a.get("scale")
    scale = float(scale) if scale is not None else None
    low = q.type.dtype.short in ("f16", "bf16")
    if want_qk or softcap > 0 or low or precision != q.type.dtype.numpy_name:
        if scale is None:
            scale = 1.0 / float(np.sqrt(q.type.shape[-1]))
        if causal:         # the plain causal flag as the mask it stands for
            L, S = q.type.shape[2], k.type.shape[2]
            if not isinstance(L, int) or not isinstance(S, int):
                raise cx.error("Attention written out (fp16, softcap or the QK output) with is_causal needs "
                               "known sequence lengths")
            mask = cx.materialize(np.tril(np.ones((L, S), dtype=bool)), f"{node.output[0]}_causal")
        y, qk = _written_out(cx, q, k, v, mask, scale, softcap, mode, precision)
    else:
        args = (q, k, v) + ((mask,) if mask is not None else ())
        y, qk = cx.op("scaled_dot_product_attention", *args, is_causal=causal, scale=scale), None
    if packed:       # back to (B, L, heads * head_size)
        n, h, t, d = y.type.shape
        y = cx.op("reshape", cx.op("transpose", y, axes=(0, 2, 1, 3)), shape=(n, t, h * d))
    return [y] + present + [qk]


def _softmax_dtype(cx: Ctx, a: dict, q) -> str:
    """The dtype the softmax runs in: softmax_precision (an ONNX element type) or Q's."""
    code = a.get("softmax_precision")
    if code is None:
        return q.type.dtype.numpy_name
    from .loader import ONNX_TO_NUMPY
    dt = np.dtype(ONNX_TO_NUMPY.get(int(code), object))
    if dt.kind != "f" or dt.name not in ("float16", "float32", "float64"):
        raise cx.error(f"Attention's softmax_precision={code} is not a floating type dlc has")
    return dt.name


# ---------------------------------------------------------------------------- the mask
def _bias(cx: Ctx, node, a: dict, q, k, past_len, nonpad):
    """(mask, is_causal): the attention mask as a bool (True = attend) or an additive float
    Value of Q's dtype broadcasting to (B, H, L, S), or None; is_causal only when a plain
    top-left causal mask is all there is (the IR op's own flag)."""
    L, S = q.type.shape[2], k.type.shape[2]
    causal = bool(a.get("is_causal", 0))
    left, right = int(a.get("left_window_size", -1)), int(a.get("right_window_size", -1))
    windowed = left >= 0 or right >= 0
    mask = _padded_mask(cx, cx.opt(node, 3), q, S)
    if not (causal or windowed or nonpad is not None):
        return mask, False
    if mask is None and nonpad is None and not windowed and past_len == 0:
        return None, True
    if not all(isinstance(d, int) for d in (L, S, past_len)):
        raise cx.error("Attention with a causal, window or padding mask needs known sequence lengths")
    if nonpad is None:          # the frontier is the same for every batch: a constant
        allowed = _frontier(np.arange(L)[:, None] + int(past_len) - np.arange(S)[None, :], causal, left, right)
        if mask is None:
            return cx.materialize(allowed, f"{node.output[0]}_mask"), False
        const = np.where(allowed, 0, -np.inf).astype(q.type.dtype.numpy_name)
        return cx.op("add", _additive(cx, mask, q), cx.materialize(const, f"{node.output[0]}_bias")), False
    bias = _padding(cx, nonpad, q, L, S, causal, left, right)
    return (bias if mask is None else cx.op("add", _additive(cx, mask, q), bias)), False


def _frontier(diff, causal: bool, left: int, right: int):
    """Where query i (at absolute position i + offset) may see key j, from diff = i + offset - j."""
    ok = np.ones_like(diff, dtype=bool)
    if causal:
        ok = ok & (diff >= 0)
    if left >= 0:
        ok = ok & (diff <= left)
    if right >= 0:
        ok = ok & (-diff <= right)
    return ok


def _padding(cx: Ctx, nonpad, q, L: int, S: int, causal: bool, left: int, right: int):
    """The external KV cache as an additive (B, 1, L or 1, S) bias in Q's dtype: key j of batch b
    is valid when j < nonpad_kv_seqlen[b], and the causal/window offset is nonpad_kv_seqlen[b] - L.
    Each condition is its own 0/-inf term, summed as the reference does (not a chain of bool
    ands: TVM's LLVM codegen fails on an `and` of a stored and a computed bool vector)."""
    n = nonpad if nonpad.type.dtype.short == "i64" else cx.op("cast", nonpad, dtype="int64")
    n = cx.op("reshape", n, shape=(n.type.shape[0], 1, 1, 1))
    zero, ninf = cx.scalar(0.0, q), cx.scalar(float("-inf"), q)

    def term(ok):
        return cx.op("where", ok, zero, ninf)

    cols = cx.op("reshape", cx.op("arange", start=0, stop=S, step=1, dtype="int64"), shape=(1, 1, 1, S))
    bias = term(cx.op("lt", cols, n))
    if causal or left >= 0 or right >= 0:
        i_minus_j = cx.materialize(np.arange(L)[:, None] - np.arange(S)[None, :] - L, "attention_i_minus_j")
        diff = cx.op("add", i_minus_j, n)            # i + (nonpad[b] - L) - j

        def bound(value: int):
            return cx.op("full", shape=(), value=value, dtype="int64")
        if causal:
            bias = cx.op("add", bias, term(cx.op("ge", diff, bound(0))))
        if left >= 0:
            bias = cx.op("add", bias, term(cx.op("le", diff, bound(left))))
        if right >= 0:
            bias = cx.op("add", bias, term(cx.op("ge", diff, bound(-right))))
    return bias


def _padded_mask(cx: Ctx, mask, q, S):
    """attn_mask of Q's float dtype or bool, its last axis padded to the S keys (-inf / False)."""
    if mask is None:
        return None
    if mask.type.dtype.is_float and mask.type.dtype != q.type.dtype:
        mask = cx.op("cast", mask, dtype=q.type.dtype.numpy_name)
    elif not mask.type.dtype.is_float and mask.type.dtype.short != "bool":
        raise cx.error(f"Attention's attn_mask must be bool or floating, got {mask.type}")
    m = mask.type.shape[-1]
    if m == S:
        return mask
    if not isinstance(m, int) or not isinstance(S, int) or m > S:
        raise cx.error(f"Attention with a mask of {m} key positions for {S} keys is not supported")
    fill = False if mask.type.dtype.short == "bool" else float("-inf")
    pad = cx.op("full", shape=tuple(mask.type.shape[:-1]) + (S - m,), value=fill, dtype=mask.type.dtype.numpy_name)
    return cx.op("concat", mask, pad, axis=-1)


def _additive(cx: Ctx, mask, q):
    """A bool mask as 0 (attend) / -inf (masked) in Q's dtype; a float mask as it is."""
    if mask.type.dtype.short != "bool":
        return mask
    return cx.op("where", mask, cx.scalar(0.0, q), cx.scalar(float("-inf"), q))


# ---------------------------------------------------------------------------- the written-out form
def _written_out(cx: Ctx, q, k, v, mask, scale: float, softcap: float, mode: int, precision: str):
    """(Y, qk_matmul_output) as the reference computes them, op by op in Q's dtype."""
    dt = q.type.dtype.numpy_name
    root = cx.scalar(float(np.sqrt(scale)), q)       # the reference scales Q and K by sqrt(scale)
    s = cx.op("matmul", cx.op("mul", q, root), cx.op("mul", cx.op("transpose", k, axes=(0, 1, 3, 2)), root))
    if softcap > 0:
        cap = cx.scalar(softcap, s)
        s = cx.op("mul", cx.op("tanh", cx.op("div", s, cap)), cap)
    qk = s                     # modes 0 and 1: the (softcapped) scores
    if mask is not None:
        s = cx.op("where", mask, s, cx.scalar(float("-inf"), s)) if mask.type.dtype.short == "bool" else \
            cx.op("add", s, mask)
    if mode == 2:
        qk = s
    if precision != dt:
        s = cx.op("cast", s, dtype=precision)
    p = _safe_softmax(cx, s)
    if precision != dt:
        p = cx.op("cast", p, dtype=dt)
    if mode == 3:
        qk = p
    return cx.op("matmul", p, v), qk


def _safe_softmax(cx: Ctx, s):
    """softmax over the last axis, each step in s's dtype; a row that is all -inf (every key
    masked) gives zeros, as the reference's guard does."""
    ninf = cx.scalar(float("-inf"), s)
    m = cx.op("max", s, axis=(-1,), keepdims=True)
    m = cx.op("where", cx.op("eq", m, ninf), cx.scalar(0.0, s), m)
    e = cx.op("exp", cx.op("sub", s, m))
    den = cx.op("sum", e, axis=(-1,), keepdims=True)
    den = cx.op("where", cx.op("eq", den, cx.scalar(0.0, s)), cx.scalar(1.0, s), den)
    return cx.op("div", e, den)


# ---------------------------------------------------------------------------- heads
def _heads(cx: Ctx, x, heads: int):
    """(B, T, heads * d) -> (B, heads, T, d)."""
    n, t, hidden = x.type.shape
    if heads <= 0:
        raise cx.error("3-D Attention inputs need q_num_heads and kv_num_heads")
    if isinstance(hidden, int) and hidden % heads:
        raise cx.error(f"Attention: a hidden size of {hidden} does not split into {heads} heads")
    return cx.op("transpose", cx.op("reshape", x, shape=(n, t, heads, hidden // heads)), axes=(0, 2, 1, 3))


def _repeat_heads(cx: Ctx, x, r: int):
    """Each KV head r times in a row (grouped-query attention: [h0, h0, h1, h1, ...])."""
    n, h, t, d = x.type.shape
    y = cx.op("expand", cx.op("reshape", x, shape=(n, h, 1, t, d)), shape=(n, h, r, t, d))
    return cx.op("reshape", y, shape=(n, h * r, t, d))
