"""canonicalize: algebraic identities, eval-mode dropout, transpose/reshape
chains and no-op ops; the IR before and after, the numbers against -O0, and
what the pass reports."""
from __future__ import annotations

import re

import numpy as np
import pytest

import dlc
from dlc.backends import get_backend
from dlc.compiler.passes import PipelineOptions, run_pipeline
from dlc.compiler.verify import verify

from harness import as_f64, check_pass

SPECS = "tests/compiler/passes/specs"


def ops_of(ir: str) -> list[str]:
    """The op of every node line of printed IR, in order."""
    return re.findall(r"^\s+%\S+(?:, %\S+)* = (\w+)\(", ir, flags=re.M)


def stats(spec: str, passes, mode: str = "eval", grad: bool = False):
    m = dlc.load(spec)
    g = m.grad_graph(mode)[0] if grad else m.symbolic_graph(mode)
    g, _, ctx = run_pipeline(g, PipelineOptions(passes=tuple(passes)), verify=True)
    return g, ctx.stats


@pytest.mark.parametrize("mode", ["eval", "train"])
def test_identities_go_and_lookalikes_stay(mode):
    before, after = check_pass(f"{SPECS}/identities.dln", ["canonicalize"], mode=mode, grads=mode == "train")
    assert ops_of(before).count("mul") == 4 and ops_of(before).count("neg") == 2
    # x*1, 1*x, x+0, 0+x, x-0, x/1, x**1 and -(-x) are gone: k is the dense layer's output itself
    ret = after.split("return ")[1]
    k, w, kept = ret.split("\n")[0].split(", ")
    linear = re.search(r"(%\d+) = linear\(", after).group(1)
    assert k == linear
    # y * ones(N, 6) broadcasts y: an expand of y, not a multiplication
    assert re.search(rf"{re.escape(w)} = expand\(y\) {{shape=\(N, 6\)}}", after)
    # h * 2, 0 - h, + 1 and ** 2 are not identities
    assert ops_of(after).count("mul") == 1 and ops_of(after).count("sub") == 1
    assert ops_of(after).count("pow") == 1 and ops_of(after).count("add") == 1
    assert "neg" not in ops_of(after)


def test_identity_counts():
    _, st = stats(f"{SPECS}/identities.dln", ["canonicalize"])
    assert st == {"canonicalize.mul": 3, "canonicalize.add": 2, "canonicalize.sub": 1,
                  "canonicalize.div": 1, "canonicalize.pow": 1, "canonicalize.neg": 1}


@pytest.mark.parametrize("mode", ["eval", "train"])
def test_shape_chains_collapse(mode):
    before, after = check_pass(f"{SPECS}/shapes.dln", ["canonicalize"], mode=mode, grads=mode == "train")
    assert ops_of(before).count("transpose") == 4 and ops_of(before).count("reshape") == 5
    ret = after.split("return ")[1].split("\n")[0].split(", ")
    linear = re.search(r"(%\d+) = linear\(", after).group(1)
    back, turned, flat, same, squeezed = ret
    assert back == linear and same == linear           # cancelled permutes; reshape+expand to its own shape
    assert squeezed == linear                          # sum over a size-1 axis of a reshape of h: h
    # permute(1,0,2) then (1,2,0) is one permute (0,2,1)
    assert re.search(rf"{re.escape(turned)} = transpose\({linear}\) {{axes=\(0, 2, 1\)}}", after)
    # reshape -> flatten -> reshape is one reshape
    assert re.search(rf"{re.escape(flat)} = reshape\({linear}\) {{shape=\(N, 24\)}}", after)
    assert ops_of(after) == ["linear", "transpose", "reshape"]


def test_new_nodes_keep_the_span_of_the_node_they_replace():
    g, _ = stats(f"{SPECS}/shapes.dln", ["canonicalize"])
    (t,) = [n for n in g.nodes if n.op.name == "transpose"]
    (r,) = [n for n in g.nodes if n.op.name == "reshape"]
    src = open(f"{SPECS}/shapes.dln").read().splitlines()
    # the composed permute is the outer permute of `turned`; the reshape is the last of `flat`'s chain
    assert src[t.span.line - 1].strip().startswith("turned =") and t.span.col == 14
    assert src[r.span.line - 1].strip().startswith("flat =") and r.span.col == 12


def test_shape_chain_counts():
    _, st = stats(f"{SPECS}/shapes.dln", ["canonicalize"])
    assert st == {"canonicalize.transpose": 2, "canonicalize.reshape": 3, "canonicalize.expand": 1,
                  "canonicalize.sum": 1}


def test_cast_to_own_dtype_goes_but_a_cast_of_an_input_stays():
    m = dlc.load(f"{SPECS}/casts.dln")
    before = str(m.symbolic_graph())
    g, st = stats(f"{SPECS}/casts.dln", ["canonicalize"])
    after = str(g)
    assert ops_of(before) == ["linear", "relu", "cast", "cast"]
    assert ops_of(after) == ["linear", "relu", "cast"] and "cast(x)" in after
    assert st == {"canonicalize.cast": 1}
    # in float32 (the graph's own dtype) the results are the same bits
    w, x = m.init_weights(0), m.random_inputs(0)
    ref = m.optimize(level=0).run(x, w)
    got = m.optimize(passes=["canonicalize"]).run(x, w)
    assert all(np.array_equal(ref[k], got[k]) for k in ref)


def _dropout_graph(training: bool, p: float):
    """The train graph of a dense layer with dropout, its dropout switched as asked."""
    m = dlc.load(f"{SPECS}/dropout.dln")
    g = m.symbolic_graph("train")
    (node,) = [n for n in g.nodes if n.op.name == "dropout"]
    node.attrs.update(training=training, p=p)
    return m, g


@pytest.mark.parametrize("training,p,removed", [(False, 0.3, True), (True, 0.0, True), (True, 0.3, False)])
def test_dropout_that_is_an_identity_goes(training, p, removed):
    m, g = _dropout_graph(training, p)
    x = np.random.default_rng(0).standard_normal((3, 5))
    w = as_f64(m.init_weights(0))
    numpy = get_backend("numpy")
    ref, _ = numpy.compile(g, bind={"N": 3}).run({"x": x}, w, 7)
    g, _, ctx = run_pipeline(g, PipelineOptions(passes=("canonicalize",)), verify=True)
    verify(g)
    assert ("dropout" not in ops_of(str(g))) == removed
    assert ctx.stats.get("canonicalize.dropout", 0) == (1 if removed else 0)
    got, _ = numpy.compile(g, bind={"N": 3}).run({"x": x}, w, 7)
    assert set(ref) == set(got) and all(np.array_equal(ref[k], got[k]) for k in ref)


def test_training_graph_transposes_compose():
    """The backward of multi-head attention transposes transposes: composed, the numbers unchanged."""
    spec = "specs/transformer_encoder_layer.dln"
    g, st = stats(spec, ["canonicalize"], grad=True)
    assert st["canonicalize.transpose"] >= 2 and st["canonicalize.reshape"] >= 4
    check_pass(spec, ["canonicalize"], mode="train", grads=True)
