"""A quantized model (a `dlc quantize` artifact as --weights) exports as QDQ:
int8 weight initializers and QuantizeLinear/DequantizeLinear around every
quantized conv/gemm, as onnxruntime's QDQ format; onnxruntime runs it as dlc's
NumPy reference runs the same QDQ graph."""
from __future__ import annotations

import collections
import os

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from export_util import ort, rel_err

import dlc
from dlc.backends import get_backend
from dlc.cli import main
from dlc.compiler.quant import QuantPlan
from dlc.onnx_export_cli import export_spec, forward_graph
from dlc.quant_artifact import save_artifact, with_plan
from dlc.quant_observe import calibrate_observers
from dlc.run_folder import spec_hash

SPEC = os.path.normpath(os.path.join(os.path.dirname(__file__), "..", "..", "specs", "digits_cnn.dln"))


@pytest.fixture(scope="module")
def artifact(tmp_path_factory):
    m = dlc.load(SPEC)
    w = m.init_weights(0)
    x = m.random_inputs(0, {"N": 32})[m.graph.inputs[0].name]
    obs, _, _ = calibrate_observers(m, w, x, progress=False)
    plan = QuantPlan(ranges={k: o.range() for k, o in obs.items()}, float_layers={"output"})
    path = tmp_path_factory.mktemp("q") / "digits_int8.safetensors"
    save_artifact(path, w, plan, spec_sha256=spec_hash(SPEC), model=m.name)
    return str(path), m, w, plan


def _producers(graph):
    return {o: n for n in graph.node for o in n.output}


def test_quantized_layers_are_qdq_with_int8_weight_initializers(artifact):
    path, m, w, plan = artifact
    proto, info = export_spec(SPEC, weights_path=path)
    assert info["qdq"]
    onnx.checker.check_model(proto, full_check=True)
    prod = _producers(proto.graph)
    inits = {t.name: t for t in proto.graph.initializer}
    layers = collections.Counter()
    for n in proto.graph.node:
        if n.op_type not in ("Conv", "Gemm"):
            continue
        layer = {p.key: p.value for p in n.metadata_props}["dlc.scope"]
        quantized = n.input[1] in prod and prod[n.input[1]].op_type == "DequantizeLinear"
        assert quantized == (layer not in plan.float_layers), layer
        if not quantized:
            continue
        layers[n.op_type] += 1
        assert prod[n.input[0]].op_type == "DequantizeLinear"
        act_q = prod[prod[n.input[0]].input[0]]
        assert act_q.op_type == "QuantizeLinear"
        assert inits[act_q.input[2]].data_type == onnx.TensorProto.UINT8     # activations: uint8 asymmetric
        w_dq = prod[n.input[1]]
        assert w_dq.op_type == "DequantizeLinear" and w_dq.input[0] in inits
        assert inits[w_dq.input[0]].data_type == onnx.TensorProto.INT8       # weights: int8 initializers
        assert {a.name: a.i for a in w_dq.attribute}.get("axis") == 0        # per output channel
    assert layers == {"Conv": 2, "Gemm": 1}
    # the float weights of quantized layers are gone: only their int8 form remains
    assert "conv1.weight" not in inits and "output.weight" in inits


def test_onnxruntime_runs_the_qdq_model_as_the_reference_runs_it(artifact):
    path, m, w, plan = artifact
    proto, _ = export_spec(SPEC, weights_path=path)
    g = forward_graph(with_plan(m, plan))
    feed = m.random_inputs(1, {"N": 8})
    ref, _ = get_backend("numpy").compile(g).run(feed, w)
    so = ort.SessionOptions()
    so.log_severity_level = 3
    # without onnxruntime's graph rewrites, the QDQ arithmetic is ONNX's own: equal to dlc's
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    got = ort.InferenceSession(proto.SerializeToString(), so, providers=["CPUExecutionProvider"]).run(None, feed)
    assert rel_err(got[0], ref["output"]) <= 1e-5
    # with them, onnxruntime runs integer kernels (QLinearConv): within a few quantization steps
    opt = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feed)
    assert rel_err(opt[0], ref["output"]) <= 0.05
    assert np.argmax(opt[0], 1).tolist() == np.argmax(ref["output"], 1).tolist()


def test_cli_says_it_wrote_a_qdq_model(artifact, tmp_path):
    path = artifact[0]
    r = CliRunner().invoke(main, ["export", SPEC, "-w", path, "-o", str(tmp_path / "q.onnx")])
    assert r.exit_code == 0, r.output
    assert "QDQ model" in r.output
    r = CliRunner().invoke(main, ["export", SPEC, "-w", path, "--train", "-o", str(tmp_path / "t.onnx")])
    assert r.exit_code == 1 and "quantized artifact has no training graph" in r.output
