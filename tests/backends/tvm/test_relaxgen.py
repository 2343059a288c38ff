"""The IR -> Relax lowering itself: symbolic dimensions, dimensions forced
concrete, host-drawn random inputs, unsupported ops, and `Model.run` with
backend="tvm" (eval and train mode, with buffer updates)."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("tvm")

import dlc
from dlc.backends.tvm import relaxgen
from dlc.backends.tvm.compile import compile_graph
from dlc.errors import DlcError

pytestmark = pytest.mark.tvm


def _rel(a, b):
    return float(np.abs(a - b).max() / (np.abs(b).max() + 1e-30))


def test_batch_stays_symbolic_and_one_build_runs_any_batch():
    m = dlc.load("specs/mlp.dln")
    low = relaxgen.lower_model(m.graph)
    assert low.symbolic == ["N"] and low.fixed == {}
    w = m.init_weights(0)
    runner = compile_graph(m.graph, "cpu").runner().set_weights(w)
    for n in (1, 5, 32):
        x = m.random_inputs(n, bind={"N": n})
        assert _rel(runner.run(x)["output"], m.run(x, w, bind={"N": n})["output"]) < 1e-5


def test_unrolled_steps_fix_the_sequence_length_to_its_example():
    m = dlc.load("specs/lstm_cell.dln")
    low = relaxgen.lower_model(m.graph)
    # the scan over T is unrolled: T is fixed to `example T = 8`, N stays free
    assert low.fixed.get("T") == 8
    assert "N" in low.symbolic


def test_a_dimension_without_example_that_must_be_fixed_is_a_located_error():
    m = dlc.load("specs/lstm_cell.dln")
    g = m.graph
    with pytest.raises(DlcError) as e:
        relaxgen.lower_model(g, examples={})
    assert "--bind" in (e.value.hint or "") and "T" in e.value.message


def test_dropout_noise_is_drawn_on_the_host_like_the_reference():
    # the transformer encoder layer has three dropouts in train mode
    m = dlc.load("specs/transformer_encoder_layer.dln")
    g = m._elaborate("train", {})
    low = relaxgen.lower_model(g)
    assert [r.kind for r in low.random_inputs] == ["dropout"] * 3
    w = m.init_weights(0)
    x = m.random_inputs(0)
    for seed in (0, 7):
        got, _ = m.run_with_state(x, w, backend="tvm", mode="train", seed=seed)
        ref, _ = m.run_with_state(x, w, mode="train", seed=seed)
        for k in ref:
            assert _rel(got[k], ref[k]) < 1e-4


def test_train_mode_batch_norm_updates_match_the_reference():
    m = dlc.load("specs/resnet18.dln")
    w = m.init_weights(0)
    x = m.random_inputs(0, bind={"N": 2, "size": 64})
    got, gu = m.run_with_state(x, w, backend="tvm", mode="train", bind={"size": 64})
    ref, ru = m.run_with_state(x, w, mode="train", bind={"size": 64})
    assert _rel(got["logits"], ref["logits"]) < 1e-4
    assert set(gu) == set(ru) and len(ru) == 60
    for k in ru:
        assert np.allclose(gu[k], ru[k], rtol=1e-4, atol=1e-6), k


def test_an_op_without_lowering_is_reported_at_its_line(monkeypatch):
    from dlc.backends.tvm import lowering
    monkeypatch.delitem(lowering.LOWERING, "relu")
    monkeypatch.setitem(lowering.UNSUPPORTED, "relu", "pretend")
    m = dlc.load("specs/mlp.dln")
    with pytest.raises(DlcError) as e:
        relaxgen.lower_model(m.graph)
    assert "relu" in e.value.message and "pretend" in e.value.message
    assert e.value.span is not None and e.value.span.line == 10
