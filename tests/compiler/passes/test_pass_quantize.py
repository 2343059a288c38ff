"""The quantize and lower_int8 passes on mlp and digits_cnn trained on the
scikit-learn digits, calibrated on the training split:

* the passes fire (every conv2d/dense becomes qconv2d/qdense; the
  quantize(dequantize) pair between two int8 layers goes);
* the int8 graph's outputs are EXACTLY those of an independent NumPy
  computation of the pinned arithmetic written here from the weights and the
  plan (Python ints for the multipliers, int64 accumulations);
* they are close to float: the same predictions on >= 97% of the held-out
  digits and a test accuracy within 2 points of fp32.  (Per-channel int8 on a
  two-layer MLP or a two-conv CNN loses well under a point in the literature;
  the bound leaves room for the short training these tests do.)
* float_layers keeps the named layers in fp32; a missing range is an error
  at the layer's `.dln` line; the passes run at -O0 (with fold_batchnorm) and
  not in training.
"""
from __future__ import annotations

import copy
import math
import textwrap

import numpy as np
import pytest

import dlc
from dlc.backends.numpy.interpreter import Interpreter
from dlc.compiler.passes import PassError, PipelineOptions, run_pipeline
from dlc.compiler.passes.quantize import calibration_graph
from dlc.compiler.quant import QuantPlan, make_observer, observed_values

pytest.importorskip("sklearn")
F32 = np.float32


# ---- trained models and a calibration ----------------------------------------------------------

def _digits(name):
    from dlc.runtime.data import load_dataset
    ds = load_dataset(name)
    return ds.train, ds.val


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = {}
    for spec, data, epochs in (("mlp", "digits", 8), ("digits_cnn", "digits_images", 3)):
        r = dlc.train(f"specs/{spec}.dln", data=data, epochs=epochs, out=str(tmp_path_factory.mktemp(spec)),
                      progress=False)
        (xt, _), (xv, yv) = _digits(data)
        out[spec] = dict(weights={k: np.asarray(v, F32) for k, v in r.weights.items()},
                         calib=xt[:256].astype(F32), x=xv.astype(F32), y=yv)
    return out


def _graph(spec, n, mode="eval"):
    return dlc.load(f"specs/{spec}.dln")._elaborate(mode, {"N": n})


def calibrate(spec, weights, x, method="minmax", per_channel=True, level=2) -> QuantPlan:
    cg = calibration_graph(_graph(spec, len(x)), PipelineOptions(level=level))
    values = observed_values(cg)
    cg.outputs, cg.output_names = list(values.values()), list(values)
    seen, _ = Interpreter(cg).run({cg.inputs[0].name: x}, weights)
    ranges = {}
    for key, a in seen.items():
        obs = make_observer(method)
        obs.update(a)
        ranges[key] = obs.range()
    return QuantPlan(method=method, per_channel=per_channel, ranges=ranges)


def quantized(spec, plan, n, level=2, backend="numpy"):
    g = _graph(spec, n)
    g, _, ctx = run_pipeline(g, PipelineOptions(level=level, quant=plan), backend=backend)
    return g, ctx.stats


def run(g, weights, x):
    out, _ = Interpreter(g).run({g.inputs[0].name: x}, weights)
    return out[g.output_names[0]]


# ---- an independent computation of the pinned arithmetic ----------------------------------------

def qparams(lo, hi):
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    s = F32(1.0) if hi == lo else F32((hi - lo) / 255)
    return s, int(min(max(round(-lo / float(s)), 0), 255))     # Python's round: half to even


def quant_u8(x, s, zp):
    return np.clip(np.rint(np.asarray(x, F32) / s).astype(np.int64) + zp, 0, 255)


def weight_int8(w, per_channel):
    a = np.abs(w).reshape(w.shape[0], -1).max(axis=1) if per_channel else np.full(w.shape[0], np.abs(w).max())
    s = (a.astype(F32) / F32(127)).astype(F32)
    s[s == 0] = 1
    q = np.clip(np.rint(w / s.reshape((-1,) + (1,) * (w.ndim - 1))), -128, 127).astype(np.int64)
    return q, s


def requantize(acc, s_x, s_w, s_y, y_zp, relu, axis):
    out = np.empty_like(acc)
    for c in range(acc.shape[axis]):
        f, e = math.frexp(float(s_x) * float(s_w[c]) / float(s_y))
        m = round(f * 2 ** 31)
        if m == 2 ** 31:
            m, e = m // 2, e + 1
        sh = 31 - e
        a = np.take(acc, c, axis=axis)
        y = y_zp + ((a * m + (1 << (sh - 1))) >> sh)
        idx = [slice(None)] * acc.ndim
        idx[axis] = c
        out[tuple(idx)] = np.clip(y, y_zp if relu else 0, 255)
    return out


def int8_layer(xq, x_zp, w, b, s_x, r_out, per_channel, relu, conv_pad=None):
    """One quantized layer: uint8 in, uint8 out (and its output scale/zero point)."""
    wq, s_w = weight_int8(w, per_channel)
    bias_q = np.rint(b / (F32(s_x) * s_w)).astype(np.int64)
    s_y, y_zp = qparams(*r_out)
    if conv_pad is None:
        acc = (xq - x_zp) @ wq.T + bias_q
        axis = -1
    else:
        xs = np.pad(xq - x_zp, ((0, 0), (0, 0), (conv_pad, conv_pad), (conv_pad, conv_pad)))
        kh, kw = wq.shape[2:]
        win = np.lib.stride_tricks.sliding_window_view(xs, (kh, kw), axis=(2, 3))   # n, c, oh, ow, kh, kw
        acc = np.einsum("ncijpq,ocpq->noij", win, wq) + bias_q.reshape(1, -1, 1, 1)
        axis = 1
    return requantize(acc, s_x, s_w, s_y, y_zp, relu, axis), s_y, y_zp


def reference_mlp(W, plan, x):
    r = plan.ranges
    s_x, zp = qparams(*r["hidden:in"])
    h, s_h, zp_h = int8_layer(quant_u8(x, s_x, zp), zp, W["hidden.weight"], W["hidden.bias"], s_x,
                              r["hidden:out"], plan.per_channel, relu=True)
    assert r["output:in"] == r["hidden:out"]          # one tensor: the pair between the layers goes
    y, s_y, zp_y = int8_layer(h, zp_h, W["output.weight"], W["output.bias"], s_h, r["output:out"],
                              plan.per_channel, relu=False)
    return ((y - zp_y).astype(F32) * s_y).astype(F32)


def reference_cnn(W, plan, x):
    r = plan.ranges

    def dq(q, s, zp):
        return ((q - zp).astype(F32) * s).astype(F32)

    def pool(a):
        n, c, h, w = a.shape
        return a.reshape(n, c, h // 2, 2, w // 2, 2).max(axis=(3, 5))

    a = x
    for conv in ("conv1", "conv2"):
        s_x, zp = qparams(*r[f"{conv}:in"])
        q, s_y, zp_y = int8_layer(quant_u8(a, s_x, zp), zp, W[f"{conv}.weight"], W[f"{conv}.bias"], s_x,
                                  r[f"{conv}:out"], plan.per_channel, relu=True, conv_pad=1)
        a = pool(dq(q, s_y, zp_y))
    a = a.reshape(len(a), -1)
    s_x, zp = qparams(*r["hidden:in"])
    h, s_h, zp_h = int8_layer(quant_u8(a, s_x, zp), zp, W["hidden.weight"], W["hidden.bias"], s_x,
                              r["hidden:out"], plan.per_channel, relu=True)
    y, s_y, zp_y = int8_layer(h, zp_h, W["output.weight"], W["output.bias"], s_h, r["output:out"],
                              plan.per_channel, relu=False)
    return dq(y, s_y, zp_y)


REFERENCE = {"mlp": reference_mlp, "digits_cnn": reference_cnn}


# ---- the tests ----------------------------------------------------------------------------------

def _ops(g):
    counts = {}
    for n in g.walk():
        counts[n.op.name] = counts.get(n.op.name, 0) + 1
    return counts


@pytest.mark.parametrize("spec, layers", [("mlp", {"qdense": 2}), ("digits_cnn", {"qconv2d": 2, "qdense": 2})])
@pytest.mark.parametrize("per_channel", [True, False])
def test_int8_graph_is_exact_and_close_to_float(trained, spec, layers, per_channel):
    t = trained[spec]
    plan = calibrate(spec, t["weights"], t["calib"], per_channel=per_channel)
    x = t["x"]
    g, stats = quantized(spec, plan, len(x))
    ops = _ops(g)
    for op, k in layers.items():
        assert ops.get(op) == k and stats[f"lower_int8.{op}"] == k
    assert not {"conv2d", "linear", "relu"} & set(ops)          # every layer and epilogue is integer
    assert stats["lower_int8.requantize_pairs_removed"] == 1      # hidden -> output stays uint8
    got = run(g, t["weights"], x)
    assert np.array_equal(got, REFERENCE[spec](t["weights"], plan, x))
    want = run(_graph(spec, len(x)), t["weights"], x)
    agree = (got.argmax(1) == want.argmax(1)).mean()
    acc_f, acc_q = (want.argmax(1) == t["y"]).mean(), (got.argmax(1) == t["y"]).mean()
    assert agree >= 0.97 and acc_q >= acc_f - 0.02, (agree, acc_f, acc_q)
    assert np.abs(got - want).max() <= 0.1 * np.abs(want).max()


@pytest.mark.parametrize("method", ["percentile", "entropy"])
def test_other_calibration_methods_quantize_too(trained, method):
    t = trained["mlp"]
    plan = calibrate("mlp", t["weights"], t["calib"], method=method)
    g, _ = quantized("mlp", plan, len(t["x"]))
    got = run(g, t["weights"], t["x"])
    assert np.array_equal(got, reference_mlp(t["weights"], plan, t["x"]))
    want = run(_graph("mlp", len(t["x"])), t["weights"], t["x"])
    assert (got.argmax(1) == want.argmax(1)).mean() >= 0.95


def test_float_layers_stay_float(trained):
    t = trained["digits_cnn"]
    plan = calibrate("digits_cnn", t["weights"], t["calib"])
    plan.float_layers = {"conv2", "output"}
    g, stats = quantized("digits_cnn", plan, len(t["x"]))
    ops = _ops(g)
    assert ops.get("qconv2d") == 1 and ops.get("qdense") == 1 and stats["quantize.kept_float"] == 2
    floats = {n.scope for n in g.walk() if n.op.name in ("conv2d", "linear")}
    assert floats == {"conv2", "output"}
    got = run(g, t["weights"], t["x"])
    full = run(quantized("digits_cnn", QuantPlan(ranges=plan.ranges), len(t["x"]))[0], t["weights"], t["x"])
    want = run(_graph("digits_cnn", len(t["x"])), t["weights"], t["x"])
    assert not np.array_equal(got, full)
    assert (got.argmax(1) == want.argmax(1)).mean() >= 0.97


def test_torch_runs_the_int8_graph_bit_for_bit(trained):
    torch = pytest.importorskip("torch")
    from dlc.backends.torch.funcgen import compile_function
    t = trained["digits_cnn"]
    plan = calibrate("digits_cnn", t["weights"], t["calib"])
    g, _ = quantized("digits_cnn", plan, len(t["x"]), backend="torch")
    fn = compile_function(g)
    (got,), _ = fn(torch.tensor(t["x"]), {k: torch.tensor(v) for k, v in t["weights"].items()})
    assert np.array_equal(got.numpy(), run(g, t["weights"], t["x"]))
    assert "torch._int_mm" in fn.source


def test_a_missing_range_is_an_error_at_the_layer(trained):
    t = trained["mlp"]
    plan = calibrate("mlp", t["weights"], t["calib"])
    del plan.ranges["output:out"]
    with pytest.raises(PassError) as e:
        quantized("mlp", plan, 4)
    assert "'output:out'" in e.value.message and "output" in e.value.message
    assert e.value.span.file.endswith("mlp.dln") and e.value.span.line == 11     # output = dense(hidden, 10)


def test_an_unknown_float_layer_is_an_error():
    with pytest.raises(PassError, match="'hiden', not a quantizable layer"):
        quantized("mlp", QuantPlan(float_layers={"hiden"}), 4)


def test_int8_weights_are_computed_once_per_set_of_weights(trained):
    from dlc.compiler.hoist import weight_only_nodes
    t = trained["mlp"]
    g, _ = quantized("mlp", calibrate("mlp", t["weights"], t["calib"]), 8)
    hoisted = {id(n) for n in weight_only_nodes(g)}
    params = {p.id for p in g.params}
    for n in g.nodes:
        reads_weights = n.op.name in ("quantize_linear", "requant_multiplier") and (
            n.op.name == "requant_multiplier" or n.inputs[0].id in params)
        if reads_weights:                 # int8 weights, int32 biases, multipliers: once per weights
            assert id(n) in hoisted, n
        elif n.op.name in ("qdense", "dequantize_linear") or (n.op.name == "quantize_linear"):
            assert id(n) not in hoisted, n    # the activations: every run
    assert sum(n.op.name == "requant_multiplier" for n in g.nodes) == 2


BN_SPEC = """
model Tiny(image: f32[N, 2, 6, 6]) -> f32[N, 3] {
    example N = 2
    c = conv2d(image, 4, kernel=3, padding=1, bias=false, name="conv") |> batchnorm(name="bn") |> relu
    f = flatten(c)
    output = dense(f, 3)
    return output
}
"""


@pytest.mark.parametrize("level", [0, 1, 3])
def test_quantization_runs_at_every_level_after_folding_batch_norm(tmp_path, level):
    path = tmp_path / "tiny.dln"
    path.write_text(textwrap.dedent(BN_SPEC))
    m = dlc.load(str(path))
    g = m._elaborate("eval", {"N": 8})
    rng = np.random.default_rng(0)
    weights = {k: (v + rng.uniform(0.1, 0.5, v.shape)).astype(F32) if "running_var" in k else
               (v + rng.standard_normal(v.shape) * 0.3).astype(F32) for k, v in m.init_weights(0).items()}
    x = rng.standard_normal((8, 2, 6, 6)).astype(F32)
    cg = calibration_graph(g, PipelineOptions(level=level))
    values = observed_values(cg)
    cg.outputs, cg.output_names = list(values.values()), list(values)
    seen, _ = Interpreter(cg).run({"image": x}, weights)
    plan = QuantPlan(ranges={k: (float(a.min()), float(a.max())) for k, a in seen.items()})
    qg, _, ctx = run_pipeline(copy.deepcopy(g), PipelineOptions(level=level, quant=plan))
    ops = _ops(qg)
    assert ctx.stats["fold_batchnorm.folded"] == 1 and "batch_norm" not in ops
    assert ops.get("qconv2d") == 1 and ops.get("qdense") == 1
    want = run(g, weights, x)
    got = run(qg, weights, x)
    assert np.abs(got - want).max() <= 0.05 * np.abs(want).max()


def test_the_passes_do_not_run_without_a_plan_or_in_training():
    g, stats = quantized("mlp", None, 4)
    assert not any(k.startswith(("quantize.", "lower_int8.")) for k in stats)
    g = _graph("mlp", 4, mode="train")
    _, records, _ = run_pipeline(g, PipelineOptions(quant=QuantPlan()))
    assert not {"quantize", "lower_int8"} & {r.name for r in records}


def test_a_weight_channel_too_small_to_requantise_is_an_error_at_the_layer(trained):
    from dlc.errors import DlcRuntimeError
    t = trained["mlp"]
    plan = calibrate("mlp", t["weights"], t["calib"])
    g, _ = quantized("mlp", plan, 4)
    weights = dict(t["weights"])
    w = weights["output.weight"].copy()
    w[3] = 1e-30                      # s_w = 1e-30 / 127: the multiplier needs a shift of about 110
    weights["output.weight"] = w
    with pytest.raises(DlcRuntimeError, match=r"outside \[1, 62\]") as e:
        run(g, weights, t["x"][:4])
    assert e.value.span.file.endswith("mlp.dln") and e.value.span.line == 11
    assert "float_layers" in e.value.hint


def test_lenet5_with_tanh_between_the_layers():
    # random weights and inputs (accuracy does not matter here): tanh and average pooling stay float
    # between the int8 layers, so every layer dequantizes its output and no pair can go
    torch = pytest.importorskip("torch")
    from dlc.backends.torch.funcgen import compile_function
    m = dlc.load("specs/lenet5.dln")
    weights = m.init_weights(0)
    x = np.random.default_rng(0).standard_normal((16, 1, 32, 32)).astype(F32)
    plan = calibrate("lenet5", weights, x)
    g, stats = quantized("lenet5", plan, 16)
    ops = _ops(g)
    assert ops.get("qconv2d") == 2 and ops.get("qdense") == 3 and ops.get("tanh") == 4
    assert stats["lower_int8.requantize_pairs_removed"] == 0
    assert ops.get("dequantize_linear") == 5 and not {"conv2d", "linear"} & set(ops)
    got = run(g, weights, x)
    want = run(_graph("lenet5", 16), weights, x)
    assert np.abs(got - want).max() <= 0.05 * np.abs(want).max()
    fn = compile_function(g)
    (t,), _ = fn(torch.tensor(x), {k: torch.tensor(v) for k, v in weights.items()})
    assert np.array_equal(t.numpy(), got)
