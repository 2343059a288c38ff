"""Mixed-precision training (`dlc train --precision bf16|fp16`): fp32 master
weights, GradScaler's dynamic loss scaling for fp16, and accuracy on digits."""
from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

import dlc.mixed_precision as mp
from dlc.backends import get_backend
from dlc.backends.protocol import StepPlan
from dlc.compiler.passes import PipelineOptions
from dlc.errors import DlcError
from dlc.mixed_precision import GradScaler


def test_grad_scaler_follows_torch_update_rule():
    s = GradScaler()
    assert (s.scale, s.growth_factor, s.backoff_factor, s.growth_interval) == (2.0 ** 16, 2.0, 0.5, 2000)
    s = GradScaler(scale=8.0, growth_interval=3)
    for found_inf, scale, tracker in [(False, 8, 1), (False, 8, 2), (True, 4, 0), (False, 4, 1), (False, 4, 2),
                                      (False, 8, 0), (False, 8, 1)]:
        s.update(found_inf)
        assert (s.scale, s.growth_tracker) == (scale, tracker)
    assert s.skipped == 1


def _mlp_step(precision, scaler=None, backend="numpy", sgd=False):
    import dlc
    from dlc.frontend.blocks import elaborate_model
    from dlc.frontend.modules import load_module
    from dlc.frontend.train import train_settings
    mod = load_module("specs/mlp.dln")
    s = train_settings(mod, mod.trains[0], {})
    if sgd:         # plain SGD: unlike Adam's, its update is proportional to the gradient's scale
        s.optimizer, s.optimizer_args = "sgd", {"lr": 0.1}
    w = dlc.load("specs/mlp.dln").init_weights(0)
    plan = StepPlan(spec=s, model_graph=lambda: elaborate_model(mod, "MLP", "train", {}), weights=w,
                    optimizer_state=None, opt=PipelineOptions(precision=precision), backend=backend)
    return mp.train_step(get_backend(backend), plan, precision, scaler)


def _batch(n=16):
    rng = np.random.default_rng(0)
    return {"x": rng.standard_normal((n, 64)).astype(np.float32), "label": rng.integers(0, 10, n)}


def _weights(step):
    return {k: np.array(v, copy=True) for k, v in step.state()[0].items()}


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_fp16_overflow_skips_the_step_halves_the_scale_then_grows(backend):
    pytest.importorskip(backend)
    scaler = GradScaler(scale=2.0 ** 40, growth_interval=3)     # loss * 2^40 overflows fp16 (max 65504)
    step = _mlp_step("fp16", scaler, backend)
    before = _weights(step)
    loss = step.run(_batch(), 1e-3, 1, 0)
    assert np.isfinite(loss)                                    # the forward was fine; the backward overflowed
    after = _weights(step)
    assert all(np.array_equal(before[k], after[k]) for k in before), "a skipped step changed the weights"
    assert (scaler.scale, scaler.skipped, scaler.growth_tracker) == (2.0 ** 39, 1, 0)
    assert all(np.all(v == 0) for k, v in step.state()[1].items()), "a skipped step changed the optimizer state"
    scaler.scale = 2.0 ** 6                                     # a scale that fits: clean steps
    for i in range(3):
        w0 = _weights(step)
        step.run(_batch(), 1e-3, 2 + i, 0)
        assert any(not np.array_equal(w0[k], v) for k, v in _weights(step).items())
    assert (scaler.scale, scaler.skipped, scaler.growth_tracker) == (2.0 ** 7, 1, 0)   # grown after 3 clean steps
    assert step.epoch_metrics() == {"loss_scale": 2.0 ** 7, "skipped_steps": 1}


def test_gradients_are_unscaled_a_power_of_two_scale_changes_nothing():
    # scaling by 2^k is exact in fp16 (away from overflow and underflow): the SGD
    # update is that of fp16 without scaling, and close to the fp32 one
    steps = [_mlp_step("fp16", GradScaler(scale=2.0 ** k), sgd=True) for k in (0, 8)] + [_mlp_step("fp32", sgd=True)]
    start = _weights(steps[0])
    for st in steps:
        st.run(_batch(), 0.1, 1, 0)
    w1, w256, w32 = (_weights(st) for st in steps)
    for k in start:
        moved = np.max(np.abs(w32[k] - start[k]))
        np.testing.assert_allclose(w256[k], w1[k], rtol=0, atol=1e-3 * moved)
        np.testing.assert_allclose(w256[k] - start[k], w32[k] - start[k], rtol=0, atol=0.02 * moved)


def test_the_master_weights_stay_fp32():
    step = _mlp_step("bf16")
    step.run(_batch(), 1e-3, 1, 0)
    weights, state = step.state()
    assert {np.asarray(v).dtype for v in weights.values()} == {np.dtype(np.float32)}
    assert {np.asarray(v).dtype for v in state.values()} == {np.dtype(np.float32)}
    assert step.epoch_metrics() == {}                           # bf16: no loss scaling, as torch


def test_precision_with_autograd_or_unknown_is_a_clear_error(tmp_path):
    pytest.importorskip("torch")
    from dlc.trainer import train
    with pytest.raises(DlcError, match="symbolic gradients"):
        train("specs/mlp.dln", backend="torch", grad="autograd", epochs=1, progress=False,
              opt=PipelineOptions(precision="fp16"), out=str(tmp_path / "r"))
    with pytest.raises(DlcError, match="unknown precision"):
        mp.check_precision("fp8")
    from dlc.cli import main
    r = CliRunner().invoke(main, ["train", "specs/mlp.dln", "--precision", "fp8", "-o", str(tmp_path / "s")])
    assert r.exit_code != 0 and "fp8" in r.output and "Traceback" not in r.output


def test_cli_fp16_training_logs_scale_and_skipped_steps(tmp_path, monkeypatch):
    from dlc.cli import main
    monkeypatch.setattr(mp, "new_scaler", lambda: GradScaler(scale=2.0 ** 24, growth_interval=4))
    out = tmp_path / "run"
    r = CliRunner().invoke(main, ["train", "specs/mlp.dln", "--precision", "fp16", "--epochs", "2",
                                  "--no-progress", "-o", str(out)])
    assert r.exit_code == 0, r.output
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and all("loss_scale" in row and "skipped_steps" in row for row in rows)
    # 2^24 overflows at first: steps are skipped and the scale halves until it fits, then grows every 4
    assert rows[0]["skipped_steps"] >= 1 and rows[0]["loss_scale"] < 2.0 ** 24
    assert rows[-1]["val_accuracy"] > 0.5


def _accuracy(spec, precision, backend, epochs, tmp_path):
    from dlc.trainer import train
    r = train(spec, backend=backend, grad="symbolic", epochs=epochs, progress=False,
              opt=PipelineOptions(precision=precision), out=str(tmp_path / precision))
    return r.history[-1]["val_accuracy"]


def test_mlp_bf16_and_fp16_reach_fp32_accuracy_within_half_a_point(tmp_path):
    # the train section's 20 epochs on digits (held-out split: 360 images), NumPy (~8 s each)
    acc = {p: _accuracy("specs/mlp.dln", p, "numpy", None, tmp_path) for p in ("fp32", "bf16", "fp16")}
    assert acc["fp32"] > 0.95
    assert abs(acc["bf16"] - acc["fp32"]) <= 0.005 and abs(acc["fp16"] - acc["fp32"]) <= 0.005, acc


@pytest.mark.slow
def test_digits_cnn_bf16_and_fp16_reach_fp32_accuracy_within_half_a_point(tmp_path):
    # the train section's 30 epochs, torch running dlc's step graph: ~6 minutes per precision here
    acc = {p: _accuracy("specs/digits_cnn.dln", p, "torch", None, tmp_path) for p in ("fp32", "bf16", "fp16")}
    assert acc["fp32"] > 0.97
    assert abs(acc["bf16"] - acc["fp32"]) <= 0.005 and abs(acc["fp16"] - acc["fp32"]) <= 0.005, acc


def test_precision_where_it_cannot_apply_is_a_clear_error(tmp_path):
    from dlc.cli import main
    r = CliRunner().invoke(main, ["compile", "specs/mlp.dln", "--target", "torch", "--precision", "fp16"])
    assert r.exit_code != 0 and "--precision fp16 cannot apply here: --target torch" in r.output
    assert "Traceback" not in r.output
    pkg = tmp_path / "mlp.dlcpkg"
    pkg.write_bytes(b"not read: the option is refused first")
    r = CliRunner().invoke(main, ["run", str(pkg), "--precision", "bf16"])
    assert r.exit_code != 0 and "is compiled" in r.output and "Traceback" not in r.output
