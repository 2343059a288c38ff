"""Import-time patterns over values known at import (`patterns.py`): an index wrap that is the
identity, and `dlc export`'s sinusoidal position formula with its tables checked value for value."""
from __future__ import annotations

import numpy as np

from ...compiler.ir import Graph, Node, Value
from .patterns_match import const_of, is_const, node_of


def index_wrap(v: Value):
    """(i, n) when v = where(i < 0, i + n, i): an importer's negative-index wrap of a Gather."""
    w = node_of(v, "where")
    if w is None:
        return None
    cond, added, i = w.inputs
    lt, add = node_of(cond, "lt"), node_of(added, "add")
    if lt is None or add is None or lt.inputs[0] is not i or not is_const(lt.inputs[1], 0.0) or add.inputs[0] is not i:
        return None
    n = const_of(add.inputs[1])
    return (i, n) if n is not None else None


def needless_wrap(v: Value):
    """i when wrapping i is the identity: i is itself a wrap into [0, n) (a spec written from an import
    wraps its ids, and the Gather it exports wraps them again), or a non-negative arange."""
    hit = index_wrap(v)
    if hit is None:
        return None
    i, n = hit
    inner = index_wrap(i)
    if inner is not None and inner[1] == n:
        return i
    a = node_of(i, "arange")
    if a is not None and isinstance(a.attrs["start"], int) and a.attrs["start"] >= 0 and a.attrs["step"] > 0:
        return i
    return None


def _table(v: Value, weights: dict):
    """The import-time value of a parameter (an initializer the importer kept as a weight)."""
    return weights.get(v.name) if v is not None and v.kind in ("param", "buffer") else None


def _positions_column(v: Value, weights: dict, length: int) -> bool:
    """Whether v is arange(length) as float64 in a column (length, 1)."""
    r = node_of(v, "reshape", "unsqueeze")
    if r is None or tuple(v.type.shape) != (length, 1):
        return False
    src = r.inputs[0]
    want = np.arange(length, dtype=np.float64)
    t = _table(src, weights)
    if t is not None:
        return t.dtype == np.float64 and np.array_equal(t.reshape(-1), want)
    c = node_of(src, "cast")
    a = node_of(c.inputs[0], "arange") if c is not None else None
    return a is not None and src.type.dtype.numpy_name == "float64" and \
        (a.attrs["start"], a.attrs["stop"], a.attrs["step"]) == (0, length, 1)


def sinusoidal(n: Node, weights: dict):
    """(length, dim) when `cast` node n is `dlc export`'s sinusoidal_positions: where(even, sin(a), cos(a))
    for a = positions / 10000^(2i/dim), every table checked against the formula."""
    w = node_of(n.inputs[0], "where")
    if w is None or n.outputs[0].type.rank != 2:
        return None
    length, dim = n.outputs[0].type.shape
    sin, cos = node_of(w.inputs[1], "sin"), node_of(w.inputs[2], "cos")
    if not (isinstance(length, int) and isinstance(dim, int)) or sin is None or cos is None or \
            sin.inputs[0] is not cos.inputs[0]:
        return None
    d = node_of(sin.inputs[0], "div")
    if d is None:
        return None
    cols = np.arange(dim)
    denom, even = _table(d.inputs[1], weights), _table(w.inputs[0], weights)
    if denom is None or even is None or denom.shape != (1, dim) or even.shape != (1, dim):
        return None
    if not (np.array_equal(denom[0], np.power(10000.0, (cols - cols % 2).astype(np.float64) / dim))
            and np.array_equal(even[0], cols % 2 == 0) and _positions_column(d.inputs[0], weights, length)):
        return None
    return length, dim


def params_read(g: Graph) -> set:
    from ...compiler.clone import node_uses
    return {v.id for n in g.walk() for v in node_uses(n) if v.kind in ("param", "buffer")} | \
        {v.id for v in g.outputs if v.kind in ("param", "buffer")}


def drop_unused_params(g: Graph, weights: dict, read_before: set) -> None:
    """Remove the tables a rewrite consumed (read before it, by nothing after) from the graph and weights."""
    read = params_read(g)
    for p in [p for p in g.params if p.id in read_before and p.id not in read]:
        g.params.remove(p)
        weights.pop(p.name, None)
