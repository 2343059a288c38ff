"""fold_constants: ops of constants become one constant, bit for bit what the
backend computes at -O0; dimension arithmetic on symbolic ranges; nothing
inexact (transcendentals, inexact sums) is folded."""
from __future__ import annotations

import re

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import dlc
from dlc.backends import get_backend
from dlc.compiler.builder import Builder
from dlc.compiler.dims import Dim
from dlc.compiler.ir import Graph
from dlc.compiler.passes import PipelineOptions, run_pipeline
from dlc.compiler.types import DType, TensorType
from dlc.errors import Span

from harness import check_pass
from test_canonicalize import ops_of, stats

SPECS = "tests/compiler/passes/specs"
SPAN = Span("folding.dln", 1, 1)


@pytest.mark.parametrize("mode", ["eval", "train"])
def test_constant_subexpressions_fold(mode):
    before, after = check_pass(f"{SPECS}/constants.dln", ["fold_constants"], mode=mode, grads=mode == "train")
    assert ops_of(before).count("full") == 12
    # (ones * 0.5 + zeros) / 4 is one full of 0.125; sqrt(4) is 2; transpose(ones) * 1 is gone (x * 1 = x)
    assert "full() {shape=(N, 4), value=0.125, dtype='float32'}" in after
    assert "full() {shape=(), value=2, dtype='float32'}" in after
    assert "sqrt" not in after and "transpose" not in after and "div" not in after
    # arange(0, N) * 3 + 1: the range itself, its bounds symbolic
    assert "arange() {start=1, stop=3*N - 1, step=3, dtype='int64'} : i64[N]" in after
    # over the symbolic N, sum/mean/max of ones(N, 4) are left (the count is not known)
    assert ops_of(after).count("sum") == 1 and ops_of(after).count("mean") == 1


def test_constant_counts():
    _, st_ = stats(f"{SPECS}/constants.dln", ["fold_constants"])
    assert st_ == {"fold_constants.folded": 6, "fold_constants.arange": 2, "fold_constants.identity": 1}


def test_reductions_fold_when_the_sizes_are_known():
    m = dlc.load(f"{SPECS}/constants.dln", bind={"N": 3}).optimize(passes=["fold_constants"])
    g = m.compiled_graph("eval", bind={"N": 3})
    text = str(g)
    # sum(ones(3, 4)) = 12, mean = max = 1: no reduction is left
    assert not {"sum", "mean", "max"} & set(ops_of(text))
    assert "value=12," in text
    assert "arange() {start=1, stop=8, step=3" in text


# ---- exactness: a folded value is the bits the backend computes at -O0 -------------------
def _graph_of(build) -> Graph:
    g = Graph("t", span=SPAN)
    b = Builder(g, SPAN)
    g.outputs = [build(b)]
    g.output_names = ["y"]
    return g


def _run(g):
    out, _ = get_backend("numpy").compile(g).run({}, {}, 0)
    return out["y"]


def _fold(g):
    g, _, ctx = run_pipeline(g, PipelineOptions(passes=("fold_constants",)), verify=True)
    return g, ctx.stats


BINARY = ["add", "sub", "mul", "div", "maximum", "minimum", "eq", "lt", "ge"]
finite32 = st.floats(allow_nan=False, allow_infinity=False, width=32)


@settings(max_examples=60, deadline=None)
@given(op=st.sampled_from(BINARY), a=finite32, b=finite32, dtype=st.sampled_from(["float32", "float64"]))
def test_folded_binary_is_bitwise_the_backends(op, a, b, dtype):
    def build(bl):
        return bl.op(op, bl.op("full", shape=(2,), value=a, dtype=dtype),
                     bl.op("full", shape=(), value=b, dtype=dtype))
    ref = _run(_graph_of(build))
    g, st_ = _fold(_graph_of(build))
    got = _run(g)
    if np.all(np.isfinite(ref)):
        assert ops_of(str(g)) == ["full"], str(g)
    assert ref.dtype == got.dtype and ref.shape == got.shape
    np.testing.assert_array_equal(ref, got)


@settings(max_examples=40, deadline=None)
@given(op=st.sampled_from(["neg", "abs", "sqrt", "reciprocal", "square", "floor"]),
       a=st.floats(0.0, 1e6, allow_nan=False, width=32))
def test_folded_unary_is_bitwise_the_backends(op, a):
    def build(bl):
        return bl.op(op, bl.op("full", shape=(3,), value=a, dtype="float32"))
    g, _ = _fold(_graph_of(build))
    np.testing.assert_array_equal(_run(_graph_of(build)), _run(g))


@settings(max_examples=40, deadline=None)
@given(a=st.integers(-2**40, 2**40), b=st.integers(-2**20, 2**20), op=st.sampled_from(["add", "sub", "mul"]))
def test_folded_integer_arithmetic(a, b, op):
    def build(bl):
        return bl.op(op, bl.op("full", shape=(), value=a, dtype="int64"),
                     bl.op("full", shape=(), value=b, dtype="int64"))
    g, _ = _fold(_graph_of(build))
    assert ops_of(str(g)) == ["full"]
    np.testing.assert_array_equal(_run(_graph_of(build)), _run(g))


@pytest.mark.parametrize("op", ["exp", "tanh", "log", "sigmoid"])
def test_transcendentals_are_not_folded(op):
    g, st_ = _fold(_graph_of(lambda b: b.op(op, b.op("full", shape=(), value=0.3, dtype="float32"))))
    assert ops_of(str(g)) == ["full", op] and st_ == {}


@pytest.mark.parametrize("value,count,folds", [(0.5, 1000, True), (0.1, 1000, False), (1.0, 2 ** 24, True),
                                               (3.0, 2 ** 23, False)])
def test_a_sum_folds_only_when_every_partial_sum_is_exact(value, count, folds):
    g, _ = _fold(_graph_of(lambda b: b.op("sum", b.op("full", shape=(count,), value=value, dtype="float32"),
                                          axis=None, keepdims=False)))
    assert (ops_of(str(g)) == ["full"]) == folds
    if folds:
        assert g.nodes[0].attrs["value"] == value * count


def test_inf_and_nan_are_not_folded():
    g, _ = _fold(_graph_of(lambda b: b.op("div", b.op("full", shape=(), value=1.0, dtype="float32"),
                                          b.op("full", shape=(), value=0.0, dtype="float32"))))
    assert "div" in ops_of(str(g))


def test_shape_ops_of_a_full_keep_symbolic_dims():
    n = Dim.symbol("N")
    g = Graph("t", span=SPAN, dims={"N": 4})
    b = Builder(g, SPAN)
    x = b.input("x", TensorType(DType.f32, (n, 3)))
    c = b.op("transpose", b.op("expand", b.op("full", shape=(1, 3), value=2.0, dtype="float32"), shape=(n, 3)),
             axes=(1, 0))
    g.outputs, g.output_names = [b.op("matmul", x, b.op("reshape", c, shape=(3, n)))], ["y"]
    g, st_ = _fold(g)
    assert st_ == {"fold_constants.folded": 3}
    assert "full() {shape=(3, N), value=2, dtype='float32'}" in str(g)


def test_arange_arithmetic_in_a_pooling_gradient():
    """The max-pool VJP offsets each row of indices by arange(C*N) * H*W: one arange after folding."""
    spec = "specs/digits_cnn.dln"
    g, st_ = stats(spec, ["fold_constants"], mode="train", grad=True)
    assert st_.get("fold_constants.arange", 0) >= 1
    assert re.search(r"arange\(\) {start=0, stop=\d+\*N - \d+, step=\d+,", str(g))
    check_pass(spec, ["fold_constants"], mode="train", grads=True)
