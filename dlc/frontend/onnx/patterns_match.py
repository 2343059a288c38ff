"""The matching helpers of the import-time patterns (`patterns.py`): producers, scalar constants,
commutative pairs and product trees of the imported IR."""
from __future__ import annotations

import math

from ...compiler.ir import Node, Value


def node_of(v: Value | None, *ops: str) -> Node | None:
    p = getattr(v, "producer", None) if v is not None else None
    return p if p is not None and p.op.name in ops else None


def const_of(v: Value | None):
    """The value of a scalar constant (`full` of shape ()), else None."""
    n = node_of(v, "full")
    if n is None or tuple(n.attrs["shape"]) != ():
        return None
    return float(n.attrs["value"])


def is_const(v: Value | None, value: float, rel: float = 1e-6) -> bool:
    c = const_of(v)
    if c is None:
        return False
    if math.isinf(value) or value == 0:
        return c == value
    return abs(c - value) <= rel * abs(value)


def pair(n: Node | None, first, second):
    """(a, b) with `first(a)` and `second(b)` true, trying both operand orders of a commutative `n`."""
    if n is None or len(n.inputs) != 2:
        return None
    a, b = n.inputs
    if first(a) and second(b):
        return a, b
    if first(b) and second(a):
        return b, a
    return None


def factors(v: Value, stop: set, depth: int = 2) -> list:
    """The leaves of a `mul` tree at `v` (a stop value or a scalar constant is a leaf)."""
    n = node_of(v, "mul")
    if v.id in stop or const_of(v) is not None or n is None or depth == 0:
        p = node_of(v, "pow")
        if p is not None and p.inputs[0].id in stop and is_const(p.inputs[1], 3.0):
            return [p.inputs[0]] * 3
        return [v]
    return factors(n.inputs[0], stop, depth - 1) + factors(n.inputs[1], stop, depth - 1)


def is_product(v: Value, x: Value, c: float, other: Value | None = None, n_x: int = 1) -> bool:
    """Whether `v` is `c * x^n_x [* other]` in any association."""
    stop = {x.id} | ({other.id} if other is not None else set())
    f = factors(v, stop, 3)
    consts = [u for u in f if const_of(u) is not None]
    rest = [u for u in f if const_of(u) is None]
    want = [x.id] * n_x + ([other.id] if other is not None else [])
    return len(consts) == 1 and is_const(consts[0], c) and sorted(u.id for u in rest) == sorted(want)
