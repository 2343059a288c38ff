"""ONNX Einsum -> diagonals, sums, transposes and batched matmuls, with numpy.einsum's semantics:
any number of operands, ellipsis (broadcast, right-aligned), repeated labels in an operand (a
diagonal), labels summed away, the implicit output (the ellipsis, then the labels that occur once,
sorted).  Operands are contracted left to right, each pair as one matmul over (batch, rows, k) x
(batch, k, cols), so "bhid,bhjd->bhij" is one transpose and one matmul."""
from __future__ import annotations

from ...compiler.dims import prod
from .context import Ctx
from .registry import converter

_ELLIPSIS = [chr(0x3B1 + i) for i in range(24)]     # labels for the ellipsis axes (never ONNX letters)


def _s(v):
    return v.decode() if isinstance(v, bytes) else v


@converter("Einsum", since=12)
def einsum(cx: Ctx, node):
    eq = _s(Ctx.attrs(node)["equation"]).replace(" ", "")
    xs = [cx.val(n) for n in node.input]
    terms, out = _parse(cx, eq, [x.type.rank for x in xs])
    size = _sizes(cx, eq, terms, xs)
    ops = []
    for i, (x, labels) in enumerate(zip(xs, terms)):
        x, labels = _diagonals(cx, x, labels)
        others = set(out).union(*(terms[j] for j in range(len(terms)) if j != i))
        x, labels = _sum_away(cx, x, labels, others)
        ops.append((_broadcast(cx, x, labels, size), labels))
    acc, la = ops[0]
    for j, (b, lb) in enumerate(ops[1:], start=2):
        keep = set(out).union(*(terms[t] for t in range(j, len(terms))))
        acc, la = _contract(cx, acc, la, b, lb, keep, size)
    acc, la = _sum_away(cx, acc, la, set(out))
    perm = tuple(la.index(c) for c in out)
    return acc if perm == tuple(range(len(perm))) else cx.op("transpose", acc, axes=perm)


def _parse(cx: Ctx, eq: str, ranks: list[int]) -> tuple[list[list[str]], list[str]]:
    """The operands' label lists and the output's, the ellipsis spelt out as its own labels."""
    lhs, arrow, rhs = eq.partition("->")
    terms = lhs.split(",")
    if len(terms) != len(ranks):
        raise cx.error(f"Einsum {eq!r} names {len(terms)} operands, the node has {len(ranks)}")
    n_ell = [r - (len(t) - 3) if "..." in t else 0 for t, r in zip(terms, ranks)]
    width = max(n_ell, default=0)
    if min(n_ell, default=0) < 0 or width > len(_ELLIPSIS):
        raise cx.error(f"Einsum {eq!r}: an operand has fewer axes than its labels")

    def labels(t: str, n: int) -> list[str]:
        head, dots, tail = t.partition("...")
        if "." in head + tail or not (head + tail).isalpha() and head + tail:
            raise cx.error(f"Einsum {eq!r}: {t!r} is not a term of letters and one '...'")
        return list(head) + (_ELLIPSIS[width - n:width] if dots else []) + list(tail)

    terms = [labels(t, n) for t, n in zip(terms, n_ell)]
    for t, r in zip(terms, ranks):
        if len(t) != r:
            raise cx.error(f"Einsum {eq!r}: a term has {len(t)} labels for an operand of rank {r}")
    if arrow:
        out = labels(rhs, width) if "..." in rhs else labels(rhs, 0)
        seen = [c for t in terms for c in t]
        if len(set(out)) != len(out) or any(c not in seen for c in out):
            raise cx.error(f"Einsum {eq!r}: the output repeats a label or names one no operand has")
    else:
        flat = [c for t in terms for c in t if c not in _ELLIPSIS]
        out = _ELLIPSIS[:width] + sorted(c for c in set(flat) if flat.count(c) == 1)
    return terms, out


def _sizes(cx: Ctx, eq: str, terms, xs) -> dict:
    """Each label's size; a size of 1 broadcasts against the others."""
    size: dict = {}
    for t, x in zip(terms, xs):
        for c, d in zip(t, x.type.shape):
            old = size.get(c)
            if old is None or old == 1:
                size[c] = d
            elif d != 1 and d != old:
                raise cx.error(f"Einsum {eq!r}: label {c!r} has sizes {old} and {d}")
    return size


def _diagonals(cx: Ctx, x, labels: list[str]):
    """x with each repeated label's diagonal taken: the repeated axes moved last, flattened, and
    every (n^r - 1)/(n - 1)-th element picked (the positions i*n^(r-1) + ... + i)."""
    labels = list(labels)
    for c in dict.fromkeys(labels):
        at = [i for i, l in enumerate(labels) if l == c]
        if len(at) < 2:
            continue
        n = x.type.shape[at[0]]
        if not isinstance(n, int) or any(x.type.shape[i] != n for i in at):
            raise cx.error(f"Einsum: the diagonal of label {c!r} needs equal known sizes")
        rest = [i for i in range(len(labels)) if i not in at]
        x = cx.op("transpose", x, axes=tuple(rest + at))
        x = cx.op("reshape", x, shape=tuple(x.type.shape[:len(rest)]) + (n ** len(at),))
        step = sum(n ** p for p in range(len(at)))
        idx = cx.op("arange", start=0, stop=n ** len(at), step=step, dtype="int64")
        x = cx.op("index_select", x, idx, axis=len(rest))
        labels = [labels[i] for i in rest] + [c]
    return x, labels


def _sum_away(cx: Ctx, x, labels: list[str], keep: set):
    gone = tuple(i for i, c in enumerate(labels) if c not in keep)
    if not gone:
        return x, labels
    return cx.op("sum", x, axis=gone, keepdims=False), [c for c in labels if c in keep]


def _broadcast(cx: Ctx, x, labels, size):
    shape = tuple(size[c] for c in labels)
    return x if tuple(x.type.shape) == shape else cx.op("expand", x, shape=shape)


def _contract(cx: Ctx, a, la, b, lb, keep: set, size):
    """a (labels la) times b (labels lb), the shared labels not in `keep` summed: one matmul."""
    batch = [c for c in la if c in lb and c in keep]
    k = [c for c in la if c in lb and c not in keep]
    m = [c for c in la if c not in lb]
    n = [c for c in lb if c not in la]
    a2 = _as_bmk(cx, a, la, batch, m, k, size)
    b2 = _as_bmk(cx, b, lb, batch, k, n, size)
    y = cx.op("matmul", a2, b2)
    cur = batch + m + n
    return cx.op("reshape", y, shape=tuple(size[c] for c in cur)), cur


def _as_bmk(cx: Ctx, v, labels, batch, rows, cols, size):
    order = batch + rows + cols
    perm = [labels.index(c) for c in order]
    if perm != list(range(len(perm))):
        v = cx.op("transpose", v, axes=tuple(perm))
    return cx.op("reshape", v, shape=tuple(size[c] for c in batch) + (prod(size[c] for c in rows),
                                                                     prod(size[c] for c in cols)))
