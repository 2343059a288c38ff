"""A scalar constant an exporter stores once for several operators is written as a literal at each
reader (the first import and the re-export's import then read alike); one read by something other
than an operator (a block, an output) keeps its statement."""
from __future__ import annotations

import numpy as np
from onnx import TensorProto, helper

import dlc
from dlc.frontend.onnx import import_onnx
from dlc.onnx_import_cli import write_spec


def _model(out_c: bool):
    nodes = [helper.make_node("Add", ["x", "c"], ["a"]), helper.make_node("Mul", ["a", "c"], ["y"])]
    outs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])]
    if out_c:
        nodes.append(helper.make_node("Identity", ["c"], ["c_out"]))
        outs.append(helper.make_tensor_value_info("c_out", TensorProto.FLOAT, []))
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])], outs,
                          [helper.make_tensor("c", TensorProto.FLOAT, [], [2.5])])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def test_a_shared_scalar_is_a_literal_at_each_operator(tmp_path):
    imp = import_onnx(_model(False))
    w = write_spec(imp.graph, imp.weights, str(tmp_path / "s.dln"))
    text = (tmp_path / "s.dln").read_text()
    assert "x + 2.5" in text and "* 2.5" in text and "full(" not in text
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    out = next(iter(dlc.load(str(tmp_path / "s.dln")).run({"x": x}, w).values()))
    np.testing.assert_allclose(out, (x + 2.5) * 2.5)


def test_a_scalar_also_returned_keeps_its_statement(tmp_path):
    imp = import_onnx(_model(True))
    w = write_spec(imp.graph, imp.weights, str(tmp_path / "s.dln"))
    text = (tmp_path / "s.dln").read_text()
    # the operators read the literal (the importer makes a scalar constant at each use), the output its statement
    assert "x + 2.5" in text and "* 2.5" in text and "c_out = full((), 2.5)" in text
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    y, c = dlc.load(str(tmp_path / "s.dln")).run({"x": x}, w).values()
    np.testing.assert_allclose(y, (x + 2.5) * 2.5)
    assert c.shape == () and float(c) == 2.5


def test_a_bias_shared_with_another_operator_is_declared_and_copied(tmp_path):
    """An exporter's one vector: a Conv's bias and an Add's operand (no layer owns the Add)."""
    from onnx import numpy_helper
    rng = np.random.default_rng(0)
    w = rng.standard_normal((3, 2, 1, 1)).astype(np.float32)
    z = np.array([0.25, -1.0, 2.0], np.float32)
    nodes = [helper.make_node("Conv", ["x", "conv.weight", "z"], ["h"]), helper.make_node("Add", ["h", "z"], ["y"])]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 3, 3])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 3, 3])],
                          [numpy_helper.from_array(w, "conv.weight"), numpy_helper.from_array(z, "z")])
    imp = import_onnx(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]))
    weights = write_spec(imp.graph, imp.weights, str(tmp_path / "b.dln"))
    text = (tmp_path / "b.dln").read_text()
    assert "param z: f32[3]" in text and 'conv2d(x, 3, 1, name="conv")' in text
    x = rng.standard_normal((1, 2, 3, 3)).astype(np.float32)
    out = next(iter(dlc.load(str(tmp_path / "b.dln")).run({"x": x}, weights).values()))
    ref = np.einsum("oi,nihw->nohw", w[:, :, 0, 0], x) + z[None, :, None, None] + z
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-6)
