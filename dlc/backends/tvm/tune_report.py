"""What a `dlc tune` run returns and shows: the per-kernel results and the
report, its table (`format_report`), the progress bar over the budget, and
the Ctrl-C handler that stops after the batch being measured."""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field


@dataclass
class TaskResult:
    name: str
    weight: int
    flops: float
    trials: int = 0
    errors: int = 0
    best_us: float | None = None      # best measured latency of one use, microseconds
    default_us: float | None = None   # the default schedule's latency, microseconds
    kept: bool = False                # its best record is in the database (beats the default)


@dataclass
class TuneReport:
    db_dir: str
    target: dict
    fixed_dims: dict
    budget_s: float
    elapsed_s: float = 0.0
    trials: int = 0
    records: int = 0
    cost_model: str = "random"
    tasks: list[TaskResult] = field(default_factory=list)
    interrupted: bool = False


class _CtrlC:
    """While tuning, the first Ctrl-C asks for a stop after the batch being
    measured (a KeyboardInterrupt raised inside TVM's C++ threads would abort
    the process); a second one interrupts at once."""

    def __init__(self):
        self._set = False
        self._old = None

    def is_set(self) -> bool:
        return self._set

    def _handler(self, signum, frame):
        if self._set:
            raise KeyboardInterrupt
        self._set = True
        print("\nstopping after the current batch (Ctrl-C again to abort)", file=sys.stderr, flush=True)

    def __enter__(self):
        import signal
        import threading
        if threading.current_thread() is threading.main_thread():
            self._old = signal.signal(signal.SIGINT, self._handler)
        return self

    def __exit__(self, *exc):
        import signal
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)
            self._old = None


class _TuneProgress:
    """A rich bar over the budget (time), with the task being tuned and the
    trial count; one line per task when not on a terminal; nothing when off."""

    def __init__(self, budget_s: float, ntasks: int, enabled: bool = True, console=None, live=None):
        from rich.console import Console
        self.budget = float(budget_s)
        self.ntasks = ntasks
        self.enabled = enabled
        self.console = console or Console(stderr=True)
        self.live = (self.console.is_terminal and not self.console.is_dumb_terminal) if live is None else live
        self._p = None
        self._id = None
        self._t0 = time.monotonic()
        self.trials = 0
        self.label = ""

    def __enter__(self):
        self._t0 = time.monotonic()
        if self.enabled and self.live:
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
            self._p = Progress(TextColumn("[bold]tuning"), BarColumn(), TimeElapsedColumn(),
                               TextColumn("of {task.fields[budget]}"), TextColumn("{task.fields[label]}"),
                               TextColumn("{task.fields[trials]} trials"),
                               console=self.console, transient=True)
            self._p.start()
            self._id = self._p.add_task("tune", total=self.budget, budget=_fmt_s(self.budget), label="",
                                        trials=0)
        return self

    def __exit__(self, *exc):
        if self._p is not None:
            self._p.stop()
            self._p = None

    def _refresh(self):
        if self._p is not None:
            self._p.update(self._id, completed=min(self.budget, time.monotonic() - self._t0),
                           label=self.label, trials=self.trials)

    def task(self, i: int, name: str, rnd: int):
        self.label = f"task {i + 1}/{self.ntasks} {name}" + (f" (round {rnd + 1})" if rnd else "")
        if self.enabled and not self.live:
            self.console.print(f"[{_fmt_s(time.monotonic() - self._t0)}] {self.label}", highlight=False)
        self._refresh()

    def advance_trials(self, n: int):
        self.trials += n
        self._refresh()


def _fmt_s(s: float) -> str:
    s = int(round(s))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def format_report(r: TuneReport) -> str:
    lines = [f"tuned {sum(1 for t in r.tasks if t.trials)} of {len(r.tasks)} kernels "
             f"({sum(1 for t in r.tasks if t.kept)} faster than the default schedule), {r.trials} trials "
             f"in {_fmt_s(r.elapsed_s)} (cost model: {r.cost_model})"
             + (" -- interrupted" if r.interrupted else "")]
    lines.append(f"  {'kernel':48s} {'uses':4s} {'MFLOP':>10s}  {'trials':>6s}  {'default':>10s}  "
                 f"{'tuned':>10s}  kept")
    for t in r.tasks:
        def us(v):
            return f"{v:7.1f} us" if v is not None else "         -"
        kept = "yes" if t.kept else ("no" if t.trials else "")
        lines.append(f"  {t.name[:48]:48s} x{t.weight:<3d} {t.flops / 1e6:10.2f}  {t.trials:6d}  "
                     f"{us(t.default_us)}  {us(t.best_us)}  {kept}")
    dims = ", ".join(f"{k}={v}" for k, v in sorted(r.fixed_dims.items()))
    lines.append(f"database: {r.db_dir} ({r.records} records)")
    if dims:
        lines.append(f"records apply to these sizes: {dims} (compile with --bind {dims.replace(', ', ' --bind ')})")
    return "\n".join(lines)
