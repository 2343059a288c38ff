"""The backend protocol: what every backend offers the CLI, the API, `dlc bench`
and the trainer.

A backend compiles a `Graph` for a target into an `Executable`:

    exe = backend.compile(graph, target="cpu", bind={"N": 8})
    outs, updates = exe.run(inputs, weights, seed)      # NumPy in, NumPy out

`outs` maps the graph's output names to arrays; `updates` maps buffer names to
their new values (batch-norm running statistics in train mode).  The same
executable runs a forward graph and a training-step graph (forward, loss,
backward and optimizer update as one graph, `compiler.training`): a training
step is a graph like any other.

`backend.train_step(plan)` wraps that into a `TrainStep` holding the weights
and the optimizer state between steps.  The default runs the symbolic
training-step graph (`GraphTrainStep`); a backend may run a step its own way
(the torch backend: autograd and torch.optim, optionally data-parallel).

This module imports no backend: each backend package imports it.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

import numpy as np

from ..compiler.dims import Dim
from ..errors import DlcError


class Executable(Protocol):
    def run(self, inputs: dict, weights: dict, seed: int = 0) -> tuple[dict, dict]: ...


@dataclass
class StepPlan:
    """What a backend needs to build a training step (built by `dlc.trainer`):
    the train section as the compiler takes it (`compiler.trainspec.TrainSpec`:
    the loss as IR graphs, the optimizer) and the model as graphs.

    The model graph is built on demand, fresh at each call (building a
    training step extends it in place): an autograd step needs no symbolic
    backward."""

    spec: Any                              # compiler.trainspec.TrainSpec
    model_graph: Callable[[], Any]         # () -> a fresh Graph of the model in train mode, sizes symbolic
    weights: dict                          # initial weights and buffers, by name
    optimizer_state: dict | None           # resumed optimizer state; None: the optimizer's initial state
    module_graph: Any = None               # the Graph a backend generates its module from (torch autograd)
    seed: int = 0
    grad: str = "symbolic"                 # or "autograd" (backends that have it)
    bind: dict = field(default_factory=dict)
    rank: int = 0                          # data-parallel rank and world size
    world: int = 1
    opt: Any = None                        # compiler.passes.PipelineOptions (None: the default, -O2)
    backend: str = "numpy"                 # the backend the step graph is optimised for
    loss_scaling: bool = False             # fp16: dynamic loss scaling in the step graph (dlc.mixed_precision)

    @property
    def optimizer(self) -> str:
        return self.spec.optimizer

    @property
    def optimizer_args(self) -> dict:
        return dict(self.spec.optimizer_args)

    def step_program(self):
        """dlc's symbolic training step (`compiler.training.TrainStep`): forward,
        loss, backward and optimizer update as one graph."""
        from ..compiler.passes import run_pipeline
        from ..compiler.training import build_train_step
        prog = build_train_step(self.model_graph(), self.spec, loss_scaling=self.loss_scaling)
        run_pipeline(prog.graph, self.opt, backend=self.backend, dims=self.bind)
        return prog


class TrainStep(Protocol):
    # lr: a float, or one per parameter group (the optimizer's defaults first)
    def run(self, feed: dict, lr: float | list[float], step: int, seed: int) -> float: ...
    def state(self) -> tuple[dict, dict]: ...          # (weights, optimizer state) as NumPy arrays
    def nonfinite_param(self) -> str | None: ...       # the first non-finite weight, if any


class Backend:
    """Base of every backend.  Subclasses set the class attributes and
    implement `compile`; the rest has working defaults."""

    name = ""
    summary = ""
    requires: str | None = None     # the Python module the backend needs
    hint = ""                       # how to install it
    grads = ("symbolic",)           # the gradient sources `train_step` accepts
    # whether `run` and `bench` want the model's module graph (`module_graph=`,
    # `dlc.Model.module_graph()`: the graph module code generation starts from)
    uses_module_graph = False

    def check_available(self) -> None:
        """A one-line `DlcError` with the install hint if the dependency is missing."""
        if self.requires is None:
            return
        import importlib.util
        if importlib.util.find_spec(self.requires) is None:
            raise DlcError(f"the {self.name} backend needs {self.requires}, which is not installed",
                           hint=self.hint)

    def compile(self, graph, *, target: str = "cpu", bind: dict | None = None) -> Executable:
        raise NotImplementedError

    # forward pass ----------------------------------------------------------------------
    def run(self, graph, inputs: dict, weights: dict, *, seed: int = 0, mode: str = "eval",
            dtype: str | None = None, bind: dict | None = None, module_graph=None) -> tuple[dict, dict]:
        """One forward pass of `graph` (already elaborated in `mode`)."""
        return self.compile(graph, bind=bind).run(inputs, weights, seed)

    def bench(self, graph, inputs: dict, weights: dict, *, repeat: int, warmup: int, seed: int = 0,
              module_graph=None, target: str = "cpu", arch=None, target_opts=(), rpc_addr=None,
              bind: dict | None = None) -> tuple[list[float], dict]:
        """Seconds per forward pass after `warmup` calls, and notes for the report."""
        if rpc_addr:
            raise DlcError("--rpc runs TVM libraries only", hint="use --backend tvm")
        exe = self.compile(graph, target=target, bind=bind)
        return time_calls(lambda: exe.run(inputs, weights, seed), repeat, warmup), {}

    # training --------------------------------------------------------------------------
    def train_step(self, plan: StepPlan) -> TrainStep:
        if plan.grad not in self.grads:
            raise DlcError(f"the {self.name} backend trains with {' or '.join(self.grads)} gradients, "
                           f"not {plan.grad}", hint="drop --grad (or use --backend torch for autograd)")
        if plan.world > 1:
            raise DlcError(f"the {self.name} backend trains in one process", hint="drop --nproc")
        prog = plan.step_program()
        state = plan.optimizer_state if plan.optimizer_state is not None else fresh_optimizer_state(plan, prog.params)
        return GraphTrainStep(self.compile(prog.graph, bind=plan.bind), prog.graph, plan.weights, state)

    def launch(self, nproc: int, fn, *args):
        """Run `fn(rank, world, *args)` in every training process; rank 0's result."""
        if nproc > 1:
            raise DlcError(f"--nproc {nproc}: the {self.name} backend trains in one process",
                           hint="data-parallel training needs --backend torch")
        return fn(0, 1, *args)


class GraphTrainStep:
    """A training step that runs the symbolic training-step graph.

    The graph takes the batch, the optimizer state (one input per state
    array), `lr` and `step`, and returns the loss, `param:<name>` (the updated
    weights), `state:<name>` (the updated optimizer state) and buffer updates.
    """

    def __init__(self, exe: Executable, graph, weights: dict, optimizer_state: dict):
        self.exe = exe
        self.weights = dict(weights)
        self.opt_state = dict(optimizer_state)
        lr_in = next((v for v in graph.inputs if v.name == "lr"), None)
        self.scalar_dtype = lr_in.type.dtype.numpy_name if lr_in is not None else "float32"

    def run(self, feed: dict, lr: float, step: int, seed: int) -> float:
        inputs = dict(feed)
        inputs.update(self.opt_state)
        lrs = list(lr) if isinstance(lr, (list, tuple)) else [lr]   # one per parameter group
        inputs["lr"] = np.asarray(lrs[0], dtype=self.scalar_dtype)
        for k, v in enumerate(lrs[1:], start=1):
            inputs[f"lr_g{k}"] = np.asarray(v, dtype=self.scalar_dtype)
        inputs["step"] = np.asarray(step, dtype=self.scalar_dtype)
        outs, updates = self.exe.run(inputs, self.weights, seed)
        for k, v in outs.items():
            if k.startswith("param:"):
                self.weights[k[6:]] = v
            elif k.startswith("state:"):
                self.opt_state[k[6:]] = v
        self.weights.update(updates)
        return float(outs["loss"])

    def state(self) -> tuple[dict, dict]:
        return self.weights, self.opt_state

    def nonfinite_param(self) -> str | None:
        return first_nonfinite(self.weights)


def fresh_optimizer_state(plan: StepPlan, params) -> dict:
    """The optimizer's initial state arrays (zeros, or its declared fill) for `params`."""
    from ..compiler.optim import make_optimizer
    out = {}
    for p in params:    # per parameter: its param group's optimizer arguments
        opt = make_optimizer(plan.optimizer, **plan.spec.optimizer_args_for(p.name))
        for sname, stype, fill in opt.state_specs(p.type):
            out[f"{sname}.{p.name}"] = np.full(tuple(int(d) for d in stype.shape), fill, dtype=stype.dtype.numpy_name)
    return out


def first_nonfinite(arrays: dict) -> str | None:
    for k, v in arrays.items():
        a = np.asarray(v)
        if a.dtype.kind == "f" and not np.isfinite(a).all():
            return k
    return None


def input_dims(graph, inputs: dict) -> dict[str, int]:
    """Sizes of the plain symbolic dimensions of `graph`'s inputs (N, B, T...),
    read off the arrays in `inputs`."""
    out: dict[str, int] = {}
    for v in graph.inputs:
        a = inputs.get(v.name)
        if a is None:
            continue
        for d, n in zip(v.type.shape, np.shape(a)):
            if isinstance(d, Dim) and not d.is_const and len(d.symbols()) == 1 \
                    and d == Dim.symbol(next(iter(d.symbols()))):
                out.setdefault(next(iter(d.symbols())), int(n))
    return out


def time_calls(call, repeat: int, warmup: int) -> list[float]:
    times = []
    for i in range(warmup + repeat):
        t0 = time.perf_counter()
        call()
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    return times
