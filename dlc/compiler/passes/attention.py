"""Attention written out becomes one `scaled_dot_product_attention` node.

    s = matmul(q, transpose(k, last two axes))      # QK^T
    s = s * c   or   s / c                          # c a scalar constant (optional: scale 1)
    s = s + mask                                    # float mask (optional), or
    s = where(mask, s, -inf) / where(mask, -inf, s) # bool mask, kept / filled where true
                                                    # (mask = tril(ones(L, S)): is_causal)
    p = softmax(s, axis=-1)
    p = dropout(p)                                  # only when it is the identity
    o = matmul(p, v)
      ->  o = scaled_dot_product_attention(q, k, v, mask) {scale=c or 1/c}

The op computes softmax(q k^T * scale + mask) v, so the scale attribute is
the multiplier itself, as the program holds it (c rounded to the constant's
dtype: an f32 graph scales by 0.35355338f, not by 1/sqrt(8)), and 1/c for a
division (the product then differs from the quotient by one rounding).  Nothing is folded when the op would
compute something else: a mask filled with a finite value (-1e9) is not a
bool mask, a scale that is not a scalar constant is not an attribute, a
dropout that draws is not the identity (so in training mode only a
dropout-free pattern folds), and every intermediate (scores, weights) must be
read by the pattern alone: a training graph whose backward reads the
attention weights keeps them.  One behaviour does change: a row whose mask is
-inf everywhere gives zeros (the op's rule) where the written-out softmax
gives NaN.
"""
from __future__ import annotations

import math

from ...errors import DlcError
from ..builder import Builder
from ..ir import Graph, Node, Value
from ..types import DType
from .dce import dce_graph
from .fusion_util import Uses, producer, scalar_const
from .pipeline import PassContext, register_pass
from .rewrite import replace_uses


def _is(v: Value | None, name: str) -> Node | None:
    p = producer(v)
    return p if p is not None and p.op.name == name else None


def _swaps_last_two(n: Node) -> bool:
    axes = list(n.attrs["axes"])
    r = len(axes)
    return r >= 2 and axes[:-2] == list(range(r - 2)) and axes[-2:] == [r - 1, r - 2]


def _identity_dropout(n: Node) -> bool:
    return n.op.name == "dropout" and (not n.attrs.get("training", True) or float(n.attrs.get("p", 0.0)) == 0.0)


def _mask(s: Value, chain: list[Node]) -> tuple[Value, Value | None, bool]:
    """(scores before the mask, mask, mask is negated) for the masking step ending at `s`."""
    add = _is(s, "add")
    if add is not None:
        a, b = add.inputs
        for scores, m in ((a, b), (b, a)):
            if m.type.dtype.is_float and (_is(scores, "matmul") is not None or _scaled(scores) is not None):
                chain.append(add)
                return scores, m, False
    where = _is(s, "where")
    if where is not None:
        c, t, f = where.inputs
        if c.type.dtype == DType.bool and scalar_const(f) == -math.inf:
            chain.append(where)
            return t, c, False
        if c.type.dtype == DType.bool and scalar_const(t) == -math.inf:
            chain.append(where)
            return f, c, True
    return s, None, False


def _scaled(s: Value) -> tuple[Node, float] | None:
    """(the mul/div node, the multiplier) when `s` is scores times/over a scalar constant."""
    for name in ("mul", "div"):
        n = _is(s, name)
        if n is None:
            continue
        a, b = n.inputs
        c = scalar_const(b, rounded=True)
        if c is None and name == "mul":
            c, a = scalar_const(a, rounded=True), b
        if c is not None and c != 0 and math.isfinite(c) and _is(a, "matmul") is not None:
            return n, (c if name == "mul" else 1.0 / c)
    return None


def _causal(mask: Value, scores: Value) -> bool:
    """`mask` is tril(ones(L, S)) over the scores' last two axes: SDPA's is_causal."""
    tri = _is(mask, "tril")
    ones = _is(tri.inputs[0], "full") if tri is not None else None
    if ones is None or tri.attrs.get("k", 0) != 0 or not ones.attrs.get("value"):
        return False
    return mask.type.dtype == DType.bool and tuple(mask.type.shape) == tuple(scores.type.shape[-2:])


def match(out: Node, uses: Uses) -> dict | None:
    """The pattern ending at `out` (the `matmul(p, v)`), or None."""
    if out.op.name != "matmul":
        return None
    p, v = out.inputs
    chain = [out]
    drop = _is(p, "dropout")
    if drop is not None:
        if not _identity_dropout(drop):
            return None
        chain.append(drop)
        p = drop.inputs[0]
    sm = _is(p, "softmax")
    if sm is None or sm.attrs["axis"] % p.type.rank != p.type.rank - 1:
        return None
    chain.append(sm)
    s, mask, negate = _mask(sm.inputs[0], chain)
    scale = 1.0
    sc = _scaled(s)
    if sc is not None:
        chain.append(sc[0])
        scale = sc[1]
        s = sc[0].inputs[0] if _is(sc[0].inputs[0], "matmul") is not None else sc[0].inputs[1]
    qk = _is(s, "matmul")
    if qk is None:
        return None
    chain.append(qk)
    q, kt = qk.inputs
    tr = _is(kt, "transpose")
    k = tr.inputs[0] if tr is not None and _swaps_last_two(tr) else None
    if tr is not None and k is not None and uses.sole_user(kt) is qk:
        chain.append(tr)
    ids = {id(n) for n in chain}
    if any(not uses.only_in(o, ids) for n in chain if n is not out for o in n.outputs):
        return None
    if q.type.rank < 2 or kt.type.rank < 2:
        return None
    causal = mask is not None and not negate and _causal(mask, s)
    return {"chain": chain, "q": q, "kt": kt, "k": k, "v": v, "mask": None if causal else mask,
            "negate": negate, "scale": scale, "causal": causal}


def _rewrite(g: Graph, m: dict, out: Node) -> Value | None:
    """Build the attention node before `out` and return its result (None: the types disagree)."""
    b = Builder(Graph("tmp", mode=g.mode, dims=g.dims, parent=g), out.span, out.scope)
    k = m["k"]
    if k is None:
        axes = list(range(m["kt"].type.rank))
        axes[-1], axes[-2] = axes[-2], axes[-1]
        k = b.op("transpose", m["kt"], axes=tuple(axes))
    mask = m["mask"]
    if mask is not None and m["negate"]:
        mask = b.op("logical_not", mask)
    try:
        o = b.op("scaled_dot_product_attention", m["q"], k, m["v"], mask, is_causal=m["causal"],
                 scale=m["scale"])
    except DlcError:        # a shape the op does not take (e.g. a mask that broadcasts differently)
        return None
    if o.type != out.outputs[0].type:
        return None
    i = g.nodes.index(out)
    g.nodes[i:i] = b.graph.nodes
    return o


@register_pass("attention", level=2, summary="QK^T, scale, mask, softmax, .V -> scaled_dot_product_attention")
def attention(g: Graph, ctx: PassContext) -> None:
    uses = Uses(g)
    for out in list(g.nodes):
        m = match(out, uses)
        if m is None:
            continue
        ctx.node = out
        new = _rewrite(g, m, out)
        if new is None:
            continue
        replace_uses(g, {out.outputs[0].id: new})
        dce_graph(g)
        uses.refresh()
        ctx.count("folded")
