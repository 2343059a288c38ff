"""cse: equal nodes merged (commutative operands in either order), random ops
and unequal bodies never; the duplication autodiff leaves in training graphs
shared, with the numbers unchanged."""
from __future__ import annotations

import re

import pytest

import dlc
from dlc.compiler.builder import Builder
from dlc.compiler.clone import clone_nodes
from dlc.compiler.ir import Graph
from dlc.compiler.ops import OPS
from dlc.compiler.passes import PipelineOptions, run_pipeline
from dlc.compiler.passes.cse import node_key
from dlc.compiler.types import DType, TensorType
from dlc.errors import Span

from harness import check_pass
from test_canonicalize import ops_of, stats

SPECS = "tests/compiler/passes/specs"
SPAN = Span("cse.dln", 1, 1)


def duplicates(g: Graph) -> int:
    """Nodes (top level) with the key of an earlier one: what CSE can merge."""
    seen, dup = set(), 0
    for n in g.nodes:
        k = node_key(n)
        if k is not None and k in seen:
            dup += 1
        seen.add(k)
    return dup


@pytest.mark.parametrize("mode", ["eval", "train"])
def test_duplicates_merge_and_dropout_draws_stay_two(mode):
    before, after = check_pass(f"{SPECS}/duplicates.dln", ["cse"], mode=mode, grads=mode == "train")
    assert ops_of(before).count("relu") == 2 and ops_of(before).count("tanh") == 2
    assert ops_of(after).count("relu") == 1 and ops_of(after).count("tanh") == 1
    # relu(h) + tanh(h) and tanh(h) + relu(h) are one add; a * b and b * a one mul
    assert ops_of(after).count("mul") == 1
    m = re.search(r"(%\d+) = mul\((%\d+), (%\d+)\)", after)
    assert m.group(2) == m.group(3)
    assert re.search(rf"= sub\({m.group(1)}, {m.group(1)}\)", after)
    assert ops_of(after).count("dropout") == (2 if mode == "train" else 0)


def test_duplicate_counts():
    _, st = stats(f"{SPECS}/duplicates.dln", ["cse"], mode="train")
    assert st == {"cse.merged": 4}


def _graph():
    g = Graph("t", span=SPAN)
    b = Builder(g, SPAN)
    x = b.input("x", TensorType(DType.f32, (4,)))
    return g, b, x


def _cse(g):
    g, _, ctx = run_pipeline(g, PipelineOptions(passes=("cse",)), verify=True)
    return g, ctx.stats["cse.merged"]


@pytest.mark.parametrize("op,attrs", [("dropout", {"p": 0.5, "seed": 3}), ("randn", {"shape": (4,), "seed": 3})])
def test_random_ops_are_never_merged(op, attrs):
    g, b, x = _graph()
    args = (x,) if op == "dropout" else ()
    g.outputs = [b.op(op, *args, **attrs), b.op(op, *args, **attrs)]
    g.output_names = ["a", "b"]
    g, merged = _cse(g)
    assert merged == 0 and ops_of(str(g)) == [op, op]


@pytest.mark.parametrize("a,b,merge", [(0.0, 0.0, True), (0.0, -0.0, False), (1, 1.0, False), (0.1, 0.1, True)])
def test_attributes_compare_by_type_and_bits(a, b, merge):
    g, bl, x = _graph()
    g.outputs = [bl.op("add", x, bl.op("full", shape=(), value=a, dtype="float32")),
                 bl.op("add", x, bl.op("full", shape=(), value=b, dtype="float32"))]
    g.output_names = ["a", "b"]
    g, merged = _cse(g)
    assert merged == (2 if merge else 0)
    assert (g.outputs[0] is g.outputs[1]) == merge


def _scan_model():
    m = dlc.load("specs/lstm_cell.dln")
    g = m.symbolic_graph("eval")
    (scan,) = [n for n in g.nodes if n.op.name == "scan"]
    return g, scan


@pytest.mark.parametrize("change_body", [False, True])
def test_scans_merge_only_when_their_bodies_are_equal(change_body):
    g, scan = _scan_model()
    copy = Graph("copy", span=g.span)
    clone_nodes([scan], copy, {})
    (twin,) = copy.nodes
    if change_body:      # one gate's sigmoid becomes a tanh (same type): another body
        sig = next(n for n in twin.body.nodes if n.op.name == "sigmoid")
        sig.op = OPS["tanh"]
    g.nodes.insert(g.nodes.index(scan) + 1, twin)
    g.outputs.append(twin.outputs[0])
    g.output_names.append("twin")
    g, merged = _cse(g)
    scans = [n for n in g.nodes if n.op.name == "scan"]
    assert len(scans) == (2 if change_body else 1)
    assert (g.outputs[-1] is scan.outputs[0]) == (not change_body)


def test_training_graph_duplication_is_shared():
    """What autodiff duplicates in LeNet-5's training step: counted, merged, the gradients unchanged."""
    spec = "specs/lenet5.dln"
    m = dlc.load(spec)
    g, _ = m.grad_graph("train")
    before = duplicates(g)
    g, merged = _cse(g)
    assert before > 0 and merged >= before and duplicates(g) == 0
    check_pass(spec, ["cse"], mode="train", grads=True)
