"""Checks the fusion tests share: gradients with a label, and the invariants
every fused region must keep (no random op, no body, convex)."""
from __future__ import annotations

import numpy as np
from harness import RTOL, as_f64, assert_close

import dlc
from dlc.compiler.ops.registry import RANDOM
from dlc.compiler.passes import PipelineOptions, run_pipeline
from dlc.compiler.verify import verify


def label_for(m: dlc.Model, bind: dict | None, seed: int = 0):
    """A label for the spec's train-section loss (None when it needs none)."""
    if m.loss_spec(bind) is None:
        return None
    g, _ = m.grad_graph("train", bind)
    lab = next((v for v in g.inputs if v.name == "label"), None)
    if lab is None:
        return None
    t = lab.type
    shape = tuple(int(d) for d in t.shape)
    rng = np.random.default_rng(seed)
    if t.dtype.is_float:
        return rng.standard_normal(shape)
    n_classes = int(m.graph.outputs[0].type.shape[1]) if m.graph.outputs[0].type.rank > 1 else 2
    return rng.integers(0, n_classes, shape)


def check_grads(spec, passes, bind: dict | None = None, seed: int = 0, rtol: float = RTOL) -> None:
    """Loss and every gradient (train mode) with `passes` against -O0, float64."""
    m = dlc.load(spec, bind=bind)
    weights = as_f64(m.init_weights(seed))
    inputs = as_f64(m.random_inputs(seed, bind))
    label = label_for(m, bind, seed)
    ref = m.optimize(level=0).grad(inputs, weights, label=label, mode="train", seed=seed, bind=bind)
    got = m.optimize(passes=passes).grad(inputs, weights, label=label, mode="train", seed=seed, bind=bind)
    assert_close({k: np.asarray(v) for k, v in ref.items()}, {k: np.asarray(v) for k, v in got.items()},
                 rtol, f"{spec} gradient ")


def optimized_graph(spec, passes=None, level=None, mode="eval", bind=None, grad=False):
    m = dlc.load(spec, bind=bind)
    g = m.grad_graph(mode, bind)[0] if grad else m.symbolic_graph(mode)
    opts = PipelineOptions(level=level) if level is not None else PipelineOptions(passes=tuple(passes))
    dims = {**{k: v for k, v in g.dims.items() if v is not None}, **(bind or {})}
    run_pipeline(g, opts, dims=dims)
    return g


def regions(g):
    return [n for n in g.nodes if n.op.name == "fused"]


def assert_regions_sound(g) -> None:
    """Every region: pure and flat (no random op, no body inside), at least
    two ops, and the graph verifies (a non-convex region would put the fused
    node before a value it reads, or read a value defined after it)."""
    verify(g)
    position = {}
    for i, n in enumerate(g.nodes):
        for o in n.outputs:
            position[o.id] = i
    for i, r in enumerate(regions(g)):
        assert sum(1 for n in r.body.nodes if n.op.name != "full") >= 1, r.attrs
        for n in r.body.nodes:
            assert RANDOM not in n.op.groups, f"region {r.attrs['kind']} holds the random op {n.op.name}"
            assert n.body is None, f"region {r.attrs['kind']} holds {n.op.name}, an op with a body"
        for v in r.inputs:
            assert position.get(v.id, -1) < g.nodes.index(r), "a region reads a value computed after it"
