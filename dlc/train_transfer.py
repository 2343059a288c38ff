"""Transfer learning in `dlc train`: start from given weights, freeze
parameters, parameter groups (the trainer calls these; the logic is here).

* `initial_weights`: the run's starting weights.  A weights file (`--weights`
  or ``weights = "..."`` in the train section) is loaded strictly, as torch's
  ``load_state_dict(strict=True)``: `runtime.weights.check_state_dict`.
  Names that `--allow-missing` excuses keep the spec's initialisation.
* `resolve_selection`: `freeze` / `--freeze` and `param_groups` resolved to
  parameter names (`compiler.param_select`).
* `GroupSchedule`: the schedule applied to each group's own
  learning rate, as a torch.optim lr_scheduler does to every param group.
* `write_record`: ``transfer.json`` in the run folder (of a run with
  weights, frozen parameters or groups) says what was loaded, initialised,
  frozen and grouped.
"""
from __future__ import annotations

import json
from pathlib import Path

from .errors import DlcValueError


def weights_path(job: dict, s) -> str | None:
    """The weights file to start from: --weights over the train section's `weights`."""
    return job.get("weights") or s.weights


def initial_weights(job: dict, s, fresh: dict) -> tuple[dict, dict]:
    """(the starting weights, the record of where each came from).  `fresh`
    is the spec's initialisation of every parameter and buffer."""
    from .runtime.weights import check_state_dict, load_weights
    path = weights_path(job, s)
    if path is None:
        return fresh, {"weights": None, "loaded": [], "initialised": sorted(fresh)}
    given = load_weights(path)
    expected = {k: (tuple(v.shape), v.dtype.name) for k, v in fresh.items()}
    loaded, initialised = check_state_dict(expected, given, source=f"the weights {path}",
                                           allow_missing=tuple(job.get("allow_missing") or ()),
                                           allow_unused=tuple(job.get("allow_unused") or ()))
    out = dict(fresh)
    out.update({k: given[k] for k in loaded})
    unused = sorted(set(given) - set(fresh))
    return out, {"weights": str(path), "loaded": loaded, "initialised": initialised, "unused": unused}


def check_job(job: dict, s) -> None:
    """Transfer settings apply to a section with one loss; alternating steps
    (a GAN) take none of them rather than silently ignoring them."""
    if s.steps and (weights_path(job, s) or s.freeze or job.get("freeze") or s.param_groups or s.freeze_bn):
        raise DlcValueError("weights, freeze and param_groups apply to a train section with one loss, "
                            "not to alternating steps", s.span, "set params = [...] in each step instead")


def resolve_selection(job: dict, s, eval_graph) -> None:
    """Fill `s.frozen` / `s.group_of` for the model's trainable parameters."""
    from .compiler.param_select import resolve
    resolve(s, [p.name for p in eval_graph.trainable_params()], tuple(job.get("freeze") or ()))


class GroupSchedule:
    """The train section's schedule applied to each parameter group's own
    learning rate (the optimizer's defaults first), as a torch.optim
    lr_scheduler steps every param group.  `lr(t)` is a float without
    groups, else a list with one rate per group; `first(lr)` is the default
    group's (what metrics.jsonl logs)."""

    def __init__(self, s, steps_per_epoch: int):
        from .compiler.optim import make_optimizer
        from .compiler.schedules import make_schedule
        self.scheds = []
        for args in [s.optimizer_args] + [{**s.optimizer_args, **g.args} for g in s.param_groups]:
            base = float(make_optimizer(s.optimizer, **args).hyper["lr"])
            self.scheds.append(make_schedule(s.schedule, base, epochs=s.epochs, steps_per_epoch=steps_per_epoch,
                                             **s.schedule_args))
        self.per_step = self.scheds[0].per_step

    def lr(self, t: int):
        lrs = [sc.lr(t) for sc in self.scheds]
        return lrs[0] if len(lrs) == 1 else lrs

    @staticmethod
    def first(lr) -> float:
        return float(lr[0] if isinstance(lr, list) else lr)


def write_record(out_dir: Path, record: dict, s) -> None:
    """transfer.json: what the run started from and what it trains."""
    from .runtime.atomic import atomic_write
    full = {**record, "frozen": sorted(s.frozen), "freeze": list(s.freeze), "freeze_bn": s.freeze_bn,
            "param_groups": [{"match": g.match, **{k: (list(v) if isinstance(v, tuple) else v)
                                                   for k, v in g.args.items()},
                              "params": sorted(n for n, k in s.group_of.items() if k == i)}
                             for i, g in enumerate(s.param_groups, start=1)]}
    atomic_write(out_dir / "transfer.json", (json.dumps(full, indent=1) + "\n").encode())


__all__ = ["check_job", "weights_path", "initial_weights", "resolve_selection", "GroupSchedule", "write_record"]
