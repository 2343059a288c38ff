"""The `fused` region op on its own: outlining keeps the numbers on every
backend, gradients flow through a region (autodiff differentiates its body),
and inline undoes outline."""
from __future__ import annotations

import numpy as np
import pytest

import dlc
from dlc.backends import get_backend
from dlc.compiler.autodiff import grad
from dlc.compiler.builder import Builder
from dlc.compiler.clone import prune
from dlc.compiler.passes.regions import inline, outline
from dlc.compiler.verify import verify
from harness import as_f64, assert_close


def _conv_relu_groups(g):
    """(conv2d, add?, relu/tanh) runs of lenet5: conv followed by its activation."""
    groups = []
    for i, n in enumerate(g.nodes):
        if n.op.name == "conv2d":
            tail = [m for m in g.nodes[i + 1:i + 3] if m.op.name in ("add", "relu", "tanh")]
            groups.append([n] + tail)
    return groups


def _lenet(mode="eval"):
    m = dlc.load("specs/lenet5.dln").optimize(level=0)
    g = m._elaborate(mode)
    return m, g


def _outline_all(g):
    made = [outline(g, grp, "conv_epilogue", anchor=grp[0]) for grp in _conv_relu_groups(g)]
    assert made and all(n is not None for n in made)
    verify(g)
    return made


@pytest.mark.parametrize("backend", ["numpy", "torch", "tvm"])
def test_an_outlined_graph_runs_the_same_on_every_backend(backend):
    if backend == "tvm":
        pytest.importorskip("tvm")
    m, g = _lenet()
    ref_g = m._elaborate("eval")
    _outline_all(g)
    assert sum(n.op.name == "fused" for n in g.nodes) == 2
    weights, inputs = m.init_weights(0), m.random_inputs(0)
    b = get_backend(backend)
    ref, _ = get_backend("numpy").compile(ref_g).run(inputs, weights, 0)
    got, _ = b.compile(g).run(inputs, weights, 0)
    assert_close(ref, got, rtol=1e-5 if backend != "numpy" else 0.0, what=f"{backend}: ")


def test_gradients_flow_through_a_fused_region():
    m, g = _lenet("train")
    ref_g = m._elaborate("train")
    _outline_all(g)

    def grad_graph(h):
        loss = Builder(h, h.span).op("sum", h.outputs[0], axis=None, keepdims=False)
        params = h.trainable_params()
        h.outputs = [loss] + grad(h, loss, params, h.span)
        h.output_names = ["loss"] + [f"grad:{p.name}" for p in params]
        return prune(h)
    weights, inputs = as_f64(m.init_weights(0)), as_f64(m.random_inputs(0))
    numpy = get_backend("numpy")
    ref, _ = numpy.compile(grad_graph(ref_g)).run(inputs, weights, 0)
    got, _ = numpy.compile(grad_graph(g)).run(inputs, weights, 0)
    assert_close(ref, got, rtol=1e-12, what="fused gradients ")
    assert any(np.abs(v).max() > 0 for k, v in got.items() if k.startswith("grad:c1"))


def test_inline_undoes_outline():
    m, g = _lenet()
    before = str(g)
    for node in _outline_all(g):
        inline(g, node)
    verify(g)
    assert "fused" not in str(g)
    # the same ops in the same order, operating on the same values
    strip = [line.split("//")[0] for line in before.splitlines()]
    assert [line.split("//")[0] for line in str(g).splitlines()] == strip


def test_a_region_that_is_not_convex_is_refused():
    m, g = _lenet()
    conv = next(n for n in g.nodes if n.op.name == "conv2d")
    later = [n for n in g.nodes if n.op.name == "conv2d"][1]
    # conv1 and conv2 with the pooling between them left out: the pool reads conv1's
    # result and feeds conv2, so no single place in the graph can hold the region
    assert outline(g, [conv, later], "elementwise") is None
    verify(g)


@pytest.mark.parametrize("spec", ["specs/lenet5.dln", "specs/resnet18.dln", "specs/bert_base.dln"])
def test_macs_are_the_same_after_fusion(spec):
    from dlc.compiler.analysis import total_macs
    m = dlc.load(spec)
    fused = m.compiled_graph()
    assert any(n.op.name == "fused" for n in fused.nodes)
    assert total_macs(fused) == total_macs(m.optimize(level=0).compiled_graph()) > 0


def test_layer_rows_count_the_macs_inside_regions():
    from dlc.compiler.analysis import layer_rows
    m = dlc.load("specs/resnet18.dln")
    before = {r.name: r.macs for r in layer_rows(m.optimize(level=0).compiled_graph())}
    after = {r.name: r.macs for r in layer_rows(m.compiled_graph())}
    assert sum(after.values()) == sum(before.values()) > 0
