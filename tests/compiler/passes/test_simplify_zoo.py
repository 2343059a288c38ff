"""Every zoo spec at -O1 (canonicalize, fold_constants, cse, dce) against -O0:
eval forward, train forward and gradients, float64 on NumPy within 1e-10.
Full-size models: marked slow (`pytest --runslow`); together about 25 minutes
on two cores."""
from __future__ import annotations

from pathlib import Path

import pytest

import dlc
from dlc.errors import DlcError

from harness import as_f64, assert_close, random_label

ZOO = sorted(str(p.relative_to(Path(__file__).resolve().parents[3]))
             for p in (Path(__file__).resolve().parents[3] / "specs").glob("*.dln"))


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["eval", "train"])
@pytest.mark.parametrize("spec", ZOO)
def test_zoo_at_O1_matches_O0(spec, mode):
    m = dlc.load(spec)
    weights, inputs = as_f64(m.init_weights(0)), as_f64(m.random_inputs(0))
    o0, o1 = m.optimize(level=0), m.optimize(level=1)
    ref = o0.run(inputs, weights, mode=mode, dtype="float64")
    assert_close(ref, o1.run(inputs, weights, mode=mode, dtype="float64"), what=f"{spec} {mode}: ")
    if mode == "eval":
        return
    try:
        label = random_label(m, mode)
        ref_g = o0.grad(inputs, weights, label=label, mode=mode)
    except DlcError as e:
        pytest.skip(f"no training graph at -O0 either: {e.message}")
    assert_close(ref_g, o1.grad(inputs, weights, label=label, mode=mode), what=f"{spec} {mode} gradient ")


@pytest.mark.parametrize("spec", ["specs/lenet5.dln", "specs/lstm_cell.dln", "specs/transformer_encoder_layer.dln",
                                  "specs/alexnet.dln"])
def test_O1_is_a_fixed_point(spec):
    """A second -O1 over a training graph finds nothing left to do: each pass
    leaves the canonical form the others expect."""
    from dlc.compiler.passes import PipelineOptions, run_pipeline
    m = dlc.load(spec)
    examples = {k: v for k, v in m.graph.dims.items() if v is not None}
    g, _ = m.grad_graph("train", examples)
    g, _, first = run_pipeline(g, PipelineOptions(level=1), verify=True)
    g, _, second = run_pipeline(g, PipelineOptions(level=1), verify=True)
    assert sum(first.stats.values()) > 0
    assert {k: v for k, v in second.stats.items() if v} == {}
