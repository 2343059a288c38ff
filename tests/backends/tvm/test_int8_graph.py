"""Quantized graphs on TVM cpu: the lowering of the int8 ops (int8_lowering.py)
and the Int8Kernels pass (int8_pass.py) equal the NumPy integer reference bit
for bit, on single layers and on zoo models quantized by the quantize and
lower_int8 passes, and the compiled model runs the VNNI kernels."""
from __future__ import annotations

import copy

import numpy as np
import pytest

tvm = pytest.importorskip("tvm")

import dlc  # noqa: E402
from dlc.backends.numpy.interpreter import Interpreter  # noqa: E402
from dlc.backends.tvm import int8_schedule as S  # noqa: E402
from dlc.backends.tvm.compile import compile_graph  # noqa: E402
from dlc.backends.tvm.pipeline import as_target  # noqa: E402
from dlc.compiler.builder import Builder  # noqa: E402
from dlc.compiler.ir import Graph  # noqa: E402
from dlc.compiler.passes import PipelineOptions, run_pipeline  # noqa: E402
from dlc.compiler.passes.quantize import calibration_graph  # noqa: E402
from dlc.compiler.quant.plan import QuantPlan  # noqa: E402
from dlc.compiler.quant.sites import observed_values  # noqa: E402
from dlc.compiler.types import DType, TensorType  # noqa: E402
from quant_graphs import int8_layer_graph as _layer_graph  # noqa: E402

pytestmark = pytest.mark.tvm

HAS_VNNI = "vnni" in S.cpu_features(as_target("llvm"))




def _compare(g, feed, weights=None):
    want, _ = Interpreter(g).run(feed, weights or {})
    compiled = compile_graph(g, "cpu")
    got = compiled.runner().set_weights(weights or {}).run(feed, seed=0)
    for name in g.output_names:
        a, b = np.asarray(want[name]), np.asarray(got[name])
        assert a.dtype == b.dtype and a.shape == b.shape, name
        np.testing.assert_array_equal(b, a, err_msg=name)
    return want, compiled


def _kernel_asm(compiled) -> str:
    return "\n".join(m.inspect_source("asm") for m in [compiled.executable.mod, *compiled.executable.mod.imports]
                     if m.kind == "llvm")


@pytest.mark.parametrize("kind, xs, ws, attrs, relu, odt", [
    ("qconv2d", (2, 3, 8, 8), (8, 3, 3, 3), {"padding": 1}, True, "uint8"),
    ("qconv2d", (1, 4, 9, 7), (6, 2, 3, 3), {"stride": 2, "padding": 1, "groups": 2}, False, "uint8"),
    ("qconv2d", (3, 4, 7, 7), (4, 1, 3, 3), {"padding": (0, 2), "dilation": (2, 1), "groups": 4}, True, "int8"),
    ("qconv2d", (4, 16, 5, 5), (32, 16, 1, 1), {}, False, "uint8"),
    ("qdense", (5, 24), (10, 24), {}, False, "uint8"),
    ("qdense", (2, 7, 40), (10, 40), {}, True, "int8"),
])
def test_int8_layer_graph_equals_numpy(kind, xs, ws, attrs, relu, odt):
    g = _layer_graph(kind, xs, ws, attrs, relu=relu, out_dtype=odt, y_zp=90 if odt == "uint8" else -3)
    rng = np.random.default_rng(len(xs) + ws[0])
    feed = {v.name: (rng.standard_normal(tuple(v.type.shape)) * 2).astype(np.float32) for v in g.inputs}
    want, compiled = _compare(g, feed)
    assert len(np.unique(want["y"])) > 8
    if HAS_VNNI and attrs.get("groups", 1) == 1:
        assert "vpdpbusd" in _kernel_asm(compiled)


def test_requant_multiplier_edge_values_equal_numpy():
    """frexp at exact powers of two, a mantissa that rounds up to 2^31 ((1 + 2^-23)(1 - 2^-23)
    = 1 - 2^-46), m == 0, ordinary values."""
    g = Graph("m")
    b = Builder(g)
    ins = [g.add_input(n, TensorType(DType.f32, (7,))) for n in ("sx", "sw", "sy")]
    mult, shift = b.op("requant_multiplier", *ins)
    g.outputs, g.output_names = [mult, shift], ["m", "s"]
    one_up, one_down = 1 + 2.0 ** -23, 1 - 2.0 ** -23
    feed = {"sx": np.array([0.25, 0.25, one_up, 0.5, 0.031, 0.02, 1.0], np.float32),
            "sw": np.array([1.0, 0.5, one_down, 0.0, 0.003, 0.017, 0.75], np.float32),
            "sy": np.array([0.125, 1.0, 1.0, 0.3, 0.047, 0.11, 1.0], np.float32)}
    want, _ = _compare(g, feed)
    assert want["m"][2] == 1 << 30 and want["s"][2] == 30       # the 2^31 round-up case was hit
    assert want["m"][3] == 0


def quantize_zoo(spec: str, bind: dict, seed: int = 0, consts: dict | None = None):
    """`spec` quantized by the quantize/lower_int8 passes (min-max ranges of one
    calibration batch), as the TVM backend receives it, with its weights and a feed."""
    m = dlc.load(spec, bind=consts)
    g = m._elaborate("eval", bind)
    weights = m.init_weights(seed)

    def feed_for(graph, s):
        r = np.random.default_rng(s)
        return {v.name: r.standard_normal(tuple(int(d) for d in v.type.shape)).astype(np.float32)
                for v in graph.inputs}

    cg = calibration_graph(g, PipelineOptions(level=2))
    obs = observed_values(cg)
    cg.outputs, cg.output_names = list(obs.values()), list(obs)
    vals, _ = Interpreter(cg).run(feed_for(cg, seed + 1), weights)
    plan = QuantPlan(ranges={k: (float(np.min(v)), float(np.max(v))) for k, v in vals.items()})
    gq = copy.deepcopy(g)
    run_pipeline(gq, PipelineOptions(level=2, quant=plan), backend="tvm")
    return gq, weights, feed_for(gq, seed + 2)


def _count(g, name):
    return sum(1 for n in g.walk() if n.op.name == name)


@pytest.mark.parametrize("spec, bind", [("specs/lenet5.dln", {"N": 2}), ("specs/digits_cnn.dln", {"N": 2})])
def test_quantized_zoo_cnn_equals_numpy(spec, bind):
    gq, weights, feed = quantize_zoo(spec, bind)
    assert _count(gq, "qconv2d") >= 2 and _count(gq, "qdense") >= 1
    _, compiled = _compare(gq, feed, weights)
    if HAS_VNNI:
        assert "vpdpbusd" in _kernel_asm(compiled)


@pytest.mark.slow
def test_quantized_resnet18_equals_numpy():
    gq, weights, feed = quantize_zoo("specs/resnet18.dln", {"N": 1}, consts={"size": 64})
    assert _count(gq, "qconv2d") >= 20
    _compare(gq, feed, weights)
