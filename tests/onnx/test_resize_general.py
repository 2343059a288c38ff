"""ONNX Resize settings that torch's interpolate has no counterpart for import as per-axis tables
(dlc/frontend/onnx/resize_tables.py): each must equal ONNX's reference on random inputs, on every backend."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from onnx.reference import ReferenceEvaluator

from dlc.errors import DlcError
from dlc.frontend.onnx import import_onnx
from dlc.frontend.onnx import resize_tables as rt
from dlc.onnx_import import run_imported

_TP = {np.float16: TensorProto.FLOAT16, np.float32: TensorProto.FLOAT, np.float64: TensorProto.DOUBLE}


def _model(shape, *, scales=None, sizes=None, roi=None, dtype=np.float32, dims=None, **attrs):
    inits = []
    if roi is not None:
        inits.append(helper.make_tensor("roi", TensorProto.FLOAT, [len(roi)], list(roi)))
    if scales is not None:
        inits.append(helper.make_tensor("scales", TensorProto.FLOAT, [len(scales)], list(scales)))
    if sizes is not None:
        inits.append(helper.make_tensor("sizes", TensorProto.INT64, [len(sizes)], list(sizes)))
    ins = ["X", "roi" if roi is not None else "", "scales" if scales is not None else "",
           "sizes" if sizes is not None else ""]
    while not ins[-1]:
        ins.pop()
    node = helper.make_node("Resize", ins, ["Y"], name="rs1", **attrs)
    g = helper.make_graph([node], "g", [helper.make_tensor_value_info("X", _TP[dtype], dims or list(shape))],
                          [helper.make_tensor_value_info("Y", _TP[dtype], None)], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 19)])


CASES = {  # name: (input shape, model arguments)
    "nearest_half_pixel_floor_up": ((2, 3, 4, 5), dict(scales=[1, 1, 1.7, 2.3], mode="nearest")),
    "nearest_half_pixel_floor_down": ((1, 2, 9, 7), dict(scales=[1, 1, 0.45, 0.6], mode="nearest")),
    "nearest_ceil": ((1, 2, 4, 5), dict(sizes=[1, 2, 9, 7], mode="nearest", nearest_mode="ceil")),
    "nearest_floor_align_corners": ((1, 1, 5, 4), dict(sizes=[1, 1, 8, 7], mode="nearest", nearest_mode="floor",
                                                       coordinate_transformation_mode="align_corners")),
    "nearest_asymmetric_prefer_ceil": ((1, 2, 4, 4), dict(scales=[1, 1, 2.5, 1.5], mode="nearest",
                                                          nearest_mode="round_prefer_ceil",
                                                          coordinate_transformation_mode="asymmetric")),
    "nearest_channel_axis": ((2, 3, 4, 4), dict(scales=[1, 2, 1, 1], mode="nearest")),
    "linear_antialias_down": ((1, 2, 11, 9), dict(scales=[1, 1, 0.4, 0.7], mode="linear", antialias=1)),
    "cubic_antialias_sizes": ((1, 2, 12, 10), dict(sizes=[1, 2, 5, 4], mode="cubic", antialias=1)),
    "cubic_a_half_exclude_outside": ((2, 1, 6, 5), dict(scales=[1, 1, 1.6, 0.8], mode="cubic", cubic_coeff_a=-0.5,
                                                        exclude_outside=1)),
    "cubic_asymmetric": ((1, 2, 4, 5), dict(scales=[1, 1, 2, 1.5], mode="cubic",
                                            coordinate_transformation_mode="asymmetric")),
    "linear_half_pixel_symmetric": ((1, 1, 5, 7), dict(scales=[1, 1, 1.37, 0.61], mode="linear",
                                                       coordinate_transformation_mode="half_pixel_symmetric")),
    "linear_align_corners_unwhole": ((1, 2, 5, 7), dict(scales=[1, 1, 0.7, 1.3], mode="linear",
                                                        coordinate_transformation_mode="align_corners")),
    "cubic_align_corners_unwhole": ((1, 1, 6, 6), dict(scales=[1, 1, 0.75, 0.6], mode="cubic",
                                                       coordinate_transformation_mode="align_corners")),
    "not_larger_axes": ((1, 2, 6, 4), dict(sizes=[9, 9], axes=[2, 3], mode="linear",
                                           keep_aspect_ratio_policy="not_larger")),
    "not_smaller_axes_3_2": ((1, 2, 6, 4), dict(sizes=[3, 5], axes=[3, 2], mode="nearest",
                                                keep_aspect_ratio_policy="not_smaller")),
    "tf_crop_and_resize": ((1, 2, 6, 5), dict(roi=[0, 0, 0.2, 0.3, 1, 1, 0.9, 1.2], sizes=[1, 2, 4, 6],
                                              mode="linear", coordinate_transformation_mode="tf_crop_and_resize",
                                              extrapolation_value=7.5)),
    "tf_crop_and_resize_axes_cubic": ((1, 2, 6, 5), dict(roi=[0.6, -0.1, 0.1, 0.8], sizes=[3, 4], axes=[3, 2],
                                                         mode="cubic",
                                                         coordinate_transformation_mode="tf_crop_and_resize")),
    "linear_rank5": ((1, 2, 3, 4, 5), dict(scales=[1, 1, 2, 0.5, 1.4], mode="linear")),
    "linear_rank2_pytorch_half_pixel_one": ((4, 6), dict(sizes=[1, 3], mode="linear",
                                                         coordinate_transformation_mode="pytorch_half_pixel")),
}


def _reference(model, x):
    return ReferenceEvaluator(model).run(None, {"X": x})[0]


def _check(name, backend, dtype=np.float32):
    shape, kw = CASES[name]
    model = _model(shape, dtype=dtype, **kw)
    x = np.random.default_rng(len(name)).standard_normal(shape).astype(dtype)
    ref = _reference(model, x)
    imp = import_onnx(model)
    assert "interpolate" not in {n.op.name for n in imp.graph.nodes}     # the tables, not torch's modes
    got = run_imported(imp, {imp.graph.inputs[0].name: x}, backend)[imp.graph.output_names[0]]
    assert got.dtype == ref.dtype and got.shape == ref.shape
    tol = {np.float16: 2e-3, np.float32: 2e-6, np.float64: 1e-12}[dtype]
    np.testing.assert_allclose(got.astype(np.float64), ref.astype(np.float64), rtol=tol * 5, atol=tol * 5)
    return imp


@pytest.mark.parametrize("backend", ["numpy", "torch"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_resize_setting_matches_onnx_reference(name, backend):
    _check(name, backend)


@pytest.mark.parametrize("backend", ["numpy", "torch"])
@pytest.mark.parametrize("dtype", [np.float16, np.float64])
@pytest.mark.parametrize("name", ["cubic_a_half_exclude_outside", "tf_crop_and_resize", "nearest_ceil"])
def test_resize_keeps_the_input_dtype(name, dtype, backend):
    _check(name, backend, dtype)


@pytest.mark.parametrize("name", ["linear_antialias_down", "tf_crop_and_resize_axes_cubic", "nearest_ceil"])
def test_resize_tables_on_tvm(name):
    pytest.importorskip("tvm")
    _check(name, "tvm")


def test_nearest_is_a_gather_that_passes_nan_and_inf_through():
    # ONNX's reference multiplies the unpicked neighbour by a weight of 0, so its NaN/inf leaks into the
    # next output; onnxruntime picks, as the gather does
    ort = pytest.importorskip("onnxruntime")
    shape, kw = CASES["nearest_half_pixel_floor_up"]
    imp = _check("nearest_half_pixel_floor_up", "numpy")
    ops = [n.op.name for n in imp.graph.nodes]
    assert ops.count("index_select") == 2 and "matmul" not in ops
    x = np.random.default_rng(3).standard_normal(shape).astype(np.float32)
    x[0, 1, 2, 3], x[1, 0, 0, 0] = np.nan, np.inf
    model = _model(shape, **kw)
    model.graph.output[0].type.tensor_type.shape.Clear()
    want = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"X": x})[0]
    got = run_imported(imp, {imp.graph.inputs[0].name: x}, "numpy")[imp.graph.output_names[0]]
    assert np.isnan(got).sum() == np.isnan(want).sum() > 0 and np.isinf(got).sum() == np.isinf(want).sum() > 0
    np.testing.assert_array_equal(got, want)


def test_tables_are_the_reference_on_the_identity():
    st = rt.settings({"mode": b"cubic", "cubic_coeff_a": -0.5, "exclude_outside": 1})
    mat, off = rt.axis_table(6, 1.6, 9, st, None)
    assert mat.shape == (9, 6) and not off.any()
    np.testing.assert_allclose(mat.sum(axis=1), 1.0, rtol=1e-12)     # exclude_outside renormalises every row
    st = rt.settings({"mode": b"linear", "coordinate_transformation_mode": b"tf_crop_and_resize",
                      "extrapolation_value": 2.0})
    mat, off = rt.axis_table(5, 1.0, 5, st, (np.float32(-0.5), np.float32(0.5)))
    outside = off != 0
    assert outside.any() and np.all(off[outside] == 2.0) and not mat[outside].any()


def test_torch_counterparts_still_import_as_interpolate():
    model = _model((1, 2, 4, 4), scales=[1, 1, 2, 2], mode="linear")
    imp = import_onnx(model)
    assert [n.op.name for n in imp.graph.nodes] == ["interpolate"]


def test_symbolic_resized_axis_is_refused_naming_the_node():
    model = _model((1, 2, 4, 4), dims=[1, 2, "h", 4], scales=[1, 1, 2, 2], mode="nearest")
    with pytest.raises(DlcError) as e:
        import_onnx(model)
    assert "rs1" in str(e.value) and "symbolic" in str(e.value)


def test_tf_crop_and_resize_without_roi_is_refused_naming_the_node():
    model = _model((1, 1, 4, 4), scales=[1, 1, 2, 2], mode="linear",
                   coordinate_transformation_mode="tf_crop_and_resize")
    with pytest.raises(DlcError) as e:
        import_onnx(model)
    assert "rs1" in str(e.value) and "roi" in str(e.value)


def test_a_symbolic_batch_axis_left_as_it_is_imports():
    shape, kw = CASES["nearest_half_pixel_floor_up"]
    model = _model(shape, dims=["n", 3, 4, 5], **kw)
    imp = import_onnx(model)
    x = np.random.default_rng(5).standard_normal(shape).astype(np.float32)
    got = run_imported(imp, {imp.graph.inputs[0].name: x}, "numpy")[imp.graph.output_names[0]]
    np.testing.assert_array_equal(got, _reference(model, x))
