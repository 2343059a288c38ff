"""Training on the TVM backend: one step of dlc's training-step graph
(forward, symbolic backward, optimizer update) compiled with TVM equals the
NumPy reference's step -- loss, every updated parameter, every optimizer
state and every buffer update -- for an MLP (Adam), LeNet-5 (SGD with
momentum) and a small conv net with batch norm and dropout in train mode;
then a short `dlc.train(backend="tvm")` run matches the NumPy run epoch by
epoch."""
from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("TVM_NUM_THREADS", str(max(1, min(os.cpu_count() or 1, 2))))
pytest.importorskip("tvm")

from dlc.backends.numpy.interpreter import Interpreter
from dlc.backends.tvm.training import TvmStepRunner
from dlc.compiler.init import init_params
from dlc.compiler.training import build_train_step, state_fill
from dlc.frontend.blocks import elaborate_model
from dlc.frontend.modules import load_module
from dlc.frontend.train import train_settings

import dlc
from dlc.errors import DlcValueError
from dlc.trainer import _find_train

pytestmark = pytest.mark.tvm

BN_DROPOUT = """
model BnNet(image: f32[N, 1, 8, 8]) -> f32[N, 10] {
    example N = 1
    c = conv2d(image, 4, kernel=3, padding=1) |> batchnorm2d |> relu
    p = avgpool2d(c, 2) |> flatten
    h = dense(p, 16) |> batchnorm1d |> relu |> dropout(0.3)
    output = dense(h, 10)
    return output
}

train BnNet on digits_images {
    loss      = cross_entropy(output, label)
    optimizer = sgd(lr=0.1, momentum=0.9)
    epochs    = 1
    batch     = 16
}
"""


def _step(path, n, optimizer=None, bind=None):
    """The train-step graph of `path` and one step's feed for a batch of `n`."""
    mod = load_module(path)
    name, tdef = _find_train(mod, None)
    s = train_settings(mod, tdef, bind)
    if optimizer is not None:
        s.optimizer, s.optimizer_args = optimizer
    prog = build_train_step(elaborate_model(mod, name, "train", bind), s)
    g = prog.graph
    weights = init_params(g, 3)
    rng = np.random.default_rng(0)
    x = g.inputs[0]
    feed = {x.name: rng.standard_normal((n,) + tuple(int(d) for d in x.type.shape[1:])).astype(np.float32),
            "label": rng.integers(0, 10, n).astype(prog.label.type.dtype.numpy_name),
            "lr": np.asarray(0.05, np.float32), "step": np.asarray(1, np.float32)}
    for k, (t, fill) in state_fill(s, prog.params).items():
        feed[k] = np.full(tuple(int(d) for d in t.shape), fill, dtype=t.dtype.numpy_name)
    # start the optimizer state away from its fill values, so its update is tested too
    for k in list(feed):
        if k.startswith(("momentum_buffer.", "exp_avg.")):
            feed[k] = (0.01 * rng.standard_normal(feed[k].shape)).astype(feed[k].dtype)
    return g, feed, weights


def _close(name, ref, got, rtol=1e-4):
    ref = np.asarray(ref, np.float64)
    got = np.asarray(got, np.float64)
    assert ref.shape == got.shape, (name, ref.shape, got.shape)
    # relative to the tensor's largest entry; a gradient that is zero in exact
    # arithmetic (a bias feeding a batch norm) is rounding noise of ~1e-8
    scale = max(float(np.abs(ref).max(initial=0.0)), 1e-2)
    err = float(np.abs(ref - got).max(initial=0.0))
    assert err <= rtol * scale, f"{name}: max |diff| {err:.3g} vs scale {scale:.3g}"


def _compare_step(g, feed, weights, seed=11):
    ref_outs, ref_upd = Interpreter(g, dims={"N": len(feed["label"])}, seed=seed).run(feed, weights)
    runner = TvmStepRunner(g)
    outs, upd = runner(feed, weights, seed)
    assert set(outs) == set(ref_outs) and set(upd) == set(ref_upd)
    checked = [k for k in ref_outs if k == "loss" or k.startswith(("param:", "state:"))]
    assert "loss" in checked and any(k.startswith("param:") for k in checked)
    for k in ref_outs:
        _close(k, ref_outs[k], outs[k])
    for k in ref_upd:
        _close(f"update:{k}", ref_upd[k], upd[k])
    return runner, outs, upd


def test_mlp_adam_step_matches_numpy():
    g, feed, w = _step("specs/mlp.dln", 8)
    runner, outs, _ = _compare_step(g, feed, w)
    assert any(k.startswith("state:exp_avg_sq.") for k in outs)
    # the batch stays symbolic: a smaller last batch runs the same executable
    _, feed2, _ = _step("specs/mlp.dln", 3)
    ref, _ = Interpreter(g, dims={"N": 3}, seed=5).run(feed2, w)
    got, _ = runner(feed2, w, 5)
    _close("loss (N=3)", ref["loss"], got["loss"])
    assert len(runner._variants) == 1


def test_lenet5_sgd_momentum_step_matches_numpy():
    g, feed, w = _step("specs/lenet5.dln", 2, optimizer=("sgd", {"lr": 0.05, "momentum": 0.9}))
    _compare_step(g, feed, w)


def test_batchnorm_dropout_train_step_matches_numpy(tmp_path):
    spec = tmp_path / "bn.dln"
    spec.write_text(BN_DROPOUT)
    g, feed, w = _step(str(spec), 6)
    runner, outs, upd = _compare_step(g, feed, w)
    assert {"c.1.running_mean", "c.1.running_var", "h.1.num_batches_tracked"} <= set(upd)
    # dropout really dropped something: another seed gives another step
    outs2, _ = runner(feed, w, 12)
    assert not np.allclose(outs["param:output.weight"], outs2["param:output.weight"])


def test_outputs_fed_back_stay_in_tvm_memory():
    g, feed, w = _step("specs/mlp.dln", 4)
    runner = TvmStepRunner(g)
    outs, _ = runner(feed, w, 0)
    w2 = {k[6:]: v for k, v in outs.items() if k.startswith("param:")}
    for k, v in outs.items():
        if k.startswith("state:"):
            feed[k[6:]] = v
    views = dict(runner._views)
    ref, _ = Interpreter(g, dims={"N": 4}, seed=1).run(feed, {k: np.array(v) for k, v in w2.items()})
    got, _ = runner(feed, w2, 1)
    assert all(id(v) in views for v in w2.values())      # passed back without a copy
    for k in ref:
        _close(k, ref[k], got[k])


def test_train_tvm_matches_numpy_and_loss_decreases():
    kw = {"data": "digits", "epochs": 2, "progress": False}
    tv = dlc.train("specs/mlp.dln", backend="tvm", **kw)
    ref = dlc.train("specs/mlp.dln", backend="numpy", **kw)
    assert tv.history[-1]["train_loss"] < 0.8 * tv.history[0]["train_loss"]
    for a, b in zip(tv.history, ref.history):
        for k in ("train_loss", "val_loss", "val_accuracy"):
            assert abs(a[k] - b[k]) <= 1e-4 * max(1.0, abs(b[k])), (k, a[k], b[k])


def test_tvm_training_refuses_autograd():
    with pytest.raises(DlcValueError, match="symbolic"):
        dlc.train("specs/mlp.dln", data="digits", epochs=1, progress=False, backend="tvm", grad="autograd")


@pytest.mark.slow
def test_mlp_reaches_97_percent_on_tvm():
    r = dlc.train("specs/mlp.dln", data="digits", progress=False, backend="tvm")
    assert max(h["val_accuracy"] for h in r.history) >= 0.97


@pytest.mark.slow
def test_digits_cnn_step_matches_numpy():
    g, feed, w = _step("specs/digits_cnn.dln", 5)
    _compare_step(g, feed, w)
