"""`dlc train`: one training loop for every backend.

The loop feeds batches to a backend's `TrainStep` (backends/protocol.py),
advances the learning-rate schedule, validates after each epoch with the
backend's compiled evaluation graph, logs metrics, writes checkpoints and
`best.safetensors`, and stops early or on a non-finite loss or weight.  How a
step runs is the backend's business: the interpreter or TVM running dlc's
symbolic training-step graph, or torch running it as generated code or with
autograd, data-parallel across processes (`Backend.launch`).

Everything that affects the numbers derives from the seed, the epoch and the
step, so `--resume` continues bit for bit on every backend.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import run_folder
from .errors import DlcError, DlcNameError, DlcValueError


@dataclass
class TrainResult:
    epochs_run: int
    history: list[dict] = field(default_factory=list)
    best: dict | None = None
    weights: dict | None = None
    out: str | None = None
    rank: int = 0                 # the data-parallel rank that returned this result


def _find_train(mod, model: str | None):
    if model is None:
        if mod.trains:
            return mod.trains[0].model, mod.trains[0]
        if not mod.models:
            raise DlcNameError(f"{mod.file} defines no model")
        return mod.models[-1], None
    for t in mod.trains:
        if t.model == model:
            return model, t
    return model, None


def train(path, *, model: str | None = None, data: str | None = None, data_path: str | None = None,
          data_options: dict | None = None, epochs: int | None = None, batch: int | None = None, seed: int | None = None, out: str | None = None,
          resume: bool = False, bind: dict | None = None, progress: bool = True, lr: float | None = None,
          max_steps: int | None = None, backend: str = "numpy", grad: str | None = None, nproc: int = 1,
          overwrite: bool = False, drop_last: bool | None = None, opt=None, weights: str | None = None,
          allow_missing=(), allow_unused=(), freeze=()) -> TrainResult:
    """Train the model of a `.dln` file as its `train` section declares.

    `backend` is any registered backend; `grad` picks where gradients come
    from where a backend offers a choice (torch: "autograd", the default, or
    "symbolic", dlc's own backward); `nproc > 1` trains data-parallel (torch).
    `out` is the run folder (see `dlc.run_folder`): a fresh run needs it empty
    or `overwrite=True`; `resume=True` continues the run in it.  `opt` (a
    `compiler.passes.PipelineOptions`, default -O2) is the optimisation
    pipeline the training step and the validation graph go through.
    `data`, `data_path` and `data_options` override the section's data set,
    its path and its options (`runtime.data_sources`).
    `weights` (a .safetensors file, strict; `allow_missing`/`allow_unused`
    patterns relax it) and `freeze` (parameter-name patterns) add to the
    train section's transfer settings (`dlc.train_transfer`).
    """
    from .backends import get_backend
    from .frontend.modules import clear_cache
    clear_cache()     # train the spec as it is on disk now, the text its checkpoints' hash is taken from
    b = get_backend(backend)
    precision = getattr(opt, "precision", "fp32")
    # --precision trains dlc's symbolic step graph (through the autocast pass)
    grad = grad or ("symbolic" if precision != "fp32" and "symbolic" in b.grads else b.grads[0])
    if grad not in b.grads:
        raise DlcValueError(f"the {backend} backend trains with {' or '.join(b.grads)} gradients, not {grad}",
                            None, "drop --grad (or use --backend torch for autograd)")
    job = dict(path=str(path), model=model, data=data, data_path=data_path, data_options=dict(data_options or {}),
               epochs=epochs, batch=batch, seed=seed,
               out=out, resume=resume, bind=dict(bind or {}), progress=progress, lr=lr, max_steps=max_steps,
               backend=backend, grad=grad, overwrite=overwrite, drop_last=drop_last, opt=opt, weights=weights,
               allow_missing=tuple(allow_missing), allow_unused=tuple(allow_unused), freeze=tuple(freeze))
    _settings(job)                         # a bad train section fails here, before the folder is touched
    if out and os.environ.get("RANK", "0") == "0":    # one process prepares the folder (torchrun: rank 0)
        run_folder.prepare(Path(out), resume=resume, overwrite=overwrite)
    return b.launch(nproc, _train_rank, job)


@dataclass
class _Run:
    """One training run, set up: settings, data, graphs and the folder."""

    job: dict
    name: str
    s: object                     # compiler.trainspec.TrainSpec
    ds: object                    # runtime.data.Dataset
    eval_graph: object
    x_in: object
    label_t: object
    classification: bool
    out_dir: Path | None
    spec: str
    rank: int = 0
    inputs: tuple = ()            # the model's inputs, fed by name from a multi-input data set
    record: dict | None = None    # transfer.json: what the weights came from (`train_transfer`)

    def feed(self, xb, yb) -> dict:
        from .runtime.data_arrays import NamedInputs
        if isinstance(xb, NamedInputs):
            out = {v.name: np.asarray(xb[v.name]).astype(v.type.dtype.numpy_name) for v in self.inputs}
        else:
            out = {self.x_in.name: xb.astype(self.x_in.type.dtype.numpy_name)}
        if self.label_t is not None:
            y = yb.astype(self.label_t.dtype.numpy_name)
            if self.label_t.rank == 2 and y.ndim == 1 and self.label_t.dtype.is_float:
                y = y.reshape(-1, 1)
            out["label"] = y
        return out

    @property
    def key(self) -> str:
        return "val_accuracy" if self.classification else "val_loss"

    @property
    def writes(self) -> bool:
        return self.out_dir is not None and self.rank == 0


def _settings(job: dict):
    from .frontend.modules import load_module
    from .frontend.train import train_settings
    mod = load_module(job["path"])
    name, tdef = _find_train(mod, job["model"])
    if tdef is None:
        raise DlcNameError(f"{job['path']} has no train section for model '{name}'", None,
                           "add `train Model on digits { loss = ...; optimizer = ... }`")
    s = train_settings(mod, tdef, job["bind"])
    for key in ("epochs", "batch", "seed", "drop_last"):
        if job.get(key) is not None:
            setattr(s, key, job[key])
    if job["lr"] is not None:
        s.optimizer_args["lr"] = job["lr"]
    from .train_transfer import check_job
    check_job(job, s)
    dname = job["data"] or s.dataset
    if dname is None:
        raise DlcValueError("no data set: name one in the train section (`train M on digits`) or with --data")
    return mod, name, s, dname


def _setup(job: dict, rank: int):
    """The run, the backend's training step, its validation executable (None
    for alternating steps) and where to start (epoch, step, best, stopper)."""
    from .backends import get_backend
    mod, name, s, dname = _settings(job)
    bind, b = job["bind"], get_backend(job["backend"])
    if s.steps:
        from .trainer_alternating import alternating_parts
        x_in, progs = alternating_parts(job, s)
        eval_g = label = None
    else:
        from .train_transfer import resolve_selection
        eval_g, label = _eval_graph(mod, name, s, bind)
        resolve_selection(job, s, eval_g)
        x_in = eval_g.inputs[0]
    inputs = [x_in] if s.steps else [v for v in eval_g.inputs if v is not label]
    ds = _dataset(job, s, dname, inputs, eval_g, label, rank)
    label_t = label.type if label is not None else None
    run = _Run(job, name, s, ds, eval_graph=eval_g, x_in=x_in, label_t=label_t,
               classification=label_t is not None and label_t.dtype.is_int,
               out_dir=Path(job["out"]) if job["out"] else None, spec=run_folder.spec_hash(job["path"]), rank=rank,
               inputs=tuple(inputs))
    if s.steps:
        from .trainer_alternating import AlternatingStep, initial_state
        weights, states = initial_state(progs, s.seed)
        start = _resume_point(run, weights) if job["resume"] else _Start()
        step = AlternatingStep(b, progs, bind, start.weights or weights,
                               states if start.optimizer_state is None else start.optimizer_state)
        return run, step, None, start
    start, plan = _step_plan(run, mod, eval_g, job.get("world", 1))
    precision = getattr(job.get("opt"), "precision", "fp32")
    if precision != "fp32":
        from .mixed_precision import train_step
        step = train_step(b, plan, precision)
    else:
        step = b.train_step(plan)
    from .prune import masked_step, masks_for_job
    step = masked_step(step, masks_for_job(job, s))    # pruned weights stay zero (dlc prune)
    from .compiler.passes import run_pipeline
    run_pipeline(eval_g, job.get("opt"), backend=job["backend"], dims=bind)
    return run, step, b.compile(eval_g, bind=bind), start


def _dataset(job: dict, s, dname: str, inputs, eval_g, label, rank: int):
    """The data set fitted to the model's inputs: the section's options apply
    when it names the same data set, then --data-option ones; class labels
    are checked against the width of the output the loss reads."""
    from .runtime.data_sources import open_dataset
    for v in inputs:
        if any(not isinstance(d, int) for d in v.type.shape[1:]):
            raise DlcValueError(f"the model input {v.type} must have known sizes except the batch", s.span)
    options = {**(s.data_args if dname == s.dataset else {}), **(job.get("data_options") or {})}
    path = job["data_path"] or (s.data_path if dname == s.dataset else None)
    classes = None
    if label is not None and label.type.dtype.is_int and s.loss is not None and len(s.loss.output_names) == 1:
        out = dict(zip(eval_g.output_names, eval_g.outputs)).get(s.loss.output_names[0])
        if out is not None and out.type.rank == label.type.rank + 1 and isinstance(out.type.shape[-1], int):
            classes = int(out.type.shape[-1])
    return open_dataset(dname, path=path, options=options, num_classes=classes,
                        inputs=[(v.name, tuple(v.type.shape[1:]), v.type.dtype.numpy_name) for v in inputs],
                        progress=job["progress"] and rank == 0)


def _eval_graph(mod, name, s, bind):
    """The model in eval mode with the loss as its first output, and its label input."""
    from .compiler.training import build_loss
    from .frontend.blocks import elaborate_model
    eval_g, eval_loss, label = build_loss(elaborate_model(mod, name, "eval", bind), s.loss.graph("eval"))
    eval_g.outputs = [eval_loss] + list(eval_g.outputs)
    eval_g.output_names = ["loss"] + list(eval_g.output_names)
    return eval_g, label


def _step_plan(run: _Run, mod, eval_g, world: int):
    from .api import Model
    from .backends.protocol import StepPlan
    from .compiler.init import init_params
    from .frontend.blocks import elaborate_model
    job, s, name, bind = run.job, run.s, run.name, run.job["bind"]
    from .train_transfer import initial_weights, write_record
    weights = init_params(eval_g, s.seed)
    start = _resume_point(run, weights) if job["resume"] else _Start()
    if not job["resume"]:
        weights, run.record = initial_weights(job, s, weights)
        if run.writes and (run.record["weights"] or s.frozen or s.param_groups):   # a plain run has nothing to add
            write_record(run.out_dir, run.record, s)
    # autograd backends generate their module from the model's module graph
    module_graph = Model(job["path"], name, bind).module_graph() if job["grad"] == "autograd" else None
    plan = StepPlan(spec=s, model_graph=lambda: elaborate_model(mod, name, "train", bind),
                    weights=start.weights or weights, optimizer_state=start.optimizer_state,
                    module_graph=module_graph, seed=s.seed, grad=job["grad"], bind=bind, rank=run.rank, world=world,
                    opt=job.get("opt"), backend=job["backend"])
    return start, plan


@dataclass
class _Start:
    epoch: int = 0
    step: int = 0
    best: dict | None = None
    early_stopping: dict | None = None
    weights: dict | None = None
    optimizer_state: dict | None = None


def _state_kind(job: dict) -> str:
    return "torch.optim" if job["grad"] == "autograd" else "dlc"


def _resume_point(run: _Run, fresh_weights: dict) -> _Start:
    from .runtime.checkpoint import load_checkpoint
    if run.out_dir is None:
        raise DlcValueError("--resume needs the run directory (--out or --resume DIR)")
    ck_path = run_folder.latest_checkpoint(run.out_dir)
    if ck_path is None:
        raise DlcValueError(f"nothing to resume in {run.out_dir}: no epoch-*.safetensors")
    ck = load_checkpoint(ck_path)
    run_folder.check_checkpoint(ck_path, ck.extra, spec=run.spec, params=run_folder.param_signature(fresh_weights),
                                state_kind=_state_kind(run.job))
    return _Start(ck.epoch, ck.step, ck.extra.get("best"), ck.extra.get("early_stopping"), dict(ck.weights),
                  dict(ck.optimizer_state))


def _train_rank(rank: int, world: int, job: dict) -> TrainResult:
    """One process's training run (the only one, or one rank of a data-parallel run)."""
    from .runtime.early_stopping import EarlyStopping
    run, step, eval_exe, start = _setup({**job, "world": world}, rank)
    s = run.s
    stopper = None
    if s.early_stopping and eval_exe is not None:
        stopper = (EarlyStopping.from_dict(start.early_stopping) if start.early_stopping
                   else EarlyStopping(s.early_stopping, "max" if run.classification else "min"))
    if run.writes and job["resume"]:
        run_folder.repair_best(run.out_dir, start.best, run.key)
    res = _loop(run, step, eval_exe, start, stopper)
    res.rank = rank
    if run.out_dir is not None and world > 1:
        from .runtime.weights import save_weights
        save_weights(run.out_dir / f"rank{rank}.safetensors", res.weights)
    return res


def _loop(run: _Run, step, eval_exe, start: _Start, stopper) -> TrainResult:
    """Epochs of steps, each followed by validation, metrics and a checkpoint."""
    from .runtime.data import num_batches
    from .runtime.metrics import MetricsLog
    from .runtime.progress import TrainProgress
    s, job = run.s, run.job
    steps_per_epoch = num_batches(len(run.ds.train[0]), s.batch, s.drop_last)
    sched = _schedule(s, steps_per_epoch)
    log = MetricsLog(run.out_dir, resume_epoch=start.epoch if job["resume"] else None) if run.writes else None
    history: list[dict] = []
    best, global_step, t_start = start.best, start.step, time.perf_counter()
    try:
        with TrainProgress(s.epochs, steps_per_epoch, enabled=job["progress"] and run.rank == 0,
                           start_epoch=start.epoch) as bar:
            for epoch in range(start.epoch, s.epochs):
                train, global_step = _epoch(run, step, sched, epoch, global_step, bar)
                weights, opt_state = step.state()
                metrics = {"epoch": epoch + 1, "step": global_step, **train}
                if eval_exe is not None:
                    metrics.update(_validate(run, eval_exe, weights))
                metrics["time"] = time.perf_counter() - t_start
                history.append(metrics)
                improved = eval_exe is not None and (best is None or _better(run, metrics[run.key], best[run.key]))
                if improved:
                    best = {"epoch": epoch + 1, run.key: metrics[run.key]}
                stop = stopper.update(metrics[run.key]) if stopper else False
                if run.writes:
                    log.append(metrics)
                    _save_epoch(run, epoch, global_step, weights, opt_state, best, stopper, improved, metrics)
                bar.end_epoch(epoch, {k: v for k, v in metrics.items()
                                      if k.startswith("val") or (k in train and k.endswith("_loss") and k != "train_loss")})
                if stop or _at_max(job, global_step):
                    break
    finally:
        if log:
            log.close()
    weights, _ = step.state()
    return TrainResult(len(history), history, best, dict(weights), str(run.out_dir) if run.out_dir else None)


def _epoch(run: _Run, step, sched, epoch: int, global_step: int, bar) -> tuple[dict, int]:
    """One epoch of steps: (its metrics, the global step).  The metrics are the
    mean training loss and the last learning rate, or for alternating steps
    each step's mean loss (`<step>_loss`)."""
    from .runtime.data import augment, batches, epoch_rng
    from .runtime.data_prefetch import Prefetch
    s = run.s
    parts: dict[str, float] = {}
    losses, seen, cur_lr = 0.0, 0, sched.lr(epoch) if not sched.per_step else None
    lr_epoch = cur_lr
    aug_rng = epoch_rng(s.seed, epoch)   # reproducible on resume, like the shuffle
    stream = batches(run.ds.train[0], run.ds.train[1], s.batch, shuffle=s.shuffle, seed=s.seed, epoch=epoch,
                     drop_last=s.drop_last)
    with Prefetch(stream, source=run.ds.info.get("path", run.ds.name)) as stream:   # batches made while steps run
        for i, (xb, yb) in enumerate(stream):
            cur_lr = sched.lr(global_step) if sched.per_step else lr_epoch
            global_step += 1
            if s.augment:
                xb = augment(xb, s.augment, aug_rng)
            loss = step.run(run.feed(xb, yb), cur_lr, global_step, s.seed * 1_000_003 + global_step)
            _check_finite(run, step, loss, epoch, i)
            losses += loss * len(xb)
            for k, v in getattr(step, "parts", {}).items():
                parts[f"{k}_loss"] = parts.get(f"{k}_loss", 0.0) + v * len(xb)
            seen += len(xb)
            bar.update(epoch, i + 1, loss=loss, lr=getattr(step, "lr", sched.first(cur_lr)), samples=len(xb))
            if _at_max(run.job, global_step):
                break
    if seen == 0:
        raise DlcValueError(f"epoch {epoch + 1} has no batches: {len(run.ds.train[0])} training examples, "
                            f"batch {s.batch} with drop_last", s.span, "lower the batch size or drop drop_last")
    if parts:
        return {k: v / seen for k, v in parts.items()}, global_step
    extra = step.epoch_metrics() if hasattr(step, "epoch_metrics") else {}    # --precision: loss scale, skips
    return {"train_loss": losses / seen, "lr": sched.first(cur_lr), **extra}, global_step


def _check_finite(run: _Run, step, loss: float, epoch: int, i: int) -> None:
    """Stop with an error rather than train on (and checkpoint) NaN or inf."""
    where = f"at epoch {epoch + 1}, step {i + 1}"
    hint = "lower the learning rate or clip gradients (clip_grad_norm = 1.0)"
    if not np.isfinite(loss):
        raise DlcError(f"the loss became {loss} {where}", run.s.span, hint)
    bad = step.nonfinite_param()
    if bad is not None:
        raise DlcError(f"parameter '{bad}' became non-finite {where}", run.s.span, hint)


def _schedule(s, steps_per_epoch: int):
    from .train_transfer import GroupSchedule
    return GroupSchedule(s, steps_per_epoch)      # one lr per parameter group


def _at_max(job: dict, global_step: int) -> bool:
    return job["max_steps"] is not None and global_step >= job["max_steps"]


def _better(run: _Run, value: float, best: float) -> bool:
    return value > best if run.classification else value < best


def _save_epoch(run: _Run, epoch, global_step, weights, opt_state, best, stopper, improved, metrics) -> None:
    """The epoch's checkpoint, then (if it improved) best.safetensors: a kill
    between the two leaves best stale, which `--resume` repairs."""
    from .runtime.checkpoint import save_checkpoint
    from .runtime.weights import save_weights
    extra = {"best": best, "model": run.name, "seed": run.s.seed, "spec_sha256": run.spec,
             "params": run_folder.param_signature(weights), "state_kind": _state_kind(run.job)}
    if stopper is not None:
        extra["early_stopping"] = stopper.to_dict()
    save_checkpoint(run_folder.checkpoint_path(run.out_dir, epoch + 1), weights=weights,
                    optimizer_state=opt_state, step=global_step, epoch=epoch + 1,
                    rng_state={"seed": run.s.seed, "epoch": epoch + 1}, extra=extra)
    if improved:
        save_weights(run.out_dir / run_folder.BEST, weights, {"epoch": str(epoch + 1), run.key: str(metrics[run.key])})


def _validate(run: _Run, exe, weights: dict) -> dict:
    from .runtime.data_prefetch import Prefetch
    from .runtime.metrics import accuracy
    xs, ys = run.ds.val
    total, n, correct = 0.0, 0, 0.0
    size = max(run.s.batch, 256)
    chunks = ((xs[i:i + size], ys[i:i + size]) for i in range(0, len(xs), size))
    with Prefetch(chunks, source=run.ds.info.get("path", run.ds.name)) as stream:   # lazily read rows, ahead
        for xb, yb in stream:
            outs, _ = exe.run(run.feed(xb, yb), weights)
            total += float(outs["loss"]) * len(xb)
            n += len(xb)
            if run.classification:
                correct += accuracy(outs[run.eval_graph.output_names[1]], yb) * len(xb)
    out = {"val_loss": total / max(n, 1)}
    if run.classification:
        out["val_accuracy"] = correct / max(n, 1)
    return out
