"""Bad ONNX input gets a located DlcError naming the node, never a traceback; external data
may not escape the model's folder."""
from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper

from dlc.errors import DlcError
from dlc.frontend.onnx import import_onnx
from dlc.frontend.onnx.registry import CONVERTERS, lookup
from dlc.onnx_import import run_imported


def _model(nodes, inputs, outputs, inits=(), opset=17, extra_opsets=()):
    g = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(inits))
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset), *extra_opsets])


def _vi(name, shape, t=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, t, shape)


def test_unknown_op_names_the_node():
    m = _model([helper.make_node("Relu", ["x"], ["a"], name="ok"),
                helper.make_node("FancyOp", ["a"], ["y"], name="my_fancy")],
               [_vi("x", [2])], [_vi("y", [2])])
    with pytest.raises(DlcError) as e:
        import_onnx(m)
    assert "node 1 'my_fancy' (FancyOp)" in e.value.message and "not supported" in e.value.message
    assert e.value.span.line == 2


def test_unknown_domain():
    m = _model([helper.make_node("Relu", ["x"], ["y"], domain="com.example", name="r")],
               [_vi("x", [2])], [_vi("y", [2])], extra_opsets=[helper.make_opsetid("com.example", 1)])
    with pytest.raises(DlcError, match="domain 'com.example'"):
        import_onnx(m)


def test_unsupported_opset_version_lists_the_supported_range():
    m = _model([helper.make_node("Gelu", ["x"], ["y"], name="g")], [_vi("x", [2, 3])], [_vi("y", [2, 3])],
               opset=17)
    with pytest.raises(DlcError, match=r"Gelu at opset 17 is not supported \(supported opsets: 20\+\)"):
        import_onnx(m)


def test_runtime_shape_operand_is_explained():
    m = _model([helper.make_node("Reshape", ["x", "s"], ["y"], name="rs")],
               [_vi("x", [2, 3]), _vi("s", [2], TensorProto.INT64)], [_vi("y", None)])
    with pytest.raises(DlcError, match="Reshape's target shape .* must be known"):
        import_onnx(m)
    # given at import time, the shape input becomes a constant and leaves the model's inputs
    imp = import_onnx(m, input_values={"s": np.array([3, 2])})
    assert [v.name for v in imp.graph.inputs] == ["x"] and imp.frozen_inputs == ["s"]
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    np.testing.assert_array_equal(run_imported(imp, {"x": x})["y"], x.reshape(3, 2))


def test_shape_mismatch_is_a_type_error_at_the_node():
    w = numpy_helper.from_array(np.ones((4, 5), np.float32), "w")
    m = _model([helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")],
               [_vi("x", [2, 3])], [_vi("y", None)], inits=[w])
    with pytest.raises(DlcError) as e:
        import_onnx(m)
    assert "node 0 'mm' (MatMul)" in e.value.message


def test_undefined_operand():
    m = _model([helper.make_node("Relu", ["nope"], ["y"], name="r")], [_vi("x", [2])], [_vi("y", [2])])
    with pytest.raises(DlcError, match="'nope' is not defined"):
        import_onnx(m)


def test_huge_dimension_refused():
    t = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[1 << 30, 1 << 30])
    m = _model([helper.make_node("Add", ["x", "w"], ["y"])], [_vi("x", [1])], [_vi("y", None)], inits=[t])
    with pytest.raises(DlcError, match="elements"):
        import_onnx(m)


def test_inconsistent_raw_data_refused():
    t = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[4], raw_data=b"\0" * 7)
    m = _model([helper.make_node("Add", ["x", "w"], ["y"])], [_vi("x", [4])], [_vi("y", None)], inits=[t])
    with pytest.raises(DlcError, match="7 bytes"):
        import_onnx(m)


def _external_model(tmp_path, location):
    t = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[2])
    t.data_location = TensorProto.EXTERNAL
    t.external_data.add(key="location", value=location)
    m = _model([helper.make_node("Add", ["x", "w"], ["y"])], [_vi("x", [2])], [_vi("y", None)], inits=[t])
    d = tmp_path / "model"
    d.mkdir()
    p = d / "m.onnx"
    p.write_bytes(m.SerializeToString())
    return p


@pytest.mark.parametrize("location", ["../secret.bin", "/etc/passwd", "sub/../../secret.bin"])
def test_external_data_escaping_the_folder_is_refused(tmp_path, location):
    (tmp_path / "secret.bin").write_bytes(np.ones(2, np.float32).tobytes())
    p = _external_model(tmp_path, location)
    with pytest.raises(DlcError, match="escapes the model's folder|must be a relative path"):
        import_onnx(p)


def test_external_data_inside_the_folder_is_read(tmp_path):
    p = _external_model(tmp_path, "w.bin")
    (p.parent / "w.bin").write_bytes(np.array([1.5, -2], np.float32).tobytes())
    imp = import_onnx(p)
    np.testing.assert_array_equal(run_imported(imp, {"x": np.zeros(2, np.float32)})["y"], [1.5, -2])


def test_external_data_too_short(tmp_path):
    p = _external_model(tmp_path, "w.bin")
    (p.parent / "w.bin").write_bytes(b"\0" * 3)
    with pytest.raises(DlcError, match="too short"):
        import_onnx(p)


def test_not_an_onnx_file(tmp_path):
    p = tmp_path / "x.onnx"
    p.write_bytes(b"definitely not protobuf \xff\xff\xff")
    with pytest.raises(DlcError, match="not a valid ONNX model"):
        import_onnx(p)
    with pytest.raises(DlcError, match="cannot read"):
        import_onnx(tmp_path / "missing.onnx")


def test_converter_table_is_keyed_by_domain_and_op_with_ranges():
    assert ("", "Conv") in CONVERTERS
    c = lookup("ai.onnx", "ReduceMean", 17)
    assert c.since == 1 and c.until == 18
    assert lookup("", "ReduceMean", 18).since == 18
    assert lookup("", "NoSuchOp", 17) is None


def _branch(name, op, out):
    return helper.make_graph([helper.make_node(op, ["x"], [out])], name, [], [_vi(out, [3])])


def test_if_with_a_runtime_condition_selects_with_where():
    m = _model([helper.make_node("If", ["c"], ["y"], then_branch=_branch("t", "Relu", "a"),
                                 else_branch=_branch("e", "Neg", "b"))],
               [_vi("c", [], TensorProto.BOOL), _vi("x", [3])], [_vi("y", [3])])
    imp = import_onnx(m)
    assert "where" in {n.op.name for n in imp.graph.nodes}
    x = np.array([-1.0, 0.5, 2.0], np.float32)
    np.testing.assert_array_equal(run_imported(imp, {"c": np.array(True), "x": x})["y"], np.maximum(x, 0))
    np.testing.assert_array_equal(run_imported(imp, {"c": np.array(False), "x": x})["y"], -x)


def test_loop_with_a_trip_count_is_a_scan():
    # for i in range(4): acc = acc + x * i ; also stacks acc per step
    body = helper.make_graph(
        [helper.make_node("Identity", ["cond_in"], ["cond_out"]),
         helper.make_node("Cast", ["i"], ["fi"], to=TensorProto.FLOAT),
         helper.make_node("Mul", ["x", "fi"], ["xi"]),
         helper.make_node("Add", ["acc", "xi"], ["acc_out"]),
         helper.make_node("Identity", ["acc_out"], ["scan_out"])],
        "body", [_vi("i", [], TensorProto.INT64), _vi("cond_in", [], TensorProto.BOOL), _vi("acc", [2])],
        [_vi("cond_out", [], TensorProto.BOOL), _vi("acc_out", [2]), _vi("scan_out", [2])])
    trips = numpy_helper.from_array(np.array(4, np.int64), "M")
    m = _model([helper.make_node("Loop", ["M", "", "a0"], ["acc", "all"], body=body)],
               [_vi("x", [2]), _vi("a0", [2])], [_vi("acc", [2]), _vi("all", [4, 2])], inits=[trips])
    imp = import_onnx(m)
    assert [n.op.name for n in imp.graph.nodes if n.op.name == "scan"] == ["scan"]
    x, a0 = np.array([1.0, 2.0], np.float32), np.array([0.5, 0.0], np.float32)
    out = run_imported(imp, {"x": x, "a0": a0})
    np.testing.assert_allclose(out["acc"], a0 + x * 6)
    np.testing.assert_allclose(out["all"], np.stack([a0 + x * sum(range(k + 1)) for k in range(4)]))


def test_while_loop_is_refused_naming_the_node():
    body = helper.make_graph(
        [helper.make_node("Less", ["acc", "x"], ["c"]), helper.make_node("Identity", ["acc"], ["acc_out"])],
        "body", [_vi("i", [], TensorProto.INT64), _vi("cond_in", [], TensorProto.BOOL), _vi("acc", [])],
        [_vi("c", [], TensorProto.BOOL), _vi("acc_out", [])])
    trips = numpy_helper.from_array(np.array(10, np.int64), "M")
    m = _model([helper.make_node("Loop", ["M", "", "x"], ["r"], body=body, name="while")],
               [_vi("x", [])], [_vi("r", [])], inits=[trips])
    with pytest.raises(DlcError, match="node 0 'while' \\(Loop\\).*while loop"):
        import_onnx(m)


def test_deeply_nested_subgraphs_are_refused():
    leaf = _branch("leaf", "Relu", "a")
    inner = leaf
    for depth in range(20):   # nested in the then-branches only (the proto stays small)
        node = helper.make_node("If", ["c"], [f"o{depth}"], then_branch=inner, else_branch=leaf)
        inner = helper.make_graph([node], f"g{depth}", [], [_vi(f"o{depth}", [3])])
    m = _model(list(inner.node), [_vi("c", [], TensorProto.BOOL), _vi("x", [3])], [_vi("o19", [3])])
    with pytest.raises(DlcError, match="nested more than 16 deep"):
        import_onnx(m)
