"""Attention written out in a spec becomes one F.scaled_dot_product_attention
call in the generated module.

The module graph keeps what the spec wrote, so a hand-written attention

    s = q @ transpose(k, 2, 3) / sqrt(64.0) + mask      # or * c, or where(bool_mask, s, -inf)
    p = softmax(s, axis=-1) |> dropout(0.1)
    y = p @ v

is six nodes.  `find_attention` finds that chain (each intermediate read by
the next link alone and not an output, so nothing else needs the scores or
the weights) and the forward generator writes it as

    y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask,
                                       dropout_p=0.1 if self.training else 0.0, scale=0.353...)

Exactness: the scale is the constant as the graph holds it (rounded to its
dtype, as the NumPy reference multiplies by it), so the call computes the
same scores; a key that is not the transpose of a value in the graph is
passed as ``kt.transpose(-2, -1)``.  One case differs by design: a row whose
scores are all masked (-inf everywhere) gives zeros from SDPA, where the
written-out softmax gives NaN; dlc's own scaled_dot_product_attention op has
SDPA's rule.  Dropout draws from torch's generator in training, as every
dropout of the generated module does.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ...compiler.ir import Graph, Node, Value
from ...compiler.types import DType


@dataclass
class Attention:
    q: Value
    k: Value                 # the key, [..., S, E]
    k_transposed: bool       # True: `k` is the graph's k^T, emit k.transpose(-2, -1)
    v: Value
    mask: Value | None
    scale: float
    dropout: float | None    # p of the dropout on the weights, None when there is none
    nodes: list[Node]        # the chain, the final matmul last


def _uses(g: Graph) -> dict[int, int]:
    n_uses: dict[int, int] = {}
    for n in g.nodes:
        for v in n.inputs:
            if v is not None:
                n_uses[v.id] = n_uses.get(v.id, 0) + 1
    for v in list(g.outputs) + list(g.state_updates.values()):
        if v is not None:
            n_uses[v.id] = n_uses.get(v.id, 0) + 2     # an output is never an inner link
    for rec in getattr(g, "layers", []) or []:
        for v in getattr(rec, "outputs", []) or []:
            if v is not None:
                n_uses[v.id] = n_uses.get(v.id, 0) + 2
    return n_uses


def _const(v: Value) -> float | None:
    p = v.producer
    if p is None or p.op.name != "full" or tuple(p.attrs["shape"]) != ():
        return None
    val = p.attrs["value"]
    if isinstance(val, bool) or not isinstance(val, (int, float)):
        return None
    # the value as the graph computes with it: rounded to the constant's dtype (-1e39 is -inf in float32)
    with np.errstate(over="ignore"):
        return float(np.asarray(val, dtype=p.attrs["dtype"]))


def _made_by(v: Value, *ops: str) -> bool:
    return v.producer is not None and v.producer.op.name in ops


def _swaps_last_two(node: Node) -> bool:
    axes = tuple(node.attrs.get("axes") or ())
    r = len(axes)
    return node.op.name == "transpose" and r >= 2 and axes == tuple(range(r - 2)) + (r - 1, r - 2)


class _Chain:
    """Walks the chain back from the final matmul, checking each link's uses."""

    def __init__(self, uses):
        self.uses, self.nodes = uses, []

    def link(self, v: Value, *ops: str) -> Node | None:
        p = v.producer
        if p is None or v.kind != "node" or p.op.name not in ops or self.uses.get(v.id) != 1:
            return None
        self.nodes.append(p)
        return p


def _scores(chain: _Chain, s: Value):
    """(scale, q, kt, mask) of the pre-softmax scores `s`, or None."""
    mask = None
    node = chain.link(s, "add", "where")
    if node is not None and node.op.name == "add":
        a, b = node.inputs
        # the scores are the operand made by the scaling or the matmul; the other is the mask
        s, mask = (b, a) if _made_by(b, "mul", "div", "matmul") and not _made_by(a, "mul", "div", "matmul") else (a, b)
        if mask.type.dtype != s.type.dtype or s.type != node.outputs[0].type:
            return None
    elif node is not None:
        cond, s, other = node.inputs
        if cond.type.dtype != DType.bool or _const(other) != -math.inf or s.type != node.outputs[0].type:
            return None
        mask = cond
    scale = 1.0
    node = chain.link(s, "mul", "div")
    if node is not None:
        a, c = node.inputs
        if node.op.name == "mul" and _const(a) is not None:
            a, c = c, a
        k = _const(c)
        if k is None or k == 0:
            return None
        s, scale = a, (k if node.op.name == "mul" else 1.0 / k)
    mm = chain.link(s, "matmul")
    if mm is None:
        return None
    q, kt = mm.inputs
    return scale, q, kt, mask


def _match(final: Node, uses) -> Attention | None:
    if final.op.name != "matmul":
        return None
    p, v = final.inputs
    chain = _Chain(uses)
    drop = chain.link(p, "dropout")
    rate = None
    if drop is not None:
        rate = float(drop.attrs["p"])
        p = drop.inputs[0]
    sm = chain.link(p, "softmax")
    if sm is None or int(sm.attrs["axis"]) % p.type.rank != p.type.rank - 1:
        return None
    found = _scores(chain, sm.inputs[0])
    if found is None:
        return None
    scale, q, kt, mask = found
    rank = q.type.rank
    if rank < 3 or not (kt.type.rank == v.type.rank == rank) or not q.type.dtype.is_float \
            or not (q.type.dtype == kt.type.dtype == v.type.dtype) \
            or not (tuple(q.type.shape[:-2]) == tuple(kt.type.shape[:-2]) == tuple(v.type.shape[:-2])):
        return None
    tp = kt.producer
    if tp is not None and _swaps_last_two(tp) and uses.get(kt.id) == 1:
        chain.nodes.append(tp)
        k, transposed = tp.inputs[0], False
    else:
        k, transposed = kt, True
    return Attention(q, k, transposed, v, mask, scale, rate, chain.nodes[::-1] + [final])


def find_attention(g: Graph, taken: set[int]) -> dict[int, Attention]:
    """id(final matmul) -> the attention chain ending there, for the top-level
    chains of `g` none of whose nodes is in `taken` (ids of nodes a layer owns)."""
    uses = _uses(g)
    out: dict[int, Attention] = {}
    for n in g.nodes:
        m = _match(n, uses) if n.op.name == "matmul" and id(n) not in taken else None
        if m is not None and not any(id(x) in taken for x in m.nodes):
            out[id(n)] = m
    return out


def attention_source(gen, m: Attention, out_name: str) -> str:
    """The SDPA statement for a matched chain (`gen`: the forward generator, for names)."""
    from .lowering import render
    k = gen.name_of(m.k) + (".transpose(-2, -1)" if m.k_transposed else "")
    args = [gen.name_of(m.q), k, gen.name_of(m.v)]
    if m.mask is not None:
        args.append(f"attn_mask={gen.name_of(m.mask)}")
    if m.dropout:
        args.append(f"dropout_p={render(m.dropout)} if self.training else 0.0")
    args.append(f"scale={render(m.scale)}")
    return f"{out_name} = F.scaled_dot_product_attention({', '.join(args)})"
