"""Readable text for the IR: one node per line with its type and source."""
from __future__ import annotations

from .ir import Graph, Value


def _fmt_attr(v) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, (tuple, list)):
        return "(" + ", ".join(_fmt_attr(x) for x in v) + ("," if len(v) == 1 else "") + ")"
    if isinstance(v, str):
        return repr(v)
    if v is None:
        return "none"
    return str(v)


class Namer:
    def __init__(self):
        self.names: dict[int, str] = {}
        self.count = 0

    def __call__(self, v: Value | None) -> str:
        if v is None:
            return "none"
        if v.id not in self.names:
            if v.kind in ("input", "param", "buffer"):
                self.names[v.id] = v.name if v.kind == "input" else f"@{v.name}"
            else:
                self.names[v.id] = f"%{self.count}"
                self.count += 1
        return self.names[v.id]


def print_graph(g: Graph, namer: Namer | None = None, indent: str = "", show_loc: bool = True,
                marks: dict[int, str] | None = None) -> str:
    n = namer or Namer()
    lines = []
    sig = ", ".join(f"{n(v)}: {v.type}" for v in g.inputs)
    outs = ", ".join(str(v.type) for v in g.outputs)
    lines.append(f"{indent}graph {g.name}({sig}) -> ({outs}) {{  // mode={g.mode}")
    if namer is None:
        dims = ", ".join(f"{k}={v}" if v is not None else k for k, v in g.dims.items())
        if dims:
            lines.append(f"{indent}  dims {dims}")
        for p in g.params:
            kind = "buffer" if p.kind == "buffer" else "param"
            loc = f"  // {p.param.span}" if show_loc and p.param.span else ""
            lines.append(f"{indent}  {kind} {n(p)}: {p.type} = {p.param.init}{loc}")
    for i, node in enumerate(g.nodes):
        if marks and i in marks:
            lines.append(f"{indent}  // {marks[i]}")
        lhs = ", ".join(n(o) for o in node.outputs)
        args = ", ".join(n(v) for v in node.inputs)
        # the default layout is not printed: NCHW IR reads as it always did
        attrs = ", ".join(f"{k}={_fmt_attr(v)}" for k, v in node.attrs.items()
                          if not (k == "layout" and v == "NCHW"))
        types = ", ".join(str(o.type) for o in node.outputs)
        loc = f"  // {node.span}" + (f" {node.scope}" if node.scope else "") if show_loc and node.span else ""
        lines.append(f"{indent}  {lhs} = {node.op.name}({args})" + (f" {{{attrs}}}" if attrs else "") +
                     f" : {types}{loc}")
        if node.body is not None:
            lines.append(print_graph(node.body, n, indent + "    ", show_loc))
    for name, v in g.state_updates.items():
        lines.append(f"{indent}  update @{name} <- {n(v)}")
    rets = ", ".join(f"{n(v)}" for v in g.outputs)
    lines.append(f"{indent}  return {rets}")
    lines.append(f"{indent}}}")
    return "\n".join(lines)
