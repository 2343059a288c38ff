"""fuse_optimizer: one `optimizer_update` region per parameter of a training
step, and the step computes exactly what it computed unfused (float64)."""
from __future__ import annotations

import numpy as np
import pytest
from harness import RTOL, as_f64, assert_close

import dlc
from dlc.backends import get_backend
from dlc.compiler.init import init_params
from dlc.compiler.passes import PipelineOptions, run_pipeline
from dlc.compiler.training import build_train_step, state_fill
from dlc.frontend.blocks import elaborate_model
from dlc.frontend.train import train_settings

OPTIMIZERS = [("sgd", {}), ("sgd", {"momentum": 0.9, "nesterov": True, "weight_decay": 1e-3}),
              ("adam", {}), ("adamw", {"amsgrad": True}), ("rmsprop", {"momentum": 0.5, "weight_decay": 1e-3}),
              ("adagrad", {"lr_decay": 0.01})]


def _step(spec, bind, optimizer, args, opts):
    m = dlc.load(spec, bind=bind)
    settings = train_settings(m.module, m.module.trains[0], bind)
    settings.optimizer, settings.optimizer_args = optimizer, dict(args)
    prog = build_train_step(elaborate_model(m.module, m.name, "train", bind), settings)
    run_pipeline(prog.graph, opts, dims=bind)
    return m, settings, prog


def _feed(m, settings, prog, bind, seed=0):
    rng = np.random.default_rng(seed)
    feed = as_f64(m.random_inputs(seed, bind))
    for v in prog.graph.inputs:
        shape = tuple(int(d) for d in v.type.shape)
        if v.name == "label":
            n_classes = int(m.graph.outputs[0].type.shape[-1])
            feed["label"] = (rng.integers(0, n_classes, shape) if v.type.dtype.name.startswith("i")
                             else rng.standard_normal(shape))
    for name, (stype, fill) in state_fill(settings, prog.params).items():
        shape = tuple(int(d) for d in stype.shape)
        # a state that has seen steps already (the update's every branch runs)
        # (rmsprop's grad_avg small enough that square_avg - grad_avg^2 > 0)
        size = 0.01 if name.startswith("grad_avg") else 1.0
        feed[name] = size * np.abs(rng.standard_normal(shape)) + fill
    feed["lr"], feed["step"] = np.float64(0.01), np.float64(3.0)
    return feed


def _run(g, feed, weights, bind):
    outs, _ = get_backend("numpy").compile(g, bind=bind).run(feed, weights, 0)
    return outs


@pytest.mark.parametrize("optimizer,args", OPTIMIZERS, ids=[o + str(len(a)) for o, a in OPTIMIZERS])
def test_one_region_per_parameter_and_the_same_step(optimizer, args):
    bind = {"N": 4}
    m, settings, ref = _step("specs/mlp.dln", bind, optimizer, args, PipelineOptions(level=0))
    _, _, fused = _step("specs/mlp.dln", bind, optimizer, args, PipelineOptions(passes=("fuse_optimizer",)))
    regions = [n for n in fused.graph.nodes if n.op.name == "fused"]
    assert [n.attrs["kind"] for n in regions] == ["optimizer_update"] * len(fused.params)
    names = dict(zip(fused.graph.output_names, fused.graph.outputs))
    for p, r in zip(fused.params, regions):
        # the region returns this parameter's new weight and state, nothing of the backward
        assert names[f"param:{p.name}"].producer is r
        for v in r.body.inputs:
            assert v.type.shape in ((), p.type.shape), f"{p.name}: region reads {v.name} {v.type}"
        assert any(v is p for v in r.inputs)
        assert f"grad.{p.name}" in [v.name for v in r.body.inputs]
        # its body holds the optimizer arithmetic only (no matmul of the backward)
        assert all(n.op.name not in ("matmul", "linear", "transpose") for n in r.body.nodes)
    weights = as_f64(init_params(ref.graph, 0, bind))
    feed = _feed(m, settings, ref, bind)
    assert_close(_run(ref.graph, feed, weights, bind), _run(fused.graph, feed, weights, bind), RTOL,
                 f"{optimizer} step: ")


def test_lenet5_adam_step_regions_and_numbers():
    bind = {"N": 2}
    m, settings, ref = _step("specs/lenet5.dln", bind, "adam", {"weight_decay": 1e-4}, PipelineOptions(level=0))
    _, _, got = _step("specs/lenet5.dln", bind, "adam", {"weight_decay": 1e-4}, PipelineOptions(level=2))
    kinds = [n.attrs["kind"] for n in got.graph.nodes if n.op.name == "fused"]
    assert kinds.count("optimizer_update") == len(got.params) == 10
    weights = as_f64(init_params(ref.graph, 0, bind))
    feed = _feed(m, settings, ref, bind)
    assert_close(_run(ref.graph, feed, weights, bind), _run(got.graph, feed, weights, bind), RTOL, "lenet5 -O2: ")


def test_graphs_without_an_update_are_left_alone():
    m = dlc.load("specs/mlp.dln")
    g = m.symbolic_graph("train")
    before = str(g)
    run_pipeline(g, PipelineOptions(passes=("fuse_optimizer",)))
    assert str(g) == before
