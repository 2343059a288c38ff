"""Fused regions on TVM: each is one kernel of the built module, and the
module computes what the bodies compute (the NumPy reference).

One small graph holds every kind (layer norm and softmax written out, a
log-softmax, a GELU, a matmul and a conv epilogue), so it is compiled once.
"""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("tvm")

import dlc  # noqa: E402
from dlc.backends.numpy.interpreter import Interpreter  # noqa: E402
from dlc.backends.tvm.compile import compile_graph  # noqa: E402
from dlc.backends.tvm.pipeline import prepare  # noqa: E402
from dlc.backends.tvm.relaxgen import to_relax  # noqa: E402
from dlc.compiler.passes.regions import outline  # noqa: E402

pytestmark = pytest.mark.tvm

SPEC = """
model Regions(x: f32[N, T, 16], y: f32[N, 16], img: f32[N, 4, 6, 6]) -> (
        f32[N, T, 16], f32[N, T, 16], f32[N, T, 16], f32[N, T, 16], f32[N, 32], f32[N, 4, 6, 6]) {
    example N = 2, T = 5
    param gamma: f32[16] = normal(std=1)
    param beta: f32[16] = normal(std=1)
    param w: f32[16, 32] = normal(std=0.3)
    param b: f32[32] = normal(std=1)
    d = x - mean(x, axis=-1, keepdims=true)
    ln = d / sqrt(mean(d * d, axis=-1, keepdims=true) + 1e-5) * gamma + beta
    e = exp(x - max(x, axis=-1, keepdims=true))
    sm = e / sum(e, axis=-1, keepdims=true)
    lsm = x - logsumexp(x, axis=2, keepdims=true)
    ge = 0.5 * x * (1 + erf(x / sqrt(2.0)))
    h = relu(y @ w + b)
    c = relu(conv2d(img, 4, kernel=3, padding=1, name="conv") + img)
    return ln, sm, lsm, ge, h, c
}
"""
KINDS = ["layernorm", "softmax", "softmax", "gelu", "matmul_epilogue", "conv_epilogue"]


def _upstream(g, v):
    """The nodes computing `v` from the graph's inputs and parameters."""
    out, todo = [], [v]
    while todo:
        u = todo.pop()
        p = u.producer
        if u.kind == "node" and p is not None and p not in out:
            out.append(p)
            todo += [w for w in p.inputs if w is not None]
    return out


def _graph(regions: bool):
    m = dlc.Model("regions.dln", text=SPEC)
    g = m.optimize(level=0)._elaborate("eval", None)
    if regions:
        for out, kind in zip(list(g.outputs), KINDS):
            assert outline(g, _upstream(g, out), kind) is not None
    return m, g


def _kernels(g) -> list[str]:
    from tvm import relax
    mod = prepare(to_relax(g, lift_params=False).mod, "llvm")
    names = []
    relax.analysis.post_order_visit(mod["main"].body, lambda e: names.append(e.args[0].name_hint)
                                    if isinstance(e, relax.Call) and getattr(e.op, "name", "") == "relax.call_tir"
                                    else None)
    return names


def test_each_region_is_one_kernel_where_the_inlined_softmax_and_layernorm_are_several():
    _, plain = _graph(False)
    _, fused = _graph(True)
    assert [n.op.name for n in fused.nodes] == ["fused"] * len(KINDS)
    got, before = _kernels(fused), _kernels(plain)
    # conv2d in NHWC brings its layout transposes; every region itself is one kernel
    compute = [k for k in got if "transpose" not in k and "reshape" not in k]
    assert len(compute) == len(KINDS), got
    assert any("fused_layernorm" in k for k in compute) and any("softmax" in k for k in compute)
    assert any("conv2d" in k and "relu" in k for k in compute) and any("matmul" in k and "relu" in k for k in compute)
    # written out and inlined, layer norm is 3 kernels, softmax 4 and log-softmax (logsumexp) more than 1
    assert len([k for k in before if "transpose" not in k and "reshape" not in k]) >= len(KINDS) + 5, before


def test_fused_regions_compile_and_equal_numpy():
    m, g = _graph(True)
    rng = np.random.default_rng(0)
    w = {k: v.astype("float32") for k, v in m.init_weights(0).items()}
    w["conv.bias"] = rng.standard_normal(w["conv.bias"].shape).astype("float32")
    feed = {v.name: (rng.standard_normal([int(d) for d in v.type.shape]) + (50.0 if v.name == "x" else 0.0))
            .astype("float32") for v in g.inputs}     # a large mean: the variance must not cancel
    want, _ = Interpreter(g).run(feed, w)
    got = compile_graph(g, "cpu").runner().set_weights(w).run(feed)
    for name in g.output_names:
        a, b = np.asarray(got[name], dtype=np.float64), np.asarray(want[name], dtype=np.float64)
        err = float(np.abs(a - b).max() / np.abs(b).max())
        assert err < 2e-5, f"{name}: relative error {err:.2g}"
