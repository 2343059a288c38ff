"""ONNX (torch.onnx.export of the bench/reference models) -> dlc import -> readable .dln (-o, through
the decompiler) -> the spec run on the renamed weights equals onnxruntime; the spec's parameter names
are PyTorch's; decompiling the spec's own graph gives the same text (a fixed point)."""
from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("torch")

import real_models

import dlc
from dlc.frontend.decompile import decompile
from dlc.frontend.onnx import import_onnx
from dlc.onnx_import_cli import write_spec


@pytest.mark.parametrize("name", ["mlp", "lenet5", "resnet18", "transformer_encoder_layer", "bert_tiny",
                                  "lstm_tagger"])
def test_onnx_to_spec_round_trip(name, tmp_path):
    data, feed, module = real_models.export(name)
    ref = ort.InferenceSession(data, providers=["CPUExecutionProvider"]).run(None, feed)[0]
    imp = import_onnx(onnx.load_from_string(data))
    spec = tmp_path / f"{name}.dln"
    weights = write_spec(imp.graph, imp.weights, str(spec))
    m = dlc.load(spec)
    n = next(iter(feed.values())).shape[0]
    out = next(iter(m.run(feed, weights, backend="numpy", bind={"N": n}).values()))
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-5 * float(np.abs(ref).max()))
    if name in ("mlp", "lenet5", "resnet18"):
        # torch's parameter names survive ONNX -> IR -> .dln
        trainable = {p.name for p in m.graph.params if p.kind == "param"}
        assert trainable == {k for k, _ in module.named_parameters()}
        # a fixed point where the decompiler's patterns cover the whole graph
        assert decompile(m.graph, name=m.name).text == spec.read_text()


def test_resnet18_reads_as_written(tmp_path):
    data, _, _ = real_models.export("resnet18")
    imp = import_onnx(onnx.load_from_string(data))
    spec = tmp_path / "resnet18.dln"
    write_spec(imp.graph, imp.weights, str(spec))
    text = spec.read_text()
    assert "block " in text and "for i" in text
    assert 'conv2d(x, 64, 7, stride=2, padding=3, bias=false, name="conv1")' in text
    assert 'dense(1000, name="fc")' in text
