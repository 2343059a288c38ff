"""`dlc bench --train`: training steps checked against the float64 -O0 NumPy
step (loss and updated weights) before they are timed."""
import json

import pytest
from click.testing import CliRunner

from dlc.cli import main


@pytest.fixture(autouse=True)
def keep_env(monkeypatch):
    for v in ("TVM_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        monkeypatch.setenv(v, "")
    import torch
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


def bench(tmp_path, *args):
    out = tmp_path / "r.json"
    r = CliRunner().invoke(main, ["bench", "specs/mlp.dln", "--train", "--batch", "4", "--repeat", "2",
                                  "--warmup", "1", "--threads", "1", "-o", str(out), *args])
    assert "Traceback" not in r.output, r.output
    return r, (json.loads(out.read_text()) if out.exists() else None)


@pytest.mark.slow   # TVM and inductor compile training steps: minutes on the shared 2-core machine
def test_every_backend_and_torch_baseline_trains_checked_and_timed(tmp_path):
    r, rep = bench(tmp_path, "--backends", "numpy,torch,tvm")
    assert r.exit_code == 0, r.output
    assert rep["mode"] == "train" and rep["tolerances"]["train_step_weights"] == 1e-2
    assert [row["name"] for row in rep["rows"]] == ["numpy", "torch", "tvm", "torch-eager", "torch-compile"]
    for row in rep["rows"]:
        assert row["mode"] == "train" and row["status"] == "ok" and row["check"]["ok"], row
        assert row["median_ms"] > 0 and row["throughput_per_s"] == pytest.approx(4e3 / row["median_ms"])


def test_a_wrong_relu_in_the_torch_step_is_not_timed(tmp_path, monkeypatch):
    from dlc.backends.torch import lowering
    orig = lowering.LOWERING["relu"]

    def wrong(*a, **k):
        s = orig(*a, **k)
        return type(s)(s.replace("torch.relu(", "0.5 * torch.relu("))
    monkeypatch.setitem(lowering.LOWERING, "relu", wrong)
    r, rep = bench(tmp_path, "--backends", "numpy,torch", "--baselines", "torch-eager")
    assert r.exit_code == 1 and "torch at batch 4: WRONG result, not timed" in r.stderr
    rows = {row["name"]: row for row in rep["rows"]}
    assert rows["torch"]["status"] == "wrong" and rows["torch"]["median_ms"] is None
    assert rows["numpy"]["status"] == rows["torch-eager"]["status"] == "ok"


def test_onnxruntime_cannot_train_and_says_so():
    from dlc.bench_baselines import BaselineUnavailable
    from dlc.bench_train import TRAIN_BASELINES, baseline_step_call
    assert "onnxruntime" not in TRAIN_BASELINES     # not in --train's default baselines
    with pytest.raises(BaselineUnavailable, match="onnxruntime runs inference here"):
        baseline_step_call("onnxruntime", None, None, None, None)


def test_a_model_without_train_section_is_a_clear_error(tmp_path):
    spec = tmp_path / "m.dln"
    spec.write_text("model M(x: f32[N, 4]) -> f32[N, 2] {\n    example N = 1\n    return dense(x, 2)\n}\n")
    r = CliRunner().invoke(main, ["bench", str(spec), "--train", "--backends", "numpy", "--baselines", ""])
    assert r.exit_code == 1 and "Traceback" not in r.output
    assert "has no train section" in r.output


def test_the_kink_allowance_is_the_float32_reference_noise_times_three():
    """An element share past the step tolerance that the float32 reference
    itself shows is allowed (NOISE_FACTOR times it); more is wrong."""
    import numpy as np
    from dlc.bench_train import KINK_SHARE, NOISE_FACTOR, _off_share, check_step
    rng = np.random.default_rng(0)
    ref = {"w": rng.standard_normal(10_000), "b": rng.standard_normal(256)}

    def moved(n_w, n_b=0):
        new = {k: v.copy() for k, v in ref.items()}
        new["w"][:n_w] += 1.0       # past 1% of the scale (max|w| is about 4)
        new["b"][:n_b] += 1.0
        return new
    assert _off_share(moved(50, 1), ref) == pytest.approx(50 / 10_000)    # one element of b is ignored
    share = max(KINK_SHARE, NOISE_FACTOR * _off_share(moved(50), ref))
    assert share == pytest.approx(0.015)
    assert check_step(0.5, moved(140), (0.5, ref, share))["ok"]
    bad = check_step(0.5, moved(160), (0.5, ref, share))
    assert not bad["ok"] and "160 of 10000 elements" in bad["why"] and "at most 150 allowed" in bad["why"]
    assert not check_step(0.5, moved(140), (0.5, ref))["ok"]        # without calibration: KINK_SHARE (10 of 10000)
