"""Training on the PyTorch backend.

Two ways to get gradients, which must agree:

* `autograd` (default): the generated `nn.Module` runs forward, the train
  section's loss is lowered to a torch function, `loss.backward()` gives the
  gradients and `torch.optim` (configured from the train section) updates.
  With `nproc > 1` (or under torchrun) the module trains under
  DistributedDataParallel (gloo): each rank takes an equal slice of every
  global batch (`AutogradStep`, `launch`).
* `symbolic`: dlc's own training-step IR (forward, loss, symbolic backward,
  optimizer update) lowered to torch code (`TorchStepRunner`).

Either way the step runs inside dlc's one training loop (`dlc.trainer`),
which gives every backend the same metrics, checkpoints and `--resume`.
"""
from __future__ import annotations

import os
import socket

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
        # np.asarray(order="C"), not np.ascontiguousarray: that one makes a 0-d input 1-d
        args = [torch.from_numpy(np.asarray(inputs[v.name], order="C")) for v in self.graph.inputs]
        params = {k: torch.from_numpy(np.asarray(v, order="C")) for k, v in weights.items()}
        with torch.no_grad():
            outs, updates = self.fn(*args, params, seed=seed)
        outs = outs if isinstance(outs, (tuple, list)) else (outs,)
        return ({n: o.numpy() for n, o in zip(self.graph.output_names, outs)},
                {k: v.numpy() for k, v in updates.items()})

    def run(self, inputs: dict, weights: dict, seed: int = 0):
        return self(inputs, weights, seed)


class AutogradStep:
    """A training step on the generated `nn.Module`: the train section's loss
    lowered to torch, `loss.backward()`, `torch.optim`.

    With `world > 1` (a process group is up, see `launch`) the module runs
    under DistributedDataParallel: each rank takes an equal slice of every
    global batch and DDP averages the gradients, weighted so that the update
    equals the one-process update on the whole batch.  Every rank sees the
    same batches (the order depends only on seed and epoch), so the ranks
    stay identical.

    The torch random generator is reseeded at every step from the step's
    seed, so that a resumed run draws the same dropout masks."""

    def __init__(self, plan):
        import torch
        from .funcgen import compile_function
        from .modgen import load_module
        self.world, self.rank = plan.world, plan.rank
        self.module = load_module(plan.module_graph)
        self.module.load_state_dict({k: torch.from_numpy(np.array(v, copy=True)) for k, v in plan.weights.items()},
                                    strict=True)
        self.net = self.module
        if self.world > 1:
            from torch.nn.parallel import DistributedDataParallel
            self.net = DistributedDataParallel(self.module)
        loss_g = plan.spec.loss.graph("train")    # the train section's loss, over the module's outputs
        self.loss_fn = compile_function(loss_g)
        self.loss_inputs = list(loss_g.inputs)
        self.out_names = [v.name[4:] for v in loss_g.inputs if v.name.startswith("out:")]
        # the model in train mode, symbolic in the batch: what `check_batch_statistics` reads
        self.train_graph = plan.model_graph()
        self.x_names = [v.name for v in self.train_graph.inputs]    # forward()'s arguments, in order
        self.params = dict(self.module.named_parameters())
        self.opt, self.opt_order = _optimizer_with_groups(plan, self.params)
        self.frozen_bn = _frozen_bn_modules(plan, self.module, self.train_graph)
        if plan.optimizer_state:
            self._load_optimizer_state(plan.optimizer_state)

    def _loss(self, outs, xs: dict, yb):
        outs = outs if isinstance(outs, (tuple, list)) else (outs,)
        feed = {f"out:{n}": o for n, o in zip(self.out_names, outs)}
        feed.update(xs)
        if yb is not None:
            feed["label"] = yb
        res, _ = self.loss_fn(*[feed[v.name] for v in self.loss_inputs], {})
        return res[0] if isinstance(res, (tuple, list)) else res

    def run(self, feed: dict, lr: float, step: int, seed: int) -> float:
        import torch

        from ...compiler.ops.norm import check_batch_statistics
        torch.manual_seed(seed)
        lrs = list(lr) if isinstance(lr, (list, tuple)) else [lr] * len(self.opt.param_groups)
        for gr, v in zip(self.opt.param_groups, lrs):     # one lr per parameter group
            gr["lr"] = v
        yb = feed.get("label")
        n = len(feed[self.x_names[0]])
        chunk = -(-n // self.world)
        lo, hi = min(self.rank * chunk, n), min((self.rank + 1) * chunk, n)
        xs = {k: torch.from_numpy(np.ascontiguousarray(feed[k][lo:hi])) for k in self.x_names}
        # torch raises a bare ValueError on one value per channel: report it at the batchnorm's line
        check_batch_statistics(self.train_graph, inputs=xs)
        yt = torch.from_numpy(np.ascontiguousarray(yb[lo:hi])) if yb is not None else None
        self.module.train()
        for m in self.frozen_bn:      # freeze_bn: running statistics used and left unchanged
            m.eval()
        self.opt.zero_grad()
        loss = self._loss(self.net(*xs.values()), xs, yt)
        # DDP averages gradients over ranks; weight each rank's mean loss by its share so
        # that the update equals the single-process update on the whole global batch
        (loss * ((hi - lo) * self.world / n)).backward()
        self.opt.step()
        lv = loss.detach() * (hi - lo)
        if self.world > 1:
            import torch.distributed as dist
            dist.all_reduce(lv)
        return float(lv) / n

    # state as NumPy, by dlc's names ------------------------------------------------------
    def state(self) -> tuple[dict, dict]:
        weights = {k: v.detach().numpy().copy() for k, v in self.module.state_dict().items()}
        opt = {}
        for name, p in self.params.items():
            for key, val in self.opt.state.get(p, {}).items():
                if val is None:
                    continue
                opt[f"torch.{key}.{name}"] = (val.detach().numpy().copy() if hasattr(val, "detach")
                                              else np.asarray(val))
        return weights, opt

    def _load_optimizer_state(self, flat: dict) -> None:
        import torch
        sd = self.opt.state_dict()
        index = {name: i for i, name in enumerate(self.opt_order)}
        state: dict = {}
        for k, v in flat.items():
            _, key, name = k.split(".", 2)
            state.setdefault(index[name], {})[key] = torch.from_numpy(np.array(v, copy=True))
        self.opt.load_state_dict({"state": state, "param_groups": sd["param_groups"]})

    def nonfinite_param(self) -> str | None:
        import torch
        for name, p in self.params.items():
            if not bool(torch.isfinite(p.detach()).all()):
                return name
        return None


def _optimizer_with_groups(plan, params: dict):
    """torch.optim over the trainable parameters: frozen ones get
    requires_grad False (autograd computes no gradient for them) and join no
    group; each `param_groups` entry is a torch param group with its own
    arguments, the rest form the first group with the optimizer's.  Returns
    (the optimizer, parameter names in the optimizer's order)."""
    spec = plan.spec
    groups: list[list[str]] = [[] for _ in range(len(spec.param_groups) + 1)]
    for name, p in params.items():
        if spec.is_frozen(name):
            p.requires_grad_(False)
        else:
            groups[spec.group_of.get(name, 0)].append(name)
    if not spec.param_groups:
        opt = make_torch_optimizer(plan.optimizer, [params[n] for n in groups[0]], plan.optimizer_args)
        return opt, groups[0]
    from ...compiler.optim import make_optimizer
    torch_groups = []
    for k, names in enumerate(groups):
        extra = spec.param_groups[k - 1].args if k else {}
        kw = dict(make_optimizer(plan.optimizer, **{**plan.optimizer_args, **extra}).hyper)
        if "betas" in kw:
            kw["betas"] = tuple(kw["betas"])
        torch_groups.append({"params": [params[n] for n in names], **kw})
    opt = make_torch_optimizer(plan.optimizer, torch_groups, plan.optimizer_args)
    return opt, [n for names in groups for n in names]


def _frozen_bn_modules(plan, module, train_graph) -> list:
    """With freeze_bn: the submodules whose batch norms belong to frozen blocks."""
    if not plan.spec.freeze_bn:
        return []
    from ...compiler.param_select import frozen_batchnorms
    layers = set(frozen_batchnorms(train_graph, plan.spec))
    return [m for name, m in module.named_modules() if name in layers]


# data-parallel launch ---------------------------------------------------------------------
def launch(nproc: int, fn, *args):
    """Run `fn(rank, world, *args)` in every data-parallel process; rank 0's result.

    Under `torchrun` (RANK and WORLD_SIZE in the environment) this process is
    one rank of a multi-node job and joins it with `env://`; otherwise
    `nproc > 1` spawns that many local ranks joined over gloo on 127.0.0.1."""
    env_world = int(os.environ.get("WORLD_SIZE", "1"))
    if env_world > 1 and "RANK" in os.environ:
        return _rank_main(int(os.environ["RANK"]), env_world, None, None, fn, args)
    if nproc <= 1:
        return fn(0, 1, *args)
    import torch.multiprocessing as mp
    from ...errors import DlcError
    ctx = mp.get_context("spawn")
    results = ctx.SimpleQueue()
    mp.spawn(_rank_main, args=(nproc, _free_port(), results, fn, args), nprocs=nproc, join=True)
    got = [results.get() for _ in range(nproc) if not results.empty()]
    errors = [r for r in got if r[0] == "error"]
    if errors:     # a user error in a rank (e.g. a non-finite loss): the same one line as in one process
        _, cls, message, span, hint = errors[0]
        raise cls(message, span, hint)
    ok = [r[1] for r in got if r[0] == "ok"]
    if not ok:
        raise DlcError("the data-parallel ranks returned no result")
    return ok[0]


def _rank_main(rank, world, port, results, fn, args):
    import torch
    import torch.distributed as dist
    from ...errors import DlcError
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    torch.set_num_threads(1)
    init = f"tcp://127.0.0.1:{port}" if port is not None else "env://"
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    try:
        res = fn(rank, world, *args)
        dist.barrier()
    except DlcError as e:
        if results is None:         # torchrun: this process reports its own error
            raise
        results.put(("error", type(e), e.message, e.span, e.hint))
        return None
    finally:
        dist.destroy_process_group()
    if rank == 0 and results is not None:
        results.put(("ok", res))
    return res


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
