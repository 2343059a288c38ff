"""The runtime pieces together: a NumPy softmax regression on digits, trained
straight through and trained with a stop + resume from a checkpoint, must give
bit-identical weights and metrics (shuffle, augmentation and state all derive
from the seed, the epoch and the checkpoint)."""
import importlib.util

import numpy as np
import pytest
from dlc.runtime.checkpoint import load_checkpoint, save_checkpoint
from dlc.runtime.data import augment, batches, epoch_rng, load_dataset
from dlc.runtime.early_stopping import EarlyStopping
from dlc.runtime.metrics import MetricsLog, accuracy, read_metrics

pytestmark = pytest.mark.skipif(importlib.util.find_spec("sklearn") is None, reason="needs scikit-learn")
AUG = [("random_crop", {"size": 8, "padding": 1}), ("hflip", {"p": 0.5})]


def _run(ds, out, epochs, *, resume=False, seed=3, lr=0.1):
    (xt, yt), (xv, yv) = ds.train, ds.val
    if resume:
        ck = load_checkpoint(out / "last.safetensors")
        w, b = ck.weights["w"], ck.weights["b"]
        mom = ck.optimizer_state["momentum"]
        start, step = ck.epoch, ck.step
        stopper = EarlyStopping.from_dict(ck.extra["early_stopping"])
    else:
        rng = np.random.default_rng(seed)
        w, b = (0.01 * rng.standard_normal((64, 10))).astype(np.float32), np.zeros(10, np.float32)
        mom = {"w": np.zeros_like(w), "b": np.zeros_like(b)}
        start, step, stopper = 0, 0, EarlyStopping(50)
    with MetricsLog(out, resume_epoch=start if resume else None) as log:
        for epoch in range(start, epochs):
            aug_rng = epoch_rng(seed, epoch)
            for xb, yb in batches(xt, yt, 64, shuffle=True, seed=seed, epoch=epoch):
                xb = augment(xb, AUG, aug_rng).reshape(len(xb), 64)
                z = xb @ w + b
                p = np.exp(z - z.max(1, keepdims=True))
                p /= p.sum(1, keepdims=True)
                p[np.arange(len(yb)), yb] -= 1
                gw, gb = xb.T @ p / len(yb), p.mean(0)
                mom["w"] = 0.9 * mom["w"] + gw
                mom["b"] = 0.9 * mom["b"] + gb
                w, b = w - lr * mom["w"], b - lr * mom["b"]
                step += 1
            acc = accuracy(xv.reshape(len(xv), 64) @ w + b, yv)
            stopper.update(acc)
            log.append({"epoch": epoch + 1, "step": step, "val_accuracy": acc})
            save_checkpoint(out / "last.safetensors", weights={"w": w, "b": b}, optimizer_state={"momentum": mom},
                            step=step, epoch=epoch + 1, rng_state=None,
                            extra={"early_stopping": stopper.to_dict()})
    return w, b


def test_stop_and_resume_is_bit_identical(tmp_path):
    ds = load_dataset("digits_images")
    a, b = tmp_path / "straight", tmp_path / "resumed"
    wa, ba = _run(ds, a, 5)
    _run(ds, b, 2)                                            # "killed" after epoch 2's checkpoint ...
    with MetricsLog(b, resume_epoch=2) as log:                 # ... a line of epoch 3 had been written
        log.append({"epoch": 3, "step": -1, "val_accuracy": 0.0})
    wb, bb = _run(ds, b, 5, resume=True)
    np.testing.assert_array_equal(wa, wb)
    np.testing.assert_array_equal(ba, bb)
    assert read_metrics(a) == read_metrics(b)
    assert [r["epoch"] for r in read_metrics(b)] == [1, 2, 3, 4, 5]
    assert read_metrics(a)[-1]["val_accuracy"] > 0.5           # it learns (flipped digits make it hard)
    ca, cb = load_checkpoint(a / "last.safetensors"), load_checkpoint(b / "last.safetensors")
    assert ca.step == cb.step == 5 * 23 and ca.extra == cb.extra
