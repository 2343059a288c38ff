"""Real models: the hand-written PyTorch references of bench/reference (torchvision and Hugging
Face layouts) exported with torch.onnx.export, imported, and run on every backend against
onnxruntime."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

import real_models

from dlc.frontend.onnx import import_onnx
from dlc.onnx_import import run_imported

NAMES = list(real_models.models())


@pytest.fixture(scope="module", params=NAMES)
def exported(request):
    data, feed, _module = real_models.export(request.param)
    ref = ort.InferenceSession(data, providers=["CPUExecutionProvider"]).run(None, feed)[0]
    return request.param, data, feed, ref


def _run(data, feed, backend):
    imp = import_onnx(onnx.load_from_string(data))
    n = next(iter(feed.values())).shape[0]
    return imp, run_imported(imp, feed, backend, bind={"N": n})["out"]


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_matches_onnxruntime(exported, backend):
    _name, data, feed, ref = exported
    _, out = _run(data, feed, backend)
    assert out.shape == ref.shape
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-5 * float(np.abs(ref).max()))


@pytest.mark.tvm
@pytest.mark.parametrize("name", ["mlp", "lenet5", "transformer_encoder_layer", "bert_tiny"])
def test_tvm_matches_onnxruntime(name):
    pytest.importorskip("tvm")
    data, feed, _ = real_models.export(name)
    ref = ort.InferenceSession(data, providers=["CPUExecutionProvider"]).run(None, feed)[0]
    _, out = _run(data, feed, "tvm")
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-5 * float(np.abs(ref).max()))


def test_same_ir_as_the_frontend(exported):
    """Layers come back as the frontend's ops on params named as the initializers (= torch's names)."""
    name, data, _feed, _ = exported
    imp = import_onnx(onnx.load_from_string(data))
    g = imp.graph
    model = onnx.load_from_string(data)
    inits = {t.name for t in model.graph.initializer}
    if name.endswith("_tagger"):
        # recurrent weights are re-laid-out into torch's gate order, under torch's names
        _, _, module = real_models.export(name)
        rnn = {p.name for p in g.params if p.name.startswith("rnn.")}
        assert rnn == {k for k in module.state_dict() if k.startswith("rnn.")}
        inits |= rnn
    assert {p.name for p in g.params if p.kind == "param"} <= inits
    assert set(imp.weights) == {p.name for p in g.params}
    ops = {n.op.name for n in g.nodes}
    if name in ("resnet18", "mobilenet_v2", "lenet5"):
        assert "conv2d" in ops
        convs = [n for n in g.nodes if n.op.name == "conv2d"]
        assert all(n.inputs[1].kind == "param" for n in convs)
    if name in ("resnet18", "mobilenet_v2"):
        bns = [n for n in g.nodes if n.op.name == "batch_norm"]
        assert bns and all(n.inputs[1].kind == "buffer" and n.inputs[3].kind == "param" for n in bns)
        assert any(layer.kind == "batchnorm" and layer.name == "bn1" for layer in g.layers) or name != "resnet18"
    if name == "resnet18":
        assert "layer1.0.conv1.weight" in imp.weights
        assert any(l.name == "layer1.0.conv1" and l.kind == "conv2d" for l in g.layers)
    if name in ("mlp", "lenet5"):
        assert "linear" in ops
    # the batch dimension stays symbolic
    assert any(not isinstance(d, int) for v in g.inputs for d in v.type.shape)


def test_weights_equal_the_torch_parameters():
    data, _feed, module = real_models.export("resnet18")
    imp = import_onnx(onnx.load_from_string(data))
    sd = module.state_dict()
    for name, w in imp.weights.items():
        np.testing.assert_array_equal(w, sd[name].numpy())


@pytest.mark.parametrize("name", ["resnet18", "bert_tiny", "gpt2_tiny"])
def test_torch_onnx_default_constant_folding(name):
    """torch.onnx's default export (weights pre-transposed and renamed onnx::MatMul_..) imports too."""
    data, feed, _ = real_models.export(name, fold=True)
    ref = ort.InferenceSession(data, providers=["CPUExecutionProvider"]).run(None, feed)[0]
    _, out = _run(data, feed, "numpy")
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-5 * float(np.abs(ref).max()))
