"""Import-time recognition of expanded ops: the chains an exporter writes for
an op ONNX (at the model's opset) lacks become that IR op again.

    x*0.5*(1 + erf(x*sqrt(1/2)))                                 -> gelu(x)
    x*0.5*(1 + tanh(sqrt(2/pi)*(x + 0.044715*x^3)))              -> gelu(x, approximate="tanh")
    where(isnan-max, nan, max(x))                                -> max(x)   (NaN-propagating max)
    where(i < 0, i + n, i) of an index already in [0, n)         -> i
    softmax(Q @ K^T * c [masked]) @ V                            -> scaled_dot_product_attention
    where(even, sin(pos / 10000^(2i/d)), cos(...)) (tables checked) -> sinusoidal_positions(L, d)

The last is `dlc export`'s scaled-dot-product attention: the scores scaled
by `c`, with a causal (`tril` of ones) or boolean mask written as
`where(mask, s, -inf)`, or a float mask added, then a softmax whose fully
masked rows give zeros (the guarded max/sum chain), or ONNX `Softmax` when
there is no mask.  Each rewrite computes what the chain computes (up to
float rounding), so the graph is the one the `.dln` frontend builds for the
same layers, and the decompiled spec reads `gelu(x)`, not seven statements.
Intermediate values that other nodes also read stay; the rest is pruned.
"""
from __future__ import annotations

import math

import numpy as np

from ...compiler.clone import prune
from ...compiler.ir import Graph, Node, Value
from ...compiler.ops import OPS
from .patterns_match import const_of, factors, is_const, is_product, node_of, pair
from .patterns_tables import drop_unused_params, needless_wrap, params_read, sinusoidal


# ------------------------------------------------------------------ gelu
def _erf_arg(t: Value):
    """x for erf(x * sqrt(1/2)) or erf(x / sqrt(2))."""
    n = node_of(t, "erf")
    if n is None:
        return None
    a = n.inputs[0]
    m = pair(node_of(a, "mul"), lambda u: const_of(u) is None, lambda u: is_const(u, math.sqrt(0.5)))
    if m is not None:
        return m[0]
    d = node_of(a, "div")
    return d.inputs[0] if d is not None and is_const(d.inputs[1], math.sqrt(2.0)) else None


def _tanh_arg(t: Value):
    """x for tanh(sqrt(2/pi) * (x + 0.044715 x^3))."""
    n = node_of(t, "tanh")
    if n is None:
        return None
    m = pair(node_of(n.inputs[0], "mul"), lambda u: node_of(u, "add") is not None,
              lambda u: is_const(u, math.sqrt(2.0 / math.pi)))
    if m is None:
        return None
    add = node_of(m[0], "add")
    for x, cube in (add.inputs, add.inputs[::-1]):
        if const_of(x) is None and is_product(cube, x, 0.044715, n_x=3):
            return x
    return None


def _gelu(n: Node):
    """(x, approximate) when the `mul` node `n` computes gelu(x)."""
    for v in factors(n.outputs[0], set(), 2):    # (1 + erf(...)) may sit one product deeper
        add = node_of(v, "add")
        if add is None:
            continue
        one_t = pair(add, lambda u: is_const(u, 1.0), lambda u: node_of(u, "erf", "tanh") is not None)
        if one_t is None:
            continue
        t = one_t[1]
        x, approx = (_erf_arg(t), "none") if t.producer.op.name == "erf" else (_tanh_arg(t), "tanh")
        if x is not None and is_product(n.outputs[0], x, 0.5, other=v):
            return x, approx
    return None


# ------------------------------------------------------------------ max with NaN
def _nan_max(v: Value):
    """The `max` node under `where(any-NaN, nan, max(x))` (`dlc export`'s NaN-propagating max), or v's own."""
    m = node_of(v, "max")
    if m is not None:
        return m
    w = node_of(v, "where")
    if w is None:
        return None
    cond, nan, m = w.inputs
    c = const_of(nan)
    m = node_of(m, "max")
    if m is None or c is None or not math.isnan(c):
        return None
    flag = node_of(node_of(cond, "cast").inputs[0] if node_of(cond, "cast") else None, "max")
    isnan = node_of(node_of(flag.inputs[0], "cast").inputs[0] if flag and node_of(flag.inputs[0], "cast") else None, "ne")
    x = m.inputs[0]
    if isnan is None or not (isnan.inputs[0] is x and isnan.inputs[1] is x) or flag.attrs["axis"] != m.attrs["axis"]:
        return None
    return m


def _guarded_max(v: Value, s: Value, axis: int):
    """Whether v = where(isinf(m), 0, m) for m = max(s, axis, keepdims) (the max of a masked row)."""
    w = node_of(v, "where")
    if w is None or not is_const(w.inputs[1], 0.0):
        return False
    m = _nan_max(w.inputs[2])
    if m is None or m.inputs[0] is not s or not _reduces(m, axis):
        return False
    cond = node_of(w.inputs[0], "logical_or")
    if cond is None:
        return False
    infs = sorted(const_of(e.inputs[1]) for e in (node_of(c, "eq") for c in cond.inputs)
                  if e is not None and e.inputs[0] is w.inputs[2]) if all(
        node_of(c, "eq") for c in cond.inputs) else []
    return infs == [-math.inf, math.inf]


def _reduces(n: Node, axis: int) -> bool:
    a = n.attrs["axis"]
    a = tuple(a) if isinstance(a, (tuple, list)) else (a,)
    r = n.inputs[0].type.rank
    return tuple(x % r for x in a) == (axis,) and bool(n.attrs["keepdims"])


# ------------------------------------------------------------------ attention
def _safe_softmax(v: Value):
    """s for `dlc export`'s softmax whose fully masked rows are zeros: exp(s - m') / where(d == 0, 1, d)."""
    d = node_of(v, "div")
    if d is None:
        return None
    e, den = d.inputs
    ex = node_of(e, "exp")
    sub = node_of(ex.inputs[0], "sub") if ex is not None else None
    w = node_of(den, "where")
    if sub is None or w is None or not is_const(w.inputs[1], 1.0):
        return None
    s = sub.inputs[0]
    axis = s.type.rank - 1
    total = node_of(w.inputs[2], "sum")
    eq = node_of(w.inputs[0], "eq")
    if total is None or total.inputs[0] is not e or not _reduces(total, axis) or eq is None or \
            eq.inputs[0] is not total.outputs[0] or not is_const(eq.inputs[1], 0.0):
        return None
    return s if _guarded_max(sub.inputs[1], s, axis) else None


def _causal(mask: Value) -> bool:
    """Whether `mask` is cast(tril(ones(Lq, Lk)), bool)."""
    c = node_of(mask, "cast")
    t = node_of(c.inputs[0], "tril") if c is not None else None
    if t is None or t.attrs.get("k", 0) != 0 or mask.type.rank != 2:
        return False
    ones = t.inputs[0]
    for _ in range(3):       # full(1) |> reshape |> expand
        if is_const(ones, 1.0) or (node_of(ones, "full") and ones.producer.attrs["value"] == 1):
            return True
        p = node_of(ones, "expand", "reshape")
        if p is None:
            return False
        ones = p.inputs[0]
    return False


def _attention(n: Node):
    """(q, k, v, mask, causal, scale) when `matmul` node `n` is softmax(q @ k^T * c [+mask]) @ v."""
    p, v = n.inputs
    sm = node_of(p, "softmax")
    if sm is not None:
        ax = sm.attrs["axis"]
        s, plain = (sm.inputs[0], True) if ax % p.type.rank == p.type.rank - 1 else (None, True)
    else:
        s, plain = _safe_softmax(p), False
    if s is None:
        return None
    mask, causal, scores = None, False, s
    w = node_of(s, "where")
    if w is not None and not plain and is_const(w.inputs[2], -math.inf) and w.inputs[0].type.dtype.numpy_name == "bool":
        mask, scores = w.inputs[0], w.inputs[1]
    elif not plain and node_of(s, "add") is not None:
        scores, mask = s.producer.inputs
        if node_of(scores, "mul") is None:
            scores, mask = mask, scores
    elif not plain:
        return None
    m = pair(node_of(scores, "mul"), lambda u: node_of(u, "matmul") is not None, lambda u: const_of(u) is not None)
    if m is None:
        return None
    q, kt = node_of(m[0], "matmul").inputs
    tr = node_of(kt, "transpose")
    r = kt.type.rank
    if tr is None or r < 2 or tuple(tr.attrs["axes"]) != tuple(range(r - 2)) + (r - 1, r - 2):
        return None
    k = tr.inputs[0]
    if not (q.type.rank == k.type.rank == v.type.rank) or q.type.dtype != k.type.dtype:
        return None
    if mask is not None and _causal(mask):
        mask, causal = None, True
    from .context import f32
    scale = const_of(m[1])
    dk = q.type.shape[-1]
    if isinstance(dk, int) and np.float32(scale) == np.float32(1.0 / math.sqrt(dk)):
        scale = None
    elif q.type.dtype.numpy_name == "float32":
        scale = f32(scale)      # the shortest text of the float32 constant (0.3, not 0.30000001192092896)
    return q, k, v, mask, causal, scale


# ------------------------------------------------------------------ driver
def _insert(g: Graph, anchor: Node, opname: str, inputs: list, attrs: dict) -> Value | None:
    """A new node computing what `anchor` did, placed where it was, with its span and scope."""
    from ...errors import ShapeError
    try:
        out = g.add_node(OPS[opname], inputs, attrs, anchor.span, anchor.scope)[0]
    except ShapeError:
        return None         # the operands do not fit the op after all: the chain stays
    node = g.nodes.pop()
    g.nodes.insert(g.nodes.index(anchor), node)
    return out


def _rewrite(g: Graph, n: Node, weights: dict, tables: dict) -> tuple[str, Value] | None:
    name = n.op.name
    if name == "cast" and weights:
        hit = sinusoidal(n, weights)
        if hit is not None:
            # one table per size: a model whose two lengths are bound to one size reads it twice
            key = ("sinusoidal_positions", hit, n.outputs[0].type.dtype.numpy_name)
            if key not in tables:
                tables[key] = _insert(g, n, "sinusoidal_positions", [],
                                      {"length": hit[0], "dim": hit[1], "dtype": key[2]})
            return "sinusoidal_positions", tables[key]
    if name == "mul":
        hit = _gelu(n)
        if hit is not None:
            return "gelu", _insert(g, n, "gelu", [hit[0]], {"approximate": hit[1]})
    elif name == "where":
        i = needless_wrap(n.outputs[0])
        if i is not None:
            return "index wrap", i
        m = _nan_max(n.outputs[0])
        if m is not None and m.outputs[0] is not n.outputs[0] and m.outputs[0].type == n.outputs[0].type:
            return "max", m.outputs[0]
    elif name == "matmul":
        hit = _attention(n)
        if hit is not None:
            q, k, v, mask, causal, scale = hit
            return "attention", _insert(g, n, "scaled_dot_product_attention", [q, k, v, mask],
                                        {"is_causal": causal, "scale": scale})
    return None


def recognise_patterns(g: Graph, weights: dict | None = None) -> dict[str, int]:
    """Rewrite the expanded chains of `g` (top level) in place; returns how many of each.  `weights`
    (the imported initializers by parameter name) lets a pattern check a table's values; the tables
    a rewrite leaves unread leave the graph and `weights`."""
    from ...compiler.passes.rewrite import replace_uses
    counts: dict[str, int] = {}
    weights = weights if weights is not None else {}
    params, tables = params_read(g), {}
    for n in list(g.nodes):
        hit = _rewrite(g, n, weights, tables)
        if hit is None:
            continue
        kind, new = hit
        if new is None or new.type != n.outputs[0].type:
            continue
        replace_uses(g, {n.outputs[0].id: new})
        counts[kind] = counts.get(kind, 0) + 1
    prune(g)            # the chains' dead remains (and an importer's, e.g. a MatMul's Transpose read as linear)
    if counts.get("sinusoidal_positions"):
        drop_unused_params(g, weights, params)
    return counts
