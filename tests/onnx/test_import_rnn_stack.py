"""Stacked recurrent layers (dlc/frontend/onnx/stack.py): a multi-layer `lstm`/`gru`/`rnn` exports
as one ONNX node per layer and imports back as ONE op with all its layers, on the original
parameters, initial states and final states, when the nodes continue each other; otherwise as
separate ops.  Every import is checked against onnxruntime and the spec."""
from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

import dlc
from dlc.frontend.onnx import import_onnx
from dlc.onnx_export_cli import export_spec
from dlc.onnx_import import run_imported
from dlc.runtime.weights import save_weights

STACKED = """
model Stacked(x: f32[N, T, 5], h0: f32[{states}, N, 8], c0: f32[{states}, N, 8]) -> (f32[N, T, {width}], f32[{states}, N, 8], f32[{states}, N, 8]) {{
    example N = 2, T = 6
    y, (h, c) = lstm(x, 8, layers={layers}, bidirectional={bidir}, batch_first=true, state=(h0, c0), name="enc")
    return y, h, c
}}
"""

STACKED_GRU = """
model StackedGru(x: f32[T, N, 5]) -> (f32[T, N, 8], f32[3, N, 8]) {
    example N = 2, T = 6
    y, h = gru(x, 8, layers=3, name="g")
    return y, h
}
"""

TWO_LAYERS = """
model TwoLayers(x: f32[T, N, 5]) -> f32[T, N, 8] {
    example N = 2, T = 6
    a, ha = rnn(x, 8, name="first")
    b, hb = rnn(a, 8, name="second")
    return b
}
"""


def _export(tmp_path, text: str, name: str):
    (tmp_path / f"{name}.dln").write_text(text)
    m = dlc.load(str(tmp_path / f"{name}.dln"))
    w = m.init_weights(0)
    save_weights(tmp_path / "w.safetensors", w)
    bind = {"N": 2, "T": 6}
    model, _ = export_spec(str(tmp_path / f"{name}.dln"), str(tmp_path / f"{name}.onnx"), bind=bind,
                           weights_path=str(tmp_path / "w.safetensors"))
    return m, w, model, bind


def _check(m, w, model, bind, backend="numpy"):
    x = m.random_inputs(0, bind)
    ref = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, x)
    imp = import_onnx(model)
    got = list(run_imported(imp, x, backend).values())
    spec = list(m.run(x, w, bind=bind).values())
    for g, r in zip(got, ref):
        np.testing.assert_allclose(g, r, rtol=1e-5, atol=1e-6)
    for g, s in zip(got, spec):
        np.testing.assert_allclose(g, s, rtol=1e-5, atol=1e-6)
    return imp


def _recurrent(imp):
    return [n for n in imp.graph.nodes if n.op.name in ("lstm", "gru", "rnn")]


@pytest.mark.parametrize("layers,bidir", [(2, "false"), (3, "true")])
def test_a_multi_layer_lstm_comes_back_as_one_op(tmp_path, layers, bidir):
    states = layers * (2 if bidir == "true" else 1)
    width = 16 if bidir == "true" else 8
    m, w, model, bind = _export(tmp_path, STACKED.format(layers=layers, bidir=bidir, states=states, width=width),
                                "stacked")
    assert sum(n.op_type == "LSTM" for n in model.graph.node) == layers     # one ONNX node per layer
    imp = _check(m, w, model, bind)
    (op,) = _recurrent(imp)
    assert op.attrs["num_layers"] == layers
    # the original initial states and parameters, in torch's order
    assert [v.name for v in op.inputs[1:3]] == ["h0", "c0"]
    want = [p.name for p in m.graph.params if p.name.startswith("enc.")]
    assert [v.name for v in op.inputs[3:]] == want
    assert [la.params for la in imp.graph.layers if la.kind == "lstm"] == [want]
    # and no concat of the layers' final states is left
    assert not any(n.op.name == "concat" for n in imp.graph.nodes)


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_a_stacked_gru_without_states(tmp_path, backend):
    m, w, model, bind = _export(tmp_path, STACKED_GRU, "stacked_gru")
    imp = _check(m, w, model, bind, backend)
    (op,) = _recurrent(imp)
    assert op.attrs["num_layers"] == 3 and op.inputs[1] is None


def test_layers_of_different_names_stay_apart(tmp_path):
    m, w, model, bind = _export(tmp_path, TWO_LAYERS, "two")
    imp = _check(m, w, model, bind)
    assert [n.attrs["num_layers"] for n in _recurrent(imp)] == [1, 1]


def test_a_layer_whose_output_is_read_elsewhere_is_not_stacked(tmp_path):
    """The first LSTM's Y is also a graph output: a stacked op would not compute it."""
    from onnx import helper
    m, _w, model, bind = _export(tmp_path, STACKED.format(layers=2, bidir="false", states=2, width=8), "stacked")
    first = next(n for n in model.graph.node if n.op_type == "LSTM")
    model.graph.output.append(helper.make_tensor_value_info(first.output[0], onnx.TensorProto.FLOAT, None))
    x = m.random_inputs(0, bind)
    ref = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, x)
    imp = import_onnx(model)
    assert [n.attrs["num_layers"] for n in _recurrent(imp)] == [1, 1]
    for g, r in zip(run_imported(imp, x).values(), ref):
        np.testing.assert_allclose(g, r, rtol=1e-5, atol=1e-6)
