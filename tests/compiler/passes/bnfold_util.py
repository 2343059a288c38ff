"""Checks shared by the fold_batchnorm and fold_affine tests.

The models' initial weights make batch norm (almost) the identity (mean 0,
var 1, gamma 1, beta 0) and per-channel parameters often all ones or zeros,
so a fold along the wrong axis would go unnoticed.  `check_folds` runs -O0
and the passes on weights where every 1-D float parameter and buffer (batch
norm statistics, gamma and beta, biases, per-channel scales) and every
small per-channel tensor is random, in float64, and asserts they agree to
1e-10 (relative to the output's largest magnitude)."""
from __future__ import annotations

import numpy as np

import dlc
from dlc.compiler.passes import PipelineOptions, run_pipeline
from harness import RTOL, as_f64, assert_close, ir_after


def random_weights(m, seed: int = 0) -> dict:
    """float64 weights with every per-channel tensor (at most one axis
    longer than 1) drawn at random; running variances stay positive."""
    rng = np.random.default_rng(seed + 1)
    out = {}
    for name, w in as_f64(m.init_weights(seed)).items():
        if w.dtype.kind == "f" and sum(d > 1 for d in w.shape) <= 1:
            if name.endswith("running_var"):
                w = rng.uniform(0.3, 3.0, w.shape)
            else:
                w = rng.normal(0.0, 1.0, w.shape)
        out[name] = w
    return out


def check_folds(spec, passes, *, bind=None, mode="eval", seed=0, grads=False, label=None, rtol=RTOL):
    """-O0 and `passes` agree on random per-channel weights; returns the IR
    text before and after and the passes' stats."""
    m = dlc.load(spec, bind=bind)
    weights = random_weights(m, seed)
    inputs = as_f64(m.random_inputs(seed, bind))
    ref = m.optimize(level=0).run(inputs, weights, mode=mode, seed=seed, dtype="float64", bind=bind)
    got = m.optimize(passes=passes).run(inputs, weights, mode=mode, seed=seed, dtype="float64", bind=bind)
    assert_close(ref, got, rtol, f"{spec} {mode}: ")
    if grads:
        ref_g = m.optimize(level=0).grad(inputs, weights, label, mode=mode, seed=seed, bind=bind)
        got_g = m.optimize(passes=passes).grad(inputs, weights, label, mode=mode, seed=seed, bind=bind)
        assert_close(ref_g, got_g, rtol, f"{spec} {mode} gradient ")
    before, after = ir_after(spec, passes, mode, bind)
    return before, after, stats(spec, passes, mode, bind)


def stats(spec, passes, mode="eval", bind=None) -> dict:
    m = dlc.load(spec, bind=bind)
    _, _, ctx = run_pipeline(m.symbolic_graph(mode), PipelineOptions(passes=tuple(passes)))
    return ctx.stats


def count_op(ir_text: str, op: str) -> int:
    return sum(1 for line in ir_text.splitlines() if f"= {op}(" in line)


def write_spec(tmp_path, text: str, name: str = "m.dln") -> str:
    p = tmp_path / name
    p.write_text(text)
    return str(p)
