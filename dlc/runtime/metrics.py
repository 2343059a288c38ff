"""Training metrics: a crash-safe JSON-lines log and the metric functions.

    log = MetricsLog("runs/mlp")                 # -> runs/mlp/metrics.jsonl, fresh
    log.append({"epoch": 0, "loss": 0.31, "val_accuracy": 0.95})

    log = MetricsLog("runs/mlp", resume_epoch=4) # keep epochs <= 4, append after them

Every line is one JSON object, flushed and fsync'ed as it is written, so a
killed run loses at most the line being written; a torn last line is dropped
when the log is reopened.  Non-finite floats (a diverged loss) are written as
null, keeping each line strict JSON.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np

from ..errors import DlcValueError
from .atomic import atomic_write

FILENAME = "metrics.jsonl"


class MetricsLog:
    """Append-only `metrics.jsonl`.

    `path` is the file itself if it ends in `.jsonl`, else the run directory
    holding `metrics.jsonl`.  `resume_epoch=None` starts a fresh log (an old
    one is emptied); `resume_epoch=k` keeps the records of epochs <= k (and
    records without an epoch that precede the first later epoch) and drops
    everything after them, matching a run resumed from epoch k's checkpoint.
    """

    def __init__(self, path, *, resume_epoch: int | None = None):
        path = Path(path)
        self.path = path if path.suffix == ".jsonl" else path / FILENAME
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if resume_epoch is None:
            atomic_write(self.path, b"")
        else:
            self.truncate_after(resume_epoch)
        self._f = open(self.path, "a", encoding="utf-8")

    def append(self, record: dict) -> None:
        """Write one record as a line and force it to disk."""
        line = json.dumps(_clean(record), separators=(",", ":"), allow_nan=False)
        self._f.write(line + "\n")
        self._f.flush()
        os.fsync(self._f.fileno())

    log = append

    def records(self) -> list[dict]:
        return read_metrics(self.path)

    def truncate_after(self, epoch: int) -> None:
        """Drop every line from the first record with `"epoch" > epoch` on (atomically)."""
        kept = []
        for rec in read_metrics(self.path) if self.path.exists() else []:
            e = rec.get("epoch")
            if isinstance(e, (int, float)) and e > epoch:
                break
            kept.append(json.dumps(rec, separators=(",", ":")) + "\n")
        was_open = getattr(self, "_f", None)
        if was_open:
            was_open.flush()
        atomic_write(self.path, "".join(kept).encode("utf-8"))
        if was_open:                       # the old handle points at the replaced file
            was_open.close()
            self._f = open(self.path, "a", encoding="utf-8")

    def close(self) -> None:
        if not self._f.closed:
            self._f.close()

    def __enter__(self) -> MetricsLog:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def read_metrics(path) -> list[dict]:
    """The records of a metrics.jsonl (or its run directory); a torn or
    unparsable line ends the log (it can only be the last, interrupted one)."""
    path = Path(path)
    if path.suffix != ".jsonl":
        path = path / FILENAME
    out = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            if not line.endswith("\n"):
                break
            try:
                rec = json.loads(line)
            except ValueError:
                break
            if isinstance(rec, dict):
                out.append(rec)
    return out


def _clean(x):
    """JSON-ready: NumPy scalars/arrays to Python, non-finite floats to None."""
    if isinstance(x, dict):
        return {str(k): _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    if isinstance(x, np.ndarray):
        return _clean(x.tolist())
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


# metric functions -------------------------------------------------------------------
def accuracy(logits, labels) -> float:
    """Fraction of examples whose highest logit is the label.

    `logits` f[N, C] (or f[..., C] with labels [...]); labels are class
    indices, or one-hot/probabilities shaped like the logits.  Binary models
    with one logit per example (f[N] or f[N, 1]) count logit > 0 as class 1.
    """
    logits, labels = np.asarray(logits), np.asarray(labels)
    if logits.ndim == labels.ndim + 1 and logits.shape[-1] == 1 and logits.shape[:-1] == labels.shape:
        logits = logits[..., 0]
    if logits.shape == labels.shape and logits.ndim >= 2 and logits.shape[-1] > 1:
        labels = labels.argmax(axis=-1)              # one-hot or soft targets
    if logits.shape == labels.shape:                 # one logit per example: binary
        pred = (logits > 0).astype(np.int64)
    elif logits.ndim == labels.ndim + 1 and logits.shape[:-1] == labels.shape:
        pred = logits.argmax(axis=-1)
    else:
        raise DlcValueError(f"accuracy: logits of shape {logits.shape} do not fit labels of shape {labels.shape}")
    if pred.size == 0:
        return float("nan")
    return float(np.mean(pred == labels))


def mse(pred, target) -> float:
    pred, target = np.asarray(pred, np.float64), np.asarray(target, np.float64)
    return float(np.mean((pred.reshape(target.shape) - target) ** 2))


def mae(pred, target) -> float:
    pred, target = np.asarray(pred, np.float64), np.asarray(target, np.float64)
    return float(np.mean(np.abs(pred.reshape(target.shape) - target)))
