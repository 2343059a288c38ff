"""`dlc train`: compile a spec's training program and run it.

The training step (forward, loss, backward, optimizer update) is one IR
graph (`compiler.training`); this module feeds it data, advances the
learning-rate schedule, validates after each epoch, logs metrics and writes
checkpoints.  Everything that affects the numbers derives from the seed, the
epoch and the step, so `--resume` continues bit for bit.
"""
from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import DlcError, DlcNameError, DlcValueError


@dataclass
class TrainResult:
    epochs_run: int
    history: list[dict] = field(default_factory=list)
    best: dict | None = None
    weights: dict | None = None
    out: str | None = None


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


def _latest_checkpoint(out: Path):
    best = None
    for p in out.glob("epoch-*.safetensors"):
        m = re.fullmatch(r"epoch-(\d+)\.safetensors", p.name)
        if m and (best is None or int(m.group(1)) > best[0]):
            best = (int(m.group(1)), p)
    return best[1] if best else None


def train(path, *, model: str | None = None, data: str | None = None, data_path: str | None = None,
          epochs: int | None = None, batch: int | None = None, seed: int | None = None, out: str | None = None,
          resume: bool = False, bind: dict | None = None, progress: bool = True, lr: float | None = None,
          max_steps: int | None = None, backend: str = "numpy", grad: str = "symbolic" ,
          nproc: int = 1) -> TrainResult:
    """Train the model of a `.dln` file as its `train` section declares.

    backend="numpy" runs dlc's training-step IR (symbolic gradients) on the
    reference interpreter.  backend="torch" runs the generated PyTorch code:
    grad="autograd" (the default for torch) trains the generated nn.Module with
    torch autograd and torch.optim, optionally under DistributedDataParallel
    with `nproc` processes; grad="symbolic" lowers dlc's own training-step IR
    to torch code.  backend="tvm" compiles the training-step IR (symbolic
    gradients only) and the validation graph with TVM for the host CPU
    (backends/tvm/training.py).
    """
    from .backends.numpy.interpreter import Interpreter
    from .compiler.init import init_params
    from .compiler.schedules import make_schedule
    from .compiler.training import build_loss, build_train_step, state_fill
    from .frontend.modules import load_module
    from .frontend.train import train_settings
    from .runtime.checkpoint import load_checkpoint, save_checkpoint
    from .runtime.data import augment, batches, epoch_rng, load_dataset, num_batches
    from .runtime.early_stopping import EarlyStopping
    from .runtime.metrics import MetricsLog, accuracy
    from .runtime.progress import TrainProgress
    from .runtime.weights import save_weights

    mod = load_module(path)
    name, tdef = _find_train(mod, model)
    if tdef is None:
        raise DlcNameError(f"{path} has no train section for model '{name}'", None,
                           "add `train Model on digits { loss = ...; optimizer = ... }`")
    s = train_settings(mod, tdef, bind)
    if epochs is not None:
        s.epochs = epochs
    if batch is not None:
        s.batch = batch
    if seed is not None:
        s.seed = seed
    if lr is not None:
        s.optimizer_args["lr"] = lr
    dname = data or s.dataset
    if dname is None:
        raise DlcValueError("no data set: name one in the train section (`train M on digits`) or with --data")
    if s.steps:
        if backend != "numpy":
            raise DlcValueError("alternating steps train on the numpy backend only")
        return _train_alternating(mod, name, s, dname, data_path, out, bind, progress, max_steps)
    if backend not in ("numpy", "torch", "tvm"):
        raise DlcValueError(f"training on backend '{backend}' is not available", None, "use numpy, torch or tvm")
    if grad not in ("symbolic", "autograd"):
        raise DlcValueError(f"--grad must be symbolic or autograd, got {grad!r}")
    if backend == "tvm" and grad == "autograd":
        raise DlcValueError("the tvm backend trains with dlc's symbolic gradients only", None,
                            "drop --grad autograd (or use --backend torch for autograd)")
    if nproc > 1 and not (backend == "torch" and grad == "autograd"):
        raise DlcValueError("--nproc needs --backend torch with autograd gradients")
    if backend == "torch" and grad == "autograd":
        return _train_torch_autograd(mod, name, s, dname, data_path, out, bind, progress, max_steps, nproc, resume)
    from .frontend.blocks import elaborate_model
    step_prog = build_train_step(elaborate_model(mod, name, "train", bind), s)
    g = step_prog.graph
    eval_g, eval_loss, _ = build_loss(elaborate_model(mod, name, "eval", bind), s.loss.graph("eval"))
    eval_g.outputs = [eval_loss] + list(eval_g.outputs)
    eval_g.output_names = ["loss"] + list(eval_g.output_names)
    x_in = g.inputs[0]
    per_example = tuple(x_in.type.shape[1:])
    if any(not isinstance(d, int) for d in per_example):
        raise DlcValueError(f"the model input {x_in.type} must have known sizes except the batch", g.span)
    ds = load_dataset(dname, seed=0, path=data_path, input_shape=per_example).reshaped(per_example)
    label_t = step_prog.label.type if step_prog.label is not None else None
    x_dtype = x_in.type.dtype.numpy_name

    def feed(xb, yb):
        out = {x_in.name: xb.astype(x_dtype)}
        if label_t is not None:
            y = yb.astype(label_t.dtype.numpy_name)
            if label_t.rank == 2 and y.ndim == 1 and label_t.dtype.is_float:
                y = y.reshape(-1, 1)
            out["label"] = y
        return out

    steps_per_epoch = num_batches(len(ds.train[0]), s.batch)
    from .compiler.optim import make_optimizer
    base_lr = float(make_optimizer(s.optimizer, **s.optimizer_args).hyper["lr"])
    sched = make_schedule(s.schedule, base_lr, epochs=s.epochs, steps_per_epoch=steps_per_epoch,
                          **s.schedule_args)
    pdt = step_prog.params[0].type.dtype.numpy_name
    out_dir = Path(out) if out else None
    weights = init_params(g, s.seed)
    opt_state = {k: np.full(tuple(int(d) for d in t.shape), fill, dtype=t.dtype.numpy_name)
                 for k, (t, fill) in state_fill(s, step_prog.params).items()}
    start_epoch, global_step = 0, 0
    classification = label_t is not None and label_t.dtype.is_int
    stopper = EarlyStopping(s.early_stopping, "max" if classification else "min") if s.early_stopping else None
    best = None
    if resume:
        if out_dir is None:
            raise DlcValueError("--resume needs the run directory (--out or --resume DIR)")
        ck_path = _latest_checkpoint(out_dir)
        if ck_path is None:
            raise DlcValueError(f"nothing to resume in {out_dir}: no epoch-*.safetensors")
        ck = load_checkpoint(ck_path)
        weights = dict(ck.weights)
        opt_state = dict(ck.optimizer_state)
        start_epoch, global_step = ck.epoch, ck.step
        best = ck.extra.get("best")
        if stopper is not None and ck.extra.get("early_stopping"):
            stopper = EarlyStopping.from_dict(ck.extra["early_stopping"])
    log = MetricsLog(out_dir / "metrics.jsonl", resume_epoch=start_epoch if resume else None) if out_dir else None
    history: list[dict] = []
    interps: dict = {}   # one interpreter per batch size: attribute caches survive across steps
    torch_runner = None   # the compiled step on the torch or tvm backend
    eval_runner = None    # the tvm backend validates with the compiled eval graph
    t_start = time.perf_counter()
    try:
        with TrainProgress(s.epochs, steps_per_epoch, enabled=progress) as bar:
            for epoch in range(start_epoch, s.epochs):
                losses, seen = 0.0, 0
                lr_epoch = sched.lr(epoch) if not sched.per_step else None
                aug_rng = epoch_rng(s.seed, epoch)   # reproducible on resume, like the shuffle
                for i, (xb, yb) in enumerate(batches(ds.train[0], ds.train[1], s.batch, shuffle=s.shuffle,
                                                     seed=s.seed, epoch=epoch)):
                    cur_lr = sched.lr(global_step) if sched.per_step else lr_epoch
                    global_step += 1
                    if s.augment:
                        xb = augment(xb, s.augment, aug_rng)
                    inputs = feed(xb, yb)
                    inputs.update(opt_state)
                    inputs["lr"] = np.asarray(cur_lr, dtype=pdt)
                    inputs["step"] = np.asarray(global_step, dtype=pdt)
                    if backend == "torch":
                        if torch_runner is None:
                            from .backends.torch.training import TorchStepRunner
                            torch_runner = TorchStepRunner(g)
                        outs, updates = torch_runner(inputs, weights, s.seed * 1_000_003 + global_step)
                    elif backend == "tvm":
                        if torch_runner is None:
                            from .backends.tvm.training import TvmStepRunner
                            torch_runner = TvmStepRunner(g, "cpu", bind=bind)
                        outs, updates = torch_runner(inputs, weights, s.seed * 1_000_003 + global_step)
                    else:
                        interp = interps.get(len(xb))
                        if interp is None:
                            interp = interps[len(xb)] = Interpreter(g, dims={"N": len(xb)})
                        interp.seed = s.seed * 1_000_003 + global_step
                        outs, updates = interp.run(inputs, weights)
                    for k, v in outs.items():
                        if k.startswith("param:"):
                            weights[k[6:]] = v
                        elif k.startswith("state:"):
                            opt_state[k[6:]] = v
                    weights.update(updates)
                    loss = float(outs["loss"])
                    if not np.isfinite(loss):
                        raise DlcError(f"the loss became {loss} at epoch {epoch + 1}, step {i + 1}", s.span,
                                       "lower the learning rate or clip gradients (clip_grad_norm = 1.0)")
                    losses += loss * len(xb)
                    seen += len(xb)
                    bar.update(epoch, i + 1, loss=loss, lr=cur_lr, samples=len(xb))
                    if max_steps is not None and global_step >= max_steps:
                        break
                metrics = {"epoch": epoch + 1, "step": global_step, "train_loss": losses / max(seen, 1),
                           "lr": float(cur_lr)}
                if backend == "tvm" and eval_runner is None:
                    from .backends.tvm.training import TvmStepRunner
                    eval_runner = TvmStepRunner(eval_g, "cpu", bind=bind)
                metrics.update(_validate(eval_g, weights, ds.val, feed, s.batch, classification, accuracy,
                                         eval_runner))
                metrics["time"] = time.perf_counter() - t_start
                history.append(metrics)
                key = "val_accuracy" if classification else "val_loss"
                improved = best is None or (metrics[key] > best[key] if classification else metrics[key] < best[key])
                if improved:
                    best = {k: metrics[k] for k in ("epoch", key)}
                if log:
                    log.append(metrics)
                stop = stopper.update(metrics[key]) if stopper else False
                if out_dir:
                    extra = {"best": best, "model": name, "seed": s.seed}
                    if stopper is not None:
                        extra["early_stopping"] = stopper.to_dict()
                    save_checkpoint(out_dir / f"epoch-{epoch + 1:03d}.safetensors", weights=weights,
                                    optimizer_state=opt_state, step=global_step, epoch=epoch + 1,
                                    rng_state={"seed": s.seed, "epoch": epoch + 1}, extra=extra)
                    if improved:
                        save_weights(out_dir / "best.safetensors", weights,
                                     {"epoch": str(epoch + 1), key: str(metrics[key])})
                bar.end_epoch(epoch, {k: v for k, v in metrics.items() if k.startswith("val")})
                if stop or (max_steps is not None and global_step >= max_steps):
                    break
    finally:
        if log:
            log.close()
    return TrainResult(len(history), history, best, weights, str(out_dir) if out_dir else None)


def _validate(eval_g, weights, val, feed, batch, classification, accuracy, runner=None) -> dict:
    from .backends.numpy.interpreter import Interpreter
    xs, ys = val
    total, n, correct = 0.0, 0, 0.0
    size = max(batch, 256)
    for i in range(0, len(xs), size):
        xb, yb = xs[i:i + size], ys[i:i + size]
        if runner is not None:
            outs, _ = runner(feed(xb, yb), weights)
        else:
            outs, _ = Interpreter(eval_g, dims={"N": len(xb)}).run(feed(xb, yb), weights)
        total += float(outs["loss"]) * len(xb)
        n += len(xb)
        if classification:
            logits = outs[eval_g.output_names[1]]
            correct += accuracy(logits, yb) * len(xb)
    out = {"val_loss": total / max(n, 1)}
    if classification:
        out["val_accuracy"] = correct / max(n, 1)
    return out


def _train_alternating(mod, name, s, dname, data_path, out, bind, progress, max_steps) -> TrainResult:
    """Alternating updates (a GAN): each batch runs every `step` in order."""
    from .backends.numpy.interpreter import Interpreter
    from .compiler.init import init_params
    from .compiler.training import build_alternating, state_fill  # noqa: F401
    from .runtime.data import batches, load_dataset, num_batches
    from .runtime.metrics import MetricsLog
    from .runtime.progress import TrainProgress
    from .runtime.checkpoint import save_checkpoint
    progs = build_alternating(s.steps)
    x_in = progs[0][1].graph.inputs[0]
    per_example = tuple(x_in.type.shape[1:])
    ds = load_dataset(dname, seed=0, path=data_path, input_shape=per_example).reshaped(per_example)
    weights: dict = {}
    states: dict = {}
    for st, prog, opt in progs:
        for k, v in init_params(prog.graph, s.seed).items():
            weights.setdefault(k, v)
        for p in prog.params:
            for sname, stype, fill in opt.state_specs(p.type):
                states[f"{st.name}/{sname}.{p.name}"] = np.full(tuple(int(d) for d in stype.shape), fill,
                                                                 dtype=stype.dtype.numpy_name)
    out_dir = Path(out) if out else None
    log = MetricsLog(out_dir / "metrics.jsonl") if out_dir else None
    steps_per_epoch = num_batches(len(ds.train[0]), s.batch)
    history, global_step, t0 = [], 0, time.perf_counter()
    try:
        with TrainProgress(s.epochs, steps_per_epoch, enabled=progress) as bar:
            for epoch in range(s.epochs):
                sums = {st.name: 0.0 for st, _, _ in progs}
                n = 0
                for i, (xb, _yb) in enumerate(batches(ds.train[0], ds.train[1], s.batch, shuffle=s.shuffle,
                                                      seed=s.seed, epoch=epoch)):
                    global_step += 1
                    for st, prog, _opt in progs:
                        g = prog.graph
                        dt = prog.params[0].type.dtype.numpy_name
                        feed = {x_in.name: xb.astype(x_in.type.dtype.numpy_name),
                                "lr": np.asarray(_opt.hyper["lr"], dtype=dt),
                                "step": np.asarray(global_step, dtype=dt)}
                        feed.update({k: v for k, v in states.items() if k.startswith(st.name + "/")})
                        needed = {p.name for p in g.params}
                        outs, upd = Interpreter(g, seed=s.seed * 1_000_003 + global_step,
                                                dims={"N": len(xb)}).run(feed, {k: weights[k] for k in needed})
                        for k, v in outs.items():
                            if k.startswith("param:"):
                                weights[k[6:]] = v
                            elif k.startswith("state:"):
                                states[k[6:]] = v
                        weights.update(upd)
                        loss = float(outs["loss"])
                        if not np.isfinite(loss):
                            raise DlcError(f"step {st.name}: the loss became {loss} at update {global_step}", st.span)
                        sums[st.name] += loss * len(xb)
                    n += len(xb)
                    bar.update(epoch, i + 1, loss=loss, lr=float(feed["lr"]), samples=len(xb))
                    if max_steps is not None and global_step >= max_steps:
                        break
                metrics = {"epoch": epoch + 1, "step": global_step, "time": time.perf_counter() - t0}
                metrics.update({f"{k}_loss": v / max(n, 1) for k, v in sums.items()})
                history.append(metrics)
                if log:
                    log.append(metrics)
                if out_dir:
                    save_checkpoint(out_dir / f"epoch-{epoch + 1:03d}.safetensors", weights=weights,
                                    optimizer_state=states, step=global_step, epoch=epoch + 1,
                                    rng_state={"seed": s.seed, "epoch": epoch + 1}, extra={"model": name})
                bar.end_epoch(epoch, {k: v for k, v in metrics.items() if k.endswith("_loss")})
                if max_steps is not None and global_step >= max_steps:
                    break
    finally:
        if log:
            log.close()
    return TrainResult(len(history), history, None, weights, str(out_dir) if out_dir else None)


def _train_torch_autograd(mod, name, s, dname, data_path, out, bind, progress, max_steps, nproc, resume):
    from .api import Model
    from .backends.torch.training import fit
    from .runtime.data import load_dataset
    if resume:
        raise DlcValueError("--resume is available on the numpy backend and with --grad symbolic")
    model = Model(mod.file, name, bind)
    x_in = model.graph.inputs[0]
    per_example = tuple(x_in.type.shape[1:])
    ds = load_dataset(dname, seed=0, path=data_path, input_shape=per_example).reshaped(per_example)
    if out:
        Path(out).mkdir(parents=True, exist_ok=True)
    res = fit(model, s, ds, epochs=s.epochs, out=out, nproc=nproc, progress=progress, max_steps=max_steps)
    hist = res["history"]
    best = None
    if hist and "val_accuracy" in hist[0]:
        b = max(hist, key=lambda h: h["val_accuracy"])
        best = {"epoch": b["epoch"], "val_accuracy": b["val_accuracy"]}
    return TrainResult(len(hist), hist, best, res.get("weights"), out)
