"""End-to-end training on real bundled data (scikit-learn digits), the
resume guarantee, and the dlc train command line."""
import json

import numpy as np
import pytest
from click.testing import CliRunner

import dlc
from dlc.cli import main
from dlc.runtime.checkpoint import load_checkpoint

pytest.importorskip("sklearn")


def test_mlp_reaches_97_percent_on_digits(tmp_path):
    r = dlc.train("specs/mlp.dln", data="digits", epochs=30, out=str(tmp_path / "run"), progress=False)
    best = max(h["val_accuracy"] for h in r.history)
    assert best >= 0.97, f"best test accuracy {best:.4f}"
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == r.epochs_run and json.loads(lines[0])["epoch"] == 1
    assert (tmp_path / "run" / "best.safetensors").exists()


def test_cnn_reaches_98_percent_on_digits(tmp_path):
    r = dlc.train("specs/digits_cnn.dln", out=str(tmp_path / "run"), progress=False)
    best = max(h["val_accuracy"] for h in r.history)
    assert best >= 0.98, f"best test accuracy {best:.4f}"


def test_gru_reading_rows_reaches_95_percent(tmp_path):
    r = dlc.train("specs/gru_classifier.dln", out=str(tmp_path / "run"), progress=False)
    best = max(h["val_accuracy"] for h in r.history)
    assert best >= 0.95, f"best test accuracy {best:.4f}"


def test_vae_elbo_improves(tmp_path):
    r = dlc.train("specs/vae.dln", epochs=4, out=str(tmp_path / "run"), progress=False)
    losses = [h["val_loss"] for h in r.history]   # the negative ELBO
    assert losses[-1] < 0.85 * losses[0]
    assert all(b < a for a, b in zip(losses, losses[1:]))


def test_gan_runs_alternating_steps_with_finite_losses():
    r = dlc.train("specs/gan.dln", max_steps=500, progress=False)
    assert r.history[-1]["step"] == 500
    for h in r.history:
        assert np.isfinite(h["discriminator_loss"]) and np.isfinite(h["generator_loss"])
    assert any(k.startswith("Generator.") for k in r.weights) and any(k.startswith("Discriminator.") for k in r.weights)


def test_resume_is_bitwise_identical(tmp_path):
    straight = tmp_path / "straight"
    split = tmp_path / "split"
    dlc.train("specs/mlp.dln", epochs=6, out=str(straight), progress=False)
    dlc.train("specs/mlp.dln", epochs=3, out=str(split), progress=False)
    dlc.train("specs/mlp.dln", epochs=6, out=str(split), resume=True, progress=False)
    a = load_checkpoint(straight / "epoch-006.safetensors")
    b = load_checkpoint(split / "epoch-006.safetensors")
    assert a.step == b.step
    for k in a.weights:
        assert np.array_equal(a.weights[k], b.weights[k]), k
    for k in a.optimizer_state:
        assert np.array_equal(a.optimizer_state[k], b.optimizer_state[k]), k
    ma = [json.loads(x) for x in (straight / "metrics.jsonl").read_text().splitlines()]
    mb = [json.loads(x) for x in (split / "metrics.jsonl").read_text().splitlines()]
    assert [m["val_loss"] for m in ma] == [m["val_loss"] for m in mb]


def test_train_cli_with_overrides_and_resume(tmp_path):
    out = tmp_path / "run"
    r = CliRunner().invoke(main, ["train", "specs/mlp.dln", "--epochs", "2", "--out", str(out), "--no-progress"])
    assert r.exit_code == 0, r.output
    assert "trained 2 epoch(s)" in r.output
    r = CliRunner().invoke(main, ["train", "specs/mlp.dln", "--epochs", "3", "--out", str(out), "--resume",
                                  "--no-progress"])
    assert r.exit_code == 0, r.output
    assert "trained 1 epoch(s)" in r.output
    r = CliRunner().invoke(main, ["train", "specs/mlp.dln", "--data", "nosuch", "--no-progress"])
    assert r.exit_code == 1 and "unknown data set" in r.output


def test_grad_cli_prints_backward_ir_traced_to_source():
    r = CliRunner().invoke(main, ["grad", "specs/lenet5.dln"])
    assert r.exit_code == 0, r.output
    text = r.output
    back = text.split("---- backward")[1]
    assert "conv_transpose2d" in back          # d(conv)/d(input)
    assert "lenet5.dln:7:" in back             # traced to the c1 line
