"""Shared checks for pass tests: a pass must leave the numbers unchanged.

    before, after = check_pass("specs/resnet18.dln", ["fold_batchnorm"], bind={"N": 1})

runs the model at -O0 and with exactly `passes`, in float64 on the NumPy
reference with the same seeded weights and inputs, asserts every output
(and with `grads=True` every gradient) agrees to `rtol`, and returns the IR
text before and after, for the test to assert on what the pass did.  The
IR verifier runs after every pass (the tests set DLC_VERIFY_PASSES=1).
"""
from __future__ import annotations

import numpy as np

import dlc

RTOL = 1e-10


def as_f64(arrays: dict) -> dict:
    return {k: (v.astype("float64") if np.asarray(v).dtype.kind == "f" else v) for k, v in arrays.items()}


def assert_close(ref: dict, got: dict, rtol: float = RTOL, what: str = "") -> None:
    assert set(ref) == set(got), f"{what}: outputs {sorted(got)} differ from {sorted(ref)}"
    for k in ref:
        a, b = np.asarray(ref[k], dtype=np.float64), np.asarray(got[k], dtype=np.float64)
        scale = max(float(np.max(np.abs(a))) if a.size else 0.0, 1e-30)
        err = float(np.max(np.abs(a - b))) if a.size else 0.0
        assert err <= rtol * scale, f"{what}{k}: max |diff| {err:.3g} > {rtol:g} x max |ref| {scale:.3g}"


def ir_after(spec, passes, mode: str = "eval", bind: dict | None = None, backend: str = "numpy") -> tuple[str, str]:
    m = dlc.load(spec, bind=bind)
    before = str(m.symbolic_graph(mode))
    opt = m.optimize(passes=passes)
    after = str(opt.optimized(opt.symbolic_graph(mode), backend))
    return before, after


def random_label(m, mode: str = "train", bind: dict | None = None, seed: int = 0):
    """A label for the train section's loss, or None when the loss takes none:
    class indices below the loss's class count, else normal floats."""
    from dlc.compiler.analysis import index_bound
    g, _ = m.grad_graph(mode, bind)
    env = {**{k: v for k, v in g.dims.items() if v is not None}, **(bind or {})}
    rng = np.random.default_rng(seed + 1)
    for v in g.inputs:
        if v.name == "label":
            t = v.type.concrete(env)
            if t.dtype.is_int:
                return rng.integers(0, index_bound(g, v), size=t.shape).astype(t.dtype.numpy_name)
            return rng.standard_normal(t.shape).astype("float64")
    return None


def check_pass(spec, passes, *, mode: str = "eval", bind: dict | None = None, seed: int = 0,
               grads: bool = False, rtol: float = RTOL, backend: str = "numpy") -> tuple[str, str]:
    m = dlc.load(spec, bind=bind)
    weights = as_f64(m.init_weights(seed))
    inputs = as_f64(m.random_inputs(seed, bind))
    ref = m.optimize(level=0).run(inputs, weights, mode=mode, seed=seed, dtype="float64", bind=bind)
    got = m.optimize(passes=passes).run(inputs, weights, mode=mode, seed=seed, dtype="float64", bind=bind)
    assert_close(ref, got, rtol, f"{spec} {mode}: ")
    if grads:
        label = random_label(m, mode, bind, seed)
        ref_g = m.optimize(level=0).grad(inputs, weights, label=label, mode=mode, seed=seed, bind=bind)
        got_g = m.optimize(passes=passes).grad(inputs, weights, label=label, mode=mode, seed=seed, bind=bind)
        assert_close(ref_g, got_g, rtol, f"{spec} {mode} gradient ")
    return ir_after(spec, passes, mode, bind, backend)
