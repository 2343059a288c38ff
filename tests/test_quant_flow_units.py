"""The parts of the int8 flow that need no integer kernels: observers, the
budget algorithm, calibration data, the plain report."""
import numpy as np
import pytest

import dlc
from dlc.errors import DlcError, DlcValueError
from dlc.quant_budget import BudgetError, fit_budget
from dlc.quant_data import load_split
from dlc.quant_observe import calibrate_observers
from dlc.quant_report import plain_table


def _digits_cnn():
    m = dlc.load("specs/digits_cnn.dln")
    return m, m.init_weights(3)


def test_observers_see_each_site_input_and_output():
    m, w = _digits_cnn()
    x = load_split("train", m.symbolic_graph(), "digits_images").x[:300]
    obs, site_weights, sites = calibrate_observers(m, w, x, progress=False)
    assert [s.name for s in sites] == ["conv1", "conv2", "hidden", "output"]
    assert obs["conv1:in"].range() == (float(x.min()), float(x.max()))
    logits = m.run({"image": x}, w)["output"]           # the last site's output is the model's output
    assert obs["output:out"].range() == pytest.approx((float(logits.min()), float(logits.max())), rel=1e-6)
    # sites are observed after their relu epilogue; conv2 reads maxpool(relu(conv1)): the same maximum
    assert obs["conv1:out"].range()[0] == 0.0 and obs["conv2:in"].range() == obs["conv1:out"].range()
    assert obs["conv1:out"].count == 300 * 16 * 8 * 8
    np.testing.assert_array_equal(site_weights["hidden"], w["hidden.weight"])


def test_observers_stream_over_batches(monkeypatch):
    import dlc.quant_observe as qo
    m, w = _digits_cnn()
    x = load_split("train", m.symbolic_graph(), "digits_images").x[:600]
    whole, _, _ = calibrate_observers(m, w, x, "percentile", progress=False)
    monkeypatch.setattr(qo, "BATCH", 64)
    parts, _, _ = calibrate_observers(m, w, x, "percentile", progress=False)
    for k in whole:
        assert parts[k].count == whole[k].count
        assert parts[k].range() == pytest.approx(whole[k].range(), rel=0.02, abs=1e-3)


def test_the_observed_graph_folds_batch_norm_as_the_quantize_pass_does():
    from dlc.quant_observe import observed_graph
    m = dlc.load("specs/resnet18.dln").optimize(level=1)       # -O1 has no fold_batchnorm; quantize needs it
    g, sites = observed_graph(m)
    assert "batch_norm" not in {n.op.name for n in g.nodes}
    assert sites[0].name == "conv1" and len(sites) == 21


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
