"""compiler.training builds training programs from IR alone: a model graph and
a `TrainSpec` whose loss is a graph.  Here both are built by hand, with no
frontend, and one step is checked against torch autograd."""
import json
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dlc.backends.numpy.interpreter import Interpreter
from dlc.compiler.builder import Builder
from dlc.compiler.dims import Dim
from dlc.compiler.ir import Graph, Init, ParamInfo
from dlc.compiler.printer import print_graph
from dlc.compiler.trainspec import LossSpec, TrainSpec
from dlc.compiler.training import build_loss, build_train_step, state_fill
from dlc.compiler.types import DType, TensorType
from dlc.errors import DlcTypeError

ROOT = Path(__file__).resolve().parents[2]
N = Dim.symbol("N")


def _model() -> Graph:
    """x: f32[N, 3] -> fc (3 -> 4) -> tanh -> output f32[N, 4]."""
    g = Graph("Tiny", mode="train")
    x = g.add_input("x", TensorType(DType.f32, (N, 3)))
    w = g.add_param(ParamInfo("fc.weight", Init.make("xavier_uniform")), TensorType(DType.f32, (4, 3)))
    b = g.add_param(ParamInfo("fc.bias", Init.make("zeros")), TensorType(DType.f32, (4,)))
    y = Builder(g).op("tanh", Builder(g).op("linear", x, w, b))
    g.outputs, g.output_names = [y], ["output"]
    return g


def _loss(mode: str) -> Graph:
    """cross_entropy(output, label) over the model's outputs and a class-index label."""
    g = Graph("Tiny.loss", mode=mode)
    out = g.add_input("out:output", TensorType(DType.f32, (N, 4)))
    g.add_input("x", TensorType(DType.f32, (N, 3)))
    label = g.add_input("label", TensorType(DType.i64, (N,)))
    g.outputs, g.output_names = [Builder(g).op("cross_entropy", out, label)], ["loss"]
    return g


def _spec(**kw) -> TrainSpec:
    return TrainSpec(model="Tiny", loss=LossSpec(_loss("train"), _loss("eval")), **kw)


def test_a_hand_built_spec_gives_torch_s_sgd_step():
    torch = pytest.importorskip("torch")
    spec = _spec(optimizer="sgd", optimizer_args={"lr": 0.5}, l2=0.01)
    step = build_train_step(_model(), spec)
    assert spec.loss.label == TensorType(DType.i64, (N,))
    rng = np.random.default_rng(0)
    x = rng.standard_normal((5, 3)).astype(np.float32)
    y = rng.integers(0, 4, 5)
    w = {"fc.weight": rng.standard_normal((4, 3)).astype(np.float32),
         "fc.bias": rng.standard_normal(4).astype(np.float32)}
    feed = {"x": x, "label": y, "lr": np.float32(0.5), "step": np.float32(1)}
    feed.update({k: np.full([int(d) for d in t.shape], f, t.dtype.numpy_name)
                 for k, (t, f) in state_fill(spec, step.params).items()})
    outs, _ = Interpreter(step.graph, dims={"N": 5}).run(feed, w)

    tw = {k: torch.tensor(v, requires_grad=True) for k, v in w.items()}
    logits = torch.tanh(torch.nn.functional.linear(torch.tensor(x), tw["fc.weight"], tw["fc.bias"]))
    loss = torch.nn.functional.cross_entropy(logits, torch.tensor(y))
    (loss + 0.01 * (tw["fc.weight"] ** 2).sum()).backward()
    np.testing.assert_allclose(outs["loss"], loss.item(), rtol=1e-6)
    for k, t in tw.items():
        np.testing.assert_allclose(outs[f"param:{k}"], (t - 0.5 * t.grad).detach().numpy(), rtol=1e-5, atol=1e-6)


def test_build_loss_binds_by_name_and_rejects_a_mismatched_model():
    g, loss, label = build_loss(_model(), _loss("eval"))
    assert loss.type.shape == () and label is not None and label.type.dtype == DType.i64
    assert [v.name for v in g.inputs] == ["x", "label"]
    wrong = Graph("Tiny", mode="eval")
    x = wrong.add_input("x", TensorType(DType.f32, (N, 3)))
    wrong.outputs, wrong.output_names = [Builder(wrong).op("tanh", x)], ["output"]   # f32[N, 3], not [N, 4]
    with pytest.raises(DlcTypeError, match=r"the loss reads the model's output 'output' as f32\[N, 4\]"):
        build_loss(wrong, _loss("eval"))


def test_a_spec_pickles_to_the_same_training_program():
    """Specs cross process boundaries (data-parallel workers): ops pickle by
    name, values get fresh ids, the program built from the copy is the same."""
    spec = _spec(optimizer="adam", optimizer_args={"lr": 1e-3}, clip_grad_norm=1.0)
    copy = pickle.loads(pickle.dumps(spec))
    assert copy.loss.train.nodes[0].op is spec.loss.train.nodes[0].op
    assert {v.id for v in copy.loss.train.inputs}.isdisjoint(v.id for v in spec.loss.train.inputs)
    a = print_graph(build_train_step(_model(), spec).graph)
    b = print_graph(build_train_step(_model(), copy).graph)
    assert a == b


def test_the_compiler_trains_without_the_frontend():
    """Building and running a training step loads no frontend, API or CLI module."""
    code = f"""
import json, sys
sys.path.insert(0, {str(Path(__file__).parent)!r})
import test_trainspec as t
from dlc.compiler.training import build_train_step
step = build_train_step(t._model(), t._spec(optimizer="sgd", optimizer_args={{"lr": 0.1}}))
print(json.dumps(sorted(m for m in sys.modules if m.startswith(("dlc.frontend", "dlc.api", "dlc.cli", "dlc.trainer")))))
"""
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout.strip().splitlines()[-1]) == []
