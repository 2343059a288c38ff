"""The NumPy interpreter frees values after their last use, and what it
allocates agrees with the memory plan.

What is measured: tracemalloc's peak over one run, started after the inputs
and weights exist, so it counts the activations and the kernels' scratch
(not the inputs or the weights).  The plan's side is
`plan_memory(g, dims, workspace_bytes).workspace_peak`: the most activation
bytes alive at one step plus that step's kernel scratch."""
from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

import dlc
from dlc.backends.numpy.interpreter import Interpreter
from dlc.backends.numpy.workspace import workspace_bytes
from dlc.compiler.memory_plan import plan_memory


def _setup(spec: str, n: int, mode: str = "eval", disable=()):
    m = dlc.load(f"specs/{spec}.dln", bind={"N": n}).optimize(level=2, disable=disable)
    g = m.compiled_graph(mode, {"N": n})
    dims = {**{k: v for k, v in g.dims.items() if v}, "N": n}
    return g, dims, m.random_inputs(seed=0, bind={"N": n}), m.init_weights(seed=0)


def _measured_peak(interp: Interpreter, x: dict, w: dict) -> int:
    tracemalloc.start()
    try:
        interp.run(x, w)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("spec, n, mode", [("resnet18", 1, "eval"), ("mobilenet_v2", 1, "eval"),
                                           ("googlenet", 1, "eval"), ("lenet5", 64, "eval"),
                                           ("alexnet", 2, "eval"), ("lenet5", 16, "train"),
                                           ("transformer_encoder_layer", 4, "eval")])
def test_tracemalloc_peak_agrees_with_the_plan_within_10_percent(spec, n, mode):
    g, dims, x, w = _setup(spec, n, mode)
    interp = Interpreter(g, dims=dims)
    interp.run(x, w)                              # warm the attribute and constant caches
    measured = _measured_peak(interp, x, w)
    plan = plan_memory(g, dims, workspace_bytes)
    assert abs(measured - plan.workspace_peak) <= 0.10 * plan.workspace_peak, (measured, plan.workspace_peak)


def test_resnet50_interpreter_peak_agrees_with_the_plan():
    g, dims, x, w = _setup("resnet50", 1)
    interp = Interpreter(g, dims=dims)
    interp.run(x, w)
    measured = _measured_peak(interp, x, w)
    plan = plan_memory(g, dims, workspace_bytes)
    assert abs(measured - plan.workspace_peak) <= 0.10 * plan.workspace_peak, (measured, plan.workspace_peak)
    assert plan.peak <= 0.6 * plan.naive
    assert measured < 0.2 * plan.naive       # before: every intermediate kept (the naive total)


@pytest.mark.parametrize("spec, n, mode", [("lenet5", 4, "train"), ("transformer_encoder_layer", 2, "eval"),
                                           ("lstm_tagger", 3, "eval"), ("vae", 4, "train")])
def test_freeing_changes_no_result(spec, n, mode):
    """The same outputs and state updates, bit for bit, with every intermediate kept."""
    g, dims, x, w = _setup(spec, n, mode)
    outs, updates = Interpreter(g, dims=dims).run(x, w)
    env = {v.id: x[v.name] for v in g.inputs} | {p.id: w[p.name] for p in g.params}
    keep = Interpreter(g, dims=dims)
    with np.errstate(all="ignore"):
        keep.run_nodes(g, env, free=False)
    for name, v in zip(g.output_names, g.outputs):
        np.testing.assert_array_equal(outs[name], env[v.id])
    for name, v in g.state_updates.items():
        np.testing.assert_array_equal(updates[name], env[v.id])
    # kept, the environment holds every node result; freed, only what was asked for
    assert sum(len(n.outputs) for n in g.nodes) > len(g.outputs) + len(g.state_updates)


def test_run_drops_every_intermediate(monkeypatch):
    """After a node runs, the environment holds no value whose last use is past.
    (Without fusion: a fused region's body runs inside its node, test_fused_run.py.)"""
    g, dims, x, w = _setup("lenet5", 2, disable=("fusion",))
    interp = Interpreter(g, dims=dims)
    sizes = []
    real = interp.run_node

    def spy(node, env):
        sizes.append(sum(1 for k in env if k not in base))
        return real(node, env)
    base = {v.id for v in g.inputs} | {p.id for p in g.params}
    monkeypatch.setattr(interp, "run_node", spy)
    interp.run(x, w)
    # lenet5 is a chain: at most a value and its skip partner are alive between nodes
    assert max(sizes) <= 2 and len(sizes) == len(g.nodes)
