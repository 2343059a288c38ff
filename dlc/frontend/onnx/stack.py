"""Stacked recurrent layers: ONNX's LSTM/GRU/RNN has one layer, so a 2-layer `lstm(x, 128,
layers=2, name="lstm")` exports as two LSTM nodes (dlc export and torch.onnx alike).  Imported
one by one they are two one-layer ops; the spec read back would say two layers where the
original said `layers=2`.  When the second node continues the first (this module):

- its input is the first's output, re-laid-out and back (Y [T, dirs, N, H] -> [T, N, dirs*H]:
  reshapes and transposes that compose to the identity);
- its parameters are the next layer's of the same prefix (`lstm.weight_ih_l1` after
  `lstm.weight_ih_l0`), same kind and attributes;
- its initial states (if any) are the next rows of the same tensor as the first's;
- nothing else reads the first's output, nor (yet) its final states,

the two become one op with `num_layers` + 1 on the original input, states and parameters.  The
final states of each layer are rows of the stacked op's (`h_n[0:2]`...), and a concatenation of
all of them in order (what the export writes) folds back to the stacked op's own (fold.collapse).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ...compiler.ir import Layer, Node, Value
from . import fold

_ROLES = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")


@dataclass
class Stack:
    node: Node                      # the IR op (num_layers = layers)
    prefix: str
    layers: int
    dirs: int
    # per state: the ONNX names bound to rows lo:hi of the op's final state
    finals: list[list[tuple[str, int, int]]] = field(default_factory=list)


def names(prefix: str, layer: int, dirs: int) -> list[str]:
    return [f"{prefix}.{r}_l{layer}{'_reverse' if d else ''}" for d in range(dirs) for r in _ROLES]


def _stacks(cx) -> dict[int, Stack]:
    return cx.root.__dict__.setdefault("recurrent_stacks", {})


def remember(cx, onnx_node, op: Node, dirs: int) -> None:
    """A one-layer recurrent op just imported (its params named `<prefix>.<role>_l0`)."""
    ws = op.inputs[-4 * dirs:]
    if not all(w is not None and w.kind == "param" for w in ws):
        return
    prefix = ws[0].name.rsplit(".", 1)[0]
    if [w.name for w in ws] != names(prefix, 0, dirs):
        return
    finals = [[(onnx_node.output[1 + i], 0, dirs)] if len(onnx_node.output) > 1 + i and onnx_node.output[1 + i]
              else [] for i in range(len(op.outputs) - 1)]
    _stacks(cx)[op.outputs[0].id] = Stack(op, prefix, 1, dirs, finals)


def try_stack(cx, onnx_node, kind: str, x: Value, states: list, weights: list, attrs: dict):
    """The stacked op continuing an earlier one with this layer, or None (then import it alone)."""
    src = _chain_source(cx, x)
    st = _stacks(cx).get(src.id) if src is not None else None
    if st is None or st.node.op.name != kind or not any(n is st.node for n in cx.g.nodes):
        return None     # (an op of another graph: a Loop body continuing the model's layer stays apart)
    a = st.node.attrs
    if any(a.get(k) != v for k, v in attrs.items() if k != "num_layers") or st.dirs != (2 if attrs["bidirectional"] else 1):
        return None
    if [w.name for w in weights] != names(st.prefix, st.layers, st.dirs):
        return None
    ns = len(states)
    merged_states = _stacked_states(cx, st, list(st.node.inputs[1:1 + ns]), states)
    if merged_states is False:
        return None
    if any(_has_users(cx, cx.env.get(n)) for per in st.finals for n, _, _ in per):
        return None
    old = st.node
    ins = [old.inputs[0]] + merged_states + list(old.inputs[1 + ns:]) + list(weights)
    outs = cx.op(kind, *ins, **{**attrs, "num_layers": st.layers + 1})
    outs = list(outs) if isinstance(outs, tuple) else [outs]
    new = outs[0].producer
    # the earlier layers' final states: rows of the stacked op's
    for i, per in enumerate(st.finals):
        for name, lo, hi in per:
            cx.env[name] = _rows(cx, outs[1 + i], lo, hi)
    lo, hi = st.layers * st.dirs, (st.layers + 1) * st.dirs
    finals = [per + ([(onnx_node.output[1 + i], lo, hi)] if len(onnx_node.output) > 1 + i and onnx_node.output[1 + i]
                     else []) for i, per in enumerate(st.finals)]
    del _stacks(cx)[src.id]
    _stacks(cx)[outs[0].id] = Stack(new, st.prefix, st.layers + 1, st.dirs, finals)
    g = cx.g
    g.layers = [la for la in g.layers if not any(o is old.outputs[0] for o in la.outputs)]
    g.layers.append(Layer(st.prefix, kind, old.span, [w.name for w in ins if w is not None and w.kind == "param"],
                          outs))
    return outs[0], [_rows(cx, f, lo, hi) for f in outs[1:]]


def _rows(cx, v: Value, lo: int, hi: int) -> Value:
    return fold.build(cx, fold.Rows(v, lo, hi))


def _stacked_states(cx, st: Stack, prev: list, cur: list):
    """The initial states of the stacked op: none for both, or the earlier rows joined with this
    layer's when they are consecutive rows of one tensor; False when they are not."""
    if all(s is None for s in prev + cur):
        return list(prev)
    if any(s is None for s in prev + cur):
        return False
    out = []
    for p, c in zip(prev, cur):
        rp, rc = fold.rows(p, 0, p.type.shape[0]), fold.rows(c, 0, c.type.shape[0])
        if rp.src is not rc.src or rp.hi != rc.lo:
            return False
        out.append(fold.join(cx, [rp, rc]))
    return out


def _chain_source(cx, x: Value) -> Value | None:
    """The earlier recurrent op's output `x` is, through re-layouts nothing else reads; else None."""
    v = identity_source(x, lambda u: u.id in _stacks(cx))
    if v is None:
        return None
    chain, u = [], x
    while u is not v:
        u = u.producer.inputs[0]
        chain.append(u)
    return v if not any(_users(cx, c) > 1 for c in chain) else None


def identity_source(x: Value, stop) -> Value | None:
    """The value v that `x` equals when x is v through reshapes and transposes composing to the
    identity, v the first value back for which stop(v) holds; else None."""
    steps, v = [], x
    while v.kind == "node" and v.producer.op.name in ("reshape", "transpose") and not stop(v):
        steps.append(v.producer)
        v = v.producer.inputs[0]
    if not stop(v) or not steps or tuple(x.type.shape) != tuple(v.type.shape):
        return None
    ops = [tuple(n.attrs["axes"]) if n.op.name == "transpose" else None for n in reversed(steps)]
    i = 0
    while i < len(ops) - 1:
        p, q = ops[i], ops[i + 1]
        if p is not None and q is not None:           # transpose(transpose(x, p), q)
            comp = tuple(p[j] for j in q)
            ops[i:i + 2] = [] if comp == tuple(range(len(comp))) else [comp]
            i = max(i - 1, 0)
        elif p is None and q is None:                 # reshape(reshape(x))
            ops[i:i + 2] = [None]
            i = max(i - 1, 0)
        else:
            i += 1
    return v if all(o is None for o in ops) else None


def drop_identity_relayouts(g) -> int:
    """A recurrent op's Y re-laid-out to ONNX's [T, dirs, N, H] and back by the next node
    (reshape, transpose, transpose, reshape): the op's own output.  Returns how many."""
    from ...compiler.passes.rewrite import replace_uses

    def recurrent(v):
        return v.kind == "node" and v.producer.op.name in ("lstm", "gru", "rnn") and v.index == 0
    mapping = {}
    for n in g.nodes:
        if n.op.name in ("reshape", "transpose"):
            src = identity_source(n.outputs[0], recurrent)
            if src is not None:
                mapping[n.outputs[0].id] = src
    replace_uses(g, mapping)
    return len(mapping)


def _users(cx, v: Value) -> int:
    """IR uses so far plus ONNX uses still to come of the names bound to v."""
    n = sum(1 for node in cx.g.walk() for i in node.inputs if i is v)
    later = sum(cx.uses.get(name, 0) for name, val in cx.env.items() if val is v)
    return max(n, later)


def _has_users(cx, v) -> bool:
    return isinstance(v, Value) and any(i is v for node in cx.g.walk() for i in node.inputs)
