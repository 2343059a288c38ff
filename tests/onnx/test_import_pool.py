"""ONNX pooling import beyond the node tests, against onnxruntime: MaxPool's Indices
(storage_order 0 and 1, asymmetric pads that take the explicit-pad path, 1-D, 3-D,
dilations, ceil_mode), MaxPool -> MaxUnpool, and 3-D pooling and ConvTranspose
through an import -> export round trip."""
from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper  # noqa: E402

from dlc.frontend.onnx import import_onnx  # noqa: E402
from dlc.onnx_import import run_imported  # noqa: E402


def _model(nodes, inputs, outputs, inits=(), opset=18):
    g = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(inits))
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    return m


def _vi(name, shape, dt=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, dt, shape)


def _check(model, feed, backends=("numpy", "torch")):
    want = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feed)
    imp = import_onnx(model)
    for backend in backends:
        got = run_imported(imp, {v.name: feed[n] for v, n in zip(imp.graph.inputs, feed)}, backend)
        for name, w in zip(imp.graph.output_names, want):
            np.testing.assert_array_equal(np.asarray(got[name]), w, err_msg=f"{backend}: {name}")
    return imp


INDICES = [
    # (input shape, attributes)
    ((2, 3, 7, 6), {"kernel_shape": [3, 2], "strides": [2, 1], "pads": [1, 0, 1, 0], "storage_order": 1}),
    ((2, 3, 7, 6), {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [0, 1, 2, 0]}),
    ((1, 2, 7, 8), {"kernel_shape": [3, 2], "strides": [2, 2], "pads": [2, 1, 0, 0], "storage_order": 1}),
    ((1, 2, 9, 8), {"kernel_shape": [2, 2], "strides": [2, 3], "dilations": [2, 1], "ceil_mode": 1}),
    ((2, 3, 11), {"kernel_shape": [3], "strides": [2], "pads": [2, 1]}),
    ((1, 2, 5, 6, 7), {"kernel_shape": [2, 3, 2], "strides": [2, 2, 1], "pads": [1, 1, 0, 0, 1, 1]}),
    ((1, 2, 5, 6, 4), {"kernel_shape": [2, 2, 2], "storage_order": 1}),
]


@pytest.mark.parametrize("shape, attrs", INDICES, ids=[str(i) for i in range(len(INDICES))])
def test_maxpool_indices_match_onnxruntime(shape, attrs):
    node = helper.make_node("MaxPool", ["x"], ["y", "i"], **attrs)
    m = _model([node], [_vi("x", list(shape))], [_vi("y", None), _vi("i", None, TensorProto.INT64)])
    x = np.random.default_rng(0).permutation(np.prod(shape)).reshape(shape).astype(np.float32)  # no ties
    imp = _check(m, {"x": x})
    pooled = [n.op.name for n in imp.graph.walk() if n.op.name.endswith("_indices")]
    assert pooled == [f"max_pool{max(len(shape) - 2, 2)}d_indices"]


def test_maxunpool_inverts_maxpool_like_onnxruntime():
    pool = helper.make_node("MaxPool", ["x"], ["y", "i"], kernel_shape=[2, 2], strides=[2, 2])
    unpool = helper.make_node("MaxUnpool", ["y", "i"], ["z"], kernel_shape=[2, 2], strides=[2, 2])
    m = _model([pool, unpool], [_vi("x", [2, 3, 6, 8])], [_vi("z", None)])
    x = np.random.default_rng(1).standard_normal((2, 3, 6, 8)).astype(np.float32)
    _check(m, {"x": x})


def test_3d_pooling_and_conv_transpose_round_trip_through_export():
    """Import a 3-D model (Conv, MaxPool, dilated AveragePool, ConvTranspose), export dlc's IR back
    to ONNX, and run both on onnxruntime."""
    from dlc.backends.onnx import export_graph
    rng = np.random.default_rng(2)
    w = helper.make_tensor("w", TensorProto.FLOAT, [2, 3, 2, 3, 2], rng.standard_normal(72).astype(np.float32))
    wc = helper.make_tensor("wc", TensorProto.FLOAT, [2, 1, 3, 2, 2], rng.standard_normal(24).astype(np.float32))
    nodes = [helper.make_node("Conv", ["x0", "wc"], ["x"], group=2, pads=[1, 0, 1, 1, 1, 0], dilations=[1, 2, 1]),
             helper.make_node("MaxPool", ["x"], ["a"], kernel_shape=[2, 2, 2], strides=[1, 2, 1], pads=[1] * 6),
             helper.make_node("AveragePool", ["a"], ["b"], kernel_shape=[2, 2, 2], dilations=[1, 2, 1],
                              count_include_pad=0, pads=[1, 1, 0, 1, 1, 0]),
             helper.make_node("ConvTranspose", ["b", "w"], ["c"], strides=[2, 1, 2], output_padding=[1, 0, 0])]
    m = _model([*nodes], [_vi("x0", [1, 2, 5, 6, 4])], [_vi("c", None)], [w, wc], opset=19)
    x = rng.standard_normal((1, 2, 5, 6, 4)).astype(np.float32)
    want = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x0": x})[0]
    imp = import_onnx(m)
    assert {"conv3d", "max_pool3d", "avg_pool3d", "conv_transpose3d"} <= {n.op.name for n in imp.graph.walk()}
    for backend in ("numpy", "torch"):
        got = run_imported(imp, {imp.graph.inputs[0].name: x}, backend)[imp.graph.output_names[0]]
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5, err_msg=backend)
    again = export_graph(imp.graph, imp.weights)
    onnx.checker.check_model(again, full_check=True)
    sess = ort.InferenceSession(again.SerializeToString(), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(sess.run(None, {sess.get_inputs()[0].name: x})[0], want, rtol=1e-5, atol=1e-5)
