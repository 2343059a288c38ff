"""Mixed-precision training: `dlc train ... --precision bf16|fp16`.

The parameters stay fp32 (the master weights): the step graph goes through
the `autocast` pass, which runs the forward and backward convolutions and
matmuls in bf16/fp16 and keeps losses, normalisation statistics and the
optimizer update in fp32.  For fp16 the step also scales the loss
(`compiler.loss_scale`) and this module drives the scale exactly as
`torch.cuda.amp.GradScaler` does:

    scale starts at 2**16 (init_scale)
    a step with an inf/NaN gradient is skipped and scale *= 0.5 (backoff_factor)
    after 2000 (growth_interval) consecutive clean steps, scale *= 2.0 (growth_factor)

The scale and the number of skipped steps go to the epoch's metrics
(`metrics.jsonl`: `loss_scale`, `skipped_steps`).  bf16 has fp32's exponent
range and, as with torch, needs no loss scaling.

    step = train_step(backend, plan, "fp16")     # a GraphTrainStep with a GradScaler
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .backends.protocol import GraphTrainStep, fresh_optimizer_state
from .compiler.loss_scale import LOSS_SCALE, NONFINITE
from .errors import DlcError

PRECISIONS = ("fp32", "bf16", "fp16")


@dataclass
class GradScaler:
    """torch.cuda.amp.GradScaler's scale update (`_amp_update_scale_`)."""

    scale: float = 2.0 ** 16
    growth_factor: float = 2.0
    backoff_factor: float = 0.5
    growth_interval: int = 2000
    growth_tracker: int = 0       # consecutive clean steps since the last change
    skipped: int = 0              # steps skipped so far (this run)

    def update(self, found_inf: bool) -> None:
        if found_inf:
            self.scale *= self.backoff_factor
            self.growth_tracker = 0
            self.skipped += 1
            return
        self.growth_tracker += 1
        if self.growth_tracker == self.growth_interval:
            self.scale *= self.growth_factor
            self.growth_tracker = 0


# the scaler a training run starts with (tests swap it for a short growth interval)
new_scaler = GradScaler


class _ScaledExecutable:
    """The compiled step graph with the scale fed in and the overflow read out."""

    def __init__(self, exe, scaler: GradScaler):
        self.exe, self.scaler = exe, scaler
        self.last_skipped = False

    def run(self, inputs: dict, weights: dict, seed: int = 0):
        inputs = {**inputs, LOSS_SCALE: np.asarray(self.scaler.scale, dtype=np.float32)}
        outs, updates = self.exe.run(inputs, weights, seed)
        self.last_skipped = float(np.asarray(outs[NONFINITE])) > 0
        self.scaler.update(self.last_skipped)
        return outs, updates


class MixedPrecisionStep(GraphTrainStep):
    """A symbolic training step in low precision; with a scaler for fp16."""

    def __init__(self, exe, graph, weights: dict, optimizer_state: dict, precision: str,
                 scaler: GradScaler | None):
        self.scaler = scaler
        self.precision = precision
        super().__init__(_ScaledExecutable(exe, scaler) if scaler is not None else exe, graph, weights,
                         optimizer_state)

    def run(self, feed: dict, lr: float, step: int, seed: int) -> float:
        # a skipped step is no optimizer step: Adam's bias correction counts the steps taken, as torch's
        taken = step - (self.scaler.skipped if self.scaler is not None else 0)
        return super().run(feed, lr, taken, seed)

    def epoch_metrics(self) -> dict:
        if self.scaler is None:
            return {}
        return {"loss_scale": self.scaler.scale, "skipped_steps": self.scaler.skipped}


def check_precision(precision: str) -> None:
    if precision not in PRECISIONS:
        raise DlcError(f"unknown precision '{precision}'", hint="use --precision fp32, bf16 or fp16")


def train_step(backend, plan, precision: str, scaler: GradScaler | None = None) -> MixedPrecisionStep:
    """The backend's symbolic training step for `plan` in `precision` (bf16 or
    fp16; `plan.opt.precision` must say the same, so that autocast runs)."""
    check_precision(precision)
    if plan.grad != "symbolic":
        raise DlcError(f"--precision {precision} trains with dlc's symbolic gradients, not {plan.grad}",
                       hint="use --grad symbolic (the default with --precision)")
    if plan.world > 1:
        raise DlcError(f"--precision {precision} trains in one process", hint="drop --nproc")
    plan.loss_scaling = precision == "fp16"
    prog = plan.step_program()
    state = plan.optimizer_state if plan.optimizer_state is not None else fresh_optimizer_state(plan, prog.params)
    exe = backend.compile(prog.graph, bind=plan.bind)
    if precision == "fp16" and scaler is None:
        scaler = new_scaler()
    return MixedPrecisionStep(exe, prog.graph, plan.weights, state, precision,
                              scaler if precision == "fp16" else None)
