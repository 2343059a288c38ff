"""QDQ models (onnxruntime's QDQ format: QuantizeLinear/DequantizeLinear around a conv and a gemm)
imported with qdq="fake" keep the IR's quantize_linear/dequantize_linear around float layers and
match onnxruntime on every backend; named dynamic dims stay symbolic under their ONNX names.
(The default, qdq="int8", lowers the layers to qconv2d/qdense: test_import_qdq_int8.py.)"""
from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper

from dlc.frontend.onnx import import_onnx
from dlc.onnx_import import run_imported


def _qdq_model():
    rng = np.random.default_rng(0)
    w = rng.normal(0, 0.3, (4, 3, 3, 3)).astype(np.float32)
    w_scale = (np.abs(w).reshape(4, -1).max(1) / 127).astype(np.float32)
    w_q = np.clip(np.round(w / w_scale[:, None, None, None]), -127, 127).astype(np.int8)
    fc = rng.normal(0, 0.2, (5, 4 * 6 * 6)).astype(np.float32)
    inits = [numpy_helper.from_array(a, n) for a, n in [
        (w_q, "conv.weight_q"), (w_scale, "conv.weight_scale"), (np.zeros(4, np.int8), "conv.weight_zp"),
        (np.array(0.05, np.float32), "x_scale"), (np.array(128, np.uint8), "x_zp"),
        (np.array(0.04, np.float32), "y_scale"), (np.array(0, np.uint8), "y_zp"),
        (fc, "fc.weight"), (np.array([-1, 4 * 6 * 6], np.int64), "flat")]]
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "x_scale", "x_zp"], ["xq"]),
        helper.make_node("DequantizeLinear", ["xq", "x_scale", "x_zp"], ["xdq"]),
        helper.make_node("DequantizeLinear", ["conv.weight_q", "conv.weight_scale", "conv.weight_zp"], ["wdq"], axis=0),
        helper.make_node("Conv", ["xdq", "wdq"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("QuantizeLinear", ["r", "y_scale", "y_zp"], ["rq"]),
        helper.make_node("DequantizeLinear", ["rq", "y_scale", "y_zp"], ["rdq"]),
        helper.make_node("Reshape", ["rdq", "flat"], ["f"]),
        helper.make_node("Gemm", ["f", "fc.weight"], ["y"], transB=1),
    ]
    g = helper.make_graph(nodes, "qdq", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, 6, 6])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 5])], initializer=inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_qdq_model_matches_onnxruntime(backend):
    m = _qdq_model()
    x = np.random.default_rng(1).normal(0, 2, (2, 3, 6, 6)).astype(np.float32)
    ref = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    imp = import_onnx(m, qdq="fake")
    ops = [n.op.name for n in imp.graph.nodes]
    assert ops.count("quantize_linear") == 2 and ops.count("dequantize_linear") == 3
    assert "conv2d" in ops and "linear" in ops
    assert str(imp.graph.inputs[0].type) == "f32[batch, 3, 6, 6]" and "batch" in imp.graph.dims
    out = run_imported(imp, {"x": x}, backend, bind={"batch": 2})["y"]
    # the same integer grid as onnxruntime: equal up to float32 summation order
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)
