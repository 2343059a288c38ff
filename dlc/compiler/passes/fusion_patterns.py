"""Written-out softmax, log-softmax, layer norm and GELU, recognised so the
fusion pass can make one region (kind `softmax`, `layernorm`, `gelu`) of each.

Each matcher takes the pattern's last node and returns the group of nodes
that computes it, or None.  A group is returned only when every value it
computes except the last is read by the group alone (so the region's one
result is the pattern's result), and only when the body is the function
its kind names, to rounding: a backend may lower the region with its own
call (`F.softmax`, `F.layer_norm`, `F.gelu`).  Softmax and layer norm are
matched on their structure; GELU on its structure and its values (the body
evaluated in float64 on sample points must equal GELU to 1e-12), since its
constants can be written in many ways (x/sqrt(2) or x*0.7071..., 0.5*x*... or
x*0.5*...).
"""
from __future__ import annotations

import math

import numpy as np

from ..ir import Node, Value
from ..ops.registry import ELEMENTWISE
from .fusion_util import Uses, absorb_constants, axes_of, fusable, producer, scalar_const, trailing


def _op(v: Value | None, *names: str) -> Node | None:
    p = producer(v)
    return p if p is not None and p.op.name in names else None


def _internal(group: list[Node], last: Node, uses: Uses) -> bool:
    ids = {id(n) for n in group}
    return all(uses.only_in(o, ids) for n in group if n is not last for o in n.outputs)


def _keep_reduce(n: Node | None, axes) -> bool:
    return n is not None and n.attrs.get("keepdims") is True and axes_of(n) == axes


def _max_shift(t: Value, axes) -> tuple[list[Node], Value]:
    """(nodes, x) for t = x - max(x, axes, keepdims); ([], t) otherwise."""
    sub = _op(t, "sub")
    if sub is not None:
        m = _op(sub.inputs[1], "max")
        if _keep_reduce(m, axes) and m.inputs[0] is sub.inputs[0]:
            return [m, sub], sub.inputs[0]
    return [], t


def match_softmax(last: Node, uses: Uses) -> list[Node] | None:
    """e / sum(e) with e = exp(x - max(x)) (or exp(x)); the same axes, kept."""
    if last.op.name != "div":
        return None
    e, s = last.inputs
    s_node, e_node = _op(s, "sum"), _op(e, "exp")
    if s_node is None or e_node is None or s_node.inputs[0] is not e:
        return None
    axes = axes_of(s_node)
    if not _keep_reduce(s_node, axes):
        return None
    shift, _ = _max_shift(e_node.inputs[0], axes)
    group = shift + [e_node, s_node, last]
    return group if _internal(group, last, uses) else None


def match_log_softmax(last: Node, uses: Uses) -> list[Node] | None:
    """t - log(sum(exp(t))) or t - logsumexp(t), t = x - max(x) or x."""
    if last.op.name != "sub":
        return None
    t, l = last.inputs
    lse = _op(l, "logsumexp")
    if lse is not None:
        red, inner = [lse], []
    else:
        log = _op(l, "log")
        s_node = _op(log.inputs[0], "sum") if log is not None else None
        e_node = _op(s_node.inputs[0], "exp") if s_node is not None else None
        if e_node is None:
            return None
        red, inner = [s_node], [e_node, log]
    head = inner[0] if inner else lse
    axes = axes_of(red[0])
    if head.inputs[0] is not t or not _keep_reduce(red[0], axes):
        return None
    shift, _ = _max_shift(t, axes)
    group = shift + inner[:1] + red + inner[1:] + [last]
    return group if _internal(group, last, uses) else None


def _variance(v: Value, d: Value, x: Value, mean: Node) -> list[Node] | None:
    """The nodes of var over `mean`'s axes: mean((x-m)^2) written with d, or var(x, correction=0)."""
    axes = axes_of(mean)
    var = _op(v, "var")
    if var is not None:
        ok = var.inputs[0] is x and _keep_reduce(var, axes) and var.attrs.get("correction") == 0
        return [var] if ok else None
    m2 = _op(v, "mean")
    if not _keep_reduce(m2, axes):
        return None
    sq = producer(m2.inputs[0])
    if sq is None:
        return None
    if (sq.op.name == "square" and sq.inputs[0] is d) or (sq.op.name == "mul" and sq.inputs[0] is d
                                                           and sq.inputs[1] is d):
        return [sq, m2]
    if sq.op.name == "pow" and sq.inputs[0] is d and scalar_const(sq.inputs[1]) == 2.0:
        return [sq, m2]
    return None


def match_layernorm(norm: Node, uses: Uses) -> list[Node] | None:
    """(x - mean) / sqrt(var + eps) or (x - mean) * rsqrt(var + eps) over
    trailing axes, then an optional `* gamma` and `+ beta`."""
    if norm.op.name not in ("div", "mul"):
        return None
    d, den = norm.inputs
    sub = _op(d, "sub")
    mean = _op(sub.inputs[1], "mean") if sub is not None else None
    x = sub.inputs[0] if sub is not None else None
    if mean is None or mean.inputs[0] is not x or not mean.attrs.get("keepdims"):
        return None
    if not trailing(axes_of(mean), x.type.rank):
        return None
    root = _op(den, "sqrt" if norm.op.name == "div" else "rsqrt")
    add = _op(root.inputs[0], "add") if root is not None else None
    if add is None or scalar_const(add.inputs[1]) is None:
        return None
    var = _variance(add.inputs[0], d, x, mean)
    if var is None:
        return None
    group = [mean, sub] + var + [add, root, norm]
    last = _affine_tail(norm, uses, mean)
    group += [n for n in last if n is not norm]
    return group if _internal(group, group[-1], uses) else None


def _affine_tail(norm: Node, uses: Uses, mean: Node) -> list[Node]:
    """`norm`, then its `* gamma` and `+ beta` (operands shaped like the normalised axes)."""
    out, cur = [norm], norm
    n_axes = len(axes_of(mean))
    for name in ("mul", "add"):
        y = cur.outputs[0]
        u = uses.sole_user(y)
        if u is None or u.op.name != name or sum(v is y for v in u.inputs) != 1:
            break
        w = u.inputs[1] if u.inputs[0] is y else u.inputs[0]      # gamma * y or y * gamma
        # a scalar constant is no gamma/beta: the kind's operands are x, gamma, beta
        if w.type.rank > n_axes or u.outputs[0].type != y.type or scalar_const(w) is not None:
            break
        out.append(u)
        cur = u
    return out


# --------------------------------------------------------------------- GELU
_EVAL = {
    "add": np.add, "sub": np.subtract, "mul": np.multiply, "div": np.divide, "pow": np.power,
    "tanh": np.tanh, "exp": np.exp, "sqrt": np.sqrt, "neg": np.negative, "square": np.square,
    "reciprocal": np.reciprocal, "rsqrt": lambda x: 1.0 / np.sqrt(x),
    "erf": np.vectorize(math.erf, otypes=[np.float64]),
    "sigmoid": lambda x: 1.0 / (1.0 + np.exp(-x)),
}
_SAMPLES = np.linspace(-5.0, 5.0, 41)
_GELU_ERF = _SAMPLES * 0.5 * (1.0 + _EVAL["erf"](_SAMPLES / math.sqrt(2.0)))
_GELU_TANH = 0.5 * _SAMPLES * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (_SAMPLES + 0.044715 * _SAMPLES ** 3)))


def _cone(last: Node, x: Value, uses: Uses) -> list[Node] | None:
    """The elementwise nodes on paths from `x` to `last`, if `x` and scalar
    constants are their only leaves; in graph order."""
    group, seen, stack = [], set(), [last]
    while stack:
        n = stack.pop()
        if id(n) in seen:
            continue
        if n.op.name not in _EVAL or len(n.outputs) != 1 or not fusable(n):
            return None
        seen.add(id(n))
        group.append(n)
        for v in n.inputs:
            if v is x or scalar_const(v) is not None:
                continue
            p = producer(v)
            if p is None or len(group) > 24:
                return None
            stack.append(p)
    pos = {id(n): i for i, n in enumerate(uses.g.nodes)}
    return sorted(group, key=lambda n: pos[id(n)])


def _evaluate(group: list[Node], x: Value) -> np.ndarray | None:
    env = {x.id: _SAMPLES}
    with np.errstate(all="ignore"):
        for n in group:
            args = [env[v.id] if v.id in env else scalar_const(v) for v in n.inputs]
            env[n.outputs[0].id] = np.asarray(_EVAL[n.op.name](*args), dtype=np.float64)
    return env[group[-1].outputs[0].id]


def match_gelu(last: Node, uses: Uses) -> list[Node] | None:
    """x * 0.5 * (1 + erf(x / sqrt 2)) or its tanh approximation, in any
    arrangement of its constants; `x` is the one non-constant leaf."""
    if last.op.name != "mul" or last.outputs[0].type.dtype.is_float is False:
        return None
    for x in _candidates(last):
        group = _cone(last, x, uses)
        if group is None or not any(n.op.name in ("erf", "tanh") for n in group):
            continue
        if not all(n.op.groups & {ELEMENTWISE} for n in group) or not _internal(group, last, uses):
            continue
        y = _evaluate(group, x)
        ref = _GELU_TANH if any(n.op.name == "tanh" for n in group) else _GELU_ERF
        if y is not None and np.all(np.abs(y - ref) <= 1e-12 * np.max(np.abs(ref))):
            return absorb_constants(group, uses)
    return None


def _candidates(last: Node) -> list[Value]:
    """Values a few elementwise steps above `last`: the possible GELU inputs."""
    out, frontier = [], [last]
    for _ in range(4):
        nxt = []
        for n in frontier:
            for v in n.inputs:
                if v is None or scalar_const(v) is not None or any(v is o for o in out):
                    continue
                out.append(v)
                p = producer(v)
                if p is not None and p.op.name in _EVAL:
                    nxt.append(p)
        frontier = nxt
    return out


PATTERNS = (("layernorm", match_layernorm), ("softmax", match_softmax), ("softmax", match_log_softmax),
            ("gelu", match_gelu))
