"""The small import/export rules that make the recurrent zoo specs (bilstm, seq2seq, lstm_cell...)
a fixed point of spec -> ONNX -> spec -> ONNX: each rule, and that the model still computes
what onnxruntime does."""
from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper

from dlc.frontend.onnx import import_onnx
from dlc.onnx_import import run_imported

F, I64 = TensorProto.FLOAT, TensorProto.INT64


def _model(nodes, inputs, outputs, inits=()):
    g = helper.make_graph(nodes, "m", inputs, outputs, list(inits))
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.checker.check_model(m, full_check=True)
    return m


def _same_as_ort(m, feed):
    imp = import_onnx(m)
    ref = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feed)
    for g, r in zip(run_imported(imp, feed).values(), ref):
        np.testing.assert_allclose(g, r, rtol=1e-6)
    return imp


def _ops(imp):
    return [n.op.name for n in imp.graph.nodes]


def _gather_model(prewrapped: bool):
    table = numpy_helper.from_array(np.random.default_rng(0).standard_normal((7, 3)).astype(np.float32), "emb")
    consts = [numpy_helper.from_array(np.array(0, np.int64), "zero"), numpy_helper.from_array(np.array(7, np.int64), "n")]
    nodes = []
    idx = "ids"
    if prewrapped:      # what dlc's own import writes for a Gather, exported again
        nodes += [helper.make_node("Less", ["ids", "zero"], ["neg"]), helper.make_node("Add", ["ids", "n"], ["up"]),
                  helper.make_node("Where", ["neg", "up", "ids"], ["wrapped"])]
        idx = "wrapped"
    nodes.append(helper.make_node("Gather", ["emb", idx], ["out"], axis=0))
    return _model(nodes, [helper.make_tensor_value_info("ids", I64, [2, 4])],
                  [helper.make_tensor_value_info("out", F, [2, 4, 3])], [table] + consts)


@pytest.mark.parametrize("prewrapped", [False, True])
def test_gather_wraps_negative_indices_once(prewrapped):
    feed = {"ids": np.array([[0, -1, 3, -7], [6, 2, -2, 1]], np.int64)}
    imp = _same_as_ort(_gather_model(prewrapped), feed)
    assert _ops(imp).count("where") == 1 and "embedding" in _ops(imp)


def test_a_slice_over_a_whole_axis_is_the_tensor():
    consts = [numpy_helper.from_array(np.array(v, np.int64), k)
              for k, v in (("s", [0]), ("e", [2]), ("a", [0]), ("e2", [1]))]
    nodes = [helper.make_node("Slice", ["x", "s", "e", "a"], ["whole"]),
             helper.make_node("Slice", ["whole", "s", "e2", "a"], ["part"])]
    m = _model(nodes, [helper.make_tensor_value_info("x", F, [2, 3])],
               [helper.make_tensor_value_info("part", F, [1, 3])], consts)
    imp = _same_as_ort(m, {"x": np.arange(6, dtype=np.float32).reshape(2, 3)})
    assert _ops(imp) == ["strided_slice"]      # x[0:2] of a 2-row x is x; x[0:1] stays a slice


def test_expand_of_a_scalar_is_a_full():
    consts = [numpy_helper.from_array(np.array(0.0, np.float32), "zero"),
              numpy_helper.from_array(np.array([2, 4], np.int64), "shape")]
    nodes = [helper.make_node("Expand", ["zero", "shape"], ["z"]), helper.make_node("Add", ["x", "z"], ["y"])]
    m = _model(nodes, [helper.make_tensor_value_info("x", F, [2, 4])], [helper.make_tensor_value_info("y", F, [2, 4])],
               consts)
    imp = _same_as_ort(m, {"x": np.ones((2, 4), np.float32)})
    full = next(n for n in imp.graph.nodes if n.op.name == "full")
    assert tuple(full.attrs["shape"]) == (2, 4) and "expand" not in _ops(imp)
    assert not imp.graph.params


SPEC = """
model Filled(x: f32[N, 4]) -> f32[N, 4] {
    example N = 2
    z = zeros(N, 4) + 1.5
    return x * z
}
"""


def test_a_filled_constant_exports_as_constant_of_shape_and_imports_as_full(tmp_path):
    """With N bound, `zeros(N, 4)` is a constant: written as an initializer it would import back as a
    (trainable) parameter; as ConstantOfShape it imports back as `full`."""
    from dlc.onnx_export_cli import export_spec
    (tmp_path / "f.dln").write_text(SPEC)
    model, _ = export_spec(str(tmp_path / "f.dln"), str(tmp_path / "f.onnx"), bind={"N": 2})
    assert not [t for t in model.graph.initializer if t.data_type == F and len(t.dims) > 0]
    assert "ConstantOfShape" in {n.op_type for n in model.graph.node}
    imp = _same_as_ort(model, {"x": np.arange(8, dtype=np.float32).reshape(2, 4)})
    assert not [p for p in imp.graph.params if p.kind == "param"]
