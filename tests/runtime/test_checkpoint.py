"""Checkpoints: one safetensors file, exact round trip, and kill -9 safety."""
import json
import os
import random
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from dlc.runtime.checkpoint import (
    Checkpoint,
    load_checkpoint,
    remove_stale_temps,
    save_checkpoint,
)
from dlc.runtime.early_stopping import EarlyStopping
from dlc.runtime.weights import save_weights

from dlc.errors import DlcError


def _eq(a, b):
    """Deep equality for nested state with arrays (dtype and shape included)."""
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        a, b = np.asarray(a), np.asarray(b)
        return a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b, equal_nan=a.dtype.kind == "f")
    if isinstance(a, dict):
        return isinstance(b, dict) and list(a) == list(b) and all(_eq(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(_eq(x, y) for x, y in zip(a, b))
    if isinstance(a, float) and np.isnan(a):
        return isinstance(b, float) and np.isnan(b)
    return type(a) is type(b) and a == b


def test_round_trip_everything(tmp_path):
    rng = np.random.default_rng(0)
    weights = {
        "fc1.weight": rng.standard_normal((16, 8)).astype(np.float32),
        "fc1.bias": np.zeros(16, np.float32),
        "bn.num_batches_tracked": np.array(7, np.int64),          # 0-d
        "emb/table": rng.standard_normal((4, 3)),                  # float64, "/" in the name
        "half": rng.standard_normal(5).astype(np.float16),
        "mask": rng.random(6) < 0.5,
    }
    optim = {
        "name": "adam", "t": 12, "lr": 1e-3, "betas": (0.9, 0.999), "amsgrad": False,
        "m": {k: np.full(v.shape, 0.5, np.float32) for k, v in weights.items() if v.dtype == np.float32},
        "v": {k: np.full(v.shape, 0.25, np.float32) for k, v in weights.items() if v.dtype == np.float32},
        "groups": [{"lr": 0.1, "params": ["fc1.weight"]}, {"lr": float("nan"), "params": []}],
        "inf": float("-inf"), "none": None, "big": 2 ** 100,
    }
    gen = np.random.default_rng(42)
    gen.random(3)
    extra = {"early_stopping": EarlyStopping(3).to_dict(), "spec": "specs/mlp.dln",
             "history": [0.5, 0.25], "best_weights": {"fc1.bias": np.ones(16, np.float32)}}
    path = tmp_path / "ckpt.safetensors"
    save_checkpoint(path, weights=weights, optimizer_state=optim, step=345, epoch=6,
                    rng_state=gen.bit_generator.state, extra=extra)
    ck = load_checkpoint(path)
    assert isinstance(ck, Checkpoint)
    assert ck.step == 345 and ck.epoch == 6
    assert _eq(ck.weights, weights)
    assert _eq(ck.optimizer_state, optim)
    assert _eq(ck.extra, extra)
    assert ck.rng_state == gen.bit_generator.state
    # the restored RNG continues the same stream
    again = np.random.default_rng()
    again.bit_generator.state = ck.rng_state
    np.testing.assert_array_equal(again.random(5), gen.random(5))
    assert EarlyStopping.from_dict(ck.extra["early_stopping"]).patience == 3


def test_file_layout_is_plain_safetensors(tmp_path):
    from safetensors import safe_open
    path = tmp_path / "c.safetensors"
    save_checkpoint(path, weights={"w": np.ones(3, np.float32)}, optimizer_state={"m": {"w": np.zeros(3)}, "t": 1},
                    step=1, epoch=0, rng_state=None, extra={"note": "hi"})
    with safe_open(str(path), framework="numpy") as f:
        assert sorted(f.keys()) == ["optim/m/w", "weights/w"]
        meta = f.metadata()
    assert meta["format"] == "dlc-checkpoint" and meta["step"] == "1" and meta["epoch"] == "0"
    assert all(isinstance(v, str) for v in meta.values())
    assert json.loads(meta["extra"]) == {"d": {"note": {"v": "hi"}}}
    raw = path.read_bytes()
    assert b"\x80\x04" not in raw[:16] and raw[8:9] == b"{"      # a JSON header, not a pickle
    assert load_checkpoint(path).rng_state is None
    assert list(tmp_path.iterdir()) == [path]                    # no temporary file left


def test_empty_state_and_key_collisions(tmp_path):
    path = tmp_path / "e.safetensors"
    save_checkpoint(path, weights={}, optimizer_state={}, step=0, epoch=0, rng_state=None, extra={})
    ck = load_checkpoint(path)
    assert ck.weights == {} and ck.optimizer_state == {} and ck.extra == {}
    state = {"a/b": np.zeros(2), "a": {"b": np.ones(2)}}     # both flatten to optim/a/b
    save_checkpoint(path, weights={}, optimizer_state=state, step=0, epoch=0, rng_state=None, extra={})
    assert _eq(load_checkpoint(path).optimizer_state, state)


def test_bad_state_and_bad_files(tmp_path):
    path = tmp_path / "x.safetensors"
    with pytest.raises(DlcError, match="cannot store"):
        save_checkpoint(path, weights={}, optimizer_state={"f": object()}, step=0, epoch=0, rng_state=None, extra={})
    with pytest.raises(DlcError, match="keys must be strings"):
        save_checkpoint(path, weights={}, optimizer_state={1: 2}, step=0, epoch=0, rng_state=None, extra={})
    assert not path.exists() and list(tmp_path.iterdir()) == []
    with pytest.raises(DlcError, match="no such checkpoint"):
        load_checkpoint(path)
    path.write_bytes(b"garbage" * 10)
    with pytest.raises(DlcError, match="cannot read checkpoint"):
        load_checkpoint(path)
    save_weights(path, {"w": np.ones(2, np.float32)})
    with pytest.raises(DlcError, match="not a dlc checkpoint"):
        load_checkpoint(path)


# kill -9 ---------------------------------------------------------------------------------
WRITER = r"""
import sys
import numpy as np
from dlc.runtime.checkpoint import save_checkpoint

path, version = sys.argv[1], int(sys.argv[2])
shapes = [(1 << 20,)] * 6                       # 6 x 4 MiB of weights + optimizer state
print("ready", flush=True)
while True:
    v = np.float32(version)
    weights = {f"w{i}": np.full(s, v) for i, s in enumerate(shapes)}
    optim = {"m": {f"w{i}": np.full(s, v) for i, s in enumerate(shapes[:2])}, "t": version}
    save_checkpoint(path, weights=weights, optimizer_state=optim, step=version, epoch=version,
                    rng_state={"version": version}, extra={"version": version, "pad": "x" * (version % 97)})
    version += 1
"""


def _check_complete(path) -> int:
    ck = load_checkpoint(path)
    v = ck.step
    assert ck.epoch == v and ck.extra["version"] == v and ck.rng_state == {"version": v}
    assert ck.extra["pad"] == "x" * (v % 97) and ck.optimizer_state["t"] == v
    assert len(ck.weights) == 6 and len(ck.optimizer_state["m"]) == 2
    for a in list(ck.weights.values()) + list(ck.optimizer_state["m"].values()):
        assert a.shape == (1 << 20,) and a.dtype == np.float32
        assert a[0] == v and a[-1] == v and (a == v).all()
    return v


def _temps(folder):
    return {e.name for e in os.scandir(folder) if e.name.endswith(".tmp")}


def _wait_for_write(folder, nth: int, timeout: float = 5.0) -> bool:
    """Poll until the writer has opened its nth (0-based) temporary file."""
    names: set[str] = set()
    t_end = time.monotonic() + timeout
    while time.monotonic() < t_end:
        names |= _temps(folder)
        if len(names) > nth:
            return True
        time.sleep(0.0005)
    return False


@pytest.mark.skipif(os.name != "posix", reason="needs SIGKILL")
def test_kill_9_never_leaves_a_half_written_checkpoint(tmp_path):
    """SIGKILL a process that keeps overwriting a 32 MiB checkpoint: at random
    moments, and right after it has opened a temporary file (mid-write).  The
    target must always load as one complete version, the old or a newer one."""
    path = tmp_path / "ckpt.safetensors"
    save_checkpoint(path, weights={f"w{i}": np.zeros(1 << 20, np.float32) for i in range(6)},
                    optimizer_state={"m": {f"w{i}": np.zeros(1 << 20, np.float32) for i in range(2)}, "t": 0},
                    step=0, epoch=0, rng_state={"version": 0}, extra={"version": 0, "pad": ""})
    seen = [_check_complete(path)]
    rnd = random.Random(1234)
    t_end = time.monotonic() + 14.0
    kills = mid_write = 0
    while kills < 10 and time.monotonic() < t_end:
        start = seen[-1] + 1
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(start)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            assert proc.stdout.readline().strip() == "ready", proc.stderr.read()
            if kills % 2:                             # mid-write: just after a temporary appears
                assert _wait_for_write(tmp_path, rnd.randint(0, 2)), "the writer never started a write"
                time.sleep(rnd.uniform(0.0, 0.01))
            else:                                     # any moment of the loop
                time.sleep(rnd.uniform(0.0, 0.6))
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            proc.stdout.close()
            proc.stderr.close()
        assert proc.returncode == -signal.SIGKILL
        kills += 1
        v = _check_complete(path)                 # loads, and is one whole version
        assert v == seen[-1] or v >= start        # the old one or a newer complete one
        seen.append(v)
        # only the target and, at most, the orphaned temporary of the killed write remain
        others = [p.name for p in tmp_path.iterdir() if p != path]
        assert len(others) <= 1 and all(n.startswith(".ckpt.safetensors.") and n.endswith(".tmp")
                                        for n in others), others
        mid_write += bool(others)
        assert remove_stale_temps(path) == [tmp_path / n for n in others]
        assert list(tmp_path.iterdir()) == [path]
    assert kills >= 6
    assert mid_write >= 1, "no kill landed inside a write"
    assert seen[-1] > 0, "the writer never completed a checkpoint"
