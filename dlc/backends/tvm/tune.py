"""`dlc tune`: MetaSchedule tuning of a model's kernels within a wall-clock
budget, into a JSON database that later compiles apply automatically.

    tune_graph(graph, "cpu", budget_s=600)   # -> TuneReport, records in the default DB
    db = default_database(target_dict)       # what `compile_graph(..., database=db)` takes

How it works:

1. The model is lowered to Relax with every dimension fixed (MetaSchedule
   tunes static shapes only: `bind`, else each dimension's example size),
   then prepared exactly as `pipeline.optimize` prepares it before applying a
   database -- layout conversion, weight lifting, legalization, fusion -- so
   the tuned kernels are the very PrimFuncs `MetaScheduleApplyDatabase` looks
   up later.  Kernels of ``main_transform_params`` (run once at load) are not
   tuned.
2. Tasks are ranked by estimated FLOPs times their number of uses, and tuned
   one after another, `trials_per_task` measured candidates each (in rounds:
   when every task has had its trials and time is left, the next round gives
   each task more, starting again from the largest).  A measure callback stops
   the current task as soon as the deadline passes, so the budget holds to
   within one batch of candidates.
3. Records go to a staging JSON database; after each task its two files are
   copied over the real database's (workloads first, then records, each by an
   atomic rename).  The records file only ever references workloads already
   in the workloads file, so an interrupted run (Ctrl-C, a kill) leaves a
   usable database with every task finished so far.

The database lives under ``--tuning-db`` or, by default,
``$DLC_CACHE_DIR/tuning/<target-hash>`` (``~/.cache/dlc/tuning/...``), where
the hash covers the target dict and the TVM version.  Records match only the
exact kernel (shapes included) and target they were tuned for: a model
tuned with ``--bind N=1`` benefits when compiled with ``N`` bound to 1.

Candidates are built in this process (MetaSchedule's LocalBuilder starts a
fresh worker pool, i.e. a fresh TVM import, for every batch) and measured in
a persistent worker (`LocalRunner`).  The cost model is XGBoost when
`xgboost` is installed, else random (MetaSchedule's evolutionary search still
keeps the best measured candidates).

The module is in four parts: this one (budgets, tasks, the tuning loop),
`tune_db` (where databases live), `tune_metaschedule` (builder, deadline
callback, baseline, publishing) and `tune_report` (results, table, progress).
Every name stays importable from here.
"""
from __future__ import annotations

import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from ...errors import DlcError, DlcValueError
from .tune_db import (  # noqa: F401 - re-exported
    RECORD_FILE,
    WORKLOAD_FILE,
    _has_records,
    _target_dict,
    cache_root,
    check_tunable,
    count_records,
    default_database,
    default_db_dir,
    load_database,
    target_hash,
)
from .tune_metaschedule import (  # noqa: F401 - re-exported
    _cost_model,
    _import_tensor_intrinsics,
    _make_builder,
    _make_callback,
    _measure_default,
    _publish,
    _task_logger,
    _tune_context,
)
from .tune_report import TaskResult, TuneReport, _CtrlC, _TuneProgress, format_report  # noqa: F401

MIN_TRIALS_PER_ITER = 4
KEEP_IF_FASTER = 0.97   # a tuned kernel replaces the default schedule only if >= 3% faster

_BUDGET_RE = re.compile(r"(\d+(?:\.\d+)?)\s*(hours?|hrs?|h|minutes?|mins?|m|seconds?|secs?|s)?", re.IGNORECASE)


def parse_budget(text) -> float:
    """Seconds in a budget such as ``90s``, ``20m``, ``1h``, ``1h30m`` or ``45`` (seconds)."""
    if isinstance(text, (int, float)):
        if text <= 0:
            raise DlcValueError(f"the tuning budget must be positive, got {text}")
        return float(text)
    s = str(text).strip().replace(" ", "")
    pos, total = 0, 0.0
    while pos < len(s):
        m = _BUDGET_RE.match(s, pos)
        if not m or m.end() == pos:
            break
        unit = (m.group(2) or "s").lower()
        total += float(m.group(1)) * (3600 if unit.startswith("h") else 60 if unit.startswith("m") else 1)
        pos = m.end()
    if not s or pos != len(s) or total <= 0:
        raise DlcValueError(f"cannot read the budget {text!r}", None, "write e.g. 90s, 20m, 1h or 1h30m")
    return total



# ---------------------------------------------------------------------------
# tasks
# ---------------------------------------------------------------------------

@dataclass
class Task:
    name: str
    weight: int           # uses in the model
    flops: float          # estimated FLOPs of one use
    extracted: object     # ms.ExtractedTask

    @property
    def total_flops(self) -> float:
        return self.flops * self.weight


def static_dims(graph, bind: dict | None) -> dict[str, int]:
    """`bind`, plus every other dimension of the model at its example size."""
    from ...compiler.dims import Dim
    fixed = {k: int(v) for k, v in (bind or {}).items()}
    names: set[str] = set()
    for v in list(graph.inputs) + list(graph.params):
        for d in v.type.shape:
            if isinstance(d, Dim):
                names |= set(d.symbols())
    for n in sorted(names - set(fixed)):
        ex = graph.dims.get(n) if hasattr(graph, "dims") else None
        if ex is None:
            raise DlcError(f"tuning needs a fixed size for {n}", graph.span, f"bind it: --bind {n}=<size>")
        fixed[n] = int(ex)
    return fixed


def prepare_module(graph, target, bind: dict | None = None):
    """The model as `pipeline.optimize` has it right before applying a
    database: (fused module, fixed dims)."""
    import tvm

    from . import pipeline as P
    from .relaxgen import lower_model
    tgt = P.as_target(target if not isinstance(target, (str, dict)) else _target_dict(target))
    fixed = static_dims(graph, bind)
    lowered = lower_model(graph, fixed)
    with tgt:
        mod = tvm.transform.Sequential(P._front_passes(tgt, lowered.mod))(lowered.mod)
        mod = tvm.transform.Sequential(P._legalize_fuse_passes())(mod)
    return mod, dict(lowered.fixed), tgt


def extract_tasks(graph, target, bind: dict | None = None) -> tuple[list[Task], dict, object]:
    """The tunable kernels of `graph`'s ``main``, largest (FLOPs x uses) first."""
    import tvm
    from tvm import relax
    from tvm.s_tir import meta_schedule as ms
    from tvm.s_tir.analysis import estimate_tir_flops
    mod, fixed, tgt = prepare_module(graph, target, bind)
    # only what `main` calls: main_transform_params runs once, at load time
    keep = tvm.IRModule({gv: f for gv, f in mod.functions_items()
                         if not (isinstance(f, relax.Function) and gv.name_hint != "main")})
    keep = relax.transform.DeadCodeElimination(["main"])(keep)
    tasks = []
    for t in ms.relax_integration.extract_tasks(keep, tgt):
        try:
            flops = float(estimate_tir_flops(t.dispatched[0]))
        except Exception:  # noqa: BLE001 - some kernels cannot be estimated
            flops = 0.0
        tasks.append(Task(t.task_name, int(t.weight), flops, t))
    tasks.sort(key=lambda t: (-t.total_flops, t.name))
    return tasks, fixed, tgt



def _staging_dir(final: Path) -> Path:
    """A fresh work folder inside `final` whose ``db/`` starts as a copy of `final`'s database."""
    final.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".tune-", dir=final))
    stage = work / "db"
    stage.mkdir()
    for name in (WORKLOAD_FILE, RECORD_FILE):
        if (final / name).exists():
            shutil.copyfile(final / name, stage / name)
    return work


class _TuningRun:
    """One tuning run: the tasks, the MetaSchedule builder, runner and staging
    database they share, the deadline, and the kernels whose tuned record lost
    to the default schedule (left out of the published database)."""

    def __init__(self, tasks, report: TuneReport, tgt, work: Path, final: Path, deadline: float,
                 cores: int, seed: int, per_task: int, keep_slower: bool):
        self.tasks, self.report, self.tgt = tasks, report, tgt
        self.work, self.final, self.deadline = work, final, deadline
        self.cores, self.seed, self.per_task, self.keep_slower = cores, seed, per_task, keep_slower
        self.stop = _CtrlC()
        self.rejected: dict[str, object] = {}   # task name -> workload module (tuned, not faster than default)
        self.database = None

    def start(self, bar, logger) -> None:
        from tvm.s_tir import meta_schedule as ms
        self.database = ms.database.JSONDatabase(work_dir=str(self.work / "db"), allow_missing=True)
        self.builder = _make_builder()
        self.runner = ms.runner.LocalRunner(timeout_sec=30, evaluator_config=ms.runner.EvaluatorConfig(
            number=3, repeat=1, min_repeat_ms=50, enable_cpu_cache_flush=False))
        self.cb = _make_callback(bar.advance_trials)
        self.cb.interrupted = self.stop.is_set
        self.bar, self.logger = bar, logger

    def out_of_time(self) -> bool:
        return time.monotonic() >= self.deadline or self.stop.is_set()

    def rounds(self) -> None:
        """Every task in turn, round after round, until the deadline or a Ctrl-C."""
        rnd = 0
        while not self.out_of_time():
            for i, (task, res) in enumerate(zip(self.tasks, self.report.tasks)):
                if self.out_of_time():
                    break
                self.tune_task(i, task, res, rnd)
            rnd += 1

    def tune_task(self, i: int, task: Task, res: TaskResult, rnd: int) -> None:
        from tvm.s_tir import meta_schedule as ms
        self.bar.task(i, task.name, rnd)
        if rnd == 0 and res.default_us is None:
            d = _measure_default(task.extracted, self.tgt, self.builder, self.runner)
            res.default_us = None if d is None else d * 1e6
        ctx = _tune_context(task.extracted, self.logger, self.cores, self.seed + 7919 * rnd + i)
        if ctx is None:
            return
        cb = self.cb
        cb.deadline, cb.best, cb.trials, cb.errors, cb.stopped = self.deadline, float("inf"), 0, 0, False
        n = self.per_task
        try:
            ms.tune_tasks(tasks=[ctx], task_weights=[1.0], work_dir=str(self.work),
                          max_trials_global=n, max_trials_per_task=n,
                          num_trials_per_iter=max(MIN_TRIALS_PER_ITER, min(n, 16)),
                          builder=self.builder, runner=self.runner, database=self.database,
                          cost_model=self.report.cost_model,
                          measure_callbacks=list(ms.MeasureCallback.create("default")) + [cb],
                          task_scheduler="round-robin")
        except Exception:
            if not cb.stopped:
                raise
        finally:
            self.record(task, res)

    def record(self, task: Task, res: TaskResult) -> None:
        """Add the task's trials to the report, decide whether its best record beats
        the default schedule, and publish the database as it now stands."""
        cb = self.cb
        res.trials += cb.trials
        res.errors += cb.errors
        self.report.trials += cb.trials
        if cb.best < float("inf"):
            us = cb.best * 1e6
            res.best_us = us if res.best_us is None else min(res.best_us, us)
        mod = task.extracted.dispatched[0]
        res.kept = res.best_us is not None and (
            self.keep_slower or res.default_us is None or res.best_us < KEEP_IF_FASTER * res.default_us)
        if res.kept:
            self.rejected.pop(task.name, None)
        elif res.trials:
            self.rejected[task.name] = mod
        self.publish()

    def publish(self) -> None:
        _publish(self.database, self.work, self.final, list(self.rejected.values()))


def tune_graph(graph, target="cpu", *, budget_s: float, db_dir=None, bind: dict | None = None,
               trials_per_task: int | None = None, progress=True, console=None,
               seed: int = 0, keep_slower: bool = False) -> TuneReport:
    """Tune `graph`'s kernels for `target` for about `budget_s` seconds,
    adding the records to the database in `db_dir` (default `default_db_dir`).

    `progress`: True (a live bar on a terminal, else a line per kernel),
    "plain" (a line per kernel) or False (silent).  A kernel's best record
    enters the database only if it beats the default schedule by 3%
    (`keep_slower=True` keeps it regardless)."""
    from .target import physical_cores
    t_start = time.monotonic()
    deadline = t_start + float(budget_s)
    cores = physical_cores()
    os.environ.setdefault("TVM_NUM_THREADS", str(cores))    # the measuring worker inherits it
    tdict = _target_dict(target)
    final = Path(db_dir).expanduser() if db_dir else default_db_dir(tdict)
    tasks, fixed, tgt = extract_tasks(graph, tdict, bind)
    report = TuneReport(str(final), tdict, fixed, float(budget_s), cost_model=_cost_model(),
                        tasks=[TaskResult(t.name, t.weight, t.flops) for t in tasks])
    if not tasks:
        return report
    per_task = int(trials_per_task) if trials_per_task else 32
    if per_task < 1:
        raise DlcValueError("--trials-per-task must be at least 1")
    _import_tensor_intrinsics(tgt)
    work = _staging_dir(final)
    run = _TuningRun(tasks, report, tgt, work, final, deadline, cores, seed, per_task, keep_slower)
    bar = _TuneProgress(budget_s, len(tasks), enabled=bool(progress), console=console,
                        live=False if progress == "plain" else None)
    try:
        with bar, _task_logger(work / "tune.log") as logger, run.stop:
            run.start(bar, logger)
            run.rounds()
    except KeyboardInterrupt:
        report.interrupted = True
    finally:
        report.interrupted = report.interrupted or run.stop.is_set()
        if run.database is not None:
            run.publish()
        if (work / "tune.log").exists():
            shutil.copyfile(work / "tune.log", final / "last-tune.log")
        shutil.rmtree(work, ignore_errors=True)
        report.elapsed_s = time.monotonic() - t_start
        report.records = count_records(final)
    return report
