"""The memory planner: lifetimes, buffer reuse that never overlaps live values,
and the planned peak against the naive total."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import dlc
from dlc.backends.numpy.interpreter import Interpreter
from dlc.compiler.builder import Builder
from dlc.compiler.ir import Graph
from dlc.compiler.ops import OPS
from dlc.compiler.memory_plan import last_uses, live_bytes, node_uses, plan_memory, storages
from dlc.compiler.types import DType, TensorType


def _chain() -> tuple[Graph, list]:
    """x -> a = relu(x) -> b = exp(a) -> c = a + b -> r = reshape(c) -> out; d = neg(x) unused."""
    g = Graph("chain")
    x = g.add_input("x", TensorType(DType.f32, (4, 8)))
    b = Builder(g)
    a = b.op("relu", x)
    e = b.op("exp", a)
    c = b.op("add", a, e)
    r = b.op("reshape", c, shape=(32,))
    d = b.op("neg", x)
    g.outputs, g.output_names = [r], ["y"]
    return g, [a, e, c, r, d]


def test_lifetimes_run_from_definition_to_last_use_and_outputs_to_the_end():
    g, (a, e, c, r, d) = _chain()
    by_value = {s.value.id: s for s in storages(g, {})}
    assert (by_value[a.id].start, by_value[a.id].end) == (0, 2)      # read last by the add
    assert (by_value[e.id].start, by_value[e.id].end) == (1, 2)
    # the reshape is a view: c's storage holds it and lives to the end (step 5 = after the last node)
    assert r.id not in by_value and by_value[c.id].views == [r]
    assert (by_value[c.id].start, by_value[c.id].end) == (2, len(g.nodes))
    assert (by_value[d.id].start, by_value[d.id].end) == (4, 4)      # nobody reads it
    assert all(s.size == 4 * 8 * 4 for s in by_value.values())


def test_a_reshape_of_a_transpose_has_storage_of_its_own():
    g = Graph("tr")
    x = g.add_input("x", TensorType(DType.f32, (4, 8)))
    b = Builder(g)
    a = b.op("exp", x)
    t = b.op("transpose", a, axes=(1, 0))
    r = b.op("reshape", t, shape=(32,))
    g.outputs, g.output_names = [r], ["y"]
    by_value = {s.value.id: s for s in storages(g, {})}
    assert by_value[a.id].views == [t] and by_value[a.id].end == 2      # read by the reshape's copy
    assert r.id in by_value and by_value[r.id].size == 32 * 4


def test_last_uses_free_each_value_once_and_never_an_output():
    g, (a, e, c, r, d) = _chain()
    frees = last_uses(g)
    assert [[v.id for v in vs] for vs in frees] == [[], [], [a.id, e.id], [c.id], [d.id]]


def test_plan_reuses_dead_buffers_and_reports_naive_and_peak():
    g, _ = _chain()
    plan = plan_memory(g, {})
    assert plan.naive == 4 * 128            # a, e, c, d (the reshape is a view)
    assert plan.live_peak == 3 * 128        # a, e and c alive at the add
    assert plan.peak == 3 * 128             # d reuses a dead buffer
    assert plan.kernels == len(g.nodes) - 1    # compiler.kernels: the reshape of a fresh value is a view


@st.composite
def random_dags(draw) -> Graph:
    """A random graph of 1-d f32 values: unary ops, adds of equal sizes,
    concats (new sizes), reshapes (views) and a random set of outputs."""
    g = Graph("random")
    b = Builder(g)
    vals = [g.add_input("x", TensorType(DType.f32, (draw(st.integers(1, 16)),)))]
    for _ in range(draw(st.integers(1, 30))):
        kind = draw(st.sampled_from(["unary", "add", "concat", "reshape", "transpose"]))
        u = vals[draw(st.integers(0, len(vals) - 1))]
        if kind == "unary":
            vals.append(b.op(draw(st.sampled_from(["relu", "exp", "neg"])), u))
        elif kind == "add":
            same = [v for v in vals if v.type.shape == u.type.shape]
            vals.append(b.op("add", u, same[draw(st.integers(0, len(same) - 1))]))
        elif kind == "concat":
            w = vals[draw(st.integers(0, len(vals) - 1))]
            vals.append(b.op("concat", u, w, axis=0))
        elif kind == "transpose":        # a view; a reshape of it is a copy with its own storage
            t = b.op("transpose", u, axes=(0,))
            vals.append(t if draw(st.booleans()) else b.op("reshape", t, shape=(int(u.type.shape[-1]),)))
        else:
            row = b.op("reshape", u, shape=(1, int(u.type.shape[-1])))      # a view of a view
            vals.append(b.op("reshape", row, shape=(int(u.type.shape[-1]),)))
    made = [v for v in vals[1:]]
    outs = draw(st.lists(st.sampled_from(made), min_size=1, max_size=3, unique_by=lambda v: v.id))
    g.outputs, g.output_names = outs, [f"y{i}" for i in range(len(outs))]
    return g


def _check_plan(g: Graph, dims: dict) -> None:
    plan = plan_memory(g, dims)
    stores = {s.value.id: s for s in plan.storages}
    holder = {}
    for s in plan.storages:
        for v in [s.value] + s.views:
            holder[v.id] = s
    # every read of a planned value happens while its storage is live
    for i, n in enumerate(g.nodes):
        for v in node_uses(n):
            if v.id in holder:
                assert holder[v.id].start <= i <= holder[v.id].end
    for v in list(g.outputs) + list(g.state_updates.values()):
        if v.id in holder:
            assert holder[v.id].end == len(g.nodes)
    # no two storages in one buffer are ever live at the same step, and each fits
    by_buffer: dict[int, list] = {}
    for vid, b in plan.assignment.items():
        by_buffer.setdefault(b, []).append(stores[vid])
    for b, members in by_buffer.items():
        assert all(s.size <= plan.buffers[b] for s in members)
        members.sort(key=lambda s: s.start)
        for p, q in zip(members, members[1:]):
            assert p.end < q.start, f"buffer {b}: {p.value} and {q.value} overlap"
    assert set(plan.assignment) == {s.value.id for s in plan.storages if s.size > 0}
    assert plan.live_peak <= plan.peak <= plan.naive
    assert plan.live_peak == max(live_bytes(plan.storages, len(g.nodes)))


@settings(max_examples=150, deadline=None)
@given(random_dags())
def test_random_dags_never_share_a_buffer_between_live_values(g):
    _check_plan(g, {})


@pytest.mark.parametrize("spec, mode", [("resnet18", "eval"), ("lstm_tagger", "eval"), ("lenet5", "train"),
                                        ("transformer_encoder_layer", "eval")])
def test_zoo_plans_are_sound(spec, mode):
    m = dlc.load(f"specs/{spec}.dln", bind={"N": 2})
    g = m.compiled_graph(mode, {"N": 2})
    _check_plan(g, {**{k: v for k, v in g.dims.items() if v}, "N": 2})


def test_greedy_by_size_takes_the_smallest_free_buffer_that_fits():
    """Largest first, best fit: C (8 floats) may go to A's buffer (32) or
    B's (16), both dead by then; it takes B's."""
    g = Graph("fit")
    b = Builder(g)
    x = g.add_input("x", TensorType(DType.f32, (8,)))
    a = b.op("concat", x, x, x, x, axis=0)      # 32 floats, steps 0..2
    bb = b.op("concat", x, x, axis=0)           # 16 floats, steps 1..2
    t = b.op("concat", a, bb, axis=0)           # 48 floats, steps 2..end
    c = b.op("relu", x)                         # 8 floats, steps 3..end
    g.outputs, g.output_names = [t, c], ["t", "c"]
    plan = plan_memory(g, {})
    assert plan.assignment[c.id] == plan.assignment[bb.id] != plan.assignment[a.id]
    assert plan.buffers == [48 * 4, 32 * 4, 16 * 4]
    assert plan.peak == plan.live_peak == 96 * 4


def test_resnet50_planned_peak_is_at_least_40_percent_below_naive():
    m = dlc.load("specs/resnet50.dln", bind={"N": 1})
    for g in (m._elaborate("eval", {"N": 1}), m.compiled_graph("eval", {"N": 1})):
        plan = plan_memory(g, {"N": 1})
        assert plan.peak <= 0.6 * plan.naive, (plan.peak, plan.naive)


def test_scan_keeps_what_its_body_captures_alive():
    """k, read only inside the scan body, lives to the scan; the interpreter
    (which frees by these lifetimes) still finds it there."""
    g = Graph("g")
    x = g.add_input("x", TensorType(DType.f32, (3, 4)))
    b = Builder(g)
    k = b.op("sum", b.op("exp", b.op("relu", x)), axis=0)
    init = b.op("neg", k)
    body = Graph("body", parent=g)
    c = body.add_input("c", TensorType(DType.f32, (4,)))
    s = body.add_input("s", TensorType(DType.f32, (4,)))
    bb = Builder(body)
    step = bb.op("mul", bb.op("add", c, s), k)
    body.outputs = [step, step]
    _, ys = g.add_node(OPS["scan"], [init, x], {"num_carry": 1, "axis": 0}, body=body)
    g.outputs, g.output_names = [ys], ["y"]
    scan_step = len(g.nodes) - 1
    held = {st.value.id: st for st in storages(g, {})}[k.id]
    assert held.end == scan_step
    assert k.id in {v.id for v in last_uses(g)[scan_step]}

    xs = np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32)
    got = Interpreter(g).run({"x": xs}, {})[0]["y"]
    kk = np.exp(np.maximum(xs, 0)).sum(axis=0)
    carry, want = -kk, []
    for t in range(3):
        carry = (carry + xs[t]) * kk
        want.append(carry)
    np.testing.assert_allclose(got, np.stack(want), rtol=1e-6)
