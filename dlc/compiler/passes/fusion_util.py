"""What the fusion passes (`fusion`, `attention`, `fuse_optimizer`) share:
which nodes may join a region, scalar constants, and the graph's use lists.

A node may join a region when it is pure and flat: no random op (a region
would change where its draw happens, and backends seed draws per node), no
body (a scan is a loop, not a kernel), no control op (a fused node is not
fused again).
"""
from __future__ import annotations

import numpy as np

from ..ir import Graph, Node, Value
from ..ops.registry import CONTROL, RANDOM
from .rewrite import escaping, users


def fusable(n: Node) -> bool:
    return n.body is None and not (n.op.groups & {RANDOM, CONTROL})


def producer(v: Value | None) -> Node | None:
    return v.producer if v is not None and v.kind == "node" else None


def scalar_const(v: Value | None, rounded: bool = False) -> float | None:
    """The value of a scalar constant (`full` of shape ()), else None.

    With `rounded`, the value as the program holds it: rounded to the
    constant's dtype (a `full` of dtype f32 holding 1/sqrt(8) holds
    0.35355338f); None for a dtype NumPy cannot represent (bfloat16)."""
    p = producer(v)
    if p is None or p.op.name != "full" or tuple(p.attrs.get("shape", ())) != ():
        return None
    value = float(p.attrs["value"])
    if not rounded:
        return value
    try:
        return float(np.asarray(value, dtype=np.dtype(str(p.attrs.get("dtype", "float32")))))
    except TypeError:
        return None


def is_scalar_const_node(n: Node) -> bool:
    return n.op.name == "full" and tuple(n.attrs.get("shape", ())) == ()


def axes_of(n: Node) -> tuple[int, ...] | None:
    """A reduction's axes as a sorted tuple of non-negative ints (None: all)."""
    a = n.attrs.get("axis")
    if a is None:
        return None
    rank = n.inputs[0].type.rank
    a = (a,) if isinstance(a, int) else tuple(a)
    return tuple(sorted(x % rank for x in a))


def trailing(axes: tuple[int, ...] | None, rank: int) -> bool:
    """Whether `axes` are the last len(axes) axes of a rank-`rank` tensor."""
    return axes is not None and len(axes) > 0 and axes == tuple(range(rank - len(axes), rank))


class Uses:
    """The use lists of a graph, refreshed after each rewrite."""

    def __init__(self, g: Graph):
        self.g = g
        self.refresh()

    def refresh(self) -> None:
        self.of = users(self.g)
        self.esc = escaping(self.g)

    def only_in(self, v: Value, ids: set[int]) -> bool:
        """`v` is read only by nodes of `ids` (id(node)) and is no graph output."""
        return v.id not in self.esc and all(id(u) in ids for u in self.of.get(v.id, []))

    def sole_user(self, v: Value) -> Node | None:
        us = self.of.get(v.id, [])
        return us[0] if len(us) == 1 and v.id not in self.esc else None


def absorb_constants(group: list[Node], uses: Uses) -> list[Node]:
    """`group` plus the scalar constants only it reads (they go into the body)."""
    ids = {id(n) for n in group}
    extra = []
    for n in group:
        for v in n.inputs:
            p = producer(v)
            if p is not None and id(p) not in ids and is_scalar_const_node(p) and uses.only_in(v, ids):
                ids.add(id(p))
                extra.append(p)
    return extra + group
