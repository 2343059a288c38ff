"""In Jupyter a `dlc.Model` shows its summary table and its graph: the
`_repr_html_` / `_repr_svg_` / `_repr_markdown_` methods IPython calls
(issue 15, "Editors and notebooks")."""
import html
import shutil
import xml.etree.ElementTree as ET

import pytest

import dlc
from dlc import notebook

needs_dot = pytest.mark.skipif(shutil.which("dot") is None, reason="graphviz's dot is not installed")
SVG = "{http://www.w3.org/2000/svg}"


def _texts(svg: str) -> str:
    return " ".join(t.text or "" for t in ET.fromstring(svg).iter(f"{SVG}text"))


@needs_dot
def test_html_is_the_summary_table_then_the_graph():
    m = dlc.load("specs/lenet5.dln")
    info = m.info()
    page = m._repr_html_()
    table, rest = page.split("</table>", 1)
    for r in info["layers"]:
        assert f">{html.escape(r['name'])}</td>" in table and f">{r['params']:,}</td>" in table
    assert f"trainable params: {info['params']:,}" in rest and f"MACs: {info['macs']:,}" in rest
    svg = rest[rest.index("<svg"):rest.rindex("</svg>") + len("</svg>")]
    drawn = _texts(svg)
    assert "conv2d" in drawn and "tanh" in drawn and m.name in drawn and "c1 weight, bias" in drawn      # the graph, as dlc viz draws it
    assert "<?xml" not in page and "<!DOCTYPE" not in page                  # inline, not a document


@needs_dot
def test_svg_is_the_graph_and_markdown_the_table():
    m = dlc.load("specs/resnet18.dln")
    svg = m._repr_svg_()
    assert ET.fromstring(svg).tag == f"{SVG}svg"
    assert "layer4.1.conv2 weight" in _texts(svg)
    md = m._repr_markdown_().splitlines()
    assert "| layer | op | output | params | MACs | line |" in md
    assert any(ln.startswith("| layer4.1.conv2 | conv2d |") for ln in md)
    assert any("11,689,512" in ln for ln in md)


def test_without_dot_the_table_still_shows_and_says_why(monkeypatch):
    monkeypatch.setattr(notebook.shutil, "which", lambda name: None)
    m = dlc.load("specs/mlp.dln")
    page = m._repr_html_()
    assert "<table>" in page and "<svg" not in page and "dot is not installed" in page
    assert m._repr_svg_() is None                       # IPython skips a None repr


def test_a_huge_graph_is_not_laid_out_inline(monkeypatch):
    monkeypatch.setattr(notebook, "MAX_DRAWN_NODES", 5)
    m = dlc.load("specs/lenet5.dln")
    page = m._repr_html_()
    assert "<svg" not in page and f"{len(m.graph.nodes)} nodes" in page and "dlc viz specs/lenet5.dln" in page


@needs_dot
def test_each_repr_is_computed_once(monkeypatch):
    import dlc.viz
    calls = []
    real = dlc.viz.render
    monkeypatch.setattr(dlc.viz, "render", lambda text, fmt: calls.append(fmt) or real(text, fmt))
    m = dlc.load("specs/mlp.dln")
    first = (m._repr_html_(), m._repr_svg_(), m._repr_markdown_())
    assert (m._repr_html_(), m._repr_svg_(), m._repr_markdown_()) == first
    assert calls == ["svg"]
    assert repr(m) == "<dlc.Model MLP from specs/mlp.dln>"
