"""Live training progress: a rich progress bar on a terminal, one plain line
per epoch elsewhere (CI logs, pipes), nothing when disabled.

    with TrainProgress(epochs, steps_per_epoch) as p:
        for epoch in range(epochs):
            for i, (xb, yb) in enumerate(...):
                p.update(epoch, i + 1, loss=loss, lr=lr, samples=len(xb))
            p.end_epoch(epoch, {"val_accuracy": acc})

`epoch` is the 0-based epoch index (shown 1-based); `step` counts the steps
done in that epoch so far (1 after its first batch); `samples` is the number
of examples in that step.  The bar shows the epoch, step, the epoch's mean
loss so far, the learning rate, throughput (samples/s) and the time left for
the whole run.  Output goes to stderr unless a rich `Console` is given.
"""
from __future__ import annotations

import math
import time

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn


class TrainProgress:
    def __init__(self, total_epochs: int, steps_per_epoch: int, enabled: bool = True, *,
                 start_epoch: int = 0, console: Console | None = None, live: bool | None = None):
        self.total_epochs = int(total_epochs)
        self.steps_per_epoch = max(1, int(steps_per_epoch))
        self.enabled = enabled
        self.start_epoch = int(start_epoch)        # a resumed run starts later; the ETA counts from here
        self.console = console or Console(stderr=True)
        self.live = (self.console.is_terminal and not self.console.is_dumb_terminal) if live is None else live
        self._progress: Progress | None = None
        self._task = None
        self._t0 = self._epoch_t0 = time.perf_counter()
        self._reset_epoch()
        self.lr: float | None = None

    # context --------------------------------------------------------------------------
    def __enter__(self) -> TrainProgress:
        self._t0 = self._epoch_t0 = time.perf_counter()
        if self.enabled and self.live:
            self._progress = Progress(
                TextColumn("[bold]epoch {task.fields[epoch]}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("loss {task.fields[loss]}"),
                TextColumn("lr {task.fields[lr]}"),
                TextColumn("{task.fields[rate]} samples/s"),
                TextColumn("left {task.fields[left]}"),
                console=self.console, transient=True)
            self._progress.start()
            self._task = self._progress.add_task("train", total=self.steps_per_epoch, **self._fields(self.start_epoch))
        return self

    def __exit__(self, *exc) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    # reporting --------------------------------------------------------------------------
    def update(self, epoch: int, step: int, *, loss=None, lr=None, samples: int = 0) -> None:
        """Record that `step` steps of epoch `epoch` (0-based) are done."""
        if epoch != self._epoch:
            self._reset_epoch(epoch)
        self._steps_done = min(int(step), self.steps_per_epoch)
        n = int(samples)
        self._samples += n
        if loss is not None:
            w = n if n > 0 else 1
            self._loss_sum += float(loss) * w
            self._loss_w += w
        if lr is not None:
            self.lr = float(lr)
        if self._progress is not None:
            self._progress.update(self._task, completed=self._steps_done, **self._fields(epoch))

    def end_epoch(self, epoch: int, metrics: dict | None = None) -> str:
        """Close epoch `epoch`: prints (and returns) its summary line."""
        if epoch != self._epoch:
            self._reset_epoch(epoch)
        self._steps_done = self.steps_per_epoch
        parts = [f"epoch {epoch + 1}/{self.total_epochs}"]
        if self._loss_w:
            parts.append(f"loss {_fmt(self._loss_sum / self._loss_w)}")
        if self.lr is not None:
            parts.append(f"lr {self.lr:.3g}")
        for k, v in (metrics or {}).items():
            parts.append(f"{k} {_fmt(v)}")
        if self._samples:
            parts.append(f"{self._rate():.0f} samples/s")
        parts.append(f"{time.perf_counter() - self._epoch_t0:.1f}s")
        left = self._left(epoch)
        if left is not None and epoch + 1 < self.total_epochs:
            parts.append(f"left {_clock(left)}")
        line = "  ".join(parts)
        if self.enabled:
            self.console.print(line, highlight=False, markup=False, soft_wrap=True)
        self._reset_epoch(epoch + 1)
        if self._progress is not None:
            self._progress.reset(self._task, total=self.steps_per_epoch, **self._fields(epoch + 1))
        return line

    # internals -------------------------------------------------------------------------
    def _reset_epoch(self, epoch: int | None = None) -> None:
        self._epoch = self.start_epoch if epoch is None else epoch
        self._epoch_t0 = time.perf_counter()
        self._steps_done = 0
        self._samples = 0
        self._loss_sum = 0.0
        self._loss_w = 0

    def _rate(self) -> float:
        dt = time.perf_counter() - self._epoch_t0
        return self._samples / dt if dt > 0 else 0.0

    def _left(self, epoch: int) -> float | None:
        """Seconds left in the run, from the average step time since the start."""
        done = (epoch - self.start_epoch) * self.steps_per_epoch + self._steps_done
        total = (self.total_epochs - self.start_epoch) * self.steps_per_epoch
        if done <= 0:
            return None
        return (time.perf_counter() - self._t0) / done * max(0, total - done)

    def _fields(self, epoch: int) -> dict:
        loss = _fmt(self._loss_sum / self._loss_w) if self._loss_w else "-"
        left = self._left(epoch)
        return {"epoch": f"{min(epoch, self.total_epochs - 1) + 1}/{self.total_epochs}", "loss": loss,
                "lr": "-" if self.lr is None else f"{self.lr:.3g}",
                "rate": f"{self._rate():.0f}", "left": "-" if left is None else _clock(left)}


def _fmt(v) -> str:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return str(v)
    if isinstance(v, (int,)) and not isinstance(v, bool):
        return str(v)
    return f"{f:.4f}" if math.isfinite(f) and 1e-3 <= abs(f) < 1e4 else f"{f:.4g}"


def _clock(seconds: float) -> str:
    s = round(seconds)
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class LoadProgress:
    """Progress of a first pass over a data set's files (decoding images into
    the cache): a rich bar on a terminal, one line at the start and one at the
    end elsewhere, nothing when disabled.

        with LoadProgress(len(files), "decoding images/") as p:
            for f in files:
                ...
                p.advance()
    """

    def __init__(self, total: int, what: str, enabled: bool = True, *, console: Console | None = None,
                 live: bool | None = None):
        self.total, self.what, self.enabled = int(total), what, enabled
        self.console = console or Console(stderr=True)
        self.live = (self.console.is_terminal and not self.console.is_dumb_terminal) if live is None else live
        self.done = 0
        self._progress: Progress | None = None
        self._t0 = time.perf_counter()

    def __enter__(self) -> LoadProgress:
        self._t0 = time.perf_counter()
        if not self.enabled:
            return self
        if self.live:
            self._progress = Progress(TextColumn(self.what, markup=False), BarColumn(), MofNCompleteColumn(),
                                      console=self.console, transient=True)
            self._progress.start()
            self._task = self._progress.add_task("load", total=self.total)
        else:
            self.console.print(f"{self.what}: {self.total} files", highlight=False, markup=False, soft_wrap=True)
        return self

    def advance(self, n: int = 1) -> None:
        self.done += n
        if self._progress is not None:
            self._progress.update(self._task, completed=self.done)

    def __exit__(self, exc_type, *exc) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
        if self.enabled and exc_type is None:
            dt = time.perf_counter() - self._t0
            self.console.print(f"{self.what}: {self.done} files in {dt:.1f}s", highlight=False, markup=False,
                               soft_wrap=True)
