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
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from ...errors import DlcError, DlcValueError

WORKLOAD_FILE = "database_workload.json"
RECORD_FILE = "database_tuning_record.json"
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
# where databases live
# ---------------------------------------------------------------------------

def cache_root() -> Path:
    env = os.environ.get("DLC_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "dlc"


def _target_dict(target) -> dict:
    from .target import resolve_target
    if hasattr(target, "kind") and hasattr(target, "export"):
        return dict(target.export())
    return resolve_target(target)


def target_hash(target) -> str:
    """A short hash of the target (as a TVM target dict) and the TVM version."""
    import tvm
    d = dict(tvm.target.Target(_target_dict(target)).export())
    d.pop("tag", None)
    blob = json.dumps({"target": d, "tvm": tvm.__version__}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def default_db_dir(target) -> Path:
    """``$DLC_CACHE_DIR/tuning/<target-hash>`` (default ``~/.cache/dlc/tuning/...``)."""
    return cache_root() / "tuning" / target_hash(target)


def _has_records(d: Path) -> bool:
    rec = d / RECORD_FILE
    return (d / WORKLOAD_FILE).is_file() and rec.is_file() and rec.stat().st_size > 0


def load_database(path):
    """The MetaSchedule `JSONDatabase` in directory `path` (its
    database_workload.json and database_tuning_record.json), or None when
    the directory holds no records."""
    d = Path(path).expanduser()
    if not _has_records(d):
        return None
    from tvm.s_tir import meta_schedule as ms
    return ms.database.JSONDatabase(str(d / WORKLOAD_FILE), str(d / RECORD_FILE), allow_missing=False)


def default_database(target):
    """The tuning database of `target` (a name such as ``"cpu"``, a target
    dict or a `tvm.target.Target`) in the default place, or None when there
    is none yet.  `compile_graph(..., database=default_database(t))` applies it."""
    return load_database(default_db_dir(target))


def check_tunable(target) -> dict:
    """The target dict, if MetaSchedule can measure it on this machine (the host CPU)."""
    d = _target_dict(target)
    if d.get("kind") != "llvm":
        raise DlcError(f"tuning measures kernels on this machine: target '{target}' is not its CPU",
                       hint="tune with --target cpu (tuning for another device must run on that device)")
    from .target import host_target_dict
    host = host_target_dict()
    triple = d.get("mtriple")
    if triple and triple.split("-")[0] != host["mtriple"].split("-")[0]:
        raise DlcError(f"cannot measure {triple} kernels on this {host['mtriple']} machine",
                       hint="run dlc tune on the target device")
    return d


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
        mod = tvm.transform.Sequential(P._front_passes(tgt))(lowered.mod)
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


# ---------------------------------------------------------------------------
# MetaSchedule plumbing
# ---------------------------------------------------------------------------

# GPU/DSP tensor intrinsics that `import tvm.s_tir.tensor_intrin` registers: the
# CUDA ones alone take ~30 s to parse; a CPU tuning run does not use them
_FOREIGN_INTRINSICS = {
    "x86": ("cuda", "rocm", "hexagon", "metal", "arm_cpu", "riscv_cpu"),
    "arm": ("cuda", "rocm", "hexagon", "metal", "riscv_cpu"),
}


def _import_tensor_intrinsics(target) -> None:
    """Import `tvm.s_tir.tensor_intrin` (MetaSchedule needs it) without the
    modules a CPU target cannot use; they stay importable afterwards."""
    import types
    if "tvm.s_tir.tensor_intrin" in sys.modules:
        return
    kind = target.kind.name
    triple = str(target.attrs.get("mtriple", "")) if kind == "llvm" else ""
    if kind != "llvm":
        import tvm.s_tir.tensor_intrin  # noqa: F401
        return
    skip = _FOREIGN_INTRINSICS["arm" if triple.startswith(("aarch64", "arm")) else "x86"]
    stubs = {}
    for name in skip:
        full = f"tvm.s_tir.tensor_intrin.{name}"
        if full not in sys.modules:
            stubs[full] = sys.modules[full] = types.ModuleType(full)
    try:
        import tvm.s_tir.tensor_intrin as ti  # noqa: F401
    finally:
        for full, mod in stubs.items():
            if sys.modules.get(full) is mod:
                del sys.modules[full]
            short = full.rsplit(".", 1)[1]
            pkg = sys.modules.get("tvm.s_tir.tensor_intrin")
            if pkg is not None and getattr(pkg, short, None) is mod:
                delattr(pkg, short)


def _make_builder():
    """A MetaSchedule builder that compiles candidates in this process."""
    from tvm.ir.utils import derived_object
    from tvm.s_tir import meta_schedule as ms
    from tvm.s_tir.meta_schedule.builder import BuilderResult, PyBuilder

    @derived_object
    class InProcessBuilder(PyBuilder):
        def build(self, build_inputs):
            from tvm.s_tir.transform import RemoveWeightLayoutRewriteBlock
            from tvm.support.tar import tar
            from tvm.tirx import build as tvm_build
            out = []
            for bi in build_inputs:
                try:
                    mod = RemoveWeightLayoutRewriteBlock(skip_tensor_rewrite=True)(bi.mod)
                    rt = tvm_build(mod, target=bi.target)
                    path = os.path.join(tempfile.mkdtemp(prefix="dlc-ms-"), "tvm_tmp_mod." + tar.output_format)
                    rt.export_library(path, fcompile=tar)
                    out.append(BuilderResult(path, None))
                except Exception as e:  # noqa: BLE001 - a bad candidate is a failed trial
                    out.append(BuilderResult(None, f"dlc builder: {type(e).__name__}: {e}"))
            return out

    del ms
    return InProcessBuilder()


def _cost_model() -> str:
    try:
        import xgboost  # noqa: F401
        return "xgb"
    except ImportError:
        return "random"


def _make_callback(on_batch):
    from tvm.ir.utils import derived_object
    from tvm.s_tir.meta_schedule.measure_callback import PyMeasureCallback

    @derived_object
    class Deadline(PyMeasureCallback):
        def __init__(self):
            super().__init__()
            self.deadline = float("inf")
            self.best = float("inf")
            self.trials = 0
            self.errors = 0
            self.stopped = False
            self.interrupted = lambda: False

        def apply(self, task_scheduler, task_id, measure_candidates, builder_results, runner_results):
            for br, rr in zip(builder_results, runner_results):
                self.trials += 1
                secs = [float(x) for x in (rr.run_secs or [])] if br.error_msg is None and rr.error_msg is None else []
                if secs:
                    self.best = min(self.best, sum(secs) / len(secs))
                else:
                    self.errors += 1
            on_batch(len(measure_candidates))
            if time.monotonic() >= self.deadline or self.interrupted():
                # out of time: abandon the task (its measured records are in the
                # database already: AddToDatabase runs before this callback).
                # terminate_task() would race the scheduler's own end-of-task
                # bookkeeping, so unwind instead; tune_graph catches this.
                self.stopped = True
                raise _DeadlineReached()

    return Deadline()


class _DeadlineReached(Exception):
    """Raised by the measure callback when the budget is spent."""


def _mean(secs) -> float:
    v = [float(x) for x in secs or []]
    return sum(v) / len(v) if v else float("inf")


def _publish(stage_db, work: Path, final: Path, rejected: list) -> None:
    """Write the real database: the best record of every workload in the
    staging database, except workloads in `rejected` (tuned kernels no
    faster than the default schedule: the compile keeps the default).

    The new workloads file starts as a copy of the old one (only appended
    to), so records written before or after it always index valid lines; it
    is renamed into place first, the records file second."""
    import tvm_ffi
    from tvm.s_tir import meta_schedule as ms
    from tvm.s_tir.meta_schedule.database import TuningRecord

    from ...runtime.atomic import atomic_write
    best: dict = {}
    for rec in stage_db.get_all_tuning_records():
        if not rec.run_secs:
            continue
        key = int(tvm_ffi.structural_hash(rec.workload.mod))
        if key in best and _mean(best[key].run_secs) <= _mean(rec.run_secs):
            continue
        best[key] = rec
    for mod in rejected:
        best.pop(int(tvm_ffi.structural_hash(mod)), None)
    pub = work / "publish"
    shutil.rmtree(pub, ignore_errors=True)
    pub.mkdir()
    if (final / WORKLOAD_FILE).exists():
        shutil.copyfile(final / WORKLOAD_FILE, pub / WORKLOAD_FILE)
    db = ms.database.JSONDatabase(str(pub / WORKLOAD_FILE), str(pub / RECORD_FILE), allow_missing=True)
    for rec in best.values():
        wl = db.commit_workload(rec.workload.mod)
        db.commit_tuning_record(TuningRecord(rec.trace, wl, rec.run_secs, rec.target, rec.args_info))
    del db
    final.mkdir(parents=True, exist_ok=True)
    for name in (WORKLOAD_FILE, RECORD_FILE):
        if (pub / name).exists():
            atomic_write(final / name, (pub / name).read_bytes())


def _measure_default(task, tgt, builder, runner):
    """Seconds per run of the kernel under the default schedule (the one
    `pipeline.optimize` gives untuned kernels), or None if it cannot be measured."""
    from tvm.s_tir import dlight as dl
    from tvm.s_tir.meta_schedule.arg_info import ArgInfo
    from tvm.s_tir.meta_schedule.builder import BuilderInput
    from tvm.s_tir.meta_schedule.runner import RunnerInput

    from .schedules.cpu import cpu_rules
    try:
        import tvm
        # a deep copy: the dlight pass rewrites a module it holds the only handle to in place
        mod = tvm.ir.load_json(tvm.ir.save_json(task.dispatched[0]))
        func = mod["main"]
        with tgt:
            sch = dl.ApplyDefaultSchedule(*cpu_rules())(mod)
        br = builder.build([BuilderInput(sch, tgt)])[0]
        if br.error_msg is not None:
            return None
        rr = runner.run([RunnerInput(br.artifact_path, "cpu" if tgt.kind.name == "llvm" else tgt.kind.name, ArgInfo.from_prim_func(func))])[0].result()
        shutil.rmtree(os.path.dirname(br.artifact_path), ignore_errors=True)
        if rr.error_msg is not None or not rr.run_secs:
            return None
        return _mean(rr.run_secs)
    except Exception:  # noqa: BLE001 - no baseline: keep whatever tuning finds
        return None


@contextlib.contextmanager
def _task_logger(path: Path):
    """A logger for the tuning contexts that writes to `path` only (MetaSchedule's
    own loggers print every task's table to stdout)."""
    import logging
    lg = logging.getLogger("dlc.tune.tasks")
    lg.setLevel(logging.DEBUG)
    lg.propagate = False
    h = logging.FileHandler(path, mode="a", delay=True)
    h.setFormatter(logging.Formatter("%(asctime)s [%(levelname)s] %(message)s"))
    lg.addHandler(h)
    try:
        yield lg
    finally:
        lg.removeHandler(h)
        h.close()


def _tune_context(task, logger, cores: int, seed: int):
    from tvm.s_tir import meta_schedule as ms
    mod = task.dispatched[0]
    if mod.attrs is not None and mod.attrs.get("tirx.is_scheduled", False):
        return None
    return ms.TuneContext(mod=mod, target=task.target, space_generator="post-order-apply",
                          search_strategy="evolutionary", task_name=task.task_name, logger=logger,
                          rand_state=seed, num_threads=cores).clone()


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


def count_records(db_dir) -> int:
    p = Path(db_dir) / RECORD_FILE
    if not p.exists():
        return 0
    with open(p, "rb") as f:
        return sum(1 for line in f if line.strip())


def tune_graph(graph, target="cpu", *, budget_s: float, db_dir=None, bind: dict | None = None,
               trials_per_task: int | None = None, progress=True, console=None,
               seed: int = 0, keep_slower: bool = False) -> TuneReport:
    """Tune `graph`'s kernels for `target` for about `budget_s` seconds,
    adding the records to the database in `db_dir` (default `default_db_dir`).

    `progress`: True (a live bar on a terminal, else a line per kernel),
    "plain" (a line per kernel) or False (silent).  A kernel's best record
    enters the database only if it beats the default schedule by 3%
    (`keep_slower=True` keeps it regardless)."""
    from tvm.s_tir import meta_schedule as ms

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
    final.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".tune-", dir=final))
    stage = work / "db"
    stage.mkdir()
    for name in (WORKLOAD_FILE, RECORD_FILE):
        if (final / name).exists():
            shutil.copyfile(final / name, stage / name)
    rejected: dict[str, object] = {}   # task name -> workload module (tuned, not faster than default)
    database = None
    stop = _CtrlC()
    bar = _TuneProgress(budget_s, len(tasks), enabled=bool(progress), console=console,
                        live=False if progress == "plain" else None)
    try:
        with bar, _task_logger(work / "tune.log") as logger, stop:
            database = ms.database.JSONDatabase(work_dir=str(stage), allow_missing=True)
            builder = _make_builder()
            runner = ms.runner.LocalRunner(timeout_sec=30, evaluator_config=ms.runner.EvaluatorConfig(
                number=3, repeat=1, min_repeat_ms=50, enable_cpu_cache_flush=False))
            cb = _make_callback(bar.advance_trials)
            cb.interrupted = stop.is_set
            rnd = 0
            while time.monotonic() < deadline and not stop.is_set():
                for i, (task, res) in enumerate(zip(tasks, report.tasks)):
                    if time.monotonic() >= deadline or stop.is_set():
                        break
                    bar.task(i, task.name, rnd)
                    if rnd == 0 and res.default_us is None:
                        d = _measure_default(task.extracted, tgt, builder, runner)
                        res.default_us = None if d is None else d * 1e6
                    ctx = _tune_context(task.extracted, logger, cores, seed + 7919 * rnd + i)
                    if ctx is None:
                        continue
                    cb.deadline, cb.best, cb.trials, cb.errors, cb.stopped = deadline, float("inf"), 0, 0, False
                    n = per_task
                    try:
                        ms.tune_tasks(tasks=[ctx], task_weights=[1.0], work_dir=str(work),
                                      max_trials_global=n, max_trials_per_task=n,
                                      num_trials_per_iter=max(MIN_TRIALS_PER_ITER, min(n, 16)),
                                      builder=builder, runner=runner, database=database,
                                      cost_model=report.cost_model,
                                      measure_callbacks=list(ms.MeasureCallback.create("default")) + [cb],
                                      task_scheduler="round-robin")
                    except Exception:
                        if not cb.stopped:
                            raise
                    finally:
                        res.trials += cb.trials
                        res.errors += cb.errors
                        report.trials += cb.trials
                        if cb.best < float("inf"):
                            us = cb.best * 1e6
                            res.best_us = us if res.best_us is None else min(res.best_us, us)
                        mod = task.extracted.dispatched[0]
                        res.kept = res.best_us is not None and (
                            keep_slower or res.default_us is None or res.best_us < KEEP_IF_FASTER * res.default_us)
                        if res.kept:
                            rejected.pop(task.name, None)
                        elif res.trials:
                            rejected[task.name] = mod
                        _publish(database, work, final, list(rejected.values()))
                rnd += 1
    except KeyboardInterrupt:
        report.interrupted = True
    finally:
        report.interrupted = report.interrupted or stop.is_set()
        if database is not None:
            _publish(database, work, final, list(rejected.values()))
        if (work / "tune.log").exists():
            shutil.copyfile(work / "tune.log", final / "last-tune.log")
        shutil.rmtree(work, ignore_errors=True)
        report.elapsed_s = time.monotonic() - t_start
        report.records = count_records(final)
    return report


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
