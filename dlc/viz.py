"""`dlc viz`: the IR drawn with graphviz.

    dlc viz specs/resnet18.dln -o resnet18.svg            # the graph the -O2 pipeline leaves
    dlc viz specs/lenet5.dln --before-after -o lenet5.svg  # -O0 and -O2 side by side

One box per node (its op, result shapes and `.dln` file:line); a fused region
or a scan body is a cluster holding its body's nodes; a layer's parameters and
buffers are one node per layer (`layer1.0.conv1`, `weight: 36,864 params`), so
that the weights do not drown the data flow; graph inputs, outputs and state
updates have shapes of their own.

The DOT text is written here (the graphviz Python package is not needed) and
graphviz's `dot` program renders it to .svg, .png or .pdf; `-o x.dot` writes
the text itself, which needs no graphviz at all.
"""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from .compiler.dims import add, prod
from .compiler.ir import Graph, Node, Value
from .compiler.printer import _fmt_attr as fmt_attr
from .errors import DlcError

# output suffix -> dot's -T format; None: the DOT text itself
FORMATS = {".svg": "svg", ".png": "png", ".pdf": "pdf", ".dot": None, ".gv": None}
# a layout that takes longer than this is not going to finish usefully
DOT_TIMEOUT_S = 300

_STYLE = {
    "node": 'shape=box, style="rounded,filled", fillcolor="#ffffff", color="#444444"',
    "input": 'shape=invhouse, style=filled, fillcolor="#cfe2ff", color="#1f4e99"',
    "output": 'shape=doubleoctagon, style=filled, fillcolor="#d1f0d1", color="#2d7a2d"',
    "params": 'shape=note, style=filled, fillcolor="#fff6cc", color="#9a7d0a"',
    "update": 'shape=cds, style=filled, fillcolor="#f6d5f7", color="#7a2d7a"',
}
_CLUSTER_FILL = {"fused": "#fde8d7", "scan": "#e6e0f8"}
_CONTROL_CHARS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


# escaping ------------------------------------------------------------------
def html_text(s) -> str:
    """`s` as text inside a graphviz HTML-like label: & < > and quotes as
    entities (braces and | are literal there, unlike in record labels), a
    backslash doubled (dot expands `\\N`, `\\G`... even in HTML labels, after
    decoding entities, so `&#92;` would not do), and control characters,
    which neither dot nor an SVG reader accepts, as '?'."""
    s = _CONTROL_CHARS.sub("?", str(s)).replace("\\", "\\\\")
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def quoted(s) -> str:
    """`s` as a DOT double-quoted string; a backslash is escaped too, since
    dot reads `\\N`, `\\l`... in one as escapes."""
    s = _CONTROL_CHARS.sub("?", str(s)).replace("\\", "\\\\").replace('"', '\\"')
    return '"' + s.replace("\r", "").replace("\n", "\\n") + '"'


def _label(title: str, *lines: str, small: str | None = None) -> str:
    parts = [f"<b>{html_text(title)}</b>"] + [html_text(x) for x in lines if x]
    if small:
        parts.append(f'<font point-size="9" color="#555555">{html_text(small)}</font>')
    return "<" + "<br/>".join(parts) + ">"


def _where(span) -> str:
    return f"{Path(span.file).name}:{span.line}" if span is not None else ""


def _count(n) -> str:
    return f"{n:,}" if isinstance(n, int) else str(n)


# the writer ----------------------------------------------------------------
class _DotWriter:
    """DOT statements for one or more graphs: node ids, the DOT node that
    stands for each IR value, and the edges (collected, written last, once)."""

    def __init__(self):
        self.lines: list[str] = []
        self.source: dict[int, str] = {}        # Value.id -> the DOT node drawing it
        self.edges: dict[tuple[str, str], None] = {}
        self.weight_nodes: set[str] = set()     # parameter groups: their edges are drawn lighter
        self.ids = 0

    def node(self, kind: str, label: str, indent: str, tooltip: str = "") -> str:
        self.ids += 1
        nid = f"n{self.ids}"
        tip = f", tooltip={quoted(tooltip)}" if tooltip else ""
        self.lines.append(f"{indent}{nid} [{_STYLE[kind]}, label={label}{tip}];")
        return nid

    def edge_from(self, v: Value | None, to: str) -> None:
        if v is not None and v.id in self.source:
            self.edges[(self.source[v.id], to)] = None

    def cluster(self, label: str, fill: str, indent: str, tooltip: str = "") -> None:
        self.ids += 1
        self.lines.append(f"{indent}subgraph cluster_{self.ids} {{")
        tip = f" tooltip={quoted(tooltip)};" if tooltip else ""
        self.lines.append(f'{indent}  label={label}; fontsize=11; style="rounded,filled"; fillcolor="{fill}"; '
                          f'color="#888888"; labeljust=l;{tip}')

    def text(self, header: list[str]) -> str:
        edges = [f"  {a} -> {b}" + (' [color="#c9b25a"]' if a in self.weight_nodes else "") + ";"
                 for a, b in self.edges]
        return "\n".join(header + self.lines + edges + ["}", ""])


def _header(title: str | None) -> list[str]:
    head = ["digraph dlc {",
            '  graph [rankdir=TB, nodesep=0.25, ranksep=0.35, fontname="Helvetica", newrank=true];',
            '  node [fontname="Helvetica", fontsize=10, margin="0.12,0.04", height=0.3];',
            '  edge [color="#555555", arrowsize=0.6];']
    if title:
        head.append(f"  label={_label(title)}; labelloc=t; fontsize=14;")
    return head


def _group_key(name: str, owner: dict[str, str]) -> str:
    """The layer a parameter belongs to: the layer record that made it, else
    its name without the last component (a block's own `param`)."""
    return owner.get(name) or (name.rsplit(".", 1)[0] if "." in name else name)


def _param_groups(g: Graph) -> dict[str, list[Value]]:
    owner = {p: layer.name for layer in g.layers for p in layer.params}
    groups: dict[str, list[Value]] = {}
    for p in g.params:
        groups.setdefault(_group_key(p.name, owner), []).append(p)
    return groups


def _params_label(layer: str, values: list[Value]) -> str:
    lines = []
    for kind, what in (("param", "params"), ("buffer", "buffer values")):
        vs = [v for v in values if v.kind == kind]
        if vs:
            short = [v.name[len(layer) + 1:] if v.name.startswith(layer + ".") else v.name for v in vs]
            total = _sum([prod(v.type.shape) for v in vs])
            lines.append(f"{', '.join(short)}: {_count(total)} {what}")
    return _label(layer, *lines)


def _sum(xs):
    # sizes may be symbolic (a Dim): dims.add keeps a known total an int
    total = 0
    for x in xs:
        total = add(total, x)
    return total


def _located(n: Node) -> str:
    """`file:line:col scope`, the tooltip's first line."""
    return " ".join(x for x in (str(n.span) if n.span else "", n.scope) if x)


def _node_label(n: Node) -> tuple[str, str]:
    """(label, tooltip): op, result types and file:line shown; the full
    location, layer scope and attributes on hover."""
    types = [str(o.type) for o in n.outputs]
    attrs = ", ".join(f"{k}={fmt_attr(v)}" for k, v in n.attrs.items())
    return _label(n.op.name, *types, small=_where(n.span)), _located(n) + (f"\n{attrs}" if attrs else "")


def _region_label(n: Node) -> str:
    if n.op.name == "scan":
        what = f"scan: {n.attrs['num_carry']} carr{'y' if n.attrs['num_carry'] == 1 else 'ies'}, " \
               f"axis {n.attrs['axis']}" + (", reversed" if n.attrs.get("reverse") else "")
    else:
        what = f"{n.op.name}: {n.attrs.get('kind', '')}"
    return _label(what, *[str(o.type) for o in n.outputs], small=_where(n.span))


def _draw_nodes(w: _DotWriter, nodes: list[Node], indent: str) -> None:
    for n in nodes:
        if n.body is not None and n.body.nodes:
            _draw_region(w, n, indent)
            continue
        label, tip = _node_label(n)
        nid = w.node("node", label, indent, tip)
        for v in n.inputs:
            w.edge_from(v, nid)
        for o in n.outputs:
            w.source[o.id] = nid


def _draw_region(w: _DotWriter, n: Node, indent: str) -> None:
    """A fused region or a scan as a cluster of its body's nodes.  A body
    input stands for the node's operand in the same place (a fused body's
    operands, a scan's carries and sequences), so the edges run from the
    operand's producer straight to the body nodes that read it; the node's
    results come from the body's outputs in the same place."""
    w.cluster(_region_label(n), _CLUSTER_FILL.get(n.op.name, "#eeeeee"), indent, _located(n))
    for inner, outer in zip(n.body.inputs, n.inputs):
        if outer is not None and outer.id in w.source:
            w.source[inner.id] = w.source[outer.id]
    _draw_nodes(w, n.body.nodes, indent + "  ")
    w.lines.append(f"{indent}}}")
    for o, inner in zip(n.outputs, n.body.outputs):
        if inner.id in w.source:
            w.source[o.id] = w.source[inner.id]


def _draw_graph(w: _DotWriter, g: Graph, indent: str) -> None:
    for v in g.inputs:
        w.source[v.id] = w.node("input", _label(v.name, str(v.type)), indent)
    for layer, values in _param_groups(g).items():
        shapes = "\n".join(f"{v.name}: {v.type}" for v in values)
        nid = w.node("params", _params_label(layer, values), indent, shapes)
        w.weight_nodes.add(nid)
        for v in values:
            w.source[v.id] = nid
    _draw_nodes(w, g.nodes, indent)
    for i, v in enumerate(g.outputs):
        name = g.output_names[i] if i < len(g.output_names) else f"output {i}"
        w.edge_from(v, w.node("output", _label(name, str(v.type)), indent))
    owner = {p: layer.name for layer in g.layers for p in layer.params}
    updates: dict[str, list[str]] = {}
    for name, v in g.state_updates.items():
        updates.setdefault(_group_key(name, owner), []).append(name)
    for layer, names in updates.items():
        short = [n[len(layer) + 1:] if n.startswith(layer + ".") else n for n in names]
        nid = w.node("update", _label(f"{layer}: updates", ", ".join(short)), indent)
        for name in names:
            w.edge_from(g.state_updates[name], nid)


# the public functions ---------------------------------------------------------
def graph_dot(g: Graph, title: str | None = None) -> str:
    """The DOT text drawing `g`."""
    w = _DotWriter()
    _draw_graph(w, g, "  ")
    return w.text(_header(title))


def side_by_side_dot(panels: list[tuple[str, Graph]], title: str | None = None) -> str:
    """One picture of several graphs, each in a cluster with its caption,
    left to right (the before/after of a pipeline)."""
    w = _DotWriter()
    for caption, g in panels:
        w.cluster(_label(caption), "#f7f7f7", "  ")
        _draw_graph(w, g, "    ")
        w.lines.append("  }")
    return w.text(_header(title))


def output_format(path) -> str | None:
    """dot's -T format for `path`'s suffix (None: write the DOT text)."""
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise DlcError(f"{path}: cannot tell the picture format from the suffix '{suffix or '(none)'}'",
                       hint="name the output .svg, .png, .pdf or .dot (the DOT text, which needs no graphviz)")
    return FORMATS[suffix]


def dot_program(fmt: str) -> str:
    """The path of graphviz's `dot`, which drawing `fmt` needs."""
    exe = shutil.which("dot")
    if exe is None:
        raise DlcError(f"drawing .{fmt} needs graphviz's `dot` program, which is not installed",
                       hint="apt-get install graphviz (brew install graphviz on macOS), or write the DOT text "
                            "with -o graph.dot")
    return exe


def check_output(path) -> None:
    """Fail now, before any compiling, on a suffix we cannot draw or a missing `dot`."""
    fmt = output_format(path)
    if fmt is not None:
        dot_program(fmt)


def render(dot_text: str, fmt: str) -> bytes:
    """`dot_text` laid out by graphviz's `dot` in format `fmt` (svg, png, pdf)."""
    exe = dot_program(fmt)
    try:
        r = subprocess.run([exe, f"-T{fmt}"], input=dot_text.encode("utf-8"), capture_output=True,
                           timeout=DOT_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise DlcError(f"graphviz's dot did not finish the layout in {DOT_TIMEOUT_S} s",
                       hint="write the DOT text with -o graph.dot, or draw fewer nodes (--model, --after)")
    if r.returncode != 0:
        why = r.stderr.decode("utf-8", "replace").strip().splitlines()
        raise DlcError(f"graphviz's dot failed (exit {r.returncode}): {why[0] if why else 'no message'}",
                       hint="write the DOT text with -o graph.dot to see what dot was given")
    return r.stdout


def write_picture(dot_text: str, path) -> None:
    """The picture (or the DOT text) at `path`, format by suffix, written to
    a temporary name and renamed, so a failed render leaves nothing half-done."""
    from .runtime.atomic import atomic_open
    fmt = output_format(path)
    data = dot_text.encode("utf-8") if fmt is None else render(dot_text, fmt)
    with atomic_open(path) as f:     # the umask's usual mode, as every file dlc writes for the user
        f.write(data)


# a model's pictures -----------------------------------------------------------
def _options_text(opt) -> str:
    """The pipeline options as the command line gives them: `-O2`, `--passes a,b`..."""
    how = f"--passes {','.join(opt.passes)}" if opt.passes is not None else f"-O{opt.level}"
    return how + (" --disable-pass " + ",".join(opt.disable) if opt.disable else "")


def _pipeline_caption(m) -> str:
    ran = [r.name for r in m.pass_records]
    return f"{_options_text(m.opt)}; passes run: {', '.join(ran) if ran else 'none'}"


def model_dot(m, mode: str = "eval", backend: str = "numpy", after: str | None = None,
              before_after: bool = False) -> tuple[str, list[Graph]]:
    """The DOT text for model `m` (a `dlc.api.Model`) and the graphs it draws:
    the graph its pipeline leaves (or the one after pass `after`), alone or
    beside the graph as elaborated (before any pass)."""
    g = m.optimized(m.symbolic_graph(mode), backend, stop_after=after)
    if after is not None and after not in {r.name for r in m.pass_records}:
        raise DlcError(f"pass '{after}' does not run with {_options_text(m.opt)} in {mode} mode",
                       hint="raise -O, or name it with --passes")
    caption = (f"after pass {after}" if after else "after the pipeline") + f" ({_pipeline_caption(m)})"
    if not before_after:
        return graph_dot(g, f"{m.name} ({mode}), {caption}"), [g]
    before = m.symbolic_graph(mode)
    panels = [("before: as elaborated (-O0)", before), (caption, g)]
    return side_by_side_dot(panels, f"{m.name} ({mode}): before and after"), [before, g]


def summary(graphs: list[Graph]) -> str:
    """`12 nodes, 2 regions` per graph drawn, `before -> after` for two."""
    def one(g):
        regions = sum(1 for n in g.walk() if n.body is not None and n.body.nodes)
        ops = sum(1 for n in g.walk()) - regions
        return f"{ops} nodes" + (f", {regions} region{'s' if regions != 1 else ''}" if regions else "")
    return " -> ".join(one(g) for g in graphs)
