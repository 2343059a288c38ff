"""Training on the torch backend: accuracy, symbolic == autograd gradients,
and DistributedDataParallel over gloo with two processes."""
import json

import numpy as np
import pytest

import dlc

torch = pytest.importorskip("torch")
pytest.importorskip("sklearn")


def test_mlp_trains_to_97_percent_with_torch_autograd(tmp_path):
    r = dlc.train("specs/mlp.dln", data="digits", epochs=30, out=str(tmp_path / "run"), progress=False,
                  backend="torch", grad="autograd")
    best = max(h["val_accuracy"] for h in r.history)
    assert best >= 0.97, best
    assert (tmp_path / "run" / "metrics.jsonl").exists()


def test_symbolic_backward_lowered_to_torch_equals_autograd():
    from dlc.backends.torch.funcgen import compile_function
    from dlc.backends.torch.modgen import load_module
    from dlc.backends.torch.training import TorchStepRunner
    m = dlc.load("specs/lenet5.dln", bind={"N": 4})
    w = m.init_weights(seed=1)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 1, 32, 32)).astype(np.float32)
    y = rng.integers(0, 10, 4)
    # dlc's symbolic backward, lowered to torch code
    g, _ = m.grad_graph(bind={"N": 4})
    feed = {"image": x, "label": y}
    sym, _ = TorchStepRunner(g)(feed, w)
    # torch autograd through the generated module and the lowered loss
    module = load_module(m)
    module.load_state_dict({k: torch.from_numpy(v) for k, v in w.items()})
    module.train()
    loss_g = m.loss_spec().graph("train")
    loss_fn = compile_function(loss_g)
    xt = torch.from_numpy(x)
    args = {"out:output": module(xt), "image": xt, "label": torch.from_numpy(y)}
    (loss,), _ = loss_fn(*[args[v.name] for v in loss_g.inputs], {})
    loss.backward()
    assert abs(float(loss.detach()) - float(sym["loss"])) < 1e-5
    for name, p in module.named_parameters():
        np.testing.assert_allclose(sym[f"grad:{name}"], p.grad.numpy(), rtol=1e-4, atol=1e-6, err_msg=name)
    # and both equal the NumPy backend's symbolic gradients
    ref = m.grad({"image": x}, w, label=y)
    for name, p in module.named_parameters():
        np.testing.assert_allclose(ref[name], p.grad.numpy(), rtol=1e-4, atol=1e-6, err_msg=name)


def test_ddp_two_ranks_match_single_process(tmp_path):
    one = dlc.train("specs/mlp.dln", data="digits", epochs=2, batch=64, out=str(tmp_path / "one"),
                    progress=False, backend="torch", grad="autograd")
    two = dlc.train("specs/mlp.dln", data="digits", epochs=2, batch=64, out=str(tmp_path / "two"),
                    progress=False, backend="torch", grad="autograd", nproc=2)
    from dlc.runtime.weights import load_weights
    r0 = load_weights(tmp_path / "two" / "rank0.safetensors")
    r1 = load_weights(tmp_path / "two" / "rank1.safetensors")
    for k in r0:
        np.testing.assert_array_equal(r0[k], r1[k], err_msg=f"ranks disagree on {k}")
    single = one.weights
    for k in r0:
        np.testing.assert_allclose(r0[k], single[k], rtol=1e-4, atol=1e-5, err_msg=k)
    a = [h["train_loss"] for h in one.history]
    b = [h["train_loss"] for h in two.history]
    np.testing.assert_allclose(a, b, rtol=1e-4)
    lines = (tmp_path / "two" / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 2 and "val_accuracy" in json.loads(lines[-1])


def test_torchrun_ranks_join_with_env_and_write_one_run_folder(tmp_path):
    """Under torchrun (RANK, WORLD_SIZE, MASTER_ADDR in the environment) each
    process is one rank of the same loop; rank 0 writes the run folder."""
    import subprocess
    import sys
    from pathlib import Path

    from dlc.runtime.weights import load_weights
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "dlc.cli", "train", "specs/mlp.dln", "--backend", "torch", "--epochs", "1", "--batch", "64",
           "--out", str(out), "--no-progress"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=Path(__file__).resolve().parents[3])
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.count("trained 1 epoch(s)") == 1, r.stdout
    assert sorted(p.name for p in out.iterdir()) == ["best.safetensors", "epoch-001.safetensors", "metrics.jsonl",
                                                     "rank0.safetensors", "rank1.safetensors"]
    r0, r1 = load_weights(out / "rank0.safetensors"), load_weights(out / "rank1.safetensors")
    for k in r0:
        np.testing.assert_array_equal(r0[k], r1[k], err_msg=k)
