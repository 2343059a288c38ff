"""The layout pass: NCHW -> NHWC for TVM's CPU targets, transposes only at
the boundary, numerically the -O0 model.

The IR is the one the TVM backend gets (`backend="tvm"`); it is run on the
NumPy reference in float64 against the unoptimised model (1e-10 relative),
whose NHWC kernels compute exactly what the NCHW ones do."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

import dlc
from dlc.backends import get_backend
from dlc.compiler.autodiff import grad
from dlc.compiler.builder import Builder
from dlc.compiler.ir import Graph
from dlc.compiler.ops import OPS
from dlc.compiler.passes import PipelineOptions, run_pipeline
from dlc.compiler.passes.layout import wanted_layout
from dlc.compiler.types import DType, TensorType
from dlc.errors import ShapeError

sys.path.insert(0, str(Path(__file__).parent))
from harness import RTOL, as_f64, assert_close  # noqa: E402

ROOT = Path(__file__).resolve().parents[3]
UNET = str(Path(__file__).parent / "specs" / "unet_tiny.dln")


def _layout_graph(spec, bind, backend="tvm", target="cpu", level=None):
    m = dlc.load(spec)
    g = m._elaborate("eval", bind)
    opts = PipelineOptions(passes=("layout",)) if level is None else PipelineOptions(level=level)
    g, _, ctx = run_pipeline(g, opts, backend=backend, target=target, dims=bind, verify=True)
    return m, g, ctx


def _count(g, op, **attrs):
    return sum(1 for n in g.nodes if n.op.name == op and all(n.attrs.get(k) == v for k, v in attrs.items()))


def _transposes(g):
    return _count(g, "transpose", axes=(0, 2, 3, 1)) + _count(g, "transpose", axes=(0, 3, 1, 2))


def _matches_O0(m, g, bind):
    weights, inputs = as_f64(m.init_weights(0)), as_f64(m.random_inputs(0, bind))
    ref = m.optimize(level=0).run(inputs, weights, dtype="float64", bind=bind)
    got, _ = get_backend("numpy").run(g, inputs, weights, seed=0, mode="eval", dtype="float64", bind=bind)
    assert_close(ref, got, RTOL, "layout: ")


# spec, bind, converted ops (conv2d + batch norm + pools + what follows them),
# transposes left: the input's, and one back where an NCHW consumer starts
CASES = [
    ("specs/resnet18.dln", {"N": 1}, 1),          # the global mean gives (N, C) directly
    ("specs/mobilenet_v2.dln", {"N": 1}, 2),      # adaptive pool -> reshape needs NCHW
    (UNET, {"N": 2}, 6),                          # each conv_transpose2d: one pair around it
]


@pytest.mark.parametrize("spec, bind, left", CASES, ids=["resnet18", "mobilenet_v2", "unet_tiny"])
def test_layout_converts_every_spatial_op_and_leaves_transposes_only_at_the_boundary(spec, bind, left):
    m = dlc.load(spec)
    before = m._elaborate("eval", bind)
    spatial = sum(_count(before, op) for op in ("conv2d", "batch_norm", "max_pool2d", "avg_pool2d",
                                                "adaptive_avg_pool2d"))
    _, g, ctx = _layout_graph(spec, bind)
    assert _transposes(before) == 0
    nhwc = [n for n in g.nodes if n.attrs.get("layout") == "NHWC"]
    assert len(nhwc) == spatial > 0
    assert not any(n.attrs.get("layout") == "NCHW" and n.inputs[0].type.rank == 4 for n in g.nodes)
    assert _transposes(g) == left == ctx.stats["layout.transposes"]
    # a transpose pair around every converted op would have made 2 per op
    assert ctx.stats["layout.transposes_avoided"] == 2 * ctx.stats["layout.converted"] - left
    _matches_O0(m, g, bind)


def test_unet_ir_before_and_after():
    m = dlc.load(UNET)
    _, g, _ = _layout_graph(UNET, {"N": 2})
    ir = str(g)
    # the skip connection is concatenated on the channel axis, now the last one
    assert "concat(" in ir and "{axis=3}" in ir
    assert "mean(" in ir and "axis=(3, 1, 2)" not in ir
    # the transposed convolutions stay NCHW (TVM legalizes no other layout of them)
    for n in g.nodes:
        if n.op.name == "conv_transpose2d":
            assert n.inputs[0].producer.op.name == "transpose" and n.inputs[0].type.shape[1] in (8, 16)
    assert str(m.graph).count("layout=") == 0      # the default layout is not printed


def test_layout_at_O2_on_tvm_matches_O0_for_the_zoo_cnns():
    for spec in ("specs/lenet5.dln", "specs/digits_cnn.dln"):
        m, g, ctx = _layout_graph(str(ROOT / spec), {"N": 2}, level=2)
        assert ctx.stats.get("layout.converted", 0) > 0
        _matches_O0(m, g, {"N": 2})


@pytest.mark.parametrize("backend, target, want", [
    ("tvm", "cpu", "NHWC"), ("tvm", "aarch64", "NHWC"), ("tvm", "cuda", "NCHW"),
    ("numpy", "cpu", "NCHW"), ("torch", "cpu", "NCHW")])
def test_layout_is_chosen_per_target(backend, target, want):
    assert wanted_layout(backend, target) == want
    _, g, _ = _layout_graph(str(ROOT / "specs/lenet5.dln"), {"N": 1}, backend, target)
    assert (_count(g, "conv2d", layout="NHWC") > 0) == (want == "NHWC")


def test_training_graphs_keep_their_layout():
    m = dlc.load(str(ROOT / "specs/digits_cnn.dln"))
    g = m._elaborate("train", {"N": 2})
    g, _, ctx = run_pipeline(g, PipelineOptions(passes=("layout",)), backend="tvm", dims={"N": 2}, verify=True)
    assert _count(g, "conv2d", layout="NHWC") == 0


# --- the ops' layout attribute: shape rules, errors, VJP rules --------------

def _t(*shape):
    return TensorType(DType.f32, shape)


def test_nhwc_shape_rules_are_the_permuted_nchw_ones():
    x, w = _t(2, 10, 12, 3), _t(8, 3, 3, 3)
    conv = OPS["conv2d"].infer([x, w], OPS["conv2d"].normalize_attrs({"stride": 2, "padding": 1, "layout": "NHWC"}))
    assert conv[0].shape == (2, 5, 6, 8)
    pool = OPS["max_pool2d"].infer([x], OPS["max_pool2d"].normalize_attrs({"kernel_size": 2, "layout": "NHWC"}))
    assert pool[0].shape == (2, 5, 6, 3)
    bn = OPS["batch_norm"].infer([x, _t(3), _t(3)], OPS["batch_norm"].normalize_attrs({"layout": "NHWC"}))
    assert [t.shape for t in bn] == [(2, 10, 12, 3), (3,), (3,)]
    macs = OPS["conv2d"].macs([x, w], conv, {})
    assert macs == 2 * 5 * 6 * 8 * 3 * 3 * 3


@pytest.mark.parametrize("attrs, x, msg", [
    ({"layout": "NHWC"}, _t(3, 10, 12), "needs a rank-4 input"),
    ({"layout": "NWHC"}, _t(2, 10, 12, 3), "layout must be 'NCHW' or 'NHWC'")])
def test_bad_layout_is_a_shape_error(attrs, x, msg):
    with pytest.raises(ShapeError, match=msg):
        OPS["max_pool2d"].infer([x], OPS["max_pool2d"].normalize_attrs({"kernel_size": 2, **attrs}))


def _small_net(layout: str):
    """conv -> batch norm (eval) -> relu -> max pool -> avg pool -> adaptive avg pool,
    in `layout`, with NCHW input and output; loss = sum of squares."""
    g = Graph("net")
    x = g.add_input("x", _t(2, 3, 8, 8))
    b = Builder(g)
    from dlc.compiler.ir import Init, ParamInfo
    params = {}
    for name, shape in (("w", (4, 3, 3, 3)), ("cb", (4,)), ("rm", (4,)), ("rv", (4,)), ("bw", (4,)), ("bb", (4,))):
        params[name] = g.add_param(ParamInfo(name, Init("ones")), _t(*shape))
    nhwc = layout == "NHWC"
    h = b.op("transpose", x, axes=(0, 2, 3, 1)) if nhwc else x
    h = b.op("conv2d", h, params["w"], params["cb"], padding=1, layout=layout)
    h = b.op("batch_norm", h, params["rm"], params["rv"], params["bw"], params["bb"], layout=layout)[0]
    h = b.op("relu", h)
    h = b.op("max_pool2d", h, kernel_size=2, layout=layout)
    h = b.op("avg_pool2d", h, kernel_size=2, padding=1, count_include_pad=False, layout=layout)
    h = b.op("adaptive_avg_pool2d", h, output_size=2, layout=layout)
    if nhwc:
        h = b.op("transpose", h, axes=(0, 3, 1, 2))
    loss = b.op("sum", b.op("square", h), axis=None, keepdims=False)
    grads = grad(g, loss, [x] + list(params.values()))
    g.outputs = [loss] + grads
    g.output_names = ["loss", "x"] + list(params)
    return g


def test_nhwc_vjp_rules_give_the_nchw_gradients():
    rng = np.random.default_rng(0)
    inputs = {"x": rng.standard_normal((2, 3, 8, 8))}
    weights = {"w": rng.standard_normal((4, 3, 3, 3)), "cb": rng.standard_normal(4),
               "rm": rng.standard_normal(4), "rv": rng.random(4) + 0.5,
               "bw": rng.standard_normal(4), "bb": rng.standard_normal(4)}
    run = get_backend("numpy").run
    ref, _ = run(_small_net("NCHW"), inputs, weights, seed=0, mode="eval", dtype="float64")
    got, _ = run(_small_net("NHWC"), inputs, weights, seed=0, mode="eval", dtype="float64")
    assert_close(ref, got, RTOL, "NHWC gradients: ")
    assert all(np.abs(v).max() > 0 for v in ref.values())


@pytest.mark.parametrize("spec", [str(ROOT / "specs/digits_cnn.dln"), UNET], ids=["digits_cnn", "unet_tiny"])
def test_eval_gradient_graphs_for_tvm_match_O0(spec):
    """An eval-mode gradient graph (forward and backward) prepared for TVM:
    the backward reads the converted forward values through transposes."""
    import copy
    m = dlc.load(spec)
    bind = {"N": 2}
    g, _ = m.grad_graph("eval", bind)
    feed = as_f64(m.random_inputs(0, bind))
    for v in g.inputs:
        if v.name == "label":
            feed["label"] = np.random.default_rng(0).integers(0, 10, size=tuple(int(d) for d in v.type.shape))
    weights = as_f64(m.init_weights(0))
    run = get_backend("numpy").run
    ref, _ = run(copy.deepcopy(g), feed, weights, seed=0, mode="eval", dtype="float64", bind=bind)
    g, _, ctx = run_pipeline(g, PipelineOptions(level=2), backend="tvm", dims=bind, verify=True)
    assert ctx.stats["layout.converted"] > 0 and any(k.startswith("grad:") for k in ref)
    got, _ = run(g, feed, weights, seed=0, mode="eval", dtype="float64", bind=bind)
    assert_close(ref, got, RTOL, "layout, eval gradients: ")
