"""Import-time algebra on weights computed in the graph: slices of concatenations and splits.

An exporter that stores weights in its own framework's layout builds the ONNX
layout in the graph: `dlc export` (and torch.onnx for some layers) writes an
LSTM's W as `Unsqueeze(Concat(Split(weight_ih)[0], Split(...)[3], ...))`,
reordering torch's gate blocks (i, f, g, o) into ONNX's (i, o, f, c).  The
recurrent importer reorders W's gate blocks back.  Read naively that is a
second shuffle on top of the first; folded, the two cancel and the layer
reads the exporter's parameter itself, as the original model did:

    rows(v, lo, hi)    v[lo:hi] (axis 0), looked up through the ops that
                       built v: a range inside one operand of a `concat` is a
                       range of that operand, a range of a `split` result is a
                       range of the split tensor, a `strided_slice` (step 1 on
                       axis 0, whole on the others) shifts the range;
    index(v, i)        v[i] (axis 0 dropped): through `concat` along axis 0 to
                       the operand holding row i, and through the `reshape`
                       that added a leading 1 (Unsqueeze) back to its operand;
    join(pieces)       concat along axis 0 of the ranges, adjacent ranges of
                       one tensor merged: ranges covering a tensor in order
                       are the tensor itself.

What does not fold is built with ordinary ops (`strided_slice`, `reshape`,
`concat`), so any computed weight imports correctly; only its reading differs.
The ops the export wrote become dead and are dropped with the rest (dce).
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass

from ...compiler.ir import Value


@dataclass(frozen=True)
class Rows:
    """Rows lo:hi (axis 0) of an IR value, not yet built."""

    src: Value
    lo: int
    hi: int

    def covers(self) -> bool:
        return self.lo == 0 and self.hi == self.src.type.shape[0]


def _producer(v: Value, op: str):
    p = getattr(v, "producer", None)
    return p if p is not None and v.kind == "node" and p.op.name == op else None


def _ints(xs) -> bool:
    return all(isinstance(x, int) for x in xs)


def rows(v: Value, lo: int, hi: int) -> Rows:
    """v[lo:hi] along axis 0, as a range of the value it was cut from (see the module doc)."""
    while True:
        n = v.type.shape[0]
        if not isinstance(n, int) or not 0 <= lo <= hi <= n:
            return Rows(v, lo, hi)
        cat = _producer(v, "concat")
        if cat is not None and cat.attrs["axis"] == 0:
            sizes = [x.type.shape[0] for x in cat.inputs]
            if not _ints(sizes):
                return Rows(v, lo, hi)
            off = 0
            for x, s in zip(cat.inputs, sizes):
                if off <= lo and hi <= off + s and hi > lo:
                    v, lo, hi = x, lo - off, hi - off
                    break
                off += s
            else:
                return Rows(v, lo, hi)
            continue
        sp = _producer(v, "split")
        if sp is not None and sp.attrs["axis"] == 0:
            sizes = [o.type.shape[0] for o in sp.outputs]
            if not _ints(sizes):
                return Rows(v, lo, hi)
            off = sum(sizes[:v.index])
            v, lo, hi = sp.inputs[0], lo + off, hi + off
            continue
        ss = _producer(v, "strided_slice")
        if ss is not None and _rows_only_slice(ss):
            b = ss.attrs["begin"][0] or 0
            v, lo, hi = ss.inputs[0], lo + b, hi + b
            continue
        return Rows(v, lo, hi)


def _rows_only_slice(node) -> bool:
    """x[b:e] with step 1 on axis 0 (b >= 0 known), every other axis whole."""
    a = node.attrs
    r = node.inputs[0].type.rank
    begin, end = list(a["begin"]), list(a["end"])
    strides = list(a["strides"]) if a["strides"] is not None else [1] * r
    if any(s != 1 for s in strides) or any(x is not None for x in begin[1:] + end[1:]):
        return False
    return begin[0] is None or (isinstance(begin[0], int) and begin[0] >= 0)


def index(cx, v: Value, i: int) -> Value:
    """v[i] (axis 0 dropped), folded through concat/unsqueeze; otherwise a slice and a reshape."""
    while True:
        cat = _producer(v, "concat")
        if cat is not None and cat.attrs["axis"] == 0 and _ints([x.type.shape[0] for x in cat.inputs]):
            off = 0
            for x in cat.inputs:
                if off <= i < off + x.type.shape[0]:
                    v, i = x, i - off
                    break
                off += x.type.shape[0]
            continue
        rs = _producer(v, "reshape")
        if rs is not None and i == 0 and tuple(v.type.shape) == (1,) + tuple(rs.inputs[0].type.shape):
            return rs.inputs[0]
        break
    r = rows(v, i, i + 1)
    return cx.op("reshape", build(cx, r), shape=tuple(v.type.shape[1:]))


def build(cx, r: Rows) -> Value:
    if r.covers():
        return r.src
    rank = r.src.type.rank
    return cx.op("strided_slice", r.src, begin=[r.lo] + [None] * (rank - 1), end=[r.hi] + [None] * (rank - 1))


def join(cx, pieces: list[Rows]) -> Value:
    """concat(pieces, axis=0) with adjacent ranges of one tensor merged (a tensor covered in order is itself)."""
    merged: list[Rows] = []
    for p in pieces:
        last = merged[-1] if merged else None
        if last is not None and last.src is p.src and last.hi == p.lo:
            merged[-1] = Rows(p.src, last.lo, p.hi)
        else:
            merged.append(p)
    vals = [build(cx, p) for p in merged]
    return vals[0] if len(vals) == 1 else cx.op("concat", *vals, axis=0)


def wrapped_index(v: Value, n) -> bool:
    """v is `where(i < 0, i + n, i)`: indices whose negatives the graph already counts from the end (the
    importer writes that for Gather; importing its export again must not wrap them twice)."""
    w = _producer(v, "where")
    if w is None:
        return False
    cond, plus, i = w.inputs
    lt, add = _producer(cond, "lt"), _producer(plus, "add")
    return (lt is not None and add is not None and lt.inputs[0] is i and add.inputs[0] is i
            and _full_value(lt.inputs[1]) == 0 and _full_value(add.inputs[1]) == n)


def _full_value(v: Value):
    f = _producer(v, "full")
    return f.attrs["value"] if f is not None else None


def collapse_concats(g) -> int:
    """concat(x[0:a], x[a:b], ..., x[k:n]) along axis 0 -> x: what is left of a tensor cut into rows
    and joined again in order (a stacked recurrent op's final states, after stack.py).  Returns how many."""
    from ...compiler.passes.rewrite import replace_uses
    mapping = {}
    for n in g.nodes:
        if n.op.name != "concat" or n.attrs["axis"] != 0:
            continue
        if not all(isinstance(i.type.shape[0], int) for i in n.inputs):
            continue
        rs = [rows(i, 0, i.type.shape[0]) for i in n.inputs]
        src = rs[0].src
        if all(r.src is src for r in rs) and all(a.hi == b.lo for a, b in itertools.pairwise(rs)) \
                and rs[0].lo == 0 and rs[-1].hi == src.type.shape[0] and src.type == n.outputs[0].type:
            mapping[n.outputs[0].id] = src
    replace_uses(g, mapping)
    return len(mapping)
