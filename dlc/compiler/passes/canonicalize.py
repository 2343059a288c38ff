"""Canonicalisation: algebraic identities and no-op ops removed, chains of
shape ops collapsed, so that later passes see one spelling of each idea.

    x * 1, 1 * x, x + 0, 0 + x, x - 0, x / 1, x ** 1  ->  x    (the constant is a `full`)
    neg(neg(x))                                          ->  x
    dropout(x) with training=false or p=0                ->  x
    transpose(transpose(x, p), q)                        ->  transpose(x, p∘q), or x
    reshape(reshape(x)), reshape to x's own shape        ->  one reshape, or x
    expand(expand(x)), expand to x's own shape           ->  one expand, or x
    cast to the dtype x already has                      ->  x    (x a node result, see below)
    whole-tensor slice, zero pad, one-operand concat,
    one-section split, reduction over size-1 axes        ->  x    (or a reshape of x)

An identity whose constant broadcasts `x` to a larger shape becomes
`expand(x)`; one that would change the dtype is kept.  Shapes may hold
symbolic `Dim`s: they are compared with `==`, never evaluated.

A cast of a graph input or parameter is kept even when the types agree: the
runtime does not convert what a caller feeds (a data set's integer labels, a
float64 array), and that cast is where the data meets the declared type.

`rewrite_nodes(g, ctx, rule)` is the driver `fold_constants` shares: it walks
the graph (nested bodies included) in order and lets `rule` replace a node's
results, building the replacements in place of the node.
"""
from __future__ import annotations

from typing import Callable

from ..builder import Builder
from ..ir import Graph, Node, Value
from ..ops.reduce import reduce_axes
from .dce import dce_graph
from .pipeline import PassContext, register_pass
from .rewrite import replace_uses

# A rule looks at one node (operands already rewritten) and returns the values
# that replace its results, or None to keep it; it may return (label, values)
# to name what it did in the counts (the default label is the node's op).
# New nodes go through `b`.
Rule = Callable[[Node, Builder], "list[Value] | tuple[str, list[Value]] | None"]


def _remap(v: Value | None, mapping: dict[int, Value]) -> Value | None:
    while v is not None and v.id in mapping:
        v = mapping[v.id]
    return v


def rewrite_nodes(g: Graph, ctx: PassContext, rule: Rule) -> dict[str, int]:
    """Apply `rule` to every node of `g` and of its nested bodies, in order;
    returns how many nodes each label (by default: each op) replaced.  A
    replacement must have the types of what it replaces (otherwise the node
    is kept); new nodes take the replaced node's place, `.dln` span, scope
    and value names."""
    mapping: dict[int, Value] = {}
    replaced: dict[str, int] = {}

    def visit(h: Graph) -> None:
        scratch = Graph("scratch", mode=h.mode, dims=h.dims, parent=h)
        out: list[Node] = []
        for n in h.nodes:
            n.inputs = tuple(_remap(v, mapping) for v in n.inputs)
            if n.body is not None:
                visit(n.body)
                n.body.outputs = [_remap(v, mapping) for v in n.body.outputs]
            ctx.node = n
            new = rule(n, Builder(scratch, n.span, n.scope))
            label = n.op.name
            if isinstance(new, tuple):
                label, new = new
            if new is None or [v.type for v in new] != [o.type for o in n.outputs]:
                scratch.nodes.clear()
                out.append(n)
                continue
            created = {id(m) for m in scratch.nodes}
            out.extend(scratch.nodes)
            scratch.nodes.clear()
            for old, v in zip(n.outputs, new):
                if id(v.producer) in created and not v.name:
                    v.name = old.name
                mapping[old.id] = v
            replaced[label] = replaced.get(label, 0) + 1
        h.nodes[:] = out

    visit(g)
    replace_uses(g, mapping)
    ctx.node = None
    return replaced


# helpers the rules share ---------------------------------------------------------
def full_value(v: Value | None):
    """The fill value when `v` is a `full` constant, else None."""
    if v is None or v.producer is None or v.producer.op.name != "full":
        return None
    return v.producer.attrs["value"]


def producer(v: Value | None, opname: str) -> Node | None:
    """`v`'s node when it is an `opname` node, else None."""
    if v is None or v.producer is None or v.producer.op.name != opname:
        return None
    return v.producer


def reshaped(b: Builder, x: Value, shape: tuple) -> Value:
    """`x` with `shape` (same elements): `x` itself, or one reshape (of what
    `x` reshapes, when it is a reshape: the chain stays one node)."""
    inner = producer(x, "reshape")
    if inner is not None:
        x = inner.inputs[0]
    return x if tuple(x.type.shape) == tuple(shape) else b.op("reshape", x, shape=tuple(shape))


def _as(b: Builder, x: Value, out: Value) -> Value | None:
    """`x` standing for `out`, whose value equals `x` broadcast: `x`, an
    `expand` of it, or None where the dtype would change."""
    if x.type.dtype != out.type.dtype or x.type.rank > out.type.rank:
        return None
    if x.type.shape == out.type.shape:
        return x
    return b.op("expand", x, shape=tuple(out.type.shape))


def _is(v, target) -> bool:
    return v is not None and not isinstance(v, bool) and v == target


# the rules -------------------------------------------------------------------------
# (op, operand index of the constant, its identity value, operand index kept)
_IDENTITIES = {
    "add": ((1, 0, 0), (0, 0, 1)),
    "sub": ((1, 0, 0),),
    "mul": ((1, 1, 0), (0, 1, 1)),
    "div": ((1, 1, 0),),
    "pow": ((1, 1, 0),),
}


IDENTITY_OPS = frozenset(_IDENTITIES)


def algebraic_identity(n: Node, b: Builder):
    """x * 1, x + 0, x - 0, x / 1, x ** 1 (and 1 * x, 0 + x): x, or x broadcast."""
    for const_i, ident, keep_i in _IDENTITIES[n.op.name]:
        if _is(full_value(n.inputs[const_i]), ident):
            v = _as(b, n.inputs[keep_i], n.outputs[0])
            if v is not None:
                return [v]
    return None


def _neg(n: Node, b: Builder):
    inner = producer(n.inputs[0], "neg")
    return [inner.inputs[0]] if inner is not None else None


def _dropout(n: Node, b: Builder):
    if not n.attrs["training"] or n.attrs["p"] == 0:
        return [n.inputs[0]]
    return None


def _perm(axes, rank: int) -> tuple[int, ...]:
    if axes is None:
        return tuple(reversed(range(rank)))
    return tuple(a % rank for a in axes)


def _transpose(n: Node, b: Builder):
    x = n.inputs[0]
    perm = _perm(n.attrs["axes"], x.type.rank)
    inner = producer(x, "transpose")
    if inner is not None:
        first = _perm(inner.attrs["axes"], inner.inputs[0].type.rank)
        x, perm = inner.inputs[0], tuple(first[q] for q in perm)
    if perm == tuple(range(len(perm))):
        return [x]
    return [b.op("transpose", x, axes=perm)] if inner is not None else None


def _reshape(n: Node, b: Builder):
    x, out = n.inputs[0], n.outputs[0]
    if producer(x, "reshape") is not None or x.type.shape == out.type.shape:
        return [reshaped(b, x, out.type.shape)]
    return None


def _expand(n: Node, b: Builder):
    x, out = n.inputs[0], n.outputs[0]
    inner = producer(x, "expand")
    if inner is not None:
        x = inner.inputs[0]
        return [x if x.type.shape == out.type.shape else b.op("expand", x, shape=tuple(out.type.shape))]
    return [x] if x.type.shape == out.type.shape else None


def _cast(n: Node, b: Builder):
    x = n.inputs[0]
    if x.type.dtype == n.outputs[0].type.dtype and x.kind == "node":
        return [x]
    return None


def _strided_slice(n: Node, b: Builder):
    x = n.inputs[0]
    rank = x.type.rank
    begin, strides = (n.attrs[k] if n.attrs[k] is not None else [None] * rank for k in ("begin", "strides"))
    whole = all(s in (None, 1) for s in strides) and all(a in (None, 0) for a in begin)
    return [x] if whole and x.type.shape == n.outputs[0].type.shape else None


def _pad(n: Node, b: Builder):
    return [n.inputs[0]] if all(p == 0 for p in n.attrs["pad"]) else None


def _concat(n: Node, b: Builder):
    return [n.inputs[0]] if len(n.inputs) == 1 else None


def _split(n: Node, b: Builder):
    x = n.inputs[0]
    return [x] if len(n.outputs) == 1 and n.outputs[0].type.shape == x.type.shape else None


# reductions that return x itself when every reduced axis has size 1
_SIZE_ONE_REDUCTIONS = ("sum", "mean", "max", "min", "prod")


def _reduction(n: Node, b: Builder):
    x, out = n.inputs[0], n.outputs[0]
    axes = reduce_axes(n.attrs["axis"], x.type.rank, n.op.name, x.type)
    if x.type.dtype != out.type.dtype or not all(x.type.shape[a] == 1 for a in axes):
        return None
    return [reshaped(b, x, out.type.shape)]


RULES: dict[str, Callable] = {
    **{name: algebraic_identity for name in _IDENTITIES},
    "neg": _neg, "dropout": _dropout, "transpose": _transpose, "reshape": _reshape, "expand": _expand,
    "cast": _cast, "strided_slice": _strided_slice, "pad": _pad, "concat": _concat, "split": _split,
    **{name: _reduction for name in _SIZE_ONE_REDUCTIONS},
}


def canonical_rule(n: Node, b: Builder):
    """The canonicalisation of one node (None: it stays)."""
    rule = RULES.get(n.op.name)
    if rule is None or n.body is not None:
        return None
    return rule(n, b)


@register_pass("canonicalize", level=1,
               summary="algebraic identities (x*1, x+0...), eval-mode dropout, transpose/reshape chains, no-op ops")
def canonicalize(g: Graph, ctx: PassContext) -> None:
    for op, k in rewrite_nodes(g, ctx, canonical_rule).items():
        ctx.count(op, k)
    # what the rewrites left unused goes now, so the graph this pass hands on is clean
    dce_graph(g)
