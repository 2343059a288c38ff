"""`dlc viz`: the DOT text (always), the pictures graphviz draws from it (when
`dot` is installed), --after / --before-after, and its errors."""
import os
import re
import shutil
import xml.etree.ElementTree as ET
from math import prod

import pytest
from click.testing import CliRunner

import dlc
from dlc import viz
from dlc.cli import main
from dlc.compiler.passes.regions import outline
from dlc.compiler.passes.rewrite import users

LENET = "specs/lenet5.dln"
needs_dot = pytest.mark.skipif(shutil.which("dot") is None,
                               reason="graphviz's dot is not installed (apt-get install graphviz)")
SVG = "{http://www.w3.org/2000/svg}"


def run(*args, env=None):
    return CliRunner().invoke(main, list(args), env=env)


# a small DOT reader: node statements and edges, in the order written -----------------------
NODE = re.compile(r"^\s*(n\d+) \[(.*)\];$", re.M)
EDGE = re.compile(r"^\s*(n\d+) -> (n\d+)", re.M)


def dot_nodes(text, shape=None):
    """[(id, label)] of the nodes (of one shape), in the order written."""
    out = []
    for nid, attrs in NODE.findall(text):
        if shape is None or attrs.startswith(f"shape={shape},"):
            out.append((nid, re.search(r"label=<(.*?)>(?:, tooltip=|$)", attrs).group(1)))
    return out


def leaf_nodes(g):
    return [n for n in g.walk() if n.body is None or not n.body.nodes]


def params_per_layer(g):
    """layer name -> its trainable parameter count, from the layer records."""
    by = g.param_by_name()
    return {layer.name: sum(prod(by[p].type.shape) for p in layer.params if by[p].kind == "param")
            for layer in g.layers if layer.params}


def test_lenet5_dot_has_every_node_with_op_shape_line_and_every_edge():
    m = dlc.load(LENET)
    g = m.symbolic_graph("eval")
    text = viz.graph_dot(g, "LeNet5")
    boxes = dot_nodes(text, "box")
    ir = leaf_nodes(g)
    assert len(boxes) == len(ir)
    dot_id = {}
    for (nid, label), n in zip(boxes, ir):
        assert f"<b>{n.op.name}</b>" in label
        assert str(n.outputs[0].type) in label
        assert f"lenet5.dln:{n.span.line}<" in label
        dot_id[id(n)] = nid
    # parameters: one node per layer that has any, labelled with its count
    per_layer = params_per_layer(g)
    notes = dot_nodes(text, "note")
    assert len(notes) == len(per_layer) == len([layer for layer in g.layers if layer.params])
    note_of = {}
    for nid, label in notes:
        layer = re.match(r"<b>(.*?)</b>", label).group(1)
        assert f": {per_layer[layer]:,} params" in label
        note_of[layer] = nid
    # every data and weight edge of the IR, and nothing else
    edges = set(EDGE.findall(text))
    want = set()
    (inp, _), = dot_nodes(text, "invhouse")
    for n in ir:
        for v in n.inputs:
            if v.kind == "node":
                want.add((dot_id[id(v.producer)], dot_id[id(n)]))
            elif v.kind == "input":
                want.add((inp, dot_id[id(n)]))
            else:
                want.add((note_of[v.name.rsplit(".", 1)[0]], dot_id[id(n)]))
    (out, label), = dot_nodes(text, "doubleoctagon")
    assert g.output_names[0] in label and str(g.outputs[0].type) in label
    want.add((dot_id[id(g.outputs[0].producer)], out))
    assert edges == want


def test_buffers_and_state_updates_are_collapsed_per_layer_too():
    m = dlc.load("specs/resnet18.dln")
    g = m.symbolic_graph("train")
    text = viz.graph_dot(g)
    bn_layers = [layer for layer in g.layers if layer.kind == "batchnorm"]
    assert len(dot_nodes(text, "note")) == len([layer for layer in g.layers if layer.params])
    updates = dot_nodes(text, "cds")
    assert len(updates) == len(bn_layers) and g.state_updates
    assert all("running_mean" in label and "running_var" in label for _, label in updates)
    bn1 = next(label for _, label in dot_nodes(text, "note") if label.startswith("<b>bn1</b>"))
    assert "weight, bias: 128 params" in bn1 and "running_mean, running_var, num_batches_tracked" in bn1


def _outline_conv_epilogues(g):
    """Each conv2d and the one op that reads it as a `conv_epilogue` region
    (what the fusion pass makes); returns how many regions it made."""
    made = 0
    for n in list(g.nodes):
        if n.op.name != "conv2d" or n not in g.nodes:
            continue
        readers = users(g).get(n.outputs[0].id, [])
        if len(readers) == 1 and readers[0].body is None and outline(g, [n, readers[0]], "conv_epilogue", n):
            made += 1
    return made


def test_fused_regions_are_clusters_holding_their_body():
    g = dlc.load("specs/resnet18.dln").symbolic_graph("eval")
    made = _outline_conv_epilogues(g)
    assert made > 0
    text = viz.graph_dot(g)
    clusters = re.findall(r"subgraph (cluster_\d+) \{\n\s*label=<<b>fused: conv_epilogue</b>", text)
    assert len(clusters) == made
    # each cluster holds its body's two nodes: conv2d, then the op that read it
    for block in re.findall(r"subgraph cluster_\d+ \{\n(.*?)\n  \}", text, re.S):
        ops = [re.match(r"<b>(.*?)</b>", label).group(1) for _, label in dot_nodes(block)]
        assert len(ops) == 2 and ops[0] == "conv2d"
    assert len(dot_nodes(text, "box")) == len(leaf_nodes(g))
    # the first region's conv reads the image directly (edges cross into the cluster)
    (image, _), = dot_nodes(text, "invhouse")
    first_conv = next(nid for nid, label in dot_nodes(text, "box") if label.startswith("<b>conv2d</b>"))
    assert (image, first_conv) in set(EDGE.findall(text))


def test_scan_bodies_are_clusters():
    g = dlc.load("specs/lstm_cell.dln").symbolic_graph("eval")
    text = viz.graph_dot(g)
    assert len(re.findall(r"subgraph cluster_", text)) == 1
    assert "<b>scan: 2 carries, axis 1</b>" in text
    assert len(dot_nodes(text, "box")) == len(leaf_nodes(g))
    # the cell's weights, read inside the body, are one parameter node
    assert any(label.startswith("<b>cell</b>") for _, label in dot_nodes(text, "note"))
    # the sequence flows into the body, the final carry out of it into fc
    dot_id = {id(n): nid for (nid, _), n in zip(dot_nodes(text, "box"), leaf_nodes(g))}
    scan = next(n for n in g.nodes if n.op.name == "scan")
    (rows, _), = dot_nodes(text, "invhouse")
    x_t = scan.body.inputs[scan.attrs["num_carry"]]
    readers = [n for n in scan.body.nodes if x_t in n.inputs]
    fc = next(n for n in g.nodes if n.op.name == "linear")
    edges = set(EDGE.findall(text))
    assert readers and all((rows, dot_id[id(n)]) in edges for n in readers)
    assert (dot_id[id(fc.inputs[0].producer.body.outputs[fc.inputs[0].index].producer)], dot_id[id(fc)]) in edges


def _clusters(text):
    return len(re.findall(r"label=<<b>fused: ", text))


def _pipeline_result(spec=LENET):
    """The real -O2 graph of `spec`: its fused regions and the passes that ran."""
    m = dlc.load(spec)
    g = m.compiled_graph("eval", symbolic=True)
    return g, [r.name for r in m.pass_records]


def test_after_draws_the_graph_after_that_pass(tmp_path):
    g, ran = _pipeline_result()
    regions = sum(n.op.name == "fused" for n in g.nodes)
    assert regions >= 2
    out = tmp_path / "g.dot"
    r = run("viz", LENET, "-o", str(out))
    assert r.exit_code == 0, r.output
    assert _clusters(out.read_text()) == regions
    assert f"passes run: {', '.join(ran)}" in out.read_text()
    r = run("viz", LENET, "--after", "dce", "-o", str(out))
    assert r.exit_code == 0, r.output
    text = out.read_text()
    assert _clusters(text) == 0 and "after pass dce" in text
    r = run("viz", LENET, "-O0", "-o", str(out))
    assert r.exit_code == 0 and _clusters(out.read_text()) == 0


def test_before_after_draws_both_side_by_side(tmp_path):
    g_after, ran = _pipeline_result()
    regions = sum(n.op.name == "fused" for n in g_after.nodes)
    out = tmp_path / "g.dot"
    r = run("viz", LENET, "--before-after", "-o", str(out))
    assert r.exit_code == 0, r.output
    g = dlc.load(LENET).symbolic_graph("eval")
    assert f"{len(g.nodes)} nodes -> {len(leaf_nodes(g_after))} nodes, {regions} regions" in r.output
    text = out.read_text()
    before, after = re.split(r"\n  subgraph cluster_\d+ \{\n    label=<<b>after ", text)
    assert "before: as elaborated (-O0)" in before and _clusters(before) == 0
    assert _clusters(after) == regions
    # the before panel draws every node; the after panel every node inside or outside a region
    assert len(dot_nodes(before, "box")) == len(g.nodes)
    assert len(dot_nodes(after, "box")) == len(leaf_nodes(g_after))
    assert "LeNet5 (eval): before and after" in before
    # with --after, the right panel stops there
    r = run("viz", LENET, "--before-after", "--after", "dce", "-o", str(out))
    assert r.exit_code == 0, r.output
    text = out.read_text()
    upto = ran[:ran.index("dce") + 1]
    assert _clusters(text) == 0 and f"after pass dce (-O2; passes run: {', '.join(upto)})" in text


def test_after_a_pass_that_does_not_run_or_does_not_exist(tmp_path):
    r = run("viz", LENET, "-O0", "--after", "dce", "-o", str(tmp_path / "g.dot"))
    assert r.exit_code == 1 and "pass 'dce' does not run with -O0 in eval mode" in r.output
    r = run("viz", LENET, "--disable-pass", "dce", "--after", "dce", "-o", str(tmp_path / "g.dot"))
    assert r.exit_code == 1 and "does not run with -O2 --disable-pass dce" in r.output
    r = run("viz", LENET, "--after", "nope", "-o", str(tmp_path / "g.dot"))
    assert r.exit_code == 1 and "unknown pass 'nope'" in r.output and "dce" in r.output
    assert not (tmp_path / "g.dot").exists()


def test_bad_suffix_is_a_clear_error(tmp_path):
    r = run("viz", LENET, "-o", str(tmp_path / "g.jpg"))
    assert r.exit_code == 1
    assert "suffix '.jpg'" in r.output and ".svg, .png" in r.output and "Traceback" not in r.output
    r = run("viz", LENET, "-o", str(tmp_path / "graph"))
    assert r.exit_code == 1 and "suffix '(none)'" in r.output


def test_missing_dot_says_how_to_get_it_and_dot_text_needs_no_graphviz(tmp_path):
    empty = tmp_path / "bin"
    empty.mkdir()
    r = run("viz", LENET, "-o", str(tmp_path / "g.svg"), env={"PATH": str(empty)})
    assert r.exit_code == 1
    assert "not installed" in r.output and "apt-get install graphviz" in r.output and "-o graph.dot" in r.output
    assert not (tmp_path / "g.svg").exists()
    r = run("viz", LENET, "-o", str(tmp_path / "g.dot"), env={"PATH": str(empty)})
    assert r.exit_code == 0 and (tmp_path / "g.dot").read_text().startswith("digraph")


def test_a_failing_dot_leaves_no_file(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "dot"
    fake.write_text("#!/bin/sh\necho 'Error: syntax error in line 1' >&2\nexit 1\n")
    fake.chmod(0o755)
    r = run("viz", LENET, "-o", str(tmp_path / "g.svg"), env={"PATH": str(bin_dir)})
    assert r.exit_code == 1 and "dot failed (exit 1): Error: syntax error in line 1" in r.output
    assert sorted(os.listdir(tmp_path)) == ["bin"]


def test_escaping():
    assert viz.html_text('a<b>&"{c|d}\\N') == "a&lt;b&gt;&amp;&quot;{c|d}\\\\N"
    assert viz.html_text("x\x00y") == "x?y"
    assert viz.quoted('say "hi" \\N\nnext') == '"say \\"hi\\" \\\\N\\nnext"'


ODD = 'we"ird {<b>}|&\\N.dln'


def _odd_copy(tmp_path):
    p = tmp_path / ODD
    shutil.copy(LENET, p)
    return p


def test_odd_file_names_are_escaped_in_the_dot_text(tmp_path):
    p = _odd_copy(tmp_path)
    r = run("viz", str(p), "-o", str(tmp_path / "g.dot"))
    assert r.exit_code == 0, r.output
    text = (tmp_path / "g.dot").read_text()
    assert viz.html_text(ODD) + ":7<" in text and ODD not in text


@needs_dot
def test_odd_file_names_render(tmp_path):
    p = _odd_copy(tmp_path)
    r = run("viz", str(p), "-o", str(tmp_path / "g.svg"))
    assert r.exit_code == 0, r.output
    texts = [t.text for t in ET.parse(tmp_path / "g.svg").iter(f"{SVG}text")]
    assert f"{ODD}:7" in texts


@needs_dot
def test_svg_has_one_node_group_per_drawn_node(tmp_path):
    r = run("viz", LENET, "-o", str(tmp_path / "g.svg"))
    assert r.exit_code == 0, r.output
    root = ET.parse(tmp_path / "g.svg").getroot()
    groups = [e for e in root.iter(f"{SVG}g") if e.get("class") == "node"]
    g = dlc.load(LENET).symbolic_graph("eval")
    # nodes, one per layer with parameters, the inputs and the outputs
    assert len(groups) == len(g.nodes) + len(params_per_layer(g)) + len(g.inputs) + len(g.outputs)
    texts = {t.text for t in root.iter(f"{SVG}text")}
    assert {"conv2d", "avg_pool2d", "lenet5.dln:9", "f32[N, 16, 10, 10]", "weight, bias: 2,416 params"} <= texts


@needs_dot
def test_svg_before_after_and_fused_clusters(tmp_path):
    g_after, _ = _pipeline_result()
    regions = sum(n.op.name == "fused" for n in g_after.nodes)
    r = run("viz", LENET, "--before-after", "-o", str(tmp_path / "g.svg"))
    assert r.exit_code == 0, r.output
    root = ET.parse(tmp_path / "g.svg").getroot()
    clusters = [e for e in root.iter(f"{SVG}g") if e.get("class") == "cluster"]
    assert len(clusters) == 2 + regions             # the two panels and the after panel's regions
    nodes = [e for e in root.iter(f"{SVG}g") if e.get("class") == "node"]
    g = dlc.load(LENET).symbolic_graph("eval")
    per_panel = len(params_per_layer(g)) + len(g.inputs) + len(g.outputs)
    assert len(nodes) == len(g.nodes) + len(leaf_nodes(g_after)) + 2 * per_panel


@needs_dot
def test_png_is_written_atomically(tmp_path):
    r = run("viz", LENET, "-o", str(tmp_path / "g.png"))
    assert r.exit_code == 0, r.output
    assert (tmp_path / "g.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert os.listdir(tmp_path) == ["g.png"]
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "g.png").stat().st_mode & 0o777 == 0o666 & ~umask


@needs_dot
def test_a_big_graph_renders_in_seconds(tmp_path):
    # resnet50: about 170 nodes and 100 parameter groups; dot lays it out in
    # well under a second (docs/passes/viz.md), so 60 s only catches a layout
    # setting that makes dot superlinear on big graphs
    import time
    t0 = time.perf_counter()
    r = run("viz", "specs/resnet50.dln", "--before-after", "-o", str(tmp_path / "g.svg"))
    assert r.exit_code == 0, r.output
    assert time.perf_counter() - t0 < 60
    root = ET.parse(tmp_path / "g.svg").getroot()
    g = dlc.load("specs/resnet50.dln").symbolic_graph("eval")
    g_after, _ = _pipeline_result("specs/resnet50.dln")
    per_panel = len(params_per_layer(g)) + len(g.inputs) + len(g.outputs)
    drawn = len([e for e in root.iter(f"{SVG}g") if e.get("class") == "node"])
    assert drawn == len(leaf_nodes(g)) + len(leaf_nodes(g_after)) + 2 * per_panel
