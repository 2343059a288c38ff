"""One body (a model's or a block's) as `.dln` statements.

Statements come in node order.  A node is written as a layer call when its
parameters are its own (`layers.py`), else by the fallback (`ops.py`); a
run of single-use results feeding the next node's first operand becomes one
`|>` chain; a scalar constant feeding an operator is written inline as a
literal; every statement ends with the type of what it binds.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from ...compiler.ir import Node, Value
from . import ops as O
from .exprs import Call
from .layers import EXTRA_ROLES, layer_path, recognise
from .text import is_ident, layer_name, lit

INF = 1 << 60
_NUMBER_TAKERS = set(O.INFIX) | {"where", "maximum", "minimum"}


@dataclass
class Stmt:
    nodes: list                       # the IR nodes it writes, in order
    stages: list                      # Expr per stage; stage k > 0 pipes stage k-1's result
    targets: list                     # the values it binds
    pattern: str = ""                 # the left-hand side with {i} for targets[i] ("{0}, ({1}, {2})")
    layers: list = field(default_factory=list)   # (stage index, LayerCall, spec name)
    fallback: bool = False
    hint: str = ""
    comment: str = ""                 # a note before the statement
    app: object = None                # an `App` (block application) this statement writes
    params: dict = field(default_factory=dict)   # spec name -> graph param, for a block application
    loop: list = field(default_factory=list)     # the application statements a `for` loop folds
    hints: list = field(default_factory=list)    # a name hint per target, when the statement knows better

    @property
    def result(self) -> Value:
        return self.targets[0]


def reads(item) -> list:
    """The values a node or a block application reads."""
    if isinstance(item, Node):
        return [v for v in list(item.inputs) + list(extra_inputs(item)) if v is not None]
    return list(item.inputs)


def count_uses(items, outputs, extra=()) -> dict:
    uses: dict[int, int] = {}
    for n in items:
        for v in reads(n):
            uses[v.id] = uses.get(v.id, 0) + 1
    for v in list(outputs) + list(extra):
        uses[v.id] = uses.get(v.id, 0) + 1
    return uses


def extra_inputs(n: Node):
    """Values a node reads besides its operands: a scan body's captures."""
    if n.body is not None:
        from ...compiler.ir import free_values
        return free_values(n.body)
    return ()


def inline_scalars(nodes, uses) -> dict:
    """value id -> literal for each scalar constant written inline (`0.5 * x`): every reader is an
    operator taking a number (an exporter's constant shared by several operators is written at each)."""
    consumers = {}
    for n in nodes:
        for v in n.inputs:
            if v is not None:
                consumers.setdefault(v.id, []).append(n)
    out = {}
    for n in nodes:
        if n.op.name != "full" or n.attrs["shape"] != ():
            continue
        v = n.outputs[0]
        readers = consumers.get(v.id, [])
        if not readers or len(readers) != uses.get(v.id, 0) or not all(_takes_number(u, v) for u in readers):
            continue
        val = n.attrs["value"]
        if isinstance(val, float) and math.isnan(val):
            continue
        dt = v.type.dtype
        out[v.id] = lit(float(val)) if dt.is_float else lit(bool(val)) if dt.numpy_name == "bool" else lit(int(val))
    return out


def _takes_number(user: Node, v: Value) -> bool:
    """Whether `user` reads the scalar `v` as a literal would be read (same dtype as its other operand)."""
    if user.op.name not in _NUMBER_TAKERS or (user.op.name == "where" and user.inputs[0] is v):
        return False
    others = [o for o in user.inputs if o is not None and o is not v]
    if not others or any(o.type.dtype != v.type.dtype for o in others):
        return False
    return not any(o.producer is not None and o.producer.op.name == "full" and o.type.rank == 0 for o in others)


def node_stmt(node: Node, uses: dict, tied=frozenset()) -> Stmt:
    lc = recognise(node, uses, tied)
    outs = node.outputs
    if lc is not None:
        st = Stmt([node], [lc.expr()], [outs[0]], layers=[(0, lc, None)])
        if node.op.name == "lstm":
            st.targets, st.pattern, st.hints = list(outs), "{0}, ({1}, {2})", [None, "h_n", "c_n"]
        elif node.op.name in ("rnn", "gru"):
            st.targets, st.pattern, st.hints = list(outs), "{0}, {1}", [None, "h_n"]
        return st
    expr = O.write(node)
    st = Stmt([node], [expr], [outs[0]], fallback=True)
    if node.op.name == "split" or len(outs) > 1 and node.op.name not in ("batch_norm",):
        st.targets = list(outs)
        st.pattern = ", ".join("{%d}" % i for i in range(len(outs)))
        if len(outs) == 1:
            st.pattern += ","
    return st


def chainable(prev: Stmt, nxt: Stmt, uses: dict, outputs: set) -> bool:
    """Whether `nxt` may continue `prev` as a `|>` stage."""
    if prev.pattern or nxt.pattern or prev.app is not None or nxt.app is not None:
        return False
    v = prev.result
    last = prev.nodes[-1]
    if uses.get(v.id, 0) != 1 or v.id in outputs:
        return False
    if any(uses.get(o.id, 0) for o in last.outputs[1:]):
        return False
    e = nxt.stages[0]
    if not isinstance(e, Call) or not e.args or e.args[0] is not v:
        return False
    return sum(1 for x in e.values() if x is v) == 1


def _fold_index(prev: Stmt, st: Stmt) -> bool:
    """`x[:, 0:1] |> squeeze(1)` is `x[:, 0]`: fold the squeeze into the index."""
    from .exprs import Index
    last, e = prev.stages[-1], st.stages[0]
    if not (isinstance(last, Index) and isinstance(e, Call) and e.fn == "squeeze" and len(e.args) == 2):
        return False
    ax = int(e.args[1])
    if ax >= len(last.items):
        return False
    b, _, rest = last.items[ax].partition(":")
    stop = rest.split(":")[0]
    if ":" in rest or not b.lstrip("-").isdigit():
        return False
    if not ((stop == "" and b == "-1") or (stop.lstrip("-").isdigit() and int(stop) == int(b) + 1)):
        return False
    last.items[ax] = b
    while last.items and last.items[-1] == ":":
        last.items.pop()
    return True


def merge_chains(stmts: list, uses: dict, outputs: set) -> list:
    out: list[Stmt] = []
    for st in stmts:
        if out and chainable(out[-1], st, uses, outputs):
            prev = out[-1]
            if _fold_index(prev, st):
                prev.nodes += st.nodes
                prev.targets = st.targets
                continue
            base = len(prev.stages)
            prev.layers += [(base + i, lc, nm) for i, lc, nm in st.layers]
            prev.stages += st.stages
            prev.nodes += st.nodes
            prev.targets = st.targets
            prev.fallback = int(prev.fallback) + int(st.fallback)
            continue
        out.append(st)
    return out


def assign_layer_names(stmts, prefix: str, used: set) -> dict:
    """Give each layer call its `name=`: its parameters' path relative to
    `prefix` (the instance the body belongs to).  Returns graph param name ->
    spec-relative name for every parameter a layer call owns."""
    mapping = {}
    for st in stmts:
        for k, (i, lc, _) in enumerate(st.layers):
            path = layer_path(lc)
            if prefix and path.startswith(prefix + "."):
                path = path[len(prefix) + 1:]
            name = layer_name(path)
            base, j = name, 1
            while name in used:
                name = f"{base}_{j}"
                j += 1
            used.add(name)
            st.layers[k] = (i, lc, name)
            lc.call.kwargs.append(("name", lit(name)))
            for p, role in lc.roles:
                mapping[f"{name}.{role}"] = p.name
    return mapping


def extra_layer_params(stmts, graph_params: dict, prefix: str) -> dict:
    """Buffers a layer call creates that its op does not read (batch norm's
    `num_batches_tracked`), matched by name to the graph's."""
    out = {}
    for st in stmts:
        for _, lc, name in st.layers:
            for role in EXTRA_ROLES.get(lc.call.fn, ()):
                gname = layer_path(lc) + "." + role
                if gname in graph_params:
                    out[f"{name}.{role}"] = gname
    return out


def layer_hint(name: str) -> str:
    """`layer1.0.conv1` -> conv1; `features.3` -> features_3."""
    from .text import reserved_names
    for part in reversed(name.split(".")):
        if is_ident(part) and not part[0].isdigit() and part not in reserved_names():
            return part
    return "x"


_OP_HINTS = {"full": "fill", "arange": "positions", "randn": "noise", "uniform": "noise",
             "sinusoidal_positions": "pe"}


def hint_of(st: Stmt, names: dict, branch: bool = False) -> str:
    """The name a statement's result would like: the trunk `x` for a chain starting with a layer
    (unless it branches off a value still needed: then the layer's name) or continuing `x`, a layer's
    own name, else the name of what it continues."""
    if st.hint:
        return st.hint
    if st.nodes and st.nodes[0].op.name in _OP_HINTS and not st.layers:
        return _OP_HINTS[st.nodes[0].op.name]
    if st.layers and not branch and (len(st.stages) > 1 and st.layers[0][0] == 0 or len(st.layers) > 1):
        return "x"          # a chain of layers is the trunk
    if st.layers:
        return layer_hint(st.layers[0][2])
    bases = [re.sub(r"_\d+$", "", names[v.id]) for v in st.stages[0].values() if v.id in names]
    if "x" in bases:
        return "x"
    return bases[0] if bases else "x"


def render_stmt(st: Stmt, lhs: str, name, indent: str, width: int = 100) -> list[str]:
    parts = []
    for i, e in enumerate(st.stages):
        parts.append(e.render(name, skip_first=True) if i and isinstance(e, Call) else e.render(name))
    types = ", ".join(str(v.type) for v in st.targets)
    head = f"{indent}{lhs} = " if lhs else f"{indent}"
    one = head + " |> ".join(parts)
    lines = [f"{indent}# {st.comment}"] if st.comment else []
    if len(one) + len(types) + 4 <= width or len(parts) == 1:
        lines.append(f"{one}  # {types}")
        return lines
    lines.append(head + parts[0])
    cur = indent + "    |> " + parts[1]
    for p in parts[2:]:
        if len(cur) + len(p) + 4 > width - len(types) - 4:
            lines.append(cur)
            cur = indent + "    |> " + p
        else:
            cur += " |> " + p
    lines.append(f"{cur}  # {types}")
    return lines
