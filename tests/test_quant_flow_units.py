"""The parts of the int8 flow that need no integer kernels: observers, the
budget algorithm, calibration data, the plain report."""
import numpy as np
import pytest

import dlc
from dlc.errors import DlcError, DlcValueError
from dlc.quant_budget import BudgetError, fit_budget
from dlc.quant_data import load_split
from dlc.quant_observe import calibrate_observers, pipeline_prefix
from dlc.quant_report import plain_table


def _digits_cnn():
    m = dlc.load("specs/digits_cnn.dln")
    return m, m.init_weights(3)


def test_observers_see_each_site_input_and_output():
    m, w = _digits_cnn()
    x = load_split("train", m.symbolic_graph(), "digits_images").x[:300]
    obs, sites = calibrate_observers(m, w, x, progress=False)
    assert [s.name for s in sites] == ["conv1", "conv2", "hidden", "output"]
    assert (obs["conv1:in"].lo, obs["conv1:in"].hi) == (float(x.min()), float(x.max()))
    logits = m.run({"image": x}, w)["output"]           # the last site's output is the model's output
    assert obs["output:out"].lo == pytest.approx(float(logits.min()), rel=1e-6)
    assert obs["output:out"].hi == pytest.approx(float(logits.max()), rel=1e-6)
    # conv2's input is relu + maxpool of conv1's output: non-negative, max = relu(conv1 out) max
    assert obs["conv2:in"].lo >= 0 and obs["conv2:in"].hi == pytest.approx(max(obs["conv1:out"].hi, 0))
    assert obs["conv1:out"].count == 300 * 16 * 8 * 8 == obs["conv1:out"].sample.size
    np.testing.assert_array_equal(obs["hidden:weight"].weight, w["hidden.weight"])


def test_observers_sample_large_tensors_but_keep_exact_extremes(monkeypatch):
    import dlc.quant_observe as qo
    monkeypatch.setattr(qo, "SAMPLE_CAP", 20_000)
    m, w = _digits_cnn()
    x = load_split("train", m.symbolic_graph(), "digits_images").x[:600]
    obs, _ = calibrate_observers(m, w, x, progress=False)
    o = obs["conv1:out"]
    assert o.count == 600 * 1024
    assert 0.8 * 20_000 < o.sample.size < 1.2 * 20_000
    assert o.sample.min() >= o.lo and o.sample.max() <= o.hi
    full, _ = calibrate_observers(m, w, x[:10], progress=False)
    assert full["conv1:out"].sample.size == full["conv1:out"].count


def test_observed_graph_is_the_one_quantize_sees():
    assert pipeline_prefix(dlc.load("specs/mlp.dln").opt)[-2:] == ("fold_batchnorm", "fold_affine")
    o1 = dlc.load("specs/mlp.dln").optimize(level=1).opt
    assert "fold_batchnorm" in pipeline_prefix(o1) and "fold_affine" not in pipeline_prefix(o1)


def test_calibration_data_of_the_wrong_shape_is_a_located_error(tmp_path):
    m = dlc.load("specs/digits_cnn.dln")
    np.savez(tmp_path / "bad.npz", x=np.zeros((5, 3, 7, 7), np.float32))
    with pytest.raises(DlcValueError) as e:
        load_split(str(tmp_path / "bad.npz"), m.symbolic_graph(), "digits_images")
    assert "(3, 7, 7)" in e.value.message and "image" in e.value.message
    assert e.value.span is not None and e.value.span.file.endswith("digits_cnn.dln")
    with pytest.raises(DlcValueError, match="wine"):        # 13 features cannot feed 1x8x8 images
        load_split("wine", m.symbolic_graph(), "digits_images")
    with pytest.raises(DlcError, match="no such calibration file"):
        load_split(str(tmp_path / "absent.npz"), m.symbolic_graph(), "digits_images")


def test_calibration_splits_and_limits():
    m = dlc.load("specs/mlp.dln")
    g = m.symbolic_graph()
    assert load_split("train", g, "digits").x.shape == (1437, 64)
    assert load_split("val", g, "digits").x.shape == (360, 64)
    few = load_split("digits", g, None, limit=50, seed=1)
    assert few.x.shape == (50, 64) and len(set(few.y.tolist())) > 5     # a seeded shuffle spans the classes


def _evaluator(table):
    """An evaluation whose accuracy is a known function of the fp32 layers."""
    calls = []

    def evaluate(float_layers):
        calls.append(float_layers)
        if float_layers is None:
            return table["fp32"]
        return table["int8"] + sum(table["gain"][n] for n in float_layers)
    return evaluate, calls


def test_budget_returns_the_most_sensitive_layers_first_until_it_fits():
    ev, calls = _evaluator({"fp32": 0.90, "int8": 0.85, "gain": {"a": 0.01, "b": 0.03, "c": 0.005, "d": 0.0}})
    r = fit_budget(["a", "b", "c", "d"], ev, 1.5)
    assert r.sensitivity == pytest.approx({"a": 1.0, "b": 3.0, "c": 0.5, "d": 0.0})
    assert r.float_layers == ("b", "a")          # 5 - 3 = 2 > 1.5, then 2 - 1 = 1 <= 1.5
    assert [s.what for s in r.steps] == ["fp32", "int8", "b -> fp32", "a -> fp32"]
    assert r.final.loss_pp == pytest.approx(1.0) and r.met
    assert len(calls) == 2 + 4 + 2


def test_budget_already_met_evaluates_no_sensitivity():
    ev, calls = _evaluator({"fp32": 0.90, "int8": 0.899, "gain": {"a": 0.0}})
    r = fit_budget(["a"], ev, 0.5)
    assert r.float_layers == () and r.sensitivity == {} and len(calls) == 2


def test_budget_that_cannot_be_met_says_the_best_reachable_loss():
    ev, _ = _evaluator({"fp32": 0.90, "int8": 0.80, "gain": {"a": 0.02, "b": 0.03, "c": 0.01}})
    with pytest.raises(BudgetError) as e:
        fit_budget(["a", "b", "c"], ev, 0.5)          # all but one back in fp32: 10 - 3 - 2 = 5 points
    assert "best reachable loss is 5.00 points" in e.value.message and "b, a in fp32" in e.value.message
    assert [s.what for s in e.value.result.steps][2:] == ["b -> fp32", "a -> fp32"]
    with pytest.raises(BudgetError, match="best reachable loss is 10.00 points .with every layer int8"):
        fit_budget(["a", "b", "c"], ev, 0.5, max_float=0)


def test_plain_table_is_aligned_text():
    text = plain_table("layers", ("layer", "precision"), [["conv1", "int8"], ["output", "fp32"]])
    assert text.splitlines() == ["layers:", "layer   precision", "conv1   int8", "output  fp32"]
