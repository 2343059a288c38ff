"""A body's statements with names, parameter declarations and a return."""
from __future__ import annotations

from dataclasses import dataclass, field

from ...compiler.ir import Node, Value
from .loops import fold_loops, render_loop
from .body import (INF, Stmt, assign_layer_names, count_uses, extra_layer_params, hint_of, inline_scalars,
                   merge_chains, node_stmt, render_stmt)
from .names import NameAllocator
from .exprs import Call
from .text import KEYWORDS, identifier, is_ident, reserved_names

# ops that a person writes as a layer call: written otherwise, they are the fallback
_LAYERISH = {"conv1d", "conv2d", "conv_transpose2d", "batch_norm", "layer_norm", "group_norm", "embedding",
             "prelu", "rnn", "lstm", "gru", "linear"}


@dataclass
class BodyText:
    lines: list
    params: dict                 # spec name relative to the body's instance -> graph param name
    fallback: int = 0            # statements written by the fallback (param declarations included)
    layer_calls: int = 0
    names: dict = field(default_factory=dict)
    apps: int = 0                # block applications
    loops: int = 0


@dataclass
class BodySpec:
    """What to write: `nodes` in order reading `inputs` (value, variable) and
    returning `outputs`; `prefix` is the graph-param path of the instance the
    body belongs to ("" for the model); `out_names` fixes the returned variables."""

    nodes: list
    inputs: list
    outputs: list
    prefix: str = ""
    out_names: list | None = None
    indent: str = "    "
    items: list | None = None    # nodes and block applications (`App`), in place of `nodes`
    graph_params: dict = field(default_factory=dict)   # name -> Value of every graph parameter
    cells: dict = field(default_factory=dict)    # scan cell blocks written so far (shared by all bodies)
    return_pattern: str = ""     # how the returned values nest ("{2}, ({0}, {1})"), flat when empty
    param_uses: dict = field(default_factory=dict)   # param id -> readers in the whole graph
    tied: frozenset = frozenset()    # param ids the fallback reads somewhere (`layers.tied_params`)


def _declared_params(stmts, inputs=()) -> list[Value]:
    """The weights a statement reads by name.  One a layer call also owns (a deduplicated constant
    that is a layer's bias and another op's operand) is declared too: `copies` then fills both."""
    out, seen = [], {v.id for v, _ in inputs}
    for e in (e for st in stmts for a in (st.loop or [st]) for e in a.stages):
        for v in e.values():
            if v.kind in ("param", "buffer") and v.id not in seen:
                seen.add(v.id)
                out.append(v)
    return out


def _statements(spec: BodySpec, reserved: frozenset, uses: dict, inline: dict) -> list:
    """The body's statements: block applications, scans, nodes; then chains and loops."""
    stmts = []
    for it in (spec.items if spec.items is not None else spec.nodes):
        if not isinstance(it, Node):
            stmts.append(it.stmt())
        elif it.op.name == "scan":
            from .scan import scan_stmt
            stmts.append(scan_stmt(it, spec, reserved))
        elif not (it.outputs and it.outputs[0].id in inline):
            st = node_stmt(it, {**uses, **spec.param_uses}, spec.tied)   # a weight shared anywhere is no layer's
            st.fallback = st.fallback and it.op.name in _LAYERISH
            stmts.append(st)
    outset = {v.id for v in spec.outputs}
    return fold_loops(merge_chains(stmts, uses, outset), uses, outset)


def _last_uses(stmts: list, outputs: list) -> dict:
    last_use = {}
    for i, st in enumerate(stmts):
        for a in (st.loop or [st]):
            for e in a.stages:
                for v in e.values():
                    last_use[v.id] = i
    for v in outputs:
        last_use[v.id] = INF
    return last_use


def _output_names(spec: BodySpec, stmts: list, reserved: frozenset) -> tuple[dict, dict]:
    """(value id -> the output name its variable takes, output index -> a name bound by `name = value`)
    for the returned values: a model's outputs are named by the variables it returns."""
    fixed, aliases, taken = {}, {}, set()
    out_names = spec.out_names or [None] * len(spec.outputs)
    defined = {t.id for st in stmts for t in st.targets}
    for i, (v, nm) in enumerate(zip(spec.outputs, out_names)):
        if nm is None:
            continue
        if not (is_ident(nm) and nm not in reserved and nm not in taken):
            base, k = identifier(nm, "output"), 1
            nm = base
            while nm in reserved or nm in taken:
                nm, k = f"{base}_{k}", k + 1
        taken.add(nm)
        if v.id in defined and v.id not in fixed:
            fixed[v.id] = nm
        else:
            aliases[i] = nm
    return fixed, aliases


def _declare(spec: BodySpec, stmts: list, decls: list, alloc: NameAllocator, mapping: dict) -> list[str]:
    """`param`/`buffer` lines for the weights the fallback reads."""
    # a declaration may take a builtin's name the body never calls (a table named `embedding`)
    called = {e.fn.split("(")[0] for st in stmts for a in (st.loop or [st]) for e in a.stages if isinstance(e, Call)}
    called |= {a.app.block for st in stmts for a in st.loop}
    blocked = (alloc.reserved - (reserved_names() - KEYWORDS)) | called
    lines = []
    for p in decls:
        rel = p.name[len(spec.prefix) + 1:] if spec.prefix and p.name.startswith(spec.prefix + ".") else p.name
        base = identifier(rel, "p")
        nm, k = base, 1
        while nm in blocked or nm in alloc.holder:
            nm, k = f"{base}_{k}", k + 1
        alloc.declare(p.id, nm)
        blocked.add(nm)
        mapping[nm] = p.name
        lines.append(f"{spec.indent}{'buffer' if p.kind == 'buffer' else 'param'} {nm}: {p.type}")
    return lines


def write_body(spec: BodySpec, reserved: frozenset) -> BodyText:
    items = spec.items if spec.items is not None else spec.nodes
    uses = count_uses(items, spec.outputs)
    inline = inline_scalars([n for n in items if isinstance(n, Node)], uses)
    stmts = _statements(spec, reserved, uses, inline)
    used_layer_names = {st.app.rel for st in stmts for st in (st.loop or [st]) if st.app is not None}
    mapping = assign_layer_names(stmts, spec.prefix, used_layer_names)      # spec name -> graph name
    for st in stmts:
        for a in (st.loop or [st]):
            mapping.update(a.params)
    mapping.update(extra_layer_params(stmts, spec.graph_params, spec.prefix))
    decls = _declared_params(stmts, spec.inputs)

    fixed, aliases = _output_names(spec, stmts, reserved)
    last_use = _last_uses(stmts, spec.outputs)
    alloc = NameAllocator(reserved, last_use, fixed)
    for v, nm in spec.inputs:
        alloc.holder[nm] = v.id
        alloc.names[v.id] = nm
        alloc.reserved.discard(nm)
    lines = _declare(spec, stmts, decls, alloc, mapping)
    fallback = len(lines)

    def name(v: Value) -> str:
        return inline[v.id] if v.id in inline else alloc.names[v.id]

    ind = spec.indent
    for i, st in enumerate(stmts):
        if st.loop:
            lines += render_loop(st, alloc, name, ind, i)
            continue
        first = next(iter(st.stages[0].values()), None) if st.stages else None
        hint = hint_of(st, alloc.names, branch=first is not None and last_use.get(first.id, -1) > i)
        tnames = []
        for k, t in enumerate(st.targets):
            h = st.hints[k] if st.hints and st.hints[k] else hint if k == 0 else f"{hint}_{k}"
            tnames.append(alloc.bind(t.id, h, i))
        lines += render_stmt(st, st.pattern.format(*tnames) if st.pattern else tnames[0], name, ind)
        fallback += int(st.fallback)
    for i, nm in aliases.items():
        lines.append(f"{ind}{nm} = {name(spec.outputs[i])}  # {spec.outputs[i].type}")
    rets = [aliases[i] if i in aliases else name(v) for i, v in enumerate(spec.outputs)]
    lines.append(f"{ind}return {spec.return_pattern.format(*rets) if spec.return_pattern else ', '.join(rets)}")
    layer_calls = sum(len(st.layers) for st in stmts)
    apps = sum(len(st.loop) or (st.app is not None) for st in stmts)
    return BodyText(lines, mapping, fallback, layer_calls, alloc.names, apps, sum(bool(st.loop) for st in stmts))


__all__ = ["BodySpec", "BodyText", "write_body", "extra_layer_params", "Stmt"]
