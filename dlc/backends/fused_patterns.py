"""Recognising what a fused region's body computes, so that a backend can
run it with one kernel of its own (torch: `torch/lowering_fused.py`, TVM:
`tvm/lowering_seq.py`).  Pure IR reading: no backend library is imported.

Each matcher reads a closed body graph (`ops/fused.py`) and returns what the
fused call needs, or None when the body is anything else; a None sends the
region down the decomposition path (the body, op by op), so a matcher only
has to be right when it says yes.  They accept the op itself (a body that is
one `layer_norm` node) and the pattern written out, in the forms the fusion
pass and hand-written specs produce:

    layernorm  d = x - mean(x, trailing axes); v = mean(d*d) (or square, pow 2,
               var(correction=0)); d * rsqrt(v + eps) or d / sqrt(v + eps);
               then optionally * gamma and + beta
    softmax    e = exp(x - max(x, a)); e / sum(e, a)      (the stable form only)
    log_softmax  (x - max) - log(sum(exp(x - max)))  or  x - logsumexp(x, a)
    gelu       x * 0.5 * (1 + erf(x / sqrt 2)), factors in any order;
               x * 0.5 * (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))

Constants are 0-d `full` nodes, inside the body or as an operand of the
fused node made outside it (`const_of`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from ..compiler.ir import Graph, Node, Value

_REL = 1e-6     # a written-out constant (sqrt(2/pi), 1/sqrt(2)) may be rounded to float32


def const_of(v: Value | None, outer: dict[int, Value]) -> float | None:
    """The value of a 0-d constant (a `full` node), looking through a body input
    to the fused node's operand (`outer`: body input id -> operand)."""
    if v is None:
        return None
    v = outer.get(v.id, v)
    p = v.producer
    if p is None or p.op.name != "full" or tuple(p.attrs["shape"]) != ():
        return None
    val = p.attrs["value"]
    return float(val) if isinstance(val, (int, float)) and not isinstance(val, bool) else None


def _close(a: float | None, b: float) -> bool:
    return a is not None and math.isclose(a, b, rel_tol=_REL, abs_tol=0.0)


def _op(v: Value | None, *names: str) -> Node | None:
    p = v.producer if v is not None else None
    return p if p is not None and p.op.name in names else None


def _axes(node: Node, rank: int) -> tuple[int, ...] | None:
    a = node.attrs.get("axis")
    if a is None:
        return tuple(range(rank))
    a = tuple(a) if isinstance(a, (list, tuple)) else (a,)
    return tuple(sorted(int(x) % rank for x in a))


def _single_output(body: Graph) -> Value | None:
    return body.outputs[0] if len(body.outputs) == 1 and body.outputs[0].kind == "node" else None


# ---------------------------------------------------------------- layer norm
@dataclass
class LayerNormMatch:
    x: Value
    ndims: int               # how many trailing axes are normalised
    eps: float
    weight: Value | None
    bias: Value | None


def _pair(node: Node, pred):
    """(a, b) with pred(a) for a commutative binary node, else None."""
    a, b = node.inputs
    if pred(a):
        return a, b
    if pred(b):
        return b, a
    return None


def _trailing_vector(v: Value, x: Value, k: int) -> bool:
    """v broadcasts over x's leading axes and spans exactly its trailing k ones."""
    s, xs = tuple(v.type.shape), tuple(x.type.shape)
    core = s[len(s) - k:] if len(s) >= k else None
    return core == xs[len(xs) - k:] and all(d == 1 for d in s[:len(s) - k]) and len(s) <= len(xs) \
        and v.type.dtype == x.type.dtype


def _normalized(y: Value, outer) -> tuple[Value, int, float] | None:
    """(x, k, eps) when y = (x - mean(x)) / sqrt(var + eps) over x's trailing k axes."""
    core = _op(y, "mul", "div")
    if core is None:
        return None
    if core.op.name == "div":
        d, den = core.inputs
        root = _op(den, "sqrt")
    else:
        pr = _pair(core, lambda v: _op(v, "rsqrt") is not None)
        if pr is None:
            return None
        den, d = pr
        root = _op(den, "rsqrt")
    centred = _op(d, "sub")
    shift = _op(root.inputs[0], "add") if root is not None else None
    if centred is None or shift is None:
        return None
    x, mu = centred.inputs
    mean = _op(mu, "mean")
    pr = _pair(shift, lambda v: const_of(v, outer) is not None)
    if mean is None or mean.inputs[0] is not x or not mean.attrs["keepdims"] or pr is None:
        return None
    eps_v, var = pr
    rank = x.type.rank
    axes = _axes(mean, rank)
    k = len(axes)
    if axes != tuple(range(rank - k, rank)) or k == 0 or not _is_variance(var, d, x, axes, outer):
        return None
    return x, k, const_of(eps_v, outer)


def _is_variance(var: Value, d: Value, x: Value, axes, outer) -> bool:
    """var = mean of d squared over `axes` (keepdims), or var(x, axes, correction=0)."""
    red = _op(var, "mean", "var")
    if red is None or not red.attrs["keepdims"] or _axes(red, x.type.rank) != axes:
        return False
    if red.op.name == "var":
        return red.inputs[0] is x and red.attrs["correction"] == 0
    sq = red.inputs[0]
    if _op(sq, "square") is not None:
        return sq.producer.inputs[0] is d
    if _op(sq, "mul") is not None:
        return all(v is d for v in sq.producer.inputs)
    if _op(sq, "pow") is not None:
        base, e = sq.producer.inputs
        return base is d and const_of(e, outer) == 2.0
    return False


def match_layernorm(body: Graph, outer: dict[int, Value]) -> LayerNormMatch | None:
    y = _single_output(body)
    if y is None:
        return None
    node = y.producer
    if node.op.name == "layer_norm":
        x, w, b = (list(node.inputs) + [None, None])[:3]
        ns = node.attrs["normalized_shape"]
        k = len(ns) if isinstance(ns, (list, tuple)) else 1
        return LayerNormMatch(x, k, float(node.attrs["eps"]), w, b)
    weight = bias = None
    found = _normalized(y, outer)
    if found is None and node.op.name == "add":     # + beta
        for cand, other in (node.inputs, node.inputs[::-1]):
            inner = _normalized(cand, outer) or _scaled(cand, outer)
            if inner is not None:
                found, bias = inner, other
                break
    elif found is None:
        found = _scaled(y, outer)
    if found is None:
        return None
    if isinstance(found[0], tuple):
        (x, k, eps), weight = found
    else:
        x, k, eps = found
    for v in (weight, bias):
        if v is not None and not _trailing_vector(v, x, k):
            return None
    return LayerNormMatch(x, k, eps, weight, bias)


def _scaled(v: Value, outer):
    """((x, k, eps), gamma) when v = normalized(x) * gamma."""
    node = _op(v, "mul")
    if node is None:
        return None
    for cand, other in (node.inputs, node.inputs[::-1]):
        inner = _normalized(cand, outer)
        if inner is not None:
            return inner, other
    return None


# ---------------------------------------------------------------- softmax
@dataclass
class SoftmaxMatch:
    x: Value
    axis: int
    log: bool


def _centred(v: Value) -> tuple[Value, int] | None:
    """(x, axis) when v = x - max(x, axis, keepdims)."""
    sub = _op(v, "sub")
    if sub is None:
        return None
    x, m = sub.inputs
    mx = _op(m, "max")
    if mx is None or mx.inputs[0] is not x or not mx.attrs["keepdims"]:
        return None
    axes = _axes(mx, x.type.rank)
    return (x, axes[0]) if len(axes) == 1 else None


def _sum_exp(v: Value, d: Value, axis: int) -> bool:
    s = _op(v, "sum")
    if s is None or not s.attrs["keepdims"] or _axes(s, d.type.rank) != (axis,):
        return False
    e = _op(s.inputs[0], "exp")
    return e is not None and e.inputs[0] is d


def match_softmax(body: Graph, outer: dict[int, Value]) -> SoftmaxMatch | None:
    y = _single_output(body)
    if y is None:
        return None
    node = y.producer
    if node.op.name in ("softmax", "log_softmax"):
        return SoftmaxMatch(node.inputs[0], int(node.attrs["axis"]) % y.type.rank, node.op.name == "log_softmax")
    if node.op.name == "div":                        # exp(x - max) / sum(exp(x - max))
        e, s = node.inputs
        ex = _op(e, "exp")
        c = _centred(ex.inputs[0]) if ex is not None else None
        if c is not None and _op(s, "sum") is not None and s.producer.inputs[0] is e \
                and s.producer.attrs["keepdims"] and _axes(s.producer, e.type.rank) == (c[1],):
            return SoftmaxMatch(c[0], c[1], False)
        return None
    if node.op.name == "sub":
        a, b = node.inputs
        lse = _op(b, "logsumexp")                    # x - logsumexp(x, axis)
        if lse is not None and lse.inputs[0] is a and lse.attrs["keepdims"]:
            axes = _axes(lse, a.type.rank)
            return SoftmaxMatch(a, axes[0], True) if len(axes) == 1 else None
        c, lg = _centred(a), _op(b, "log")           # (x - max) - log(sum(exp(x - max)))
        if c is not None and lg is not None and _sum_exp(lg.inputs[0], a, c[1]):
            return SoftmaxMatch(c[0], c[1], True)
    return None


# ---------------------------------------------------------------- gelu
def _factors(v: Value, outer) -> tuple[list[Value], float]:
    """v as a product: (non-constant factors, product of the constants);
    a division by a constant counts as multiplying by its inverse."""
    c = const_of(v, outer)
    if c is not None:
        return [], c
    node = _op(v, "mul", "div")
    if node is None:
        return [v], 1.0
    fa, ca = _factors(node.inputs[0], outer)
    if node.op.name == "mul":
        fb, cb = _factors(node.inputs[1], outer)
        return fa + fb, ca * cb
    cb = const_of(node.inputs[1], outer)
    if cb is None or cb == 0:
        return [v], 1.0
    return fa, ca / cb


def _one_plus(v: Value, fn: str, outer) -> Value | None:
    """u when v = 1 + fn(u)."""
    add = _op(v, "add")
    if add is None:
        return None
    pr = _pair(add, lambda t: _close(const_of(t, outer), 1.0))
    inner = _op(pr[1], fn) if pr is not None else None
    return inner.inputs[0] if inner is not None else None


def _is_cubic_inner(u: Value, x: Value, outer) -> bool:
    """u = x + 0.044715 x^3."""
    add = _op(u, "add")
    if add is None:
        return False
    pr = _pair(add, lambda t: t is x)
    if pr is None:
        return False
    fs, c = _factors(pr[1], outer)
    if len(fs) == 1 and _op(fs[0], "pow") is not None:
        base, e = fs[0].producer.inputs
        fs = [base] * 3 if const_of(e, outer) == 3.0 else fs
    return len(fs) == 3 and all(f is x for f in fs) and _close(c, 0.044715)


def match_gelu(body: Graph, outer: dict[int, Value]) -> tuple[Value, str] | None:
    """(x, approximate) with approximate "none" (erf) or "tanh"."""
    y = _single_output(body)
    if y is None:
        return None
    if y.producer.op.name == "gelu":
        return y.producer.inputs[0], str(y.producer.attrs["approximate"])
    fs, c = _factors(y, outer)
    if len(fs) != 2 or not _close(c, 0.5):
        return None
    for x, rest in (fs, fs[::-1]):
        if x.kind != "input":
            continue
        u = _one_plus(rest, "erf", outer)
        if u is not None:
            ufs, uc = _factors(u, outer)
            if ufs == [x] and _close(uc, math.sqrt(0.5)):
                return x, "none"
        u = _one_plus(rest, "tanh", outer)
        if u is not None:
            ufs, uc = _factors(u, outer)
            if len(ufs) == 1 and _close(uc, math.sqrt(2.0 / math.pi)) and _is_cubic_inner(ufs[0], x, outer):
                return x, "tanh"
    return None
