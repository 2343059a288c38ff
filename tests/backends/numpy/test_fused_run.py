"""The interpreter runs a fused region with in-place ufuncs: the same values
as its body run op by op, without the intermediate arrays."""
from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from dlc.backends.numpy.interpreter import Interpreter
from dlc.compiler.builder import Builder
from dlc.compiler.ir import Graph
from dlc.compiler.passes.regions import outline
from dlc.compiler.types import DType, TensorType

SHAPE = (64, 256)


def _graph(dtype) -> Graph:
    """y = exp(relu(x * w + b) - x) / (x * x + 2), with a broadcast bias."""
    g = Graph("chain")
    x = g.add_input("x", TensorType(dtype, SHAPE))
    w = g.add_input("w", TensorType(dtype, SHAPE))
    b = g.add_input("b", TensorType(dtype, SHAPE[1:]))
    two = g.add_input("two", TensorType(dtype, ()))
    bb = Builder(g)
    t = bb.op("relu", bb.op("add", bb.op("mul", x, w), b))
    y = bb.op("div", bb.op("exp", bb.op("sub", t, x)), bb.op("add", bb.op("mul", x, x), two))
    g.outputs, g.output_names = [y], ["y"]
    return g


def _feed(dtype):
    rng = np.random.default_rng(0)
    nd = np.float32 if dtype == DType.f32 else np.float64
    return {"x": rng.standard_normal(SHAPE).astype(nd), "w": rng.standard_normal(SHAPE).astype(nd),
            "b": rng.standard_normal(SHAPE[1:]).astype(nd), "two": np.asarray(2, nd)}


@pytest.mark.parametrize("dtype", [DType.f32, DType.f64])
def test_fused_region_equals_its_body_exactly(dtype):
    plain = _graph(dtype)
    fused = _graph(dtype)
    node = outline(fused, list(fused.nodes), "elementwise")
    assert node is not None and [n.op.name for n in fused.nodes] == ["fused"]
    feed = _feed(dtype)
    before = {k: v.copy() for k, v in feed.items()}
    want = Interpreter(plain).run(feed, {})[0]["y"]
    got = Interpreter(fused).run(feed, {})[0]["y"]
    np.testing.assert_array_equal(got, want)
    for k in feed:                                   # the region's operands are never written
        np.testing.assert_array_equal(feed[k], before[k])


def test_fused_region_allocates_no_intermediate_arrays():
    plain, fused = _graph(DType.f32), _graph(DType.f32)
    outline(fused, list(fused.nodes), "elementwise")
    feed = _feed(DType.f32)
    out_bytes = feed["x"].nbytes

    def peak(g):
        it = Interpreter(g)
        it.run(feed, {})
        tracemalloc.start()
        it.run(feed, {})
        p = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        return p
    # op by op (freeing as it goes) at least three arrays are alive at once;
    # the fused chain writes into two (the result and x*x's) and drops nothing mid-way
    assert peak(plain) >= 3 * out_bytes
    assert peak(fused) <= 2.2 * out_bytes


def test_the_plan_counts_the_in_place_chain():
    """workspace_bytes models run_fused: the measured peak agrees within 10%."""
    from dlc.backends.numpy.workspace import workspace_bytes
    from dlc.compiler.memory_plan import plan_memory
    g = _graph(DType.f32)
    outline(g, list(g.nodes), "elementwise")
    feed = _feed(DType.f32)
    it = Interpreter(g)
    it.run(feed, {})
    tracemalloc.start()
    it.run(feed, {})
    measured = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    planned = plan_memory(g, {}, workspace_bytes).workspace_peak
    assert abs(measured - planned) <= 0.10 * planned, (measured, planned)


def test_conv_epilogue_runs_in_the_convolutions_array():
    """conv2d + bias + relu + residual add as one region: the same values as
    op by op, and no array beyond the convolution's own (plus its scratch)."""
    from dlc.backends.numpy.workspace import workspace_bytes
    from dlc.compiler.memory_plan import plan_memory

    def graph():
        g = Graph("block")
        x = g.add_input("x", TensorType(DType.f32, (2, 8, 16, 16)))
        w = g.add_input("w", TensorType(DType.f32, (8, 8, 3, 3)))
        b = g.add_input("b", TensorType(DType.f32, (8, 1, 1)))
        bb = Builder(g)
        y = bb.op("add", bb.op("relu", bb.op("add", bb.op("conv2d", x, w, padding=1), b)), x)
        g.outputs, g.output_names = [y], ["y"]
        return g
    rng = np.random.default_rng(1)
    feed = {"x": rng.standard_normal((2, 8, 16, 16)).astype(np.float32),
            "w": rng.standard_normal((8, 8, 3, 3)).astype(np.float32),
            "b": rng.standard_normal((8, 1, 1)).astype(np.float32)}
    class Spy(Interpreter):
        def call_op(self, name, args, attrs):
            out = super().call_op(name, args, attrs)
            if name == "conv2d":
                self.conv_out = out
            return out
    plain, fused = graph(), graph()
    assert outline(fused, list(fused.nodes), "conv_epilogue") is not None
    op_by_op = Spy(plain)
    want = op_by_op.run(feed, {})[0]["y"]
    assert not np.shares_memory(want, op_by_op.conv_out)
    it = Spy(fused)
    got = it.run(feed, {})[0]["y"]
    np.testing.assert_array_equal(got, want)
    assert np.shares_memory(got, it.conv_out)       # bias, relu and residual written into the conv's array
    tracemalloc.start()
    it.run(feed, {})
    measured = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    planned = plan_memory(fused, {}, workspace_bytes).workspace_peak
    assert abs(measured - planned) <= 0.10 * planned, (measured, planned)
