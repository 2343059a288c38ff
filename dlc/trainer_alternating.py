"""Alternating updates (a GAN's discriminator and generator `step` sections).

Each batch runs every `step`'s training-step graph in order, on the numpy
backend through the backend protocol; each epoch is logged to metrics.jsonl
and checkpointed like `dlc.trainer`'s runs."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from . import run_folder
from .errors import DlcError, DlcValueError


def train_alternating(job: dict):
    from .backends import get_backend
    from .compiler.init import init_params
    from .compiler.training import build_alternating
    from .frontend.modules import load_module
    from .runtime.data import load_dataset
    from .trainer import TrainResult, _settings
    if job["backend"] != "numpy" or job["resume"]:
        raise DlcValueError("alternating steps train on the numpy backend, without --resume")
    mod, name, s, dname = _settings(job)
    progs = build_alternating(mod, name, s.bindings, s.steps, job["bind"])
    x_in = progs[0][1].graph.inputs[0]
    per_example = tuple(x_in.type.shape[1:])
    ds = load_dataset(dname, seed=0, path=job["data_path"], input_shape=per_example).reshaped(per_example)
    weights: dict = {}
    states: dict = {}
    for st, prog, opt in progs:
        for k, v in init_params(prog.graph, s.seed).items():
            weights.setdefault(k, v)
        for p in prog.params:
            for sname, stype, fill in opt.state_specs(p.type):
                states[f"{st.name}/{sname}.{p.name}"] = np.full(tuple(int(d) for d in stype.shape), fill,
                                                                 dtype=stype.dtype.numpy_name)
    numpy_backend = get_backend("numpy")
    exes = [numpy_backend.compile(prog.graph, bind=job["bind"]) for _, prog, _ in progs]
    out_dir = Path(job["out"]) if job["out"] else None
    if out_dir is not None:
        run_folder.prepare(out_dir, resume=False, overwrite=job["overwrite"])
    history = _epochs(job, s, name, progs, exes, x_in, ds, weights, states, out_dir)
    return TrainResult(len(history), history, None, weights, str(out_dir) if out_dir else None)


def _epochs(job, s, name, progs, exes, x_in, ds, weights, states, out_dir) -> list[dict]:
    from .runtime.checkpoint import save_checkpoint
    from .runtime.data import batches, num_batches
    from .runtime.metrics import MetricsLog
    from .runtime.progress import TrainProgress
    log = MetricsLog(out_dir / "metrics.jsonl") if out_dir else None
    steps_per_epoch = num_batches(len(ds.train[0]), s.batch, s.drop_last)
    history, global_step, t0 = [], 0, time.perf_counter()
    max_steps = job["max_steps"]
    try:
        with TrainProgress(s.epochs, steps_per_epoch, enabled=job["progress"]) as bar:
            for epoch in range(s.epochs):
                sums = {st.name: 0.0 for st, _, _ in progs}
                n = 0
                for i, (xb, _yb) in enumerate(batches(ds.train[0], ds.train[1], s.batch, shuffle=s.shuffle,
                                                      seed=s.seed, epoch=epoch, drop_last=s.drop_last)):
                    global_step += 1
                    for (st, prog, opt), exe in zip(progs, exes):
                        loss, lr = _one_step(st, prog, opt, exe, xb, x_in, weights, states, s.seed, global_step)
                        sums[st.name] += loss * len(xb)
                    n += len(xb)
                    bar.update(epoch, i + 1, loss=loss, lr=lr, samples=len(xb))
                    if max_steps is not None and global_step >= max_steps:
                        break
                metrics = {"epoch": epoch + 1, "step": global_step, "time": time.perf_counter() - t0}
                metrics.update({f"{k}_loss": v / max(n, 1) for k, v in sums.items()})
                history.append(metrics)
                if log:
                    log.append(metrics)
                if out_dir:
                    save_checkpoint(run_folder.checkpoint_path(out_dir, epoch + 1), weights=weights,
                                    optimizer_state=states, step=global_step, epoch=epoch + 1,
                                    rng_state={"seed": s.seed, "epoch": epoch + 1},
                                    extra={"model": name, "spec_sha256": run_folder.spec_hash(job["path"]),
                                           "params": run_folder.param_signature(weights)})
                bar.end_epoch(epoch, {k: v for k, v in metrics.items() if k.endswith("_loss")})
                if max_steps is not None and global_step >= max_steps:
                    break
    finally:
        if log:
            log.close()
    return history


def _one_step(st, prog, opt, exe, xb, x_in, weights, states, seed, global_step) -> tuple[float, float]:
    g = prog.graph
    dt = prog.params[0].type.dtype.numpy_name
    lr = float(opt.hyper["lr"])
    feed = {x_in.name: xb.astype(x_in.type.dtype.numpy_name), "lr": np.asarray(lr, dtype=dt),
            "step": np.asarray(global_step, dtype=dt)}
    feed.update({k: v for k, v in states.items() if k.startswith(st.name + "/")})
    needed = {p.name for p in g.params}
    outs, upd = exe.run(feed, {k: weights[k] for k in needed}, seed * 1_000_003 + global_step)
    for k, v in outs.items():
        if k.startswith("param:"):
            weights[k[6:]] = v
        elif k.startswith("state:"):
            states[k[6:]] = v
    weights.update(upd)
    loss = float(outs["loss"])
    if not np.isfinite(loss):
        raise DlcError(f"step {st.name}: the loss became {loss} at update {global_step}", st.span)
    return loss, lr
