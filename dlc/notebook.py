"""How a `dlc.Model` shows itself in Jupyter: its summary (the `dlc info`
layer table and totals) and its graph as elaborated (drawn by graphviz's
`dot`, as `dlc viz` draws it).

IPython asks for every `_repr_*_` a model has and shows the richest it
gets: HTML (the table above the inline SVG graph), else the SVG, else
Markdown.  Each is computed once per model object.  Without `dot`, or for a
graph too big to lay out quickly, the HTML says so and has no picture, and
`_repr_svg_` returns None (IPython then skips it)."""
from __future__ import annotations

import html
import shutil
import subprocess

MAX_DRAWN_NODES = 600       # dot takes seconds beyond this; `dlc viz` draws any size


def summary_markdown(model) -> str:
    from .reporting import info_tables
    from .tables import render
    return render(info_tables(model.info()), "md")


def summary_html(model) -> str:
    from .reporting import info_tables
    (t,) = info_tables(model.info())
    head = "".join(f'<th style="text-align:{"right" if c in t.right else "left"}">{html.escape(c)}</th>'
                   for c in t.columns)
    body = "".join("<tr>" + "".join(f'<td style="text-align:{"right" if c in t.right else "left"}">'
                                    f"{html.escape(x)}</td>" for c, x in zip(t.columns, r)) + "</tr>"
                   for r in t.rows)
    notes = "<br>".join(html.escape(n) for n in t.notes)
    return (f"<div><b>{html.escape(t.title)}</b><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody>"
            f"</table><p>{notes}</p></div>")


def graph_svg(model) -> tuple[str | None, str]:
    """(the SVG of the model's graph as elaborated, or None; why not, if None)."""
    from .errors import DlcError
    from .viz import graph_dot, render
    g = model.graph
    if len(g.nodes) > MAX_DRAWN_NODES:
        return None, (f"the graph has {len(g.nodes)} nodes, more than the {MAX_DRAWN_NODES} drawn inline; "
                      f"draw it with: dlc viz {model.path} -o graph.svg")
    if shutil.which("dot") is None:
        return None, "graphviz's dot is not installed, so the graph is not drawn (apt-get install graphviz)"
    try:
        svg = render(graph_dot(g, f"{model.name} (eval, as elaborated)"), "svg").decode("utf-8")
    except (DlcError, OSError, subprocess.SubprocessError) as e:
        return None, f"the graph could not be drawn: {getattr(e, 'message', e)}"
    start = svg.find("<svg")        # inline: no XML declaration or DOCTYPE
    return (svg[start:] if start >= 0 else svg), ""


def _cached(model, key: str, make):
    cache = model.__dict__.setdefault("_notebook_reprs", {})
    if key not in cache:
        cache[key] = make(model)
    return cache[key]


def repr_html(model) -> str:
    svg, why = _cached(model, "svg", graph_svg)
    table = _cached(model, "html", summary_html)
    return table + (f"<div>{svg}</div>" if svg else f"<p><i>{html.escape(why)}</i></p>")


def repr_svg(model) -> str | None:
    return _cached(model, "svg", graph_svg)[0]


def repr_markdown(model) -> str:
    return _cached(model, "md", summary_markdown)
