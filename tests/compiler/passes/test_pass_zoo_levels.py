"""The pipeline's acceptance bar: every zoo spec at every -O level, in eval
and train mode, matches -O0 on the NumPy reference in float64 within 1e-10
relative, forward and gradients (the IR verifier runs after every pass).

Train-mode forward passes use the same seed at every level, so dropout
masks agree.  Gradients are of the train section's loss with a random
label (or, where `dlc grad` cannot build that loss yet, of the sum of the
first output: KNOWN_LOSS_SHAPE_BUG).  The biggest models run in the slow
suite only.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import dlc
from dlc.backends import get_backend
from dlc.compiler.analysis import index_bound
from dlc.compiler.autodiff import grad
from dlc.compiler.builder import Builder
from dlc.compiler.clone import prune
from harness import as_f64, assert_close

ROOT = Path(__file__).resolve().parents[3]
SPECS = sorted(p.stem for p in (ROOT / "specs").glob("*.dln"))
# float64 NumPy at these sizes takes more than a few seconds per level
SLOW = {"alexnet", "bert_base", "efficientnet_b0", "googlenet", "gpt2_small", "resnet50", "transformer_base",
        "vgg16", "vgg16_bn", "vit_b16", "seq2seq", "rnn_lm"}
# `dlc grad` builds these train sections' cross-entropy with a flattened target of the wrong size
# (a known bug, see the issue notes); their gradients are taken of sum(output) instead
KNOWN_LOSS_SHAPE_BUG: set = set()
LEVELS = (1, 2, 3)


def _params(specs):
    return [pytest.param(s, marks=pytest.mark.slow) if s in SLOW else s for s in specs]


def _load(name):
    return dlc.load(ROOT / "specs" / f"{name}.dln")


def _grad_graph(m, name, mode):
    if name not in KNOWN_LOSS_SHAPE_BUG:
        return m.grad_graph(mode, concrete=True)[0]
    g = m._elaborate(mode)
    loss = Builder(g, g.span).op("sum", g.outputs[0], axis=None, keepdims=False)
    params = g.trainable_params()
    grads = grad(g, loss, params, g.span)
    g.outputs = [loss] + [gr for gr in grads if gr is not None]
    g.output_names = ["loss"] + [f"grad:{p.name}" for p, gr in zip(params, grads) if gr is not None]
    return prune(g)


def _feed(g, inputs, dims, seed=0):
    rng = np.random.default_rng(seed)
    feed = dict(inputs)
    for v in g.inputs:
        if v.name in feed:
            continue
        shape = tuple(d if isinstance(d, int) else d.evaluate(dims) for d in v.type.shape)
        if v.type.dtype.is_int:
            feed[v.name] = rng.integers(0, index_bound(g, v), size=shape).astype(v.type.dtype.numpy_name)
        else:
            feed[v.name] = rng.standard_normal(shape)
    return feed


@pytest.mark.parametrize("name", _params(SPECS))
@pytest.mark.parametrize("mode", ["eval", "train"])
def test_forward_at_every_level_matches_O0(name, mode):
    m = _load(name)
    weights, inputs = as_f64(m.init_weights(0)), as_f64(m.random_inputs(0))
    ref = m.optimize(level=0).run(inputs, weights, mode=mode, seed=3, dtype="float64")
    for level in LEVELS:
        got = m.optimize(level=level).run(inputs, weights, mode=mode, seed=3, dtype="float64")
        assert_close(ref, got, what=f"{name} {mode} -O{level}: ")


@pytest.mark.parametrize("name", _params([s for s in SPECS if s != "gan"]))
@pytest.mark.parametrize("mode", ["eval", "train"])
def test_gradients_at_every_level_match_O0(name, mode):
    m = _load(name)
    weights, inputs = as_f64(m.init_weights(0)), as_f64(m.random_inputs(0))
    numpy = get_backend("numpy")
    ref_graph = _grad_graph(m, name, mode)
    dims = {k: v for k, v in m.graph.dims.items() if v is not None}
    feed = _feed(ref_graph, inputs, dims)
    ref, _ = numpy.compile(ref_graph, bind=dims).run(feed, weights, 3)
    for level in LEVELS:
        ml = m.optimize(level=level)
        g = ml.optimized(_grad_graph(m, name, mode), "numpy", bind=dims)
        got, _ = numpy.compile(g, bind=dims).run(feed, weights, 3)
        assert_close(ref, got, what=f"{name} {mode} -O{level} ")
