"""Optimizer updates as IR: SGD, Adagrad, RMSprop, Adam and AdamW.

Each optimizer emits, with a `Builder`, the ops that turn one parameter, its
gradient and its per-parameter state into the new parameter and state.  The
formulas are torch.optim's single-tensor (``foreach=False``) ones, operation
for operation, so a float64 run follows PyTorch's trajectory to rounding:

    opt = make_optimizer("adam", lr=1e-3, weight_decay=1e-4)
    g = build_update_graph(opt, {"fc.weight": TensorType(DType.f32, (10, 4))})
    # inputs: fc.weight, grad.fc.weight, exp_avg.fc.weight, exp_avg_sq.fc.weight, lr, step
    # outputs: fc.weight, exp_avg.fc.weight, exp_avg_sq.fc.weight

Conventions:

* `lr` and `step` are 0-d graph inputs, not constants: a schedule changes the
  learning rate between updates, and `step` is the update count *after*
  increment (1 on the first update), torch's ``state["step"]``.  The step
  count is global, not per-parameter state.
* Per-parameter state (`state_specs`) is created by the caller with the given
  fill value before the first update.  Where torch creates a state lazily
  (SGD's momentum buffer is ``grad`` itself on the first step, not
  ``(1 - dampening) * grad``), the update selects the first-step value with
  ``where(step == 1, ...)``.
* Hyper-parameters other than `lr` are compile-time constants.  Their names
  and defaults are those of the ``optimizer = ...`` setting of a `train`
  section (`dlc.frontend.train.OPTIMIZERS`), which are torch's.

Deviations from torch: torch computes bias corrections and the step size in
Python doubles; here they are computed in the parameter's dtype (identical
for f64, a rounding apart for f32).  torch's vectorised CPU kernels use fused
multiply-adds in some ops (lerp), so f64 results agree to ~1e-15 relative,
not bit for bit.  `maximize`, `foreach`, `fused`, `capturable` and
`differentiable` are not options here.
"""
from __future__ import annotations

import math
from typing import Any

from ..errors import Span
from .builder import Builder
from .ir import Graph, Value
from .types import DType, TensorType

# name -> {hyper-parameter: default}; the train section checks against this table
DEFAULTS: dict[str, dict[str, Any]] = {
    "sgd": {"lr": 1e-3, "momentum": 0.0, "dampening": 0.0, "nesterov": False, "weight_decay": 0.0},
    "adam": {"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.0, "amsgrad": False},
    "adamw": {"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.01, "amsgrad": False},
    "adagrad": {"lr": 0.01, "lr_decay": 0.0, "weight_decay": 0.0, "eps": 1e-10,
                "initial_accumulator_value": 0.0},
    "rmsprop": {"lr": 0.01, "alpha": 0.99, "eps": 1e-8, "weight_decay": 0.0, "momentum": 0.0,
                "centered": False},
}

StateSpec = tuple[str, TensorType, float]


def _number(name: str, v, lo: float | None = 0.0, hi: float | None = None,
            lo_open: bool = False, hi_open: bool = False) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or math.isnan(v):
        raise ValueError(f"{name} must be a number, got {v!r}")
    v = float(v)
    if lo is not None and (v < lo or (lo_open and v == lo)):
        raise ValueError(f"invalid {name}: {v} (must be {'>' if lo_open else '>='} {lo})")
    if hi is not None and (v > hi or (hi_open and v == hi)):
        raise ValueError(f"invalid {name}: {v} (must be {'<' if hi_open else '<='} {hi})")
    return v


def _flag(name: str, v) -> bool:
    if not isinstance(v, bool):
        raise ValueError(f"{name} must be true or false, got {v!r}")  # noqa: TRY004 (a bad setting)
    return v


class Optimizer:
    """One optimizer with fixed hyper-parameters (all but the learning rate,
    which `update` takes as an input; `self.lr` is the configured base lr)."""

    name: str = ""

    def __init__(self, **hyper):
        defaults = DEFAULTS[self.name]
        unknown = sorted(set(hyper) - set(defaults))
        if unknown:
            raise ValueError(f"{self.name} has no argument{'s' if len(unknown) > 1 else ''} "
                             f"{', '.join(repr(u) for u in unknown)}; its arguments: {', '.join(defaults)}")
        self.hyper: dict[str, Any] = {**defaults, **hyper}
        self.lr = _number("lr", self.hyper["lr"])

    # the interface ---------------------------------------------------------
    def state_specs(self, param_type: TensorType) -> list[StateSpec]:
        """Per-parameter state: (name suffix, type, initial fill value)."""
        return []

    def update(self, b: Builder, param: Value, grad: Value, state: dict[str, Value],
               lr: Value, step: Value) -> tuple[Value, dict[str, Value]]:
        """Emit the update; returns the new parameter and the new state by name."""
        raise NotImplementedError

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.hyper.items())
        return f"{self.name}({args})"

    # helpers ---------------------------------------------------------------
    @staticmethod
    def _c(b: Builder, value: float, like: Value) -> Value:
        return b.const(float(value), like.type.dtype)

    def _scale(self, b: Builder, value: float, x: Value) -> Value:
        """value * x (the constant on the left, as torch's `alpha=` scalings)."""
        if value == 1.0:
            return x
        return b.op("mul", self._c(b, value, x), x)

    def _add_scaled(self, b: Builder, x: Value, value: float, y: Value) -> Value:
        """torch's x.add(y, alpha=value): x + value * y."""
        return b.op("add", x, self._scale(b, value, y))

    def _lerp(self, b: Builder, start: Value, end: Value, weight: float) -> Value:
        """torch.lerp with a scalar weight, as its CPU kernel computes it."""
        diff = b.op("sub", end, start)
        if abs(weight) < 0.5:
            return b.op("add", start, self._scale(b, weight, diff))
        return b.op("sub", end, self._scale(b, 1.0 - weight, diff))

    def _addcmul(self, b: Builder, x: Value, value: float, t1: Value, t2: Value) -> Value:
        """torch's x.addcmul(t1, t2, value=value): x + value * t1 * t2."""
        return b.op("add", x, b.op("mul", self._scale(b, value, t1), t2))

    def _weight_decay(self, b: Builder, param: Value, grad: Value) -> Value:
        wd = self.hyper["weight_decay"]
        return self._add_scaled(b, grad, wd, param) if wd != 0 else grad

    @staticmethod
    def _apply_lr(b: Builder, param: Value, lr: Value, d: Value) -> Value:
        """torch's param.add_(d, alpha=-lr): param - lr * d."""
        return b.op("sub", param, b.op("mul", lr, d))

    @staticmethod
    def _apply_lr_div(b: Builder, param: Value, lr: Value, num: Value, den: Value) -> Value:
        """torch's param.addcdiv_(num, den, value=-lr): param - (lr * num) / den."""
        return b.op("sub", param, b.op("div", b.op("mul", lr, num), den))


class SGD(Optimizer):
    """torch.optim.SGD: optional L2 weight decay, (Nesterov) momentum with dampening."""

    name = "sgd"

    def __init__(self, **hyper):
        super().__init__(**hyper)
        h = self.hyper
        self.momentum = _number("momentum", h["momentum"])
        self.dampening = _number("dampening", h["dampening"], lo=None)
        self.nesterov = _flag("nesterov", h["nesterov"])
        self.weight_decay = _number("weight_decay", h["weight_decay"])
        if self.nesterov and (self.momentum <= 0 or self.dampening != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")

    def state_specs(self, param_type):
        return [("momentum_buffer", param_type, 0.0)] if self.momentum != 0 else []

    def update(self, b, param, grad, state, lr, step):
        g = self._weight_decay(b, param, grad)
        new_state = {}
        if self.momentum != 0:
            old = state["momentum_buffer"]
            decayed = self._add_scaled(b, self._scale(b, self.momentum, old), 1.0 - self.dampening, g)
            # torch creates the buffer as a copy of the gradient on the first step
            first = b.op("eq", step, self._c(b, 1.0, step))
            buf = b.op("where", first, g, decayed)
            new_state["momentum_buffer"] = buf
            g = self._add_scaled(b, g, self.momentum, buf) if self.nesterov else buf
        return self._apply_lr(b, param, lr, g), new_state


class Adagrad(Optimizer):
    """torch.optim.Adagrad: lr / (1 + (step - 1) * lr_decay), accumulated squares."""

    name = "adagrad"

    def __init__(self, **hyper):
        super().__init__(**hyper)
        h = self.hyper
        self.lr_decay = _number("lr_decay", h["lr_decay"])
        self.weight_decay = _number("weight_decay", h["weight_decay"])
        self.eps = _number("eps", h["eps"])
        self.initial_accumulator_value = _number("initial_accumulator_value", h["initial_accumulator_value"])

    def state_specs(self, param_type):
        return [("sum", param_type, self.initial_accumulator_value)]

    def update(self, b, param, grad, state, lr, step):
        g = self._weight_decay(b, param, grad)
        clr = lr
        if self.lr_decay != 0:
            one = self._c(b, 1.0, step)
            decay = b.op("mul", b.op("sub", step, one), self._c(b, self.lr_decay, step))
            clr = b.op("div", lr, b.op("add", one, decay))
        s = self._addcmul(b, state["sum"], 1.0, g, g)
        std = b.op("add", b.op("sqrt", s), self._c(b, self.eps, s))
        return self._apply_lr_div(b, param, clr, g, std), {"sum": s}


class RMSprop(Optimizer):
    """torch.optim.RMSprop: optional centering and momentum."""

    name = "rmsprop"

    def __init__(self, **hyper):
        super().__init__(**hyper)
        h = self.hyper
        self.alpha = _number("alpha", h["alpha"])
        self.eps = _number("eps", h["eps"])
        self.weight_decay = _number("weight_decay", h["weight_decay"])
        self.momentum = _number("momentum", h["momentum"])
        self.centered = _flag("centered", h["centered"])

    def state_specs(self, param_type):
        specs = [("square_avg", param_type, 0.0)]
        if self.momentum > 0:
            specs.append(("momentum_buffer", param_type, 0.0))
        if self.centered:
            specs.append(("grad_avg", param_type, 0.0))
        return specs

    def update(self, b, param, grad, state, lr, step):
        g = self._weight_decay(b, param, grad)
        sq = self._addcmul(b, self._scale(b, self.alpha, state["square_avg"]), 1.0 - self.alpha, g, g)
        new_state = {"square_avg": sq}
        if self.centered:
            ga = self._lerp(b, state["grad_avg"], g, 1.0 - self.alpha)
            new_state["grad_avg"] = ga
            avg = b.op("sqrt", self._addcmul(b, sq, -1.0, ga, ga))
        else:
            avg = b.op("sqrt", sq)
        avg = b.op("add", avg, self._c(b, self.eps, avg))
        if self.momentum > 0:
            buf = b.op("add", self._scale(b, self.momentum, state["momentum_buffer"]), b.op("div", g, avg))
            new_state["momentum_buffer"] = buf
            new_param = self._apply_lr(b, param, lr, buf)
        else:
            new_param = self._apply_lr_div(b, param, lr, g, avg)
        return new_param, new_state


class Adam(Optimizer):
    """torch.optim.Adam (L2 weight decay added to the gradient), optional AMSGrad."""

    name = "adam"
    decoupled = False

    def __init__(self, **hyper):
        super().__init__(**hyper)
        h = self.hyper
        betas = h["betas"]
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise ValueError(f"betas must be a pair of numbers, got {betas!r}")
        self.beta1 = _number("beta parameter at index 0", betas[0], 0.0, 1.0, hi_open=True)
        self.beta2 = _number("beta parameter at index 1", betas[1], 0.0, 1.0, hi_open=True)
        self.hyper["betas"] = (self.beta1, self.beta2)
        self.eps = _number("eps", h["eps"])
        self.weight_decay = _number("weight_decay", h["weight_decay"])
        self.amsgrad = _flag("amsgrad", h["amsgrad"])

    def state_specs(self, param_type):
        specs = [("exp_avg", param_type, 0.0), ("exp_avg_sq", param_type, 0.0)]
        if self.amsgrad:
            specs.append(("max_exp_avg_sq", param_type, 0.0))
        return specs

    def update(self, b, param, grad, state, lr, step):
        g = grad
        if self.weight_decay != 0:
            if self.decoupled:   # param.mul_(1 - lr * weight_decay)
                factor = b.op("sub", self._c(b, 1.0, lr), b.op("mul", lr, self._c(b, self.weight_decay, lr)))
                param = b.op("mul", param, factor)
            else:
                g = self._weight_decay(b, param, g)
        m = self._lerp(b, state["exp_avg"], g, 1.0 - self.beta1)
        v = self._addcmul(b, self._scale(b, self.beta2, state["exp_avg_sq"]), 1.0 - self.beta2, g, g)
        new_state = {"exp_avg": m, "exp_avg_sq": v}
        one = self._c(b, 1.0, step)
        bc1 = b.op("sub", one, b.op("pow", self._c(b, self.beta1, step), step))
        bc2 = b.op("sub", one, b.op("pow", self._c(b, self.beta2, step), step))
        step_size = b.op("div", lr, bc1)
        bc2_sqrt = b.op("sqrt", bc2)
        if self.amsgrad:
            vmax = b.op("maximum", state["max_exp_avg_sq"], v)
            new_state["max_exp_avg_sq"] = vmax
            v = vmax
        denom = b.op("add", b.op("div", b.op("sqrt", v), bc2_sqrt), self._c(b, self.eps, v))
        return self._apply_lr_div(b, param, step_size, m, denom), new_state


class AdamW(Adam):
    """torch.optim.AdamW: Adam with decoupled weight decay param *= 1 - lr * wd."""

    name = "adamw"
    decoupled = True


OPTIMIZER_CLASSES: dict[str, type[Optimizer]] = {
    c.name: c for c in (SGD, Adam, AdamW, Adagrad, RMSprop)
}


def make_optimizer(name: str, **hyper) -> Optimizer:
    """The optimizer `name` (sgd, adam, adamw, adagrad, rmsprop) with torch's
    defaults for the hyper-parameters not given; ValueError for unknown names,
    unknown arguments or invalid values."""
    cls = OPTIMIZER_CLASSES.get(name)
    if cls is None:
        raise ValueError(f"unknown optimizer {name!r}; optimizers: {', '.join(OPTIMIZER_CLASSES)}")
    return cls(**hyper)


# ---------------------------------------------------------------------------
# a whole update step as one graph
# ---------------------------------------------------------------------------

def state_input_name(state: str, param: str) -> str:
    return f"{state}.{param}"


def grad_input_name(param: str) -> str:
    return f"grad.{param}"


def build_update_graph(opt: Optimizer, param_types: dict[str, TensorType],
                       scalar_dtype: DType | None = None, span: Span | None = None,
                       name: str = "optimizer_update") -> Graph:
    """One optimizer step for the given parameters as a graph.

    Inputs: for each parameter `p`, ``p``, ``grad.p`` and its states
    ``<state>.p``; then ``lr`` and ``step`` (0-d, `scalar_dtype`: by default the
    parameters' dtype, or f64 when they differ; cast per parameter if needed).
    Outputs: ``p`` and ``<state>.p`` for each parameter, in that order.
    Every node carries `span` (the train section's ``optimizer = ...``
    setting; a placeholder `<optimizer>` span when not given).
    """
    span = span or Span("<optimizer>", 1, 1)
    g = Graph(name, span=span)
    b = Builder(g, span, scope="optimizer")
    if scalar_dtype is None:
        dtypes = {t.dtype for t in param_types.values()}
        scalar_dtype = dtypes.pop() if len(dtypes) == 1 else DType.f64
    ins = {}
    for p, t in param_types.items():
        if not t.dtype.is_float:
            raise ValueError(f"parameter '{p}' has non-float type {t}")
        ins[p] = (b.input(p, t), b.input(grad_input_name(p), t),
                  {s: b.input(state_input_name(s, p), st) for s, st, _ in opt.state_specs(t)})
    lr = b.input("lr", TensorType(scalar_dtype, ()))
    step = b.input("step", TensorType(scalar_dtype, ()))
    casts: dict[DType, tuple[Value, Value]] = {scalar_dtype: (lr, step)}
    for p, (pv, gv, states) in ins.items():
        dt = pv.type.dtype
        if dt not in casts:
            casts[dt] = (b.op("cast", lr, dtype=dt.numpy_name), b.op("cast", step, dtype=dt.numpy_name))
        plr, pstep = casts[dt]
        new_p, new_states = opt.update(b.at(None, f"optimizer/{p}"), pv, gv, states, plr, pstep)
        g.outputs.append(new_p)
        g.output_names.append(p)
        for s, _, _ in opt.state_specs(pv.type):
            g.outputs.append(new_states[s])
            g.output_names.append(state_input_name(s, p))
    return g


def initial_state(opt: Optimizer, params: dict) -> dict:
    """NumPy arrays for every state input of `build_update_graph`, filled as
    `state_specs` says; `params` maps names to arrays (their shape and dtype)."""
    import numpy as np
    out = {}
    for p, arr in params.items():
        arr = np.asarray(arr)
        t = TensorType(DType.from_numpy(arr.dtype), arr.shape)
        for s, st, fill in opt.state_specs(t):
            out[state_input_name(s, p)] = np.full(arr.shape, fill, dtype=arr.dtype)
    return out


__all__ = [
    "DEFAULTS",
    "OPTIMIZER_CLASSES",
    "SGD",
    "Adagrad",
    "Adam",
    "AdamW",
    "Optimizer",
    "RMSprop",
    "build_update_graph",
    "grad_input_name",
    "initial_state",
    "make_optimizer",
    "state_input_name",
]
