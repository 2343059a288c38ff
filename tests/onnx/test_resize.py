"""ONNX Resize <-> the IR's `interpolate`: every torch mode exports as the Resize settings that sample
the same positions, imports back as the same interpolate, and matches torch.nn.functional.interpolate
on onnxruntime and on dlc; the settings torch has no counterpart for import as per-axis tables equal to
ONNX's reference (more in test_resize_general.py)."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import helper

ort = pytest.importorskip("onnxruntime")
torch = pytest.importorskip("torch")

import dlc
from dlc.backends.onnx import export_graph
from dlc.errors import DlcError
from dlc.frontend.onnx import import_onnx
from dlc.onnx_export_cli import forward_graph
from dlc.onnx_import_cli import write_spec

CASES = [  # (input shape, interpolate arguments as .dln text, torch's keyword arguments)
    ((2, 3, 5), 'scale_factor=2, mode="nearest"', dict(scale_factor=2, mode="nearest")),
    ((2, 3, 5, 7), 'scale_factor=3, mode="nearest"', dict(scale_factor=3, mode="nearest")),
    ((2, 3, 9, 7), 'size=(4, 3), mode="nearest"', dict(size=(4, 3), mode="nearest")),
    ((2, 3, 5, 7), 'scale_factor=2, mode="nearest-exact"', dict(scale_factor=2, mode="nearest-exact")),
    ((2, 3, 9, 7), 'size=(4, 5), mode="nearest-exact"', dict(size=(4, 5), mode="nearest-exact")),
    ((2, 3, 6), 'scale_factor=2, mode="linear"', dict(scale_factor=2, mode="linear")),
    ((2, 3, 5, 7), 'scale_factor=2, mode="bilinear"', dict(scale_factor=2, mode="bilinear")),
    ((2, 3, 5, 7), 'scale_factor=1.5, mode="bilinear"', dict(scale_factor=1.5, mode="bilinear")),
    ((2, 3, 9, 7), 'size=(4, 3), mode="bilinear"', dict(size=(4, 3), mode="bilinear")),
    ((2, 3, 5, 7), 'size=(8, 9), mode="bilinear", align_corners=true',
     dict(size=(8, 9), mode="bilinear", align_corners=True)),
    ((2, 3, 5, 7), 'scale_factor=2, mode="bilinear", align_corners=true',
     dict(scale_factor=2, mode="bilinear", align_corners=True)),
    ((2, 3, 5, 7), 'scale_factor=2, mode="bicubic"', dict(scale_factor=2, mode="bicubic")),
    ((2, 3, 9, 7), 'size=(4, 5), mode="bicubic", align_corners=true',
     dict(size=(4, 5), mode="bicubic", align_corners=True)),
]


def _spec(tmp_path, shape, args):
    dims = ", ".join(map(str, shape))
    p = tmp_path / "r.dln"
    p.write_text(f"model R(x: f32[{dims}]) {{\n    return interpolate(x, {args})\n}}\n")
    return dlc.load(str(p))


@pytest.mark.parametrize("shape,args,kw", CASES, ids=[c[1] for c in CASES])
def test_interpolate_exports_as_resize_and_imports_back(shape, args, kw, tmp_path):
    m = _spec(tmp_path, shape, args)
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    ref = torch.nn.functional.interpolate(torch.from_numpy(x), **kw).numpy()
    proto = export_graph(forward_graph(m), {})
    onnx.checker.check_model(proto, full_check=True)
    assert [n.op_type for n in proto.graph.node if n.op_type == "Resize"] == ["Resize"]
    got = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)
    imp = import_onnx(proto)
    (node,) = [n for n in imp.graph.nodes if n.op.name == "interpolate"]
    assert node.attrs["mode"] == kw["mode"] and bool(node.attrs["align_corners"]) == kw.get("align_corners", False)
    weights = write_spec(imp.graph, imp.weights, str(tmp_path / "back.dln"))
    assert "interpolate(" in (tmp_path / "back.dln").read_text()
    back = dlc.load(str(tmp_path / "back.dln"))
    for backend in ("numpy", "torch"):
        out = next(iter(back.run({"x": x}, weights, backend=backend).values()))
        np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)


def test_area_exports_through_its_decomposition(tmp_path):
    m = _spec(tmp_path, (1, 2, 6, 6), 'size=(3, 2), mode="area"')
    proto = export_graph(forward_graph(m), {})
    assert "Resize" not in {n.op_type for n in proto.graph.node}
    x = np.random.default_rng(1).standard_normal((1, 2, 6, 6)).astype(np.float32)
    got = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    ref = torch.nn.functional.interpolate(torch.from_numpy(x), size=(3, 2), mode="area").numpy()
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6)


def _resize_model(rank=4, scales=(1, 1, 2, 2), **attrs):
    node = helper.make_node("Resize", ["X", "", "scales"], ["Y"], name="up1", **attrs)
    shape = [1, 1, 4, 4][:rank]
    g = helper.make_graph([node], "g", [helper.make_tensor_value_info("X", onnx.TensorProto.FLOAT, shape)],
                          [helper.make_tensor_value_info("Y", onnx.TensorProto.FLOAT, None)],
                          [helper.make_tensor("scales", onnx.TensorProto.FLOAT, [len(scales)], list(scales))])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 19)])


@pytest.mark.parametrize("attrs", [
    dict(mode="nearest"),                                                   # ONNX's default nearest
    dict(mode="linear", coordinate_transformation_mode="asymmetric"),
    dict(mode="cubic", cubic_coeff_a=-0.5),
    dict(mode="cubic", exclude_outside=1),
    dict(mode="linear", antialias=1),
])
def test_resize_without_a_torch_counterpart_imports_as_the_reference_computes(attrs):
    # these were refused before dlc imported Resize as per-axis tables (tests/onnx/test_resize_general.py)
    _check_against_reference(_resize_model(**attrs))


def test_tf_crop_and_resize_without_roi_is_refused_naming_the_node():
    with pytest.raises(DlcError) as e:
        import_onnx(_resize_model(mode="linear", coordinate_transformation_mode="tf_crop_and_resize"))
    assert "up1" in str(e.value) and "tf_crop_and_resize" in str(e.value)


def test_resize_of_the_channel_axis_or_unwhole_aligned_scales_imports_as_the_reference_computes():
    # refused before (interpolate resamples spatial axes only / aligns floor(n * s)); now tables
    _check_against_reference(_resize_model(scales=(1, 2, 2, 2), mode="nearest",
                                           coordinate_transformation_mode="asymmetric", nearest_mode="floor"))
    _check_against_reference(_resize_model(scales=(1, 1, 0.6, 0.6), mode="linear",
                                           coordinate_transformation_mode="align_corners"))


def _check_against_reference(model):
    from onnx.reference import ReferenceEvaluator

    from dlc.onnx_import import run_imported
    x = np.random.default_rng(2).standard_normal((1, 1, 4, 4)).astype(np.float32)
    want = ReferenceEvaluator(model).run(None, {"X": x})[0]
    imp = import_onnx(model)
    assert "interpolate" not in {n.op.name for n in imp.graph.nodes}
    got = run_imported(imp, {imp.graph.inputs[0].name: x}, "numpy")[imp.graph.output_names[0]]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
