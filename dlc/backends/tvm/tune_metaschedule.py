"""MetaSchedule plumbing for `dlc tune`: the in-process builder, the measure
callback that enforces the deadline, the default schedule's baseline, the
per-task tuning context and logger, and publishing the staging database's
best records into the real one."""
from __future__ import annotations

import contextlib
import os
import shutil
import sys
import time
from pathlib import Path

from ...runtime.pkgfile import scratch_dir
from .tune_db import RECORD_FILE, WORKLOAD_FILE


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
                    path = os.path.join(scratch_dir("ms"), "tvm_tmp_mod." + tar.output_format)
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

