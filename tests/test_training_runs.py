"""One training loop for every backend: the same run folder, bitwise --resume,
any batch-dimension name, runs that cannot mix, and a clear stop on NaN.

The models are tiny (a 64-16-10 MLP on the 8x8 digits) so that the TVM
compiles stay small."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import dlc
from dlc.cli import main
from dlc.errors import DlcError
from dlc.runtime.checkpoint import load_checkpoint
from dlc.runtime.weights import load_weights

pytest.importorskip("sklearn")

ROOT = Path(__file__).resolve().parents[1]

# the batch dimension is called B, not N
TINY = """
model Tiny(x: f32[B, 64]) -> f32[B, 10] {{
    example B = 2
    h = dense(x, {width}) |> relu
    output = dense(h, 10)
    return output
}}

train Tiny on digits {{
    loss      = cross_entropy(output, label)
    optimizer = adam(lr={lr})
    epochs    = 2
    batch     = {batch}
}}
"""


def _spec(tmp_path, width=16, lr=1e-2, batch=128, name="tiny.dln") -> str:
    return _write(tmp_path / name, TINY.format(width=width, lr=lr, batch=batch))


def _write(path, text) -> str:
    """(Re)write a spec: dlc.train reads it afresh, whatever this process parsed before."""
    path.write_text(text)
    return str(path)


def _backends():
    out = [pytest.param("numpy", None, id="numpy")]
    try:
        import torch  # noqa: F401
        out += [pytest.param("torch", "autograd", id="torch-autograd"),
                pytest.param("torch", "symbolic", id="torch-symbolic")]
    except ImportError:
        pass
    try:
        import tvm  # noqa: F401
        out.append(pytest.param("tvm", None, id="tvm", marks=pytest.mark.tvm))
    except ImportError:
        pass
    return out


@pytest.fixture(autouse=True)
def _tvm_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("DLC_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "dlc-cache-runs"))


def _train(spec, out, backend, grad, **kw):
    return dlc.train(spec, out=str(out), progress=False, backend=backend, grad=grad, **kw)


@pytest.mark.parametrize("backend,grad", _backends())
def test_batch_dim_b_trains_writes_the_run_files_and_resumes_bitwise(tmp_path, backend, grad):
    spec = _spec(tmp_path)
    straight, split = tmp_path / "straight", tmp_path / "split"
    r = _train(spec, straight, backend, grad)
    assert r.epochs_run == 2 and r.history[-1]["train_loss"] < r.history[0]["train_loss"]
    # the same files on every backend
    assert sorted(p.name for p in straight.iterdir()) == [
        "best.safetensors", "epoch-001.safetensors", "epoch-002.safetensors", "metrics.jsonl"]
    best = load_checkpoint(straight / f"epoch-{r.best['epoch']:03d}.safetensors")
    for k, v in load_weights(straight / "best.safetensors").items():
        assert np.array_equal(v, best.weights[k]), k
    # --resume continues bit for bit
    _train(spec, split, backend, grad, epochs=1)
    _train(spec, split, backend, grad, resume=True)
    a = load_checkpoint(straight / "epoch-002.safetensors")
    b = load_checkpoint(split / "epoch-002.safetensors")
    assert a.step == b.step and set(a.weights) == set(b.weights)
    assert a.optimizer_state.keys() == b.optimizer_state.keys() and a.optimizer_state
    for k in a.weights:
        assert np.array_equal(a.weights[k], b.weights[k]), k
    for k in a.optimizer_state:
        assert np.array_equal(a.optimizer_state[k], b.optimizer_state[k]), k
    ma = [json.loads(x) for x in (straight / "metrics.jsonl").read_text().splitlines()]
    mb = [json.loads(x) for x in (split / "metrics.jsonl").read_text().splitlines()]
    assert [m["val_loss"] for m in ma] == [m["val_loss"] for m in mb]
    assert [m["epoch"] for m in mb] == [1, 2]


def test_every_backend_gives_the_same_numbers_for_the_symbolic_step(tmp_path):
    """The loop is shared: the numpy and torch-symbolic runs of one spec agree epoch by epoch."""
    pytest.importorskip("torch")
    spec = _spec(tmp_path)
    ref = _train(spec, tmp_path / "np", "numpy", None)
    got = _train(spec, tmp_path / "pt", "torch", "symbolic")
    for a, b in zip(ref.history, got.history):
        for k in ("train_loss", "val_loss", "val_accuracy"):
            assert abs(a[k] - b[k]) <= 1e-4 * max(1.0, abs(a[k])), (k, a[k], b[k])


def test_fresh_run_into_a_used_folder_is_refused_unless_overwrite(tmp_path):
    spec = _spec(tmp_path)
    out = tmp_path / "run"
    r = CliRunner().invoke(main, ["train", spec, "--epochs", "2", "--out", str(out), "--no-progress"])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(main, ["train", spec, "--epochs", "1", "--out", str(out), "--no-progress"])
    assert r.exit_code == 1 and "is not empty" in r.output and "--overwrite" in r.output
    assert "Traceback" not in r.output
    assert (out / "epoch-002.safetensors").exists()          # nothing was touched
    r = CliRunner().invoke(main, ["train", spec, "--epochs", "1", "--out", str(out), "--overwrite",
                                  "--no-progress"])
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in out.iterdir()) == ["best.safetensors", "epoch-001.safetensors", "metrics.jsonl"]
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 1


def test_resume_refuses_a_checkpoint_of_another_spec(tmp_path):
    out = tmp_path / "run"
    dlc.train(_spec(tmp_path, width=16), epochs=1, out=str(out), progress=False)
    wider = _spec(tmp_path, width=24)                    # same file name, a changed layer width
    with pytest.raises(DlcError, match=r"other parameters than the model.*h\.weight"):
        dlc.train(wider, epochs=2, out=str(out), resume=True, progress=False)
    _write(tmp_path / "tiny.dln", TINY.format(width=16, lr=1e-2, batch=128) + "\n# an edit\n")
    with pytest.raises(DlcError, match="another version of the spec"):
        dlc.train(str(tmp_path / "tiny.dln"), epochs=2, out=str(out), resume=True, progress=False)
    # a checkpoint of symbolic training does not resume as torch autograd
    pytest.importorskip("torch")
    _write(tmp_path / "tiny.dln", TINY.format(width=16, lr=1e-2, batch=128))
    with pytest.raises(DlcError, match="optimizer state"):
        dlc.train(str(tmp_path / "tiny.dln"), epochs=2, out=str(out), resume=True, progress=False,
                  backend="torch")


def test_resume_repairs_a_stale_best_and_removes_orphaned_temps(tmp_path):
    spec = _spec(tmp_path)
    out = tmp_path / "run"
    r = dlc.train(spec, epochs=2, out=str(out), progress=False)
    assert r.best["epoch"] == 2, r.history       # the second epoch improved
    # a kill between epoch 2's checkpoint and the best write: best still holds epoch 1
    from dlc.runtime.weights import save_weights
    e1 = load_checkpoint(out / "epoch-001.safetensors")
    save_weights(out / "best.safetensors", e1.weights, {"epoch": "1", "val_accuracy": "0"})
    orphan = out / ".epoch-003.safetensors.x1y2.tmp"
    orphan.write_bytes(b"half a checkpoint")
    dlc.train(spec, epochs=2, out=str(out), resume=True, progress=False)
    assert not orphan.exists()
    e2 = load_checkpoint(out / "epoch-002.safetensors")
    best = load_weights(out / "best.safetensors")
    for k in e2.weights:
        assert np.array_equal(best[k], e2.weights[k]), k


def test_non_finite_training_stops_with_an_error(tmp_path):
    spec = _spec(tmp_path, lr=1e30)
    r = CliRunner().invoke(main, ["train", spec, "--out", str(tmp_path / "run"), "--no-progress"])
    assert r.exit_code == 1, r.output
    assert "non-finite" in r.output or "the loss became" in r.output
    assert "lower the learning rate" in r.output
    # no checkpoint holds NaN
    assert not list((tmp_path / "run").glob("epoch-*.safetensors"))


@pytest.mark.filterwarnings("ignore:overflow encountered in cast")
def test_a_parameter_becoming_non_finite_is_caught_before_the_loss_shows_it(tmp_path):
    """Adam with lr=inf: the first update makes every weight inf while the first loss was finite."""
    spec = _spec(tmp_path, lr="1e39")
    with pytest.raises(DlcError, match=r"parameter '.*' became non-finite at epoch 1, step 1"):
        dlc.train(spec, progress=False)


def test_drop_last_from_the_train_section_and_the_cli(tmp_path):
    from dlc.runtime.data import load_dataset
    n_train = len(load_dataset("digits", seed=0).train[0])
    batch = 128
    assert n_train % batch                       # a short last batch exists
    spec = _spec(tmp_path, batch=batch)
    kept = dlc.train(spec, epochs=1, progress=False)
    assert kept.history[-1]["step"] == -(-n_train // batch)
    dropped = dlc.train(spec, epochs=1, progress=False, drop_last=True)
    assert dropped.history[-1]["step"] == n_train // batch
    text = (tmp_path / "tiny.dln").read_text().replace("batch     = 128", "batch     = 128\n    drop_last = true")
    _write(tmp_path / "tiny.dln", text)
    assert dlc.train(spec, epochs=1, progress=False).history[-1]["step"] == n_train // batch
    r = CliRunner().invoke(main, ["train", spec, "--epochs", "1", "--keep-last", "--out", str(tmp_path / "r"),
                                  "--no-progress"])
    assert r.exit_code == 0, r.output
    rec = json.loads((tmp_path / "r" / "metrics.jsonl").read_text().splitlines()[-1])
    assert rec["step"] == -(-n_train // batch)


def test_backend_registry_errors_are_one_line(monkeypatch):
    from dlc import backends
    with pytest.raises(DlcError, match="unknown backend 'jax'") as e:
        backends.get_backend("jax")
    assert "numpy, torch, tvm" in e.value.hint
    import importlib.util
    real = importlib.util.find_spec
    monkeypatch.setattr(backends, "_LOADED", {})
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "tvm" else real(n, *a))
    with pytest.raises(DlcError, match="needs tvm") as e:
        backends.get_backend("tvm")
    assert e.value.hint == "pip install 'dlc[tvm]'"
    r = CliRunner().invoke(main, ["run", str(ROOT / "specs/mlp.dln"), "--backend", "jax"])
    assert r.exit_code == 1 and "unknown backend 'jax'" in r.output and "Traceback" not in r.output


def test_importing_dlc_imports_no_backend_dependency():
    code = ("import sys, dlc, dlc.api, dlc.trainer, dlc.bench, dlc.cli, dlc.backends; "
            "from dlc.backends import get_backend; get_backend('numpy'); "
            "bad = [m for m in ('torch', 'tvm') if m in sys.modules]; assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_bench_dispatches_through_the_registry(tmp_path):
    r = CliRunner().invoke(main, ["bench", str(ROOT / "specs/mlp.dln"), "--backend", "numpy", "--repeat", "2",
                                  "--warmup", "0", "--json"])
    assert r.exit_code == 0, r.output
    res = json.loads(r.output)
    assert res["backend"] == "numpy" and len(res["times_ms"]) == 2 and res["median_ms"] > 0


def test_alternating_steps_run_in_the_same_loop_and_resume_bitwise(tmp_path):
    gan = str(ROOT / "specs/gan.dln")
    straight, split = tmp_path / "straight", tmp_path / "split"
    a = dlc.train(gan, epochs=2, out=str(straight), progress=False)
    assert sorted(p.name for p in straight.iterdir()) == ["epoch-001.safetensors", "epoch-002.safetensors",
                                                          "metrics.jsonl"]    # no validation, so no best
    assert {"discriminator_loss", "generator_loss"} <= set(a.history[-1])
    dlc.train(gan, epochs=1, out=str(split), progress=False)
    b = dlc.train(gan, epochs=2, out=str(split), resume=True, progress=False)
    assert b.epochs_run == 1 and b.history[-1]["step"] == a.history[-1]["step"]
    ca, cb = load_checkpoint(straight / "epoch-002.safetensors"), load_checkpoint(split / "epoch-002.safetensors")
    for k in ca.weights:
        assert np.array_equal(ca.weights[k], cb.weights[k]), k
    for k in ca.optimizer_state:
        assert np.array_equal(ca.optimizer_state[k], cb.optimizer_state[k]), k
    assert a.history[-1]["generator_loss"] == b.history[-1]["generator_loss"]


@pytest.mark.parametrize("backend", ["torch", "tvm"])
def test_model_run_and_grad_dispatch_through_the_registry(backend):
    pytest.importorskip(backend)
    m = dlc.load(ROOT / "specs/mlp.dln")
    rng = np.random.default_rng(0)
    x = {"x": rng.standard_normal((3, 64)).astype(np.float32)}
    w = m.init_weights(1)
    ref = m.run(x, w)["output"]
    np.testing.assert_allclose(m.run(x, w, backend=backend)["output"], ref, rtol=1e-4, atol=1e-5)
    y = rng.integers(0, 10, 3)
    g_ref = m.grad(x, w, label=y)
    got = m.grad(x, w, label=y, backend=backend)
    assert abs(got["loss"] - g_ref["loss"]) < 1e-5
    for k in w:
        np.testing.assert_allclose(got[k], g_ref[k], rtol=1e-4, atol=1e-6, err_msg=k)
