"""Alternating updates (a GAN's discriminator and generator `step` sections)
as one `TrainStep` of the one training loop (`dlc.trainer`).

Each batch runs every `step` section's training-step graph in order, on the
chosen backend's compiled executables (symbolic gradients), each with its
own optimizer and its optimizer's constant learning rate.  The weights are
shared: every model called in the train section has one set, named
`<Model>.<param>`.  The loop logs each step's mean loss (`<step>_loss`),
checkpoints every epoch and resumes bit for bit; there is no validation."""
from __future__ import annotations

import numpy as np

from .backends.protocol import first_nonfinite
from .errors import DlcError, DlcValueError


class AlternatingStep:
    """Every `step` section's graph in turn on one batch."""

    def __init__(self, backend, progs, bind: dict, weights: dict, states: dict):
        self.progs = progs
        self.exes = [backend.compile(prog.graph, bind=bind) for _, prog, _ in progs]
        self.weights = dict(weights)
        self.states = dict(states)
        self.parts: dict[str, float] = {}       # each step's loss on the last batch
        self.lr = float(progs[-1][2].hyper["lr"])   # what the progress bar shows: the last step's lr

    def run(self, feed: dict, lr: float, step: int, seed: int) -> float:
        loss = 0.0
        for (st, prog, opt), exe in zip(self.progs, self.exes):
            loss = self._one(st, prog, opt, exe, feed, step, seed)
            self.parts[st.name] = loss
        return loss

    def _one(self, st, prog, opt, exe, feed, step, seed) -> float:
        dt = prog.params[0].type.dtype.numpy_name
        inputs = {k: v for k, v in feed.items() if k != "label"}
        inputs["lr"] = np.asarray(float(opt.hyper["lr"]), dtype=dt)
        inputs["step"] = np.asarray(step, dtype=dt)
        inputs.update({k: v for k, v in self.states.items() if k.startswith(st.name + "/")})
        needed = {p.name for p in prog.graph.params}
        outs, upd = exe.run(inputs, {k: self.weights[k] for k in needed}, seed)
        for k, v in outs.items():
            if k.startswith("param:"):
                self.weights[k[6:]] = v
            elif k.startswith("state:"):
                self.states[k[6:]] = v
        self.weights.update(upd)
        loss = float(outs["loss"])
        if not np.isfinite(loss):
            raise DlcError(f"step {st.name}: the loss became {loss} at update {step}", st.span,
                           "lower the learning rate")
        return loss

    def state(self) -> tuple[dict, dict]:
        return self.weights, self.states

    def nonfinite_param(self) -> str | None:
        return first_nonfinite(self.weights)


def initial_state(progs, seed: int) -> tuple[dict, dict]:
    """Fresh shared weights and every step's optimizer state."""
    from .compiler.init import init_params
    weights: dict = {}
    states: dict = {}
    for st, prog, opt in progs:
        for k, v in init_params(prog.graph, seed).items():
            weights.setdefault(k, v)
        for p in prog.params:
            for sname, stype, fill in opt.state_specs(p.type):
                states[f"{st.name}/{sname}.{p.name}"] = np.full(tuple(int(d) for d in stype.shape), fill,
                                                                 dtype=stype.dtype.numpy_name)
    return weights, states


def alternating_parts(job: dict, s):
    """(x input, progs) of a train section with `step` sections."""
    from .compiler.training import build_alternating
    if job["grad"] != "symbolic":
        raise DlcValueError("alternating steps train with dlc's symbolic gradients", s.span,
                            "add --grad symbolic")
    progs = build_alternating(s.steps)
    return progs[0][1].graph.inputs[0], progs
