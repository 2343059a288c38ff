"""dlc export --train: one training step (forward, loss, backward, optimizer
update) as ONNX.  onnxruntime's step equals the NumPy reference running the
same step graph: loss, updated parameters and optimizer state."""
from __future__ import annotations

import os

import numpy as np
import onnx
import pytest
from export_util import rel_err, run_onnx

import dlc
from dlc.backends import get_backend
from dlc.backends.onnx import export_graph
from dlc.bench_train import STEP_TOLERANCE, train_setup
from dlc.onnx_export_cli import export_spec, train_graph

SPECS = os.path.normpath(os.path.join(os.path.dirname(__file__), "..", "..", "specs"))
# specs whose step draws no random numbers (no dropout, no randn): exactly comparable
DETERMINISTIC = ["mlp", "perceptron", "lenet5", "gru_classifier", "lstm_cell", "lstm_tagger", "rnn_lm"]


def _step(name):
    m = dlc.load(os.path.join(SPECS, f"{name}.dln"))
    bind = {k: v for k, v in {"N": 3, "T": 4}.items() if k in m.symbolic_graph().inputs[0].type.symbols()}
    g, state = train_graph(m, bind)
    w = m.init_weights(0)
    setup = train_setup(m, bind, 0)
    names = {v.name for v in g.inputs}
    feed = {k: v for k, v in {**setup["feed"], **state}.items() if k in names}
    feed["lr"], feed["step"] = np.array(0.01, np.float32), np.array(1, np.float32)
    return m, g, w, state, feed, bind


@pytest.mark.parametrize("name", DETERMINISTIC + [pytest.param("resnet18", marks=pytest.mark.slow)])
def test_onnxruntime_takes_the_same_training_step(name):
    m, g, w, state, feed, bind = _step(name)
    proto = export_graph(g, w, trainable_inputs=True, extra_defaults=state)
    onnx.checker.check_model(proto, full_check=True)
    ref, updates = get_backend("numpy").compile(g, bind=bind).run(feed, w, 0)
    # the optimizer state and the weights have defaults: the batch, lr and step suffice
    got = run_onnx(proto, feed)
    assert set(ref) <= set(got) and any(k.startswith("param:") for k in ref)
    assert rel_err(got["loss"], ref["loss"]) <= 1e-5
    # 18 layers of batch-norm backward in float32 move the first layers' gradients by up to ~3e-3 of
    # their largest entry: the tolerance dlc bench --train allows between float32 runtimes
    tol = STEP_TOLERANCE if name == "resnet18" else 1e-4
    for k, r in ref.items():
        # a conv bias before a batch norm has zero gradient: float noise of 1e-8 on both sides
        assert np.max(np.abs(got[k] - r)) <= tol * np.max(np.abs(r)) + 1e-6, k
    for k, r in updates.items():
        assert rel_err(got[f"update:{k}"], r) <= 1e-4, k


def test_the_weights_are_inputs_a_second_step_feeds_back():
    m, g, w, state, feed, bind = _step("mlp")
    proto = export_graph(g, w, trainable_inputs=True, extra_defaults=state)
    exe = get_backend("numpy").compile(g, bind=bind)
    first = run_onnx(proto, feed)
    params = {k[6:]: v for k, v in first.items() if k.startswith("param:")}
    opt = {k[6:]: v for k, v in first.items() if k.startswith("state:")}
    second = run_onnx(proto, {**feed, **params, **opt, "step": np.array(2, np.float32)})
    r1, _ = exe.run(feed, w, 0)
    w2 = {**w, **{k[6:]: v for k, v in r1.items() if k.startswith("param:")}}
    r2, _ = exe.run({**feed, **{k[6:]: v for k, v in r1.items() if k.startswith("state:")},
                     "step": np.array(2, np.float32)}, w2, 0)
    assert rel_err(second["loss"], r2["loss"]) <= 1e-5
    assert float(second["loss"]) != float(first["loss"])


def test_a_step_with_dropout_exports_with_onnx_dropout():
    proto, info = export_spec(os.path.join(SPECS, "digits_cnn.dln"), train=True, bind={"N": 4})
    onnx.checker.check_model(proto, full_check=True)
    assert info["mode"] == "train" and "loss" in info["outputs"]
    assert any(n.op_type == "Dropout" for n in proto.graph.node)
    assert {"conv1.weight", "lr", "step"} <= set(info["inputs"])


BN_SPEC = """
model SmallBN(image: f32[N, 2, 6, 6]) -> f32[N, 3] {
    example N = 1
    h = conv2d(image, 4, kernel=3, padding=1) |> batchnorm |> relu
    p = maxpool2d(h, 2) |> flatten
    return dense(p, 3)
}

train SmallBN on digits_images {
    loss      = cross_entropy(output, label, label_smoothing=0.1)
    optimizer = sgd(lr=0.1, momentum=0.9)
    epochs    = 1
    batch     = 4
}
"""


def test_batch_norm_statistics_update_as_torch_does(tmp_path):
    p = tmp_path / "small_bn.dln"
    p.write_text(BN_SPEC)
    m = dlc.load(str(p))
    g, state = train_graph(m, {"N": 4})
    w = m.init_weights(0)
    rng = np.random.default_rng(0)
    feed = {"image": rng.standard_normal((4, 2, 6, 6)).astype(np.float32),
            "label": np.array([0, 2, 1, 2]), "lr": np.array(0.1, np.float32), "step": np.array(1, np.float32)}
    feed.update(state)
    feed = {k: v for k, v in feed.items() if k in {v.name for v in g.inputs}}
    proto = export_graph(g, w, trainable_inputs=True, extra_defaults=state)
    onnx.checker.check_model(proto, full_check=True)
    ref, updates = get_backend("numpy").compile(g, bind={"N": 4}).run(feed, w, 0)
    got = run_onnx(proto, feed)
    assert {"running_mean", "running_var"} <= {k.rsplit(".", 1)[1] for k in updates}
    for k, r in updates.items():
        assert rel_err(got[f"update:{k}"], r) <= 1e-5, k
    for k, r in ref.items():
        # a conv bias before a batch norm has zero gradient: float noise of 1e-8 on both sides
        assert np.max(np.abs(got[k] - r)) <= 1e-4 * np.max(np.abs(r)) + 1e-6, k


def test_a_symbolic_training_step_runs_at_any_batch_size():
    proto, info = export_spec(os.path.join(SPECS, "mlp.dln"), train=True)
    assert [d.dim_param for d in proto.graph.input[0].type.tensor_type.shape.dim][:1] == ["N"]
    m = dlc.load(os.path.join(SPECS, "mlp.dln"))
    for n in (2, 5):
        g, state = train_graph(m, {"N": n})
        setup = train_setup(m, {"N": n}, n)
        feed = {k: v for k, v in {**setup["feed"], **state}.items() if k in {v.name for v in g.inputs}}
        feed["lr"], feed["step"] = np.array(0.01, np.float32), np.array(1, np.float32)
        ref, _ = get_backend("numpy").compile(g, bind={"N": n}).run(feed, m.init_weights(0), 0)
        got = run_onnx(proto, {k: feed[k] for k in ("x", "label", "lr", "step")})
        assert rel_err(got["loss"], ref["loss"]) <= 1e-5
