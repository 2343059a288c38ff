"""autocast (--precision bf16|fp16): where the casts go, fp32 statistics and
outputs, and numbers close to fp32 within the low precision's tolerance.

Tolerances: a bf16 value carries 8 significant bits, so each rounding is off
by at most u = 2^-9 relative (fp16: 11 bits, u = 2^-12); a value that went
through k rounded ops (input, weight and result of each of L layers) is off
by about k*u of its size.  The models here have at most 4 low-precision
layers, so 16*u relative to the output's largest entry bounds the error
with room (measured: mlp 0.0034 / 0.0004, digits_cnn 0.0059 / 0.0010).
"""
from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest

import dlc
from dlc.compiler.passes.autocast import FP32_OPS, LOW_OPS, op_policy
from dlc.compiler.types import DType
from dlc.errors import DlcError

U = {"bf16": 2.0 ** -9, "fp16": 2.0 ** -12}
LOWT = {"bf16": DType.bf16, "fp16": DType.f16}


def _graph(spec, precision, mode="eval", level=0, bind=None):
    m = dlc.load(spec, bind=bind).optimize(level=level, precision=precision)
    g = m.compiled_graph(mode, bind)
    return g, m.pass_stats


def _float_inputs(n):
    return [v for v in n.inputs if v is not None and v.type.dtype.is_float]


def _check_policy(g, low):
    seen = {"low": 0, "fp32": 0}
    for n in g.walk():
        if n.op.name == "cast" or n.body is not None:
            continue
        pol = op_policy(n.op.name)
        if pol == "low":
            assert all(v.type.dtype == low for v in _float_inputs(n)), n
            assert all(v.type.dtype == low for v in n.outputs if v.type.dtype.is_float), n
            seen["low"] += 1
        elif pol == "fp32" and n.op.name in FP32_OPS | {"cross_entropy"}:
            assert all(v.type.dtype == DType.f32 for v in _float_inputs(n)), n
            seen["fp32"] += 1
        elif pol == "follow":
            kinds = {v.type.dtype for v in _float_inputs(n)}
            assert len(kinds) <= 1, f"{n}: mixed float operands {kinds}"
    return seen


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_resnet18_eval_convs_low_batchnorm_fp32_outputs_fp32(precision):
    g, stats = _graph("specs/resnet18.dln", precision, bind={"N": 1})
    seen = _check_policy(g, LOWT[precision])
    convs = sum(1 for n in g.walk() if n.op.name == "conv2d")
    assert seen["low"] == convs + 1 == 21            # 20 convs and the classifier
    assert sum(1 for n in g.walk() if n.op.name == "batch_norm") == 20
    assert all(v.type.dtype == DType.f32 for v in g.outputs)
    assert stats["autocast.casts"] > 0


def test_train_step_backward_low_master_weights_and_loss_fp32():
    m = dlc.load("specs/digits_cnn.dln").optimize(level=0, precision="bf16")
    g, _ = m.grad_graph("train")
    g = m.optimized(g, "numpy")
    _check_policy(g, DType.bf16)
    backward_convs = [n for n in g.nodes if n.op.name in ("conv2d", "conv_transpose2d")
                      and all(v.type.dtype == DType.bf16 for v in _float_inputs(n))]
    assert len(backward_convs) >= 3          # 2 forward convs and at least their input/weight gradients
    assert all(n.outputs[0].type.dtype == DType.f32 for n in g.nodes if n.op.name == "cross_entropy")
    assert all(v.type.dtype == DType.f32 for v in g.outputs)      # the loss and every parameter gradient


def test_the_optimizer_updates_fp32_parameters():
    from dlc.compiler.passes import PipelineOptions, run_pipeline
    from dlc.compiler.training import build_train_step
    from dlc.frontend.blocks import elaborate_model
    from dlc.frontend.modules import load_module
    from dlc.frontend.train import train_settings
    mod = load_module("specs/mlp.dln")
    s = train_settings(mod, mod.trains[0], {})
    prog = build_train_step(elaborate_model(mod, "MLP", "train", {}), s)
    run_pipeline(prog.graph, PipelineOptions(level=2, precision="fp16"))
    outs = dict(zip(prog.graph.output_names, prog.graph.outputs))
    params = [k for k in outs if k.startswith("param:")]
    assert params and all(outs[k].type.dtype == DType.f32 for k in params)
    assert any(n.op.name == "linear" and n.outputs[0].type.dtype == DType.f16 for n in prog.graph.walk())


def test_redundant_cast_pairs_are_removed_and_casts_shared(tmp_path):
    spec = tmp_path / "m.dln"
    spec.write_text("""
model M(x: f32[N, 8]) -> f32[N, 4] {
    example N = 2
    h = dense(x, 8)
    a = dense(cast(h, f32), 4)
    b = dense(h, 4)
    return a + b
}
""")
    g, stats = _graph(str(spec), "bf16")
    dens = [n for n in g.nodes if n.op.name == "linear"]
    h = dens[0].outputs[0]
    assert h.type.dtype == DType.bf16
    # dense(cast(h, f32)) reads h itself: bf16 -> f32 -> bf16 was exact
    assert dens[1].inputs[0] is h and dens[2].inputs[0] is h
    assert stats.get("autocast.cast_pairs_removed", 0) >= 1
    casts = [(n.inputs[0].id, n.attrs["dtype"]) for n in g.nodes if n.op.name == "cast"]
    assert len(casts) == len(set(casts)), "a value is cast to one type once"


def test_scalar_constants_do_not_widen_and_mixed_floats_promote(tmp_path):
    spec = tmp_path / "m.dln"
    spec.write_text("""
model M(x: f32[N, 8]) -> f32[N, 8] {
    example N = 2
    param s: f32[8] = ones
    h = dense(x, 8) * 0.5
    return h + s
}
""")
    g, _ = _graph(str(spec), "fp16")
    mul = next(n for n in g.nodes if n.op.name == "mul")
    add = next(n for n in g.nodes if n.op.name == "add")
    assert mul.outputs[0].type.dtype == DType.f16          # x * 0.5 stays fp16, as in torch
    assert add.outputs[0].type.dtype == DType.f32          # fp16 + an fp32 tensor: fp32


def test_float64_is_never_narrowed():
    g, _ = _graph("specs/mlp.dln", "bf16")
    assert {v.type.dtype for v in g.inputs} == {DType.f32}
    assert op_policy("conv2d") == "low" and "scaled_dot_product_attention" in LOW_OPS
    assert op_policy("softmax") == op_policy("layer_norm") == op_policy("nll_loss") == "fp32"
    assert op_policy("relu") == op_policy("max_pool2d") == "follow"


def _bf16_mlp_by_hand(x, w):
    """The mlp in bf16 written with ml_dtypes: bf16 operands, fp32 products and
    sums, the result rounded to bf16, relu in bf16, the output back to fp32."""
    bf = ml_dtypes.bfloat16

    def r(a):
        return np.asarray(a, np.float32).astype(bf).astype(np.float32)

    def dense(a, wt, b):
        return r(r(a) @ r(wt).T + r(b))
    h = np.maximum(dense(x, w["hidden.weight"], w["hidden.bias"]), 0)
    return dense(h, w["output.weight"], w["output.bias"])


def test_numpy_bf16_is_the_ml_dtypes_computation_bit_for_bit():
    m = dlc.load("specs/mlp.dln", bind={"N": 16})
    w, x = m.init_weights(0), m.random_inputs(0, {"N": 16})
    got = m.optimize(precision="bf16").run(x, w)["output"]
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, _bf16_mlp_by_hand(x["x"], w))


@pytest.mark.parametrize("spec", ["specs/mlp.dln", "specs/digits_cnn.dln"])
@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_outputs_are_close_to_fp32_within_the_precision(spec, precision):
    m = dlc.load(spec, bind={"N": 8})
    w, x = m.init_weights(0), m.random_inputs(0, {"N": 8})
    ref = m.run(x, w)
    got = m.optimize(precision=precision).run(x, w)
    for k in ref:
        assert got[k].dtype == np.float32
        err = np.max(np.abs(got[k] - ref[k])) / np.max(np.abs(ref[k]))
        assert err <= 16 * U[precision], f"{k}: {err}"
        assert err > 0, "nothing was rounded: autocast did not fire"


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_torch_runs_the_policy_as_the_reference(precision):
    pytest.importorskip("torch")
    m = dlc.load("specs/digits_cnn.dln", bind={"N": 4})
    w, x = m.init_weights(0), m.random_inputs(0, {"N": 4})
    mm = m.optimize(precision=precision)
    ref, got = mm.run(x, w), mm.run(x, w, backend="torch")
    for k in ref:
        # torch's kernels sum in another order: at most a unit in the last place apart
        np.testing.assert_allclose(got[k], ref[k], rtol=0, atol=4 * U[precision] * np.max(np.abs(ref[k])))


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_tvm_rounds_as_the_reference(precision):
    pytest.importorskip("tvm")
    m = dlc.load("specs/mlp.dln", bind={"N": 4})
    w, x = m.init_weights(0), m.random_inputs(0, {"N": 4})
    mm = m.optimize(precision=precision)
    ref, got = mm.run(x, w), mm.run(x, w, backend="tvm")
    for k in ref:
        np.testing.assert_allclose(got[k], ref[k], rtol=0, atol=1e-6 * np.max(np.abs(ref[k])))


@pytest.mark.parametrize("spec", ["specs/bert_base.dln", "specs/lstm_tagger.dln", "specs/vit_b16.dln",
                                  "specs/mobilenet_v2.dln"])
def test_zoo_graphs_keep_the_policy_and_verify(spec):
    # attention, scans (captured values made fp32), depthwise convs: the verifier runs after the pass
    g, _ = _graph(spec, "bf16", level=2)
    _check_policy(g, DType.bf16)
    assert all(v.type.dtype.is_float is False or v.type.dtype in (DType.f32, DType.f64) for v in g.outputs)


def test_bad_precision_is_a_clear_error():
    with pytest.raises(DlcError, match="unknown precision 'int4'"):
        dlc.load("specs/mlp.dln").optimize(precision="int4")
