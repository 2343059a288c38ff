"""Early stopping: stop when a validation metric has not improved for
`patience` epochs (the train section's `early_stopping = 5`).

    stopper = EarlyStopping(5, mode="max")       # e.g. validation accuracy
    for epoch in ...:
        if stopper.update(val_acc):
            break
        if stopper.improved:
            save best weights

Its state goes into checkpoints with `to_dict()` / `EarlyStopping.from_dict()`.
"""
from __future__ import annotations

import math

from ..errors import DlcValueError


class EarlyStopping:
    def __init__(self, patience: int, mode: str = "max", min_delta: float = 0.0):
        if isinstance(patience, bool) or not isinstance(patience, int) or patience <= 0:
            raise DlcValueError(f"early stopping patience must be a positive int, got {patience!r}",
                                None, "write e.g. `early_stopping = 5`")
        if mode not in ("max", "min"):
            raise DlcValueError(f"early stopping mode must be 'max' or 'min', got {mode!r}")
        if min_delta < 0:
            raise DlcValueError(f"min_delta must be >= 0, got {min_delta}")
        self.patience = patience
        self.mode = mode
        self.min_delta = float(min_delta)
        self.best: float | None = None    # best value seen so far
        self.best_index: int | None = None  # which update (0-based) gave it
        self.bad_epochs = 0               # updates since the last improvement
        self.updates = 0
        self.improved = False             # did the last update improve on the best?
        self.stopped = False

    def update(self, value) -> bool:
        """Record one epoch's metric; True when training should stop.

        NaN never counts as an improvement."""
        value = float(value)
        if math.isnan(value):
            better = False
        elif self.best is None:
            better = True
        elif self.mode == "max":
            better = value > self.best + self.min_delta
        else:
            better = value < self.best - self.min_delta
        self.improved = better
        if better:
            self.best, self.best_index, self.bad_epochs = value, self.updates, 0
        else:
            self.bad_epochs += 1
        self.updates += 1
        self.stopped = self.bad_epochs >= self.patience
        return self.stopped

    def to_dict(self) -> dict:
        """JSON-serialisable state (for a checkpoint's `extra`)."""
        return {"patience": self.patience, "mode": self.mode, "min_delta": self.min_delta,
                "best": self.best, "best_index": self.best_index, "bad_epochs": self.bad_epochs,
                "updates": self.updates, "improved": self.improved, "stopped": self.stopped}

    @classmethod
    def from_dict(cls, d: dict) -> EarlyStopping:
        es = cls(int(d["patience"]), d.get("mode", "max"), float(d.get("min_delta", 0.0)))
        es.best = None if d.get("best") is None else float(d["best"])
        es.best_index = d.get("best_index")
        es.bad_epochs = int(d.get("bad_epochs", 0))
        es.updates = int(d.get("updates", 0))
        es.improved = bool(d.get("improved", False))
        es.stopped = bool(d.get("stopped", False))
        return es

    def __repr__(self) -> str:
        return (f"EarlyStopping(patience={self.patience}, mode={self.mode!r}, best={self.best}, "
                f"bad_epochs={self.bad_epochs})")
