"""Learning-rate schedules, matching torch.optim.lr_scheduler.

    s = make_schedule("cosine", base_lr=0.1, T_max=20)
    s.lr(0), s.lr(1), ...     # the lr used for update (or epoch) 0, 1, ...

`Schedule.lr(t)` is ``scheduler.get_last_lr()[0]`` after `t` calls of
``scheduler.step()`` on a freshly constructed torch scheduler.  The chainable
schedulers (step, multistep, exponential, cosine, linear_warmup) are
evaluated with torch's own recursive `get_lr` formulas, step by step and
cached, so the values are torch's bit for bit rather than the closed forms'
(which differ in the last digits).

`per_step` says how the trainer advances `t`: once per optimizer update
(onecycle, torch's convention for OneCycleLR, which is stepped per batch) or
once per epoch (every other schedule, stepped per epoch by convention).  It
is an attribute of the instance, so a trainer may override it.

Names and arguments are those of the ``schedule = ...`` setting of a `train`
section (`dlc.frontend.train.SCHEDULES`):

    constant                                       lr = base_lr
    step(step_size, gamma=0.1)                     StepLR
    multistep(milestones, gamma=0.1)               MultiStepLR
    exponential(gamma)                             ExponentialLR
    cosine(T_max, eta_min=0)                       CosineAnnealingLR
    cosine_restarts(T_0, T_mult=1, eta_min=0)      CosineAnnealingWarmRestarts
    onecycle(max_lr, total_steps, pct_start=0.3, div_factor=25,
             final_div_factor=1e4, anneal_strategy="cos")
                                                   OneCycleLR (three_phase=False,
                                                   momentum not cycled)
    linear_warmup(warmup, start_factor=1/3)        LinearLR(start_factor, end_factor=1,
                                                            total_iters=warmup)

`cosine` without T_max takes `epochs`, and `onecycle` without total_steps
takes ``epochs * steps_per_epoch`` (pass them to `make_schedule`).  OneCycleLR
ignores the optimizer's lr: it starts at max_lr / div_factor.
"""
from __future__ import annotations

import math
from collections import Counter
from typing import Any

# name -> {argument: default (None: required)}; the train section checks against this table
DEFAULTS: dict[str, dict[str, Any]] = {
    "constant": {},
    "step": {"step_size": None, "gamma": 0.1},
    "multistep": {"milestones": None, "gamma": 0.1},
    "exponential": {"gamma": None},
    "cosine": {"T_max": None, "eta_min": 0.0},
    "cosine_restarts": {"T_0": None, "T_mult": 1, "eta_min": 0.0},
    "onecycle": {"max_lr": None, "total_steps": None, "pct_start": 0.3, "div_factor": 25.0,
                 "final_div_factor": 1e4, "anneal_strategy": "cos"},
    "linear_warmup": {"warmup": None, "start_factor": 1.0 / 3},
}


def _num(name: str, v, positive: bool = False, nonneg: bool = False) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or math.isnan(v):
        raise ValueError(f"{name} must be a number, got {v!r}")
    if positive and v <= 0:
        raise ValueError(f"{name} must be positive, got {v}")
    if nonneg and v < 0:
        raise ValueError(f"{name} must be non-negative, got {v}")
    return float(v)


def _int(name: str, v, lo: int = 1) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < lo:
        raise ValueError(f"{name} must be an integer >= {lo}, got {v!r}")
    return v


class Schedule:
    """`lr(t)` for t = 0, 1, 2, ...; `per_step`: advanced per update, not per epoch."""

    name = ""
    per_step = False

    def __init__(self, base_lr: float):
        self.base_lr = _num("base_lr", base_lr, nonneg=True)

    def lr(self, t: int) -> float:
        raise NotImplementedError

    def values(self, n: int) -> list[float]:
        return [self.lr(t) for t in range(n)]

    def _check_t(self, t) -> int:
        if isinstance(t, bool) or not isinstance(t, int) or t < 0:
            raise ValueError(f"schedule step must be a non-negative integer, got {t!r}")
        return t

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.__dict__.items() if not k.startswith("_"))
        return f"{type(self).__name__}({args})"


class Constant(Schedule):
    name = "constant"

    def lr(self, t):
        self._check_t(t)
        return self.base_lr


class _Recursive(Schedule):
    """A chainable torch scheduler: lr(t) = get_lr(lr(t-1), t), cached."""

    def __init__(self, base_lr):
        super().__init__(base_lr)
        self._cache: list[float] = []

    def _initial(self) -> float:
        return self.base_lr

    def _next(self, prev: float, t: int) -> float:
        raise NotImplementedError

    def lr(self, t):
        self._check_t(t)
        c = self._cache
        if not c:
            c.append(self._initial())
        while len(c) <= t:
            c.append(self._next(c[-1], len(c)))
        return c[t]


class StepLR(_Recursive):
    name = "step"

    def __init__(self, base_lr, step_size, gamma=0.1):
        super().__init__(base_lr)
        self.step_size = _int("step_size", step_size)
        self.gamma = _num("gamma", gamma)

    def _next(self, prev, t):
        if t % self.step_size != 0:
            return prev
        return prev * self.gamma


class MultiStepLR(_Recursive):
    name = "multistep"

    def __init__(self, base_lr, milestones, gamma=0.1):
        super().__init__(base_lr)
        if isinstance(milestones, int) and not isinstance(milestones, bool):
            milestones = (milestones,)
        if not isinstance(milestones, (list, tuple)) or not milestones:
            raise ValueError(f"milestones must be a list of epoch indices, got {milestones!r}")
        for m in milestones:
            _int("a milestone", m, lo=0)
        self.milestones = tuple(milestones)
        self._counts = Counter(milestones)
        self.gamma = _num("gamma", gamma)

    def _next(self, prev, t):
        if t not in self._counts:
            return prev
        return prev * self.gamma ** self._counts[t]


class ExponentialLR(_Recursive):
    name = "exponential"

    def __init__(self, base_lr, gamma):
        super().__init__(base_lr)
        self.gamma = _num("gamma", gamma)

    def _next(self, prev, t):
        return prev * self.gamma


class CosineAnnealingLR(_Recursive):
    name = "cosine"

    def __init__(self, base_lr, T_max, eta_min=0.0):
        super().__init__(base_lr)
        self.T_max = _int("T_max", T_max)
        self.eta_min = _num("eta_min", eta_min)

    def _next(self, prev, t):
        T, eta_min = self.T_max, self.eta_min
        if (t - 1 - T) % (2 * T) == 0:
            return prev + (self.base_lr - eta_min) * (1 - math.cos(math.pi / T)) / 2
        return ((1 + math.cos(math.pi * t / T)) / (1 + math.cos(math.pi * (t - 1) / T))
                * (prev - eta_min) + eta_min)


class LinearWarmup(_Recursive):
    """LinearLR(start_factor, end_factor=1.0, total_iters=warmup)."""

    name = "linear_warmup"
    end_factor = 1.0

    def __init__(self, base_lr, warmup, start_factor=1.0 / 3):
        super().__init__(base_lr)
        self.warmup = _int("warmup", warmup)   # torch's total_iters=0 would keep lr * start_factor
        self.start_factor = _num("start_factor", start_factor)
        if not 0 < self.start_factor <= 1:
            raise ValueError("start_factor must be in (0, 1]")

    def _initial(self):
        return self.base_lr * self.start_factor

    def _next(self, prev, t):
        if t > self.warmup:
            return prev
        sf, ef = self.start_factor, self.end_factor
        return prev * (1.0 + (ef - sf) / (self.warmup * sf + (t - 1) * (ef - sf)))


class CosineAnnealingWarmRestarts(Schedule):
    name = "cosine_restarts"

    def __init__(self, base_lr, T_0, T_mult=1, eta_min=0.0):
        super().__init__(base_lr)
        self.T_0 = _int("T_0", T_0)
        self.T_mult = _int("T_mult", T_mult)
        self.eta_min = _num("eta_min", eta_min)

    def lr(self, t):
        self._check_t(t)
        # torch steps T_cur by one and restarts when it reaches T_i
        T_cur, T_i = t, self.T_0
        if self.T_mult == 1:
            T_cur %= T_i
        while T_cur >= T_i:
            T_cur -= T_i
            T_i *= self.T_mult
        return self.eta_min + (self.base_lr - self.eta_min) * (1 + math.cos(math.pi * T_cur / T_i)) / 2


class OneCycleLR(Schedule):
    """OneCycleLR with three_phase=False and cycle_momentum=False (dlc does not
    cycle the optimizer's momentum); `base_lr` is not used."""

    name = "onecycle"
    per_step = True

    def __init__(self, base_lr, max_lr, total_steps, pct_start=0.3, div_factor=25.0,
                 final_div_factor=1e4, anneal_strategy="cos"):
        super().__init__(base_lr)
        self.max_lr = _num("max_lr", max_lr, positive=True)
        self.total_steps = _int("total_steps", total_steps)
        self.pct_start = _num("pct_start", pct_start)
        if not 0 <= self.pct_start <= 1:
            raise ValueError(f"pct_start must be between 0 and 1, got {pct_start}")
        self.div_factor = _num("div_factor", div_factor, positive=True)
        self.final_div_factor = _num("final_div_factor", final_div_factor, positive=True)
        if anneal_strategy not in ("cos", "linear"):
            raise ValueError(f"anneal_strategy must be 'cos' or 'linear', got {anneal_strategy!r}")
        self.anneal_strategy = anneal_strategy
        self.initial_lr = self.max_lr / self.div_factor
        self.min_lr = self.initial_lr / self.final_div_factor
        self._phases = [
            (float(self.pct_start * self.total_steps) - 1, self.initial_lr, self.max_lr),
            (self.total_steps - 1, self.max_lr, self.min_lr),
        ]

    def _anneal(self, start, end, pct):
        if self.anneal_strategy == "cos":
            return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1)
        return (end - start) * pct + start

    def lr(self, t):
        self._check_t(t)
        if t > self.total_steps:
            raise ValueError(f"onecycle: step {t} is past total_steps={self.total_steps}")
        start_step = 0.0
        for i, (end_step, lo, hi) in enumerate(self._phases):
            if t <= end_step or i == len(self._phases) - 1:
                if end_step == start_step:
                    raise ValueError(f"onecycle: pct_start={self.pct_start} with total_steps="
                                     f"{self.total_steps} gives an empty warm-up phase")
                return self._anneal(lo, hi, (t - start_step) / (end_step - start_step))
            start_step = end_step
        raise AssertionError("unreachable")


SCHEDULE_CLASSES: dict[str, type[Schedule]] = {
    c.name: c for c in (Constant, StepLR, MultiStepLR, ExponentialLR, CosineAnnealingLR,
                        CosineAnnealingWarmRestarts, OneCycleLR, LinearWarmup)
}


def make_schedule(name: str, base_lr: float, *, epochs: int | None = None,
                  steps_per_epoch: int | None = None, **args) -> Schedule:
    """The schedule `name` starting from the optimizer's `base_lr`.

    `epochs` and `steps_per_epoch` (the trainer's) only fill in arguments the
    user left out: cosine's T_max (= epochs) and onecycle's total_steps
    (= epochs * steps_per_epoch).  ValueError for unknown names, unknown or
    missing arguments, and invalid values.
    """
    defaults = DEFAULTS.get(name)
    if defaults is None:
        raise ValueError(f"unknown schedule {name!r}; schedules: {', '.join(DEFAULTS)}")
    unknown = sorted(set(args) - set(defaults))
    if unknown:
        raise ValueError(f"{name} has no argument{'s' if len(unknown) > 1 else ''} "
                         f"{', '.join(repr(u) for u in unknown)}; its arguments: {', '.join(defaults) or 'none'}")
    kw = {**defaults, **{k: v for k, v in args.items()}}
    if name == "cosine" and kw["T_max"] is None and epochs is not None:
        kw["T_max"] = epochs
    if name == "onecycle" and kw["total_steps"] is None and epochs is not None and steps_per_epoch is not None:
        kw["total_steps"] = epochs * steps_per_epoch
    missing = [k for k, v in kw.items() if v is None]
    if missing:
        raise ValueError(f"{name} needs the argument{'s' if len(missing) > 1 else ''} {', '.join(missing)}")
    return SCHEDULE_CLASSES[name](base_lr, **kw)


__all__ = [
    "DEFAULTS",
    "SCHEDULE_CLASSES",
    "Constant",
    "CosineAnnealingLR",
    "CosineAnnealingWarmRestarts",
    "ExponentialLR",
    "LinearWarmup",
    "MultiStepLR",
    "OneCycleLR",
    "Schedule",
    "StepLR",
    "make_schedule",
]
