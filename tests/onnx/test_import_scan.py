"""ONNX Scan -> the IR's scan, checked against onnxruntime: one axis and direction (a single scan
node with that axis / reverse), axes and directions that differ between sequences (brought to
axis 0 and forward around the scan), outer values captured by the body, and bad bodies refused
with an error naming the node."""
from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper

from dlc.errors import DlcError
from dlc.frontend.onnx import import_onnx
from dlc.onnx_import import run_imported

F = TensorProto.FLOAT


def _vi(name, shape):
    return helper.make_tensor_value_info(name, F, shape)


def _cumsum_body(width: int, with_weight: bool = False):
    """(s, x_t) -> (s + x_t, tanh(s + x_t) [* w]): a running sum and a per-step output."""
    nodes = [helper.make_node("Add", ["s", "x_t"], ["s_next"]), helper.make_node("Tanh", ["s_next"], ["y0"])]
    if with_weight:     # `w` is the outer graph's initializer, captured by the body
        nodes.append(helper.make_node("Mul", ["y0", "w"], ["y_t"]))
    else:
        nodes.append(helper.make_node("Identity", ["y0"], ["y_t"]))
    return helper.make_graph(nodes, "body", [_vi("s", [width]), _vi("x_t", [width])],
                             [_vi("s_next", [width]), _vi("y_t", [width])])


def _model(x_shape, in_axis=0, in_dir=0, out_axis=0, out_dir=0, with_weight=False):
    width = x_shape[1 - in_axis % 2]
    body = _cumsum_body(width, with_weight)
    scan = helper.make_node("Scan", ["s0", "x"], ["s_final", "ys"], body=body, num_scan_inputs=1,
                            scan_input_axes=[in_axis], scan_input_directions=[in_dir],
                            scan_output_axes=[out_axis], scan_output_directions=[out_dir])
    steps = x_shape[in_axis % 2]
    ys_shape = [steps, width] if out_axis % 2 == 0 else [width, steps]
    inits = [numpy_helper.from_array(np.linspace(-1, 1, width).astype(np.float32), "w")] if with_weight else []
    g = helper.make_graph([scan], "scan", [_vi("s0", [width]), _vi("x", list(x_shape))],
                          [_vi("s_final", [width]), _vi("ys", ys_shape)], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 16)])
    m.ir_version = 8
    onnx.checker.check_model(m, full_check=True)
    return m


def _check(m, feed, backend="numpy"):
    ref = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feed)
    imp = import_onnx(m)
    got = list(run_imported(imp, feed, backend).values())
    assert len(got) == len(ref)
    for g, r in zip(got, ref):
        assert g.shape == r.shape
        np.testing.assert_allclose(g, r, rtol=1e-5, atol=1e-6)
    return imp


def _feed(x_shape, width):
    rng = np.random.default_rng(0)
    return {"s0": rng.standard_normal(width).astype(np.float32),
            "x": rng.standard_normal(x_shape).astype(np.float32)}


@pytest.mark.parametrize("axis,direction", [(0, 0), (0, 1), (1, 0), (1, 1), (-1, 1)])
def test_one_axis_and_direction_is_one_scan_node(axis, direction):
    shape = (6, 3) if axis == 0 else (3, 6)
    imp = _check(_model(shape, axis, direction, axis, direction), _feed(shape, 3))
    scans = [n for n in imp.graph.nodes if n.op.name == "scan"]
    assert len(scans) == 1
    assert scans[0].attrs["axis"] == axis % 2 and scans[0].attrs["reverse"] == bool(direction)
    # nothing around it: no transpose, no reversing slice
    assert {n.op.name for n in imp.graph.nodes} == {"scan"}


@pytest.mark.parametrize("in_axis,in_dir,out_axis,out_dir", [(0, 1, 0, 0), (0, 0, 0, 1), (1, 0, 0, 0),
                                                             (0, 0, 1, 1), (1, 1, 0, 0)])
def test_axes_or_directions_that_differ(in_axis, in_dir, out_axis, out_dir):
    shape = (6, 3) if in_axis == 0 else (3, 6)
    _check(_model(shape, in_axis, in_dir, out_axis, out_dir), _feed(shape, 3))


def test_the_body_captures_an_outer_weight():
    imp = _check(_model((5, 4), with_weight=True), _feed((5, 4), 4))
    assert "w" in imp.weights


def test_scan_on_torch():
    _check(_model((5, 4), 0, 1, 0, 1, with_weight=True), _feed((5, 4), 4), backend="torch")


def test_a_body_that_changes_the_state_type_is_refused():
    body = helper.make_graph([helper.make_node("Concat", ["s", "x_t"], ["s_next"], axis=0),
                              helper.make_node("Identity", ["x_t"], ["y_t"])], "body",
                             [_vi("s", [3]), _vi("x_t", [3])], [_vi("s_next", [6]), _vi("y_t", [3])])
    scan = helper.make_node("Scan", ["s0", "x"], ["s_final", "ys"], body=body, num_scan_inputs=1,
                            name="the_scan")
    g = helper.make_graph([scan], "scan", [_vi("s0", [3]), _vi("x", [5, 3])], [_vi("s_final", [6]), _vi("ys", [5, 3])])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 16)])
    with pytest.raises(DlcError) as e:
        import_onnx(m)
    assert "the_scan" in str(e.value) and "state" in str(e.value)


def test_an_unsupported_op_in_the_body_names_the_scan():
    body = helper.make_graph([helper.make_node("NoSuchOp", ["s", "x_t"], ["s_next"]),
                              helper.make_node("Identity", ["x_t"], ["y_t"])], "body",
                             [_vi("s", [3]), _vi("x_t", [3])], [_vi("s_next", [3]), _vi("y_t", [3])])
    scan = helper.make_node("Scan", ["s0", "x"], ["s_final", "ys"], body=body, num_scan_inputs=1, name="outer")
    g = helper.make_graph([scan], "scan", [_vi("s0", [3]), _vi("x", [5, 3])], [_vi("s_final", [3]), _vi("ys", [5, 3])])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 16)])
    with pytest.raises(DlcError) as e:
        import_onnx(m)
    assert "outer" in str(e.value) and "NoSuchOp" in str(e.value)


def test_scan8_runs_one_scan_per_batch_element():
    """Scan-8: states [B, ...], sequences [B, T, ...]; the body sees one batch element."""
    body = _cumsum_body(3)
    scan = helper.make_node("Scan", ["", "s0", "x"], ["s_final", "ys"], body=body, num_scan_inputs=1,
                            directions=[1])
    g = helper.make_graph([scan], "scan8", [_vi("s0", [2, 3]), _vi("x", [2, 5, 3])],
                          [_vi("s_final", [2, 3]), _vi("ys", [2, 5, 3])])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 8)])
    m.ir_version = 8
    rng = np.random.default_rng(1)
    feed = {"s0": rng.standard_normal((2, 3)).astype(np.float32),
            "x": rng.standard_normal((2, 5, 3)).astype(np.float32)}
    # written out: per batch element, a running sum over the reversed sequence, the outputs in step order
    want_s = feed["s0"] + feed["x"].sum(axis=1)
    want_y = np.tanh(feed["s0"][:, None, :] + np.cumsum(feed["x"][:, ::-1], axis=1))
    ref = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feed)
    np.testing.assert_allclose(ref[1], want_y, rtol=1e-5)     # onnxruntime reads Scan-8 so too
    imp = import_onnx(m)
    s, y = run_imported(imp, feed, "numpy").values()
    np.testing.assert_allclose(s, want_s, rtol=1e-5)
    np.testing.assert_allclose(y, want_y, rtol=1e-5)
    assert sum(n.op.name == "scan" for n in imp.graph.nodes) == 2
