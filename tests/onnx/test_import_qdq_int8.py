"""QDQ models import as dlc's int8 ops: DequantizeLinear(uint8 x) + DequantizeLinear(int8 weight)
-> Conv / Gemm / MatMul [-> Relu] -> QuantizeLinear becomes one qconv2d / qdense with the pinned
integer arithmetic (compiler/ops/quant.py).  Checked three ways: bit for bit against the pinned
formula computed here from the initializers alone, against onnxruntime's integer kernels
(QLinearConv / QGemm, which its graph optimizer fuses the QDQ pattern into, and the QOperator
format of quantize_static) on numpy, torch and TVM, and the fallback for what does not fit."""
from __future__ import annotations

import numpy as np
import pytest
import real_models

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
torch = pytest.importorskip("torch")
from onnx import TensorProto, helper, numpy_helper

from dlc.errors import DlcValueError
from dlc.frontend.onnx import import_onnx
from dlc.onnx_import import run_imported

BACKENDS = ["numpy", "torch", pytest.param("tvm", marks=pytest.mark.tvm)]


def _session(model, optimize=True):
    so = ort.SessionOptions()
    so.log_severity_level = 3
    if not optimize:          # ONNX's own QDQ semantics: float layers between Q/DQ (fake quantization)
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])


def _qweights(rng, shape, per_channel=True):
    w = rng.normal(0, 0.3, shape).astype(np.float32)
    m = np.abs(w).reshape(shape[0], -1).max(1) if per_channel else np.abs(w).max()
    s = (m / 127).astype(np.float32)
    sb = s.reshape((-1,) + (1,) * (len(shape) - 1)) if per_channel else s
    return np.clip(np.rint(w / sb), -127, 127).astype(np.int8), s


S_X, ZP_X, S_Y, ZP_Y, S_Z, ZP_Z, S_M, ZP_M = 0.031, 121, 0.047, 0, 0.11, 133, 0.09, 97


def _model():
    """Three int8 layers as onnxruntime's QDQ format writes them, each output a uint8 graph output:
    conv (per-channel weight, int32 bias at s_x * s_w, relu, stride 2, groups 2), Gemm (per-tensor
    weight, float bias) and MatMul (weight [K, N] per channel on axis 1) + Add of a float bias."""
    rng = np.random.default_rng(0)
    w, sw = _qweights(rng, (6, 2, 3, 3))
    b = rng.normal(0, 0.5, 6).astype(np.float32)
    sb = (np.float32(S_X) * sw).astype(np.float32)
    bq = np.rint(b / sb).astype(np.int32)
    fc, sfc = _qweights(rng, (5, 6 * 3 * 3), per_channel=False)
    mm, smm = _qweights(rng, (6 * 3 * 3, 4))          # rows = K: "channels" are columns below
    smm = (np.abs(mm.astype(np.float32)).max(0) * 0.004).astype(np.float32) + np.float32(1e-3)
    f32 = lambda v: np.array(v, np.float32)  # noqa: E731
    u8 = lambda v: np.array(v, np.uint8)  # noqa: E731
    inits = [numpy_helper.from_array(a, n) for a, n in [
        (f32(S_X), "s_x"), (u8(ZP_X), "zp_x"), (f32(S_Y), "s_y"), (u8(ZP_Y), "zp_y"),
        (f32(S_Z), "s_z"), (u8(ZP_Z), "zp_z"), (f32(S_M), "s_m"), (u8(ZP_M), "zp_m"),
        (w, "conv.weight_quantized"), (sw, "conv.weight_scale"), (np.zeros(6, np.int8), "conv.weight_zp"),
        (bq, "conv.bias_quantized"), (sb, "conv.bias_scale"), (np.zeros(6, np.int32), "conv.bias_zp"),
        (fc, "fc.weight_quantized"), (sfc, "fc.weight_scale"), (np.zeros((), np.int8), "fc.weight_zp"),
        (rng.normal(0, 0.5, 5).astype(np.float32), "fc.bias"),
        (mm, "mm.weight_quantized"), (smm, "mm.weight_scale"), (rng.normal(0, 0.5, 4).astype(np.float32), "mm.bias"),
    ]]
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "s_x", "zp_x"], ["xq"]),
        helper.make_node("DequantizeLinear", ["xq", "s_x", "zp_x"], ["xd"]),
        helper.make_node("DequantizeLinear", ["conv.weight_quantized", "conv.weight_scale", "conv.weight_zp"],
                         ["wd"], axis=0),
        helper.make_node("DequantizeLinear", ["conv.bias_quantized", "conv.bias_scale", "conv.bias_zp"], ["bd"],
                         axis=0),
        helper.make_node("Conv", ["xd", "wd", "bd"], ["c"], pads=[1, 1, 1, 1], strides=[2, 2], group=2),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("QuantizeLinear", ["r", "s_y", "zp_y"], ["yq"]),
        helper.make_node("DequantizeLinear", ["yq", "s_y", "zp_y"], ["yd"]),
        helper.make_node("Flatten", ["yd"], ["f"], axis=1),
        helper.make_node("QuantizeLinear", ["f", "s_y", "zp_y"], ["fq"]),
        helper.make_node("DequantizeLinear", ["fq", "s_y", "zp_y"], ["fd"]),
        helper.make_node("DequantizeLinear", ["fc.weight_quantized", "fc.weight_scale", "fc.weight_zp"], ["fcw"]),
        helper.make_node("Gemm", ["fd", "fcw", "fc.bias"], ["g"], transB=1),
        helper.make_node("QuantizeLinear", ["g", "s_z", "zp_z"], ["zq"]),
        helper.make_node("DequantizeLinear", ["mm.weight_quantized", "mm.weight_scale"], ["mmw"], axis=1),
        helper.make_node("MatMul", ["fd", "mmw"], ["mmo"]),
        helper.make_node("Add", ["mmo", "mm.bias"], ["mma"]),
        helper.make_node("QuantizeLinear", ["mma", "s_m", "zp_m"], ["mq"]),
    ]
    g = helper.make_graph(nodes, "qdq_int8", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4, 6, 6])],
                          [helper.make_tensor_value_info(n, TensorProto.UINT8, None) for n in ("yq", "zq", "mq")],
                          initializer=inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def _run(imp, feed, backend, **bind):
    if backend == "tvm":
        pytest.importorskip("tvm")
    return run_imported(imp, feed, backend, bind=bind)


def _inputs(n=4, seed=1):
    return {"x": np.random.default_rng(seed).normal(0, 2, (n, 4, 6, 6)).astype(np.float32)}


def _init(model, name):
    return next(numpy_helper.to_array(t) for t in model.graph.initializer if t.name == name)


def _requantize(acc, m, s_y, zp_y, relu):
    """The pinned fixed-point requantisation, from frexp of the real multiplier (per channel on axis 1)."""
    f, e = np.frexp(np.asarray(m, np.float64))
    mult = np.rint(np.ldexp(f, 31)).astype(np.int64)
    e = np.where(mult == 1 << 31, e + 1, e)
    mult = np.where(mult == 1 << 31, mult // 2, mult)
    shift = (31 - e).astype(np.int64)
    shape = (1, -1) + (1,) * (acc.ndim - 2)
    mult, shift = mult.reshape(shape), shift.reshape(shape)
    y = (acc.astype(np.int64) * mult + (np.int64(1) << (shift - 1))) >> shift
    return np.clip(y + zp_y, zp_y if relu else 0, 255).astype(np.uint8)


def _pinned(model, x):
    """yq, zq, mq by the pinned integer formula, from the model's initializers (not dlc's code)."""
    q = lambda v, s, zp: np.clip(np.rint(np.true_divide(v, np.float32(s), dtype=np.float32)) + zp, 0, 255)  # noqa: E731
    xc = torch.from_numpy(q(x, S_X, ZP_X).astype(np.float64) - ZP_X)   # float64 integers: the sums are exact
    w = torch.from_numpy(_init(model, "conv.weight_quantized").astype(np.float64))
    acc = torch.nn.functional.conv2d(xc, w, stride=2, padding=1, groups=2).numpy()
    acc = np.rint(acc).astype(np.int64) + _init(model, "conv.bias_quantized").reshape(1, -1, 1, 1)
    m = np.float64(np.float32(S_X)) * _init(model, "conv.weight_scale").astype(np.float64) / np.float64(np.float32(S_Y))
    yq = _requantize(acc, m, S_Y, ZP_Y, relu=True)
    fc = yq.reshape(len(x), -1).astype(np.int64) - ZP_Y
    out = []
    for wname, bname, s_out, zp_out, trans in (("fc", "fc", S_Z, ZP_Z, True), ("mm", "mm", S_M, ZP_M, False)):
        wq = _init(model, f"{wname}.weight_quantized").astype(np.int64)
        sw = np.broadcast_to(_init(model, f"{wname}.weight_scale"), (wq.shape[0] if trans else wq.shape[1],))
        sxw = np.multiply(np.float32(S_Y), sw, dtype=np.float32)
        bq = np.rint(np.true_divide(_init(model, f"{bname}.bias"), sxw, dtype=np.float32)).astype(np.int64)
        acc = fc @ (wq.T if trans else wq) + bq
        m = np.float64(np.float32(S_Y)) * sw.astype(np.float64) / np.float64(np.float32(s_out))
        out.append(_requantize(acc, m, s_out, zp_out, relu=False))
    return yq, out[0], out[1]


def test_the_qdq_layers_become_int8_ops_and_the_float_ones_are_gone():
    imp = import_onnx(_model())
    ops = [n.op.name for n in imp.graph.nodes]
    assert imp.qdq == {"qconv2d": 1, "qdense": 2}
    assert ops.count("qconv2d") == 1 and ops.count("qdense") == 2
    assert not {"conv2d", "linear", "matmul", "relu", "add"} & set(ops)
    conv = next(n for n in imp.graph.nodes if n.op.name == "qconv2d")
    assert conv.attrs["x_zero_point"] == ZP_X and conv.attrs["relu"] and conv.attrs["groups"] == 2
    # quantize_static's int32 bias at s_x * s_w is taken as it is
    np.testing.assert_array_equal(imp.weights[conv.inputs[2].name], _init(_model(), "conv.bias_quantized"))
    # the float scales and zero points of the weights are no parameters any more
    names = {p.name for p in imp.graph.params}
    assert names == set(imp.weights)
    assert not {"conv.weight_scale", "conv.weight_zp", "conv.bias_quantized", "fc.weight_scale"} & names
    # the MatMul weight [K, N] is stored as qdense's [N, K]
    mm = [n for n in imp.graph.nodes if n.op.name == "qdense"][1]
    np.testing.assert_array_equal(imp.weights[mm.inputs[1].name], _init(_model(), "mm.weight_quantized").T)


@pytest.mark.parametrize("backend", BACKENDS)
def test_int8_layers_equal_the_pinned_formula_bit_for_bit(backend):
    m = _model()
    feed = _inputs()
    out = _run(import_onnx(m), feed, backend, N=4)
    for name, want in zip(("yq", "zq", "mq"), _pinned(m, feed["x"])):
        assert out[name].dtype == np.uint8
        np.testing.assert_array_equal(out[name], want, err_msg=name)


@pytest.mark.parametrize("backend", BACKENDS)
def test_int8_layers_match_onnxruntimes_integer_kernels_within_one_unit(backend):
    """onnxruntime fuses the QDQ pattern into QLinearConv / QGemm, which requantise in float32
    (acc * (s_x * s_w / s_y), rounded to nearest even); dlc's fixed-point multiplier rounds half up:
    they differ by one unit at most, only where acc * m lies within float32 rounding of a tie."""
    m = _model()
    feed = _inputs(16, seed=2)
    ref = _session(m).run(None, feed)
    out = _run(import_onnx(m), feed, backend, N=16)
    for name, r in zip(("yq", "zq", "mq"), ref):
        d = np.abs(out[name].astype(np.int32) - r.astype(np.int32))
        assert d.max() <= 1, name
        assert (d == 0).mean() >= 0.99, name


def test_qdq_fake_keeps_the_float_layers_and_equals_onnx_reference_semantics():
    m = _model()
    imp = import_onnx(m, qdq="fake")
    ops = [n.op.name for n in imp.graph.nodes]
    assert imp.qdq == {} and "qconv2d" not in ops and {"conv2d", "linear", "matmul"} <= set(ops)
    feed = _inputs()
    ref = _session(m, optimize=False).run(None, feed)
    out = run_imported(imp, feed, "numpy", bind={"N": 4})
    for name, r in zip(("yq", "zq", "mq"), ref):
        d = np.abs(out[name].astype(np.int32) - r.astype(np.int32))
        assert d.max() <= 1, name          # float32 summation order only


def test_a_bad_qdq_option_is_a_located_error():
    with pytest.raises(DlcValueError, match="qdq='int4'"):
        import_onnx(_model(), qdq="int4")


def _with_initializer(model, name, value):
    m = onnx.ModelProto()
    m.CopyFrom(model)
    t = next(t for t in m.graph.initializer if t.name == name)
    t.CopyFrom(numpy_helper.from_array(value, name))
    return m


def test_layers_that_do_not_fit_stay_float_and_still_match_onnxruntime():
    # a weight zero point other than 0 (the pinned arithmetic has none) and a multiplier
    # s_x * s_w / s_y below 2^-31 (no shift in [1, 62]): those layers keep the float form
    m = _with_initializer(_model(), "conv.weight_zp", np.array([0, 0, 0, 1, 0, 0], np.int8))
    m = _with_initializer(m, "s_z", np.array(1e9, np.float32))
    imp = import_onnx(m)
    assert imp.qdq == {"qdense": 1, "kept_float": 2}
    # a zero weight scale (every weight of that channel dequantizes to 0): float too
    sw = _init(m, "mm.weight_scale").copy()
    sw[1] = 0
    assert import_onnx(_with_initializer(m, "mm.weight_scale", sw)).qdq == {"kept_float": 3}
    ops = [n.op.name for n in imp.graph.nodes]
    assert "conv2d" in ops and "linear" in ops and "qconv2d" not in ops
    feed = _inputs()
    ref = _session(m, optimize=False).run(None, feed)
    out = run_imported(imp, feed, "numpy", bind={"N": 4})
    for name, r in zip(("yq", "zq"), ref):
        assert np.abs(out[name].astype(np.int32) - r.astype(np.int32)).max() <= 1, name


# --- a float model quantized by onnxruntime.quantization.quantize_static ---------------------------

def _float_model():
    rng = np.random.default_rng(3)
    inits = [numpy_helper.from_array(a, n) for a, n in [
        (rng.normal(0, 0.3, (8, 3, 3, 3)).astype(np.float32), "c1.weight"),
        (rng.normal(0, 0.1, 8).astype(np.float32), "c1.bias"),
        (rng.normal(0, 0.2, (8, 4, 3, 3)).astype(np.float32), "c2.weight"),
        (rng.normal(0, 0.1, 8).astype(np.float32), "c2.bias"),
        (rng.normal(0, 0.1, (10, 8 * 4 * 4)).astype(np.float32), "fc.weight"),
        (rng.normal(0, 0.1, 10).astype(np.float32), "fc.bias")]]
    nodes = [
        helper.make_node("Conv", ["x", "c1.weight", "c1.bias"], ["a"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["a"], ["ar"]),
        helper.make_node("Conv", ["ar", "c2.weight", "c2.bias"], ["b"], pads=[1, 1, 1, 1], strides=[2, 2], group=2),
        helper.make_node("Relu", ["b"], ["br"]),
        helper.make_node("MaxPool", ["br"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Flatten", ["p"], ["f"], axis=1),
        helper.make_node("Gemm", ["f", "fc.weight", "fc.bias"], ["y"], transB=1)]
    g = helper.make_graph(nodes, "small", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 16, 16])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10])], initializer=inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def _calibration(n):
    return [{"x": np.random.default_rng(100 + i).normal(0, 1, (1, 3, 16, 16)).astype(np.float32)} for i in range(n)]


@pytest.fixture(scope="module")
def quantized(tmp_path_factory):
    """The same float model quantized by quantize_static in both formats (QDQ and QOperator)."""
    q = pytest.importorskip("onnxruntime.quantization")
    d = tmp_path_factory.mktemp("qs")
    onnx.save(_float_model(), d / "f.onnx")

    class Reader(q.CalibrationDataReader):
        def __init__(self):
            self.it = iter(_calibration(8))

        def get_next(self):
            return next(self.it, None)

    out = {}
    for fmt in ("QDQ", "QOperator"):
        q.quantize_static(str(d / "f.onnx"), str(d / f"{fmt}.onnx"), Reader(), quant_format=getattr(q.QuantFormat, fmt),
                          per_channel=True, activation_type=q.QuantType.QUInt8, weight_type=q.QuantType.QInt8)
        out[fmt] = onnx.load(str(d / f"{fmt}.onnx"))
    return out


@pytest.mark.parametrize("backend", BACKENDS)
def test_quantize_static_model_matches_onnxruntime_qoperator(quantized, backend):
    qdq, qop = quantized["QDQ"], quantized["QOperator"]
    assert {"QLinearConv"} <= {n.op_type for n in qop.graph.node}
    imp = import_onnx(qdq)
    assert imp.qdq == {"qconv2d": 2, "qdense": 1}
    s_y = float(next(numpy_helper.to_array(t) for t in qdq.graph.initializer if t.name == "y_scale"))
    sess = [_session(qop), _session(qdq)]
    worst = 0.0
    wide = {"x": np.random.default_rng(7).normal(0, 1.5, (1, 3, 16, 16)).astype(np.float32)}
    for feed in _calibration(2) + [wide]:
        out = _run(imp, feed, backend)["y"]
        for s in sess:
            worst = max(worst, float(np.abs(out - s.run(None, feed)[0]).max()) / s_y)
    # the output is DequantizeLinear of the last uint8: equal, or one quantization step apart
    assert worst <= 1.0 + 1e-6


# --- dlc's own quantized model: export (int32 biases) -> onnxruntime, and back through import ------

SPEC = "specs/digits_cnn.dln"


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """digits_cnn quantized by dlc (conv1, conv2, hidden int8; output float), exported as QDQ."""
    import os

    import dlc
    from dlc.compiler.quant import QuantPlan
    from dlc.onnx_export_cli import export_spec
    from dlc.quant_artifact import save_artifact, with_plan
    from dlc.quant_observe import calibrate_observers
    from dlc.run_folder import spec_hash
    spec = os.path.join(os.path.dirname(__file__), "..", "..", SPEC)
    m = dlc.load(spec)
    w = m.init_weights(0)
    obs, _, _ = calibrate_observers(m, w, m.random_inputs(0, {"N": 32})[m.graph.inputs[0].name], progress=False)
    plan = QuantPlan(ranges={k: o.range() for k, o in obs.items()}, float_layers={"output"})
    path = tmp_path_factory.mktemp("q") / "digits_int8.safetensors"
    save_artifact(path, w, plan, spec_sha256=spec_hash(spec), model=m.name)
    proto, _ = export_spec(spec, weights_path=str(path))
    return proto, with_plan(m, plan), w


def test_export_writes_int32_biases_and_onnxruntime_fuses_every_quantized_layer(exported, tmp_path):
    proto, _, _ = exported
    onnx.checker.check_model(proto, full_check=True)
    inits = {t.name: t for t in proto.graph.initializer}
    prod = {o: n for n in proto.graph.node for o in n.output}
    layers = [n for n in proto.graph.node if n.op_type in ("Conv", "Gemm") and n.input[1] in prod]
    assert len(layers) == 3
    for n in layers:
        b = prod[n.input[2]]
        assert b.op_type == "DequantizeLinear" and inits[b.input[0]].data_type == TensorProto.INT32
        # the bias scale is s_x * s_w: the product of the scales of the layer's two DequantizeLinear
        s_x, s_w = (numpy_helper.to_array(inits[prod[n.input[i]].input[1]]) for i in (0, 1))
        np.testing.assert_array_equal(numpy_helper.to_array(inits[b.input[1]]), np.float32(s_x) * s_w)
    assert all(len(n.input) == 3 for n in proto.graph.node if n.op_type == "DequantizeLinear")
    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.optimized_model_filepath = str(tmp_path / "opt.onnx")
    ort.InferenceSession(proto.SerializeToString(), so, providers=["CPUExecutionProvider"])
    fused = [n.op_type for n in onnx.load(str(tmp_path / "opt.onnx")).graph.node]
    # the two convs and the hidden Gemm run as integer kernels; only the float output layer is a Gemm
    assert fused.count("QLinearConv") == 2 and fused.count("QGemm") == 1 and fused.count("Gemm") == 1


@pytest.mark.parametrize("backend", BACKENDS)
def test_exported_model_imports_back_as_dlcs_own_int8_model(exported, backend):
    from dlc.backends import get_backend
    proto, mq, w = exported
    imp = import_onnx(proto)
    assert imp.qdq == {"qconv2d": 2, "qdense": 1}
    feed = mq.random_inputs(1, {"N": 16})
    own = mq.compiled_graph("eval", bind={"N": 16})
    assert {"qconv2d", "qdense"} <= {n.op.name for n in own.nodes}
    want, _ = get_backend("numpy").compile(own).run(feed, w)
    got = _run(imp, feed, backend, N=16)
    # the same integers through the int8 layers; the float output layer sums in another order
    np.testing.assert_allclose(next(iter(got.values())), want["output"], rtol=1e-6, atol=1e-6)
    # and onnxruntime, fused (QLinearConv/QGemm) and unfused (the file's own QDQ semantics), agrees
    for optimize in (True, False):
        ref = _session(proto, optimize).run(None, feed)[0]
        np.testing.assert_allclose(ref, want["output"], rtol=1e-6, atol=1e-6)


def test_the_pipeline_keeps_the_imported_int8_layers_exact():
    from dlc.backends import get_backend
    from dlc.compiler.passes import run_pipeline
    from dlc.compiler.passes.pipeline import PipelineOptions
    from dlc.compiler.verify import verify
    feed = _inputs()
    want = _pinned(_model(), feed["x"])
    for level in (0, 2, 3):
        imp = import_onnx(_model())
        verify(imp.graph)
        g, _, _ = run_pipeline(imp.graph, PipelineOptions(level=level), backend="numpy", dims={"N": 4}, verify=True)
        assert {"qconv2d", "qdense"} <= {n.op.name for n in g.nodes}
        out, _ = get_backend("numpy").run(g, feed, imp.weights, bind={"N": 4})
        for name, w in zip(("yq", "zq", "mq"), want):
            np.testing.assert_array_equal(out[name], w, err_msg=f"-O{level} {name}")


def test_cli_import_says_which_layers_became_int8(tmp_path):
    from click.testing import CliRunner

    from dlc.cli import main
    path = tmp_path / "q.onnx"
    onnx.save(_with_initializer(_model(), "conv.weight_zp", np.array([1, 0, 0, 0, 0, 0], np.int8)), path)
    r = CliRunner().invoke(main, ["import", str(path)])
    assert r.exit_code == 0, r.output
    assert "QDQ layers as int8 ops: qdense x2; 1 kept float" in r.output
    r = CliRunner().invoke(main, ["import", str(path), "--qdq", "fake"])
    assert r.exit_code == 0 and "QDQ layers" not in r.output and "conv2d x1" in r.output


def test_resnet18_quantized_by_quantize_static_runs_as_int8_within_one_step_of_onnxruntime(tmp_path):
    """A real model: the bench's torchvision-layout ResNet-18 (64x64 input), exported by torch.onnx
    and quantized by onnxruntime.quantization: its 20 convs and fc become int8 ops; the residual
    adds and the average pool stay float between their Q/DQ pairs (onnxruntime runs them as
    QLinearAdd / QLinearGlobalAveragePool), so a few outputs are one step off."""
    q = pytest.importorskip("onnxruntime.quantization")
    data, _, _ = real_models.export("resnet18", fold=True)
    (tmp_path / "f.onnx").write_bytes(data)
    calib = [{"x": np.random.default_rng(100 + i).normal(0, 1, (1, 3, 64, 64)).astype(np.float32)} for i in range(4)]

    class Reader(q.CalibrationDataReader):
        def __init__(self):
            self.it = iter(calib)

        def get_next(self):
            return next(self.it, None)

    q.quantize_static(str(tmp_path / "f.onnx"), str(tmp_path / "q.onnx"), Reader(), quant_format=q.QuantFormat.QDQ,
                      per_channel=True, activation_type=q.QuantType.QUInt8, weight_type=q.QuantType.QInt8)
    model = onnx.load(str(tmp_path / "q.onnx"))
    imp = import_onnx(model)
    assert imp.qdq == {"qconv2d": 20, "qdense": 1}
    prod = {o: n for n in model.graph.node for o in n.output}
    s_y = float(_init(model, prod["out"].input[1]))
    x = {"x": np.random.default_rng(5).normal(0, 1, (2, 3, 64, 64)).astype(np.float32)}
    out = run_imported(imp, x, "numpy", bind={"N": 2})["out"]
    steps = np.abs(out - _session(model).run(None, x)[0]) / s_y
    assert steps.max() <= 1.0 + 1e-3 and np.mean(steps < 0.5) >= 0.95
    assert (out.argmax(1) == _session(model).run(None, x)[0].argmax(1)).all()
