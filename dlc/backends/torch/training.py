"""Training on the PyTorch backend.

Two ways to get gradients, which must agree:

* `autograd` (default): the generated `nn.Module` runs forward, the train
  section's loss is lowered to a torch function, `loss.backward()` gives the
  gradients and `torch.optim` (configured from the train section) updates.
  With `nproc > 1` the module trains under DistributedDataParallel (gloo):
  each rank takes an equal slice of every global batch.
* `symbolic`: dlc's own training-step IR (forward, loss, symbolic backward,
  optimizer update) lowered to torch code, driven by dlc's trainer loop.
"""
from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import numpy as np

TORCH_OPTIMIZERS = {"sgd": "SGD", "adam": "Adam", "adamw": "AdamW", "adagrad": "Adagrad", "rmsprop": "RMSprop"}


def make_torch_optimizer(name: str, params, hyper: dict):
    import torch
    from ...compiler.optim import make_optimizer
    full = make_optimizer(name, **hyper).hyper   # dlc's defaults == torch's; validated
    kw = dict(full)
    if "betas" in kw:
        kw["betas"] = tuple(kw["betas"])
    return getattr(torch.optim, TORCH_OPTIMIZERS[name])(params, foreach=False, **kw)


class TorchStepRunner:
    """Runs a dlc IR graph (e.g. the symbolic training step) as generated torch code."""

    def __init__(self, graph):
        from .funcgen import compile_function
        self.graph = graph
        self.fn = compile_function(graph)

    def __call__(self, inputs: dict, weights: dict, seed: int = 0):
        import torch

        from ...compiler.ops.norm import check_batch_statistics
        check_batch_statistics(self.graph, inputs=inputs)
        args = [torch.from_numpy(np.ascontiguousarray(inputs[v.name])) for v in self.graph.inputs]
        params = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in weights.items()}
        with torch.no_grad():
            outs, updates = self.fn(*args, params, seed=seed)
        outs = outs if isinstance(outs, (tuple, list)) else (outs,)
        return ({n: o.numpy() for n, o in zip(self.graph.output_names, outs)},
                {k: v.numpy() for k, v in updates.items()})


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fit(model, settings, dataset, *, epochs: int, out: str | None, nproc: int = 1, progress: bool = False,
        max_steps: int | None = None) -> dict:
    """Train `model` (a dlc.api.Model) with autograd on the generated module.

    Under `torchrun` (RANK and WORLD_SIZE set in the environment) this process
    is one rank of a multi-node job and joins it with `env://`; otherwise
    `nproc > 1` spawns that many local ranks.
    """
    env_world = int(os.environ.get("WORLD_SIZE", "1"))
    if env_world > 1 and "RANK" in os.environ:
        rank = int(os.environ["RANK"])
        if out:
            Path(out).mkdir(parents=True, exist_ok=True)
        res = _worker(rank, env_world, None, model.path, model.name, model.bind, settings, dataset, epochs, out,
                      progress, max_steps)
        return res or {"history": [], "epochs_run": 0}
    if nproc <= 1:
        return _worker(0, 1, None, model.path, model.name, model.bind, settings, dataset, epochs, out, progress,
                       max_steps)
    import torch.multiprocessing as mp
    port = _free_port()
    result_dir = Path(out) if out else Path(os.environ.get("TMPDIR", "/tmp")) / f"dlc-ddp-{port}"
    result_dir.mkdir(parents=True, exist_ok=True)
    mp.spawn(_worker, args=(nproc, port, model.path, model.name, model.bind, settings, dataset, epochs,
                            str(result_dir), progress, max_steps), nprocs=nproc, join=True)
    import json
    return json.loads((result_dir / "result.json").read_text())


def _worker(rank, world, port, path, name, bind, settings, dataset, epochs, out, progress, max_steps):
    import torch
    import torch.distributed as dist
    from ...api import Model
    from ...compiler.ops.norm import check_batch_statistics
    from ...compiler.schedules import make_schedule
    from ...runtime.data import batches, num_batches
    from ...runtime.metrics import MetricsLog, accuracy
    from ...runtime.weights import save_weights
    from .funcgen import compile_function
    from .modgen import load_module
    torch.manual_seed(settings.seed)
    if world > 1:
        os.environ.setdefault("OMP_NUM_THREADS", "1")
        torch.set_num_threads(1)
        init = f"tcp://127.0.0.1:{port}" if port is not None else "env://"   # env:// under torchrun
        dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    model = Model(path, name, bind)
    module = load_module(model)
    w = model.init_weights(settings.seed)
    module.load_state_dict({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in w.items()}, strict=True)
    net = module
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel
        net = DistributedDataParallel(module)
    loss_g = settings.loss.graph("train")   # the train section's loss, over the module's outputs
    loss_fn = compile_function(loss_g)
    out_names = [v.name[4:] for v in loss_g.inputs if v.name.startswith("out:")]
    opt = make_torch_optimizer(settings.optimizer, module.parameters(), settings.optimizer_args)
    base_lr = opt.param_groups[0]["lr"]
    steps_per_epoch = num_batches(len(dataset.train[0]), settings.batch)
    sched = make_schedule(settings.schedule, base_lr, epochs=epochs, steps_per_epoch=steps_per_epoch,
                          **settings.schedule_args)
    x_name = model.graph.inputs[0].name
    train_g = model.symbolic_graph("train")
    label_t = next((v.type for v in loss_g.inputs if v.name == "label"), None)

    def loss_of(outs, xb, yb):
        outs = outs if isinstance(outs, (tuple, list)) else (outs,)
        feed = dict(zip(out_names, outs))
        feed[x_name] = xb
        if label_t is not None:
            feed["label"] = yb
        args = [feed[v.name[4:]] if v.name.startswith("out:") else feed[v.name] for v in loss_g.inputs]
        res, _ = loss_fn(*args, {})
        return res[0] if isinstance(res, (tuple, list)) else res

    log = MetricsLog(Path(out) / "metrics.jsonl") if (out and rank == 0) else None
    history, step, t0 = [], 0, time.perf_counter()
    for epoch in range(epochs):
        module.train()
        lr_epoch = None if sched.per_step else sched.lr(epoch)
        total, seen = 0.0, 0
        for xb, yb in batches(dataset.train[0], dataset.train[1], settings.batch, shuffle=settings.shuffle,
                              seed=settings.seed, epoch=epoch):
            lr = sched.lr(step) if sched.per_step else lr_epoch
            for gr in opt.param_groups:
                gr["lr"] = lr
            step += 1
            n = len(xb)
            chunk = -(-n // world)
            lo, hi = min(rank * chunk, n), min((rank + 1) * chunk, n)
            xt = torch.from_numpy(xb[lo:hi].astype(np.float32))
            # torch raises a bare ValueError: report it at the batchnorm's line instead
            check_batch_statistics(train_g, inputs={x_name: xt})
            yt = torch.from_numpy(yb[lo:hi].astype(label_t.dtype.numpy_name)) if label_t is not None else None
            opt.zero_grad()
            loss = loss_of(net(xt), xt, yt)
            # DDP averages gradients over ranks; weight each rank's mean loss by its share so
            # that the update equals the single-process update on the whole global batch
            (loss * ((hi - lo) * world / n)).backward()
            opt.step()
            lv = loss.detach() * (hi - lo)
            if world > 1:
                dist.all_reduce(lv)
            total += float(lv)
            seen += n
            if max_steps is not None and step >= max_steps:
                break
        metrics = {"epoch": epoch + 1, "step": step, "train_loss": total / max(seen, 1), "lr": float(lr)}
        if rank == 0:
            module.eval()
            with torch.no_grad():
                xv = torch.from_numpy(dataset.val[0].astype(np.float32))
                yv = dataset.val[1]
                outs = module(xv)
                yvt = torch.from_numpy(yv.astype(label_t.dtype.numpy_name)) if label_t is not None else None
                metrics["val_loss"] = float(loss_of(outs, xv, yvt))
                if label_t is not None and label_t.dtype.is_int:
                    first = outs[0] if isinstance(outs, (tuple, list)) else outs
                    metrics["val_accuracy"] = accuracy(first.numpy(), yv)
            metrics["time"] = time.perf_counter() - t0
            if log:
                log.append(metrics)
        history.append(metrics)
        if max_steps is not None and step >= max_steps:
            break
    state = {k: v.detach().numpy().copy() for k, v in module.state_dict().items()}
    if out:
        save_weights(Path(out) / (f"rank{rank}.safetensors" if world > 1 else "final.safetensors"), state)
    if log:
        log.close()
    result = {"history": history, "epochs_run": len(history)}
    if world > 1:
        dist.barrier()
        if rank == 0 and out:
            import json
            from ...runtime.atomic import atomic_write
            atomic_write(Path(out) / "result.json", json.dumps(result).encode())
        dist.destroy_process_group()
        return None
    result["weights"] = state
    return result
