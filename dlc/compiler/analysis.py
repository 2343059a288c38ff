"""Counting: parameters and multiply-accumulates, per layer and in total.

MACs follow torchvision's convention: convolutions and matrix products only
(each op's `macs` rule says what it counts).  A scan body counts once per
step.
"""
from __future__ import annotations

from dataclasses import dataclass

from .dims import Dim, DimLike, prod
from .ir import Graph, Node


def _eval(d: DimLike, env: dict, span=None) -> int:
    try:
        return d.evaluate(env) if isinstance(d, Dim) else int(d)
    except KeyError as e:  # a symbolic dimension with neither an example size nor a --bind
        from ..errors import DlcValueError
        name = str(e.args[0]) if e.args else "a dimension"
        raise DlcValueError(f"cannot count operations: the size of {name} is unknown", span,
                            f"give the model an example size (`example {name.split(',')[0]} = 1`) "
                            f"or pass --bind {name.split(',')[0]}=1") from None


def node_macs(node: Node, env: dict) -> int:
    if node.op.name == "fused":      # a region does its body's work once
        return sum(node_macs(n, env) for n in node.body.nodes)
    if node.body is not None:        # a scan: its body once per step
        length = node.inputs[node.attrs["num_carry"]].type.shape[node.attrs["axis"]]
        return _eval(length, env, node.span) * sum(node_macs(n, env) for n in node.body.nodes)
    ins = [v.type if v is not None else None for v in node.inputs]
    outs = [v.type for v in node.outputs]
    return _eval(node.op.macs(ins, outs, node.attrs), env, node.span)


def total_macs(g: Graph, env: dict | None = None) -> int:
    env = {**{k: v for k, v in g.dims.items() if v is not None}, **(env or {})}
    return sum(node_macs(n, env) for n in g.nodes)


@dataclass
class Row:
    name: str
    kind: str
    shape: str
    params: int
    macs: int
    line: int | None


def layer_rows(g: Graph, env: dict | None = None) -> list[Row]:
    """One row per layer instance, plus rows for MAC-counting ops outside layers."""
    env = {**{k: v for k, v in g.dims.items() if v is not None}, **(env or {})}
    by_name = {p.name: p for p in g.params}
    scope_macs: dict[str, int] = {}

    def walk(nodes):
        for n in nodes:
            m = node_macs(n, env) if n.body is None else 0
            if n.body is not None:
                # a scan's body runs once per step, a fused region's once
                length = 1 if n.op.name == "fused" else \
                    _eval(n.inputs[n.attrs["num_carry"]].type.shape[n.attrs["axis"]], env)
                for bn in n.body.nodes:
                    scope_macs[bn.scope] = scope_macs.get(bn.scope, 0) + length * node_macs(bn, env)
            else:
                scope_macs[n.scope] = scope_macs.get(n.scope, 0) + m
    walk(g.nodes)
    rows = []
    claimed = set()
    # each scope's MACs go to the most specific layer over it (a layer at its block's own
    # name, `name=self`, does not also count its sibling layers)
    names = {rec.name for rec in g.layers}
    owner = {s: max((n for n in names if s == n or s.startswith(n + ".")), key=len, default=None)
             for s in scope_macs}
    for rec in g.layers:
        params = sum(_eval(prod(by_name[p].type.shape), env) for p in rec.params
                     if by_name[p].kind == "param" and by_name[p].param.trainable)
        macs = sum(v for s, v in scope_macs.items() if owner[s] == rec.name)
        claimed |= {s for s in scope_macs if owner[s] == rec.name}
        shape = ", ".join(str(o.type) for o in rec.outputs[:2]) + (" ..." if len(rec.outputs) > 2 else "")
        rows.append(Row(rec.name, rec.kind, shape, params, macs, rec.span.line if rec.span else None))
    # explicit params and ops outside any layer (hand-written cells, attention matmuls)
    layer_params = {p for rec in g.layers for p in rec.params}
    loose = [p for p in g.trainable_params() if p.name not in layer_params]
    for p in loose:
        rows.append(Row(p.name, "param", str(p.type), _eval(prod(p.type.shape), env), 0,
                        p.param.span.line if p.param.span else None))
    for s, m in scope_macs.items():
        if m and s not in claimed:
            rows.append(Row(s or "(model)", "ops", "", 0, m, None))
    return rows


def index_bound(g: Graph, v) -> int:
    """Largest safe value for random integers fed to input `v`: the smallest
    table anything indexes with it (embedding rows, the gathered axis, the
    classes of a class-index loss or of one_hot); 2 when nothing bounds it."""
    from .ops.registry import CLASS_INDEX_TARGET
    bound = None
    for n in g.walk():
        size = None
        if n.op.name == "embedding" and n.inputs and n.inputs[1] is not None:
            size = n.inputs[1].type.shape[0]
        elif n.op.name in ("index_select", "gather") and len(n.inputs) > 1:
            size = n.inputs[0].type.shape[n.attrs["axis"]]
        elif CLASS_INDEX_TARGET in n.op.groups and len(n.inputs) > 1:
            size = n.inputs[0].type.shape[1]
        elif n.op.name == "one_hot" and n.attrs.get("num_classes", -1) > 0:
            size = n.attrs["num_classes"]
        if size is not None:
            bound = size if bound is None else min(bound, size)
    return int(bound) if isinstance(bound, int) else 2

