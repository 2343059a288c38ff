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


def _node(v: Value | None, *ops: str) -> Node | None:
    p = getattr(v, "producer", None) if v is not None else None
    return p if p is not None and p.op.name in ops else None


def _const(v: Value | None):
    """The value of a scalar constant (`full` of shape ()), else None."""
    n = _node(v, "full")
    if n is None or tuple(n.attrs["shape"]) != ():
        return None
    return float(n.attrs["value"])


def _is(v: Value | None, value: float, rel: float = 1e-6) -> bool:
    c = _const(v)
    if c is None:
        return False
    if math.isinf(value) or value == 0:
        return c == value
    return abs(c - value) <= rel * abs(value)


def _pair(n: Node | None, first, second):
    """(a, b) with `first(a)` and `second(b)` true, trying both operand orders of a commutative `n`."""
    if n is None or len(n.inputs) != 2:
        return None
    a, b = n.inputs
    if first(a) and second(b):
        return a, b
    if first(b) and second(a):
        return b, a
    return None


def _factors(v: Value, stop: set, depth: int = 2) -> list:
    """The leaves of a `mul` tree at `v` (a stop value or a scalar constant is a leaf)."""
    n = _node(v, "mul")
    if v.id in stop or _const(v) is not None or n is None or depth == 0:
        p = _node(v, "pow")
        if p is not None and p.inputs[0].id in stop and _is(p.inputs[1], 3.0):
            return [p.inputs[0]] * 3
        return [v]
    return _factors(n.inputs[0], stop, depth - 1) + _factors(n.inputs[1], stop, depth - 1)


def _is_product(v: Value, x: Value, c: float, other: Value | None = None, n_x: int = 1) -> bool:
    """Whether `v` is `c * x^n_x [* other]` in any association."""
    stop = {x.id} | ({other.id} if other is not None else set())
    f = _factors(v, stop, 3)
    consts = [u for u in f if _const(u) is not None]
    rest = [u for u in f if _const(u) is None]
    want = [x.id] * n_x + ([other.id] if other is not None else [])
    return len(consts) == 1 and _is(consts[0], c) and sorted(u.id for u in rest) == sorted(want)


# ------------------------------------------------------------------ gelu
def _erf_arg(t: Value):
    """x for erf(x * sqrt(1/2)) or erf(x / sqrt(2))."""
    n = _node(t, "erf")
    if n is None:
        return None
    a = n.inputs[0]
    m = _pair(_node(a, "mul"), lambda u: _const(u) is None, lambda u: _is(u, math.sqrt(0.5)))
    if m is not None:
        return m[0]
    d = _node(a, "div")
    return d.inputs[0] if d is not None and _is(d.inputs[1], math.sqrt(2.0)) else None


def _tanh_arg(t: Value):
    """x for tanh(sqrt(2/pi) * (x + 0.044715 x^3))."""
    n = _node(t, "tanh")
    if n is None:
        return None
    m = _pair(_node(n.inputs[0], "mul"), lambda u: _node(u, "add") is not None,
              lambda u: _is(u, math.sqrt(2.0 / math.pi)))
    if m is None:
        return None
    add = _node(m[0], "add")
    for x, cube in (add.inputs, add.inputs[::-1]):
        if _const(x) is None and _is_product(cube, x, 0.044715, n_x=3):
            return x
    return None


def _gelu(n: Node):
    """(x, approximate) when the `mul` node `n` computes gelu(x)."""
    for v in _factors(n.outputs[0], set(), 2):    # (1 + erf(...)) may sit one product deeper
        add = _node(v, "add")
        if add is None:
            continue
        one_t = _pair(add, lambda u: _is(u, 1.0), lambda u: _node(u, "erf", "tanh") is not None)
        if one_t is None:
            continue
        t = one_t[1]
        x, approx = (_erf_arg(t), "none") if t.producer.op.name == "erf" else (_tanh_arg(t), "tanh")
        if x is not None and _is_product(n.outputs[0], x, 0.5, other=v):
            return x, approx
    return None


# ------------------------------------------------------------------ max with NaN
def _nan_max(v: Value):
    """The `max` node under `where(any-NaN, nan, max(x))` (`dlc export`'s NaN-propagating max), or v's own."""
    m = _node(v, "max")
    if m is not None:
        return m
    w = _node(v, "where")
    if w is None:
        return None
    cond, nan, m = w.inputs
    c = _const(nan)
    m = _node(m, "max")
    if m is None or c is None or not math.isnan(c):
        return None
    flag = _node(_node(cond, "cast").inputs[0] if _node(cond, "cast") else None, "max")
    isnan = _node(_node(flag.inputs[0], "cast").inputs[0] if flag and _node(flag.inputs[0], "cast") else None, "ne")
    x = m.inputs[0]
    if isnan is None or not (isnan.inputs[0] is x and isnan.inputs[1] is x) or flag.attrs["axis"] != m.attrs["axis"]:
        return None
    return m


def _guarded_max(v: Value, s: Value, axis: int):
    """Whether v = where(isinf(m), 0, m) for m = max(s, axis, keepdims) (the max of a masked row)."""
    w = _node(v, "where")
    if w is None or not _is(w.inputs[1], 0.0):
        return False
    m = _nan_max(w.inputs[2])
    if m is None or m.inputs[0] is not s or not _reduces(m, axis):
        return False
    cond = _node(w.inputs[0], "logical_or")
    if cond is None:
        return False
    infs = sorted(_const(e.inputs[1]) for e in (_node(c, "eq") for c in cond.inputs)
                  if e is not None and e.inputs[0] is w.inputs[2]) if all(
        _node(c, "eq") for c in cond.inputs) else []
    return infs == [-math.inf, math.inf]


def _reduces(n: Node, axis: int) -> bool:
    a = n.attrs["axis"]
    a = tuple(a) if isinstance(a, (tuple, list)) else (a,)
    r = n.inputs[0].type.rank
    return tuple(x % r for x in a) == (axis,) and bool(n.attrs["keepdims"])


# ------------------------------------------------------------------ index wrap
def _wrap(v: Value):
    """(i, n) when v = where(i < 0, i + n, i): an importer's negative-index wrap of a Gather."""
    w = _node(v, "where")
    if w is None:
        return None
    cond, added, i = w.inputs
    lt, add = _node(cond, "lt"), _node(added, "add")
    if lt is None or add is None or lt.inputs[0] is not i or not _is(lt.inputs[1], 0.0) or add.inputs[0] is not i:
        return None
    n = _const(add.inputs[1])
    return (i, n) if n is not None else None


def _needless_wrap(v: Value):
    """i when wrapping i is the identity: i is itself a wrap into [0, n) (a spec written from an import
    wraps its ids, and the Gather it exports wraps them again), or a non-negative arange."""
    hit = _wrap(v)
    if hit is None:
        return None
    i, n = hit
    inner = _wrap(i)
    if inner is not None and inner[1] == n:
        return i
    a = _node(i, "arange")
    if a is not None and isinstance(a.attrs["start"], int) and a.attrs["start"] >= 0 and a.attrs["step"] > 0:
        return i
    return None


# ------------------------------------------------------------------ attention
def _safe_softmax(v: Value):
    """s for `dlc export`'s softmax whose fully masked rows are zeros: exp(s - m') / where(d == 0, 1, d)."""
    d = _node(v, "div")
    if d is None:
        return None
    e, den = d.inputs
    ex = _node(e, "exp")
    sub = _node(ex.inputs[0], "sub") if ex is not None else None
    w = _node(den, "where")
    if sub is None or w is None or not _is(w.inputs[1], 1.0):
        return None
    s = sub.inputs[0]
    axis = s.type.rank - 1
    total = _node(w.inputs[2], "sum")
    eq = _node(w.inputs[0], "eq")
    if total is None or total.inputs[0] is not e or not _reduces(total, axis) or eq is None or \
            eq.inputs[0] is not total.outputs[0] or not _is(eq.inputs[1], 0.0):
        return None
    return s if _guarded_max(sub.inputs[1], s, axis) else None


def _causal(mask: Value) -> bool:
    """Whether `mask` is cast(tril(ones(Lq, Lk)), bool)."""
    c = _node(mask, "cast")
    t = _node(c.inputs[0], "tril") if c is not None else None
    if t is None or t.attrs.get("k", 0) != 0 or mask.type.rank != 2:
        return False
    ones = t.inputs[0]
    for _ in range(3):       # full(1) |> reshape |> expand
        if _is(ones, 1.0) or (_node(ones, "full") and ones.producer.attrs["value"] == 1):
            return True
        p = _node(ones, "expand", "reshape")
        if p is None:
            return False
        ones = p.inputs[0]
    return False


def _attention(n: Node):
    """(q, k, v, mask, causal, scale) when `matmul` node `n` is softmax(q @ k^T * c [+mask]) @ v."""
    p, v = n.inputs
    sm = _node(p, "softmax")
    if sm is not None:
        ax = sm.attrs["axis"]
        s, plain = (sm.inputs[0], True) if ax % p.type.rank == p.type.rank - 1 else (None, True)
    else:
        s, plain = _safe_softmax(p), False
    if s is None:
        return None
    mask, causal, scores = None, False, s
    w = _node(s, "where")
    if w is not None and not plain and _is(w.inputs[2], -math.inf) and w.inputs[0].type.dtype.numpy_name == "bool":
        mask, scores = w.inputs[0], w.inputs[1]
    elif not plain and _node(s, "add") is not None:
        scores, mask = s.producer.inputs
        if _node(scores, "mul") is None:
            scores, mask = mask, scores
    elif not plain:
        return None
    m = _pair(_node(scores, "mul"), lambda u: _node(u, "matmul") is not None, lambda u: _const(u) is not None)
    if m is None:
        return None
    q, kt = _node(m[0], "matmul").inputs
    tr = _node(kt, "transpose")
    r = kt.type.rank
    if tr is None or r < 2 or tuple(tr.attrs["axes"]) != tuple(range(r - 2)) + (r - 1, r - 2):
        return None
    k = tr.inputs[0]
    if not (q.type.rank == k.type.rank == v.type.rank) or q.type.dtype != k.type.dtype:
        return None
    if mask is not None and _causal(mask):
        mask, causal = None, True
    from .context import f32
    scale = _const(m[1])
    dk = q.type.shape[-1]
    if isinstance(dk, int) and np.float32(scale) == np.float32(1.0 / math.sqrt(dk)):
        scale = None
    elif q.type.dtype.numpy_name == "float32":
        scale = f32(scale)      # the shortest text of the float32 constant (0.3, not 0.30000001192092896)
    return q, k, v, mask, causal, scale


# ------------------------------------------------------------------ sinusoidal positions
def _table(v: Value, weights: dict):
    """The import-time value of a parameter (an initializer the importer kept as a weight)."""
    return weights.get(v.name) if v is not None and v.kind in ("param", "buffer") else None


def _positions_column(v: Value, weights: dict, length: int) -> bool:
    """Whether v is arange(length) as float64 in a column (length, 1)."""
    r = _node(v, "reshape", "unsqueeze")
    if r is None or tuple(v.type.shape) != (length, 1):
        return False
    src = r.inputs[0]
    want = np.arange(length, dtype=np.float64)
    t = _table(src, weights)
    if t is not None:
        return t.dtype == np.float64 and np.array_equal(t.reshape(-1), want)
    c = _node(src, "cast")
    a = _node(c.inputs[0], "arange") if c is not None else None
    return a is not None and src.type.dtype.numpy_name == "float64" and \
        (a.attrs["start"], a.attrs["stop"], a.attrs["step"]) == (0, length, 1)


def _sinusoidal(n: Node, weights: dict):
    """(length, dim) when `cast` node n is `dlc export`'s sinusoidal_positions: where(even, sin(a), cos(a))
    for a = positions / 10000^(2i/dim), every table checked against the formula."""
    w = _node(n.inputs[0], "where")
    if w is None or n.outputs[0].type.rank != 2:
        return None
    length, dim = n.outputs[0].type.shape
    sin, cos = _node(w.inputs[1], "sin"), _node(w.inputs[2], "cos")
    if not (isinstance(length, int) and isinstance(dim, int)) or sin is None or cos is None or \
            sin.inputs[0] is not cos.inputs[0]:
        return None
    d = _node(sin.inputs[0], "div")
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


def _params_read(g: Graph) -> set:
    from ...compiler.clone import node_uses
    return {v.id for n in g.walk() for v in node_uses(n) if v.kind in ("param", "buffer")} | \
        {v.id for v in g.outputs if v.kind in ("param", "buffer")}


def _drop_unused_params(g: Graph, weights: dict, read_before: set) -> None:
    """Remove the tables a rewrite consumed (read before it, by nothing after) from the graph and weights."""
    read = _params_read(g)
    for p in [p for p in g.params if p.id in read_before and p.id not in read]:
        g.params.remove(p)
        weights.pop(p.name, None)


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
        hit = _sinusoidal(n, weights)
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
        i = _needless_wrap(n.outputs[0])
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
    params, tables = _params_read(g), {}
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
        _drop_unused_params(g, weights, params)
    return counts
