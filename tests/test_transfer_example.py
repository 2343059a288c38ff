"""The worked example of docs/training.md: train digits_cnn on the digits
0-4, give it a new classifier for the digits 5-9, freeze the convolutions,
fine-tune on 50 examples per class, and compare with training the same
model from scratch on the same 250 examples, on every backend.

What holds, and is asserted: the frozen convolutions are bitwise the
pretrained ones, and they carry what was learnt (the fine-tuned model beats
the same recipe over frozen *random* convolutions).  What does not hold on
this data (measured on numpy and torch, seeds 0-2, see docs/training.md): a
frozen 0-4 backbone beating full training from scratch on 250 examples of
5-9.  Both accuracies are printed (-s) and recorded in the docs."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import dlc
from dlc.trainer import train
from dlc.runtime.weights import load_weights

pytest.importorskip("sklearn")

ROOT = Path(__file__).resolve().parents[1]

# digits_cnn's convolutions under their names; a new classifier (fc1, head) for 5 classes
HEAD5 = """
model DigitsHead(image: f32[N, 1, 8, 8]) -> f32[N, 5] {
    example N = 1
    conv1 = conv2d(image, 16, kernel=3, padding=1) |> relu
    pool1 = maxpool2d(conv1, 2)
    conv2 = conv2d(pool1, 32, kernel=3, padding=1) |> relu
    pool2 = maxpool2d(conv2, 2) |> flatten
    hidden = dense(pool2, 64, name="fc1") |> relu |> dropout(0.2)
    head = dense(hidden, 5)
    return head
}

train DigitsHead on npz {
    loss      = cross_entropy(head, label)
    optimizer = adam(lr=5e-3)
    epochs    = 6
    batch     = 32
}
"""


def split_digits(folder: Path) -> tuple[Path, Path]:
    """digits 0-4 (80/20) and, for 5-9 relabelled 0-4, 50 training examples per class
    (the rest validates)."""
    from sklearn.datasets import load_digits
    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype(np.float32).reshape(-1, 1, 8, 8)
    idx = np.random.default_rng(0).permutation(len(x))
    x, y = x[idx], y[idx]
    xl, yl = x[y < 5], y[y < 5]
    n = len(xl) * 4 // 5
    base = folder / "digits0to4.npz"
    np.savez(base, x_train=xl[:n], y_train=yl[:n], x_val=xl[n:], y_val=yl[n:])
    xh, yh = x[y >= 5], y[y >= 5] - 5
    take = np.concatenate([np.flatnonzero(yh == c)[:50] for c in range(5)])
    rest = np.setdiff1d(np.arange(len(xh)), take)
    small = folder / "digits5to9_small.npz"
    np.savez(small, x_train=xh[take], y_train=yh[take], x_val=xh[rest], y_val=yh[rest])
    return base, small


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    d = tmp_path_factory.mktemp("transfer")
    base, small = split_digits(d)
    train(ROOT / "specs" / "digits_cnn.dln", data="npz", data_path=str(base), epochs=8,
                      out=str(d / "base"), progress=False)
    head = d / "head5.dln"
    head.write_text(HEAD5)
    return d, small, head


def fine_tune_and_scratch(pretrained, backend: str) -> dict:
    """Validation accuracy (on the 646 other 5-9 digits) of: fine-tuned from the
    pretrained convolutions, frozen; the same over frozen random convolutions;
    from scratch."""
    d, small, head = pretrained
    w = load_weights(d / "base" / "best.safetensors")
    common = dict(data_path=str(small), backend=backend, progress=False)
    ft = train(head, **common, out=str(d / f"ft-{backend}"), weights=str(d / "base" / "best.safetensors"),
               allow_missing=("fc1.*", "head.*"), allow_unused=("hidden.*", "output.*"), freeze=("conv*",))
    random_frozen = train(head, **common, freeze=("conv*",))
    scratch = train(head, **common)
    for k in ("conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias"):
        np.testing.assert_array_equal(ft.weights[k], w[k])
    acc = {"fine_tuned": ft.history[-1]["val_accuracy"], "random_frozen": random_frozen.history[-1]["val_accuracy"],
           "scratch": scratch.history[-1]["val_accuracy"]}
    print(f"{backend}: " + ", ".join(f"{k} {v:.4f}" for k, v in acc.items()))
    return acc


@pytest.mark.parametrize("backend", ["numpy", "torch", pytest.param("tvm", marks=pytest.mark.slow)])
def test_fine_tuning_a_frozen_backbone(pretrained, backend):
    pytest.importorskip({"numpy": "numpy", "torch": "torch", "tvm": "tvm"}[backend])
    acc = fine_tune_and_scratch(pretrained, backend)
    assert acc["fine_tuned"] > acc["random_frozen"] + 0.01, acc
    assert acc["scratch"] > 0.5 and acc["fine_tuned"] > 0.5, acc     # both learnt (chance is 0.2)
