"""The accuracy budget: return layers to fp32 until int8 loses at most
`budget` percentage points of the train section's metric on held-out data.

    1. evaluate fp32 and all-int8; loss = fp32 - int8 (percentage points);
    2. if loss <= budget, done;
    3. sensitivity of a layer = the accuracy regained by keeping it alone in
       fp32 (every other site int8): one evaluation per layer;
    4. return layers to fp32 in order of decreasing sensitivity (ties: graph
       order), evaluating after each, until the loss fits the budget;
    5. if it never fits before `max_float` layers are back in fp32 (default:
       all but one, as a model with no int8 layer is not quantized), fail and
       say what the best reachable loss was and with which layers.

Evaluations go through a callable, `evaluate(float_layers) -> accuracy`
(float_layers None: the fp32 model), so this module holds the algorithm only.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from .errors import DlcValueError


@dataclass
class Step:
    what: str                     # "fp32", "int8", "conv1 -> fp32"
    float_layers: tuple[str, ...]
    accuracy: float               # fraction in [0, 1]
    loss_pp: float                # fp32 accuracy - this accuracy, in percentage points


@dataclass
class BudgetResult:
    budget_pp: float | None
    fp32: float
    int8: float
    steps: list[Step] = field(default_factory=list)
    sensitivity: dict[str, float] = field(default_factory=dict)     # layer -> points regained
    float_layers: tuple[str, ...] = ()

    @property
    def final(self) -> Step:
        return self.steps[-1]

    @property
    def met(self) -> bool:
        return self.budget_pp is None or self.final.loss_pp <= self.budget_pp + 1e-9


class BudgetError(DlcValueError):
    """The budget cannot be met; `result` holds every step tried."""

    def __init__(self, message, span, hint, result: BudgetResult):
        super().__init__(message, span, hint)
        self.result = result


def points(fp32: float, acc: float) -> float:
    return (fp32 - acc) * 100.0


def fit_budget(layers: list[str], evaluate: Callable, budget_pp: float | None, *, max_float: int | None = None,
               span=None) -> BudgetResult:
    """Run the algorithm above over `layers` (site names in graph order)."""
    fp32 = evaluate(None)
    int8 = evaluate(frozenset())
    res = BudgetResult(budget_pp, fp32, int8, [Step("fp32", tuple(layers), fp32, 0.0),
                                                Step("int8", (), int8, points(fp32, int8))])
    if budget_pp is None or res.met:
        return res
    for name in layers:
        res.sensitivity[name] = (evaluate(frozenset({name})) - int8) * 100.0
    order = sorted(layers, key=lambda n: -res.sensitivity[n])          # stable: ties keep graph order
    limit = len(layers) - 1 if max_float is None else min(int(max_float), len(layers))
    kept: list[str] = []
    for name in order[:limit]:
        kept.append(name)
        acc = evaluate(frozenset(kept))
        res.steps.append(Step(f"{name} -> fp32", tuple(kept), acc, points(fp32, acc)))
        if res.met:
            res.float_layers = tuple(kept)
            return res
    best = min(res.steps[1:], key=lambda s: (s.loss_pp, len(s.float_layers)))
    with_layers = f"with {', '.join(best.float_layers)} in fp32" if best.float_layers else "with every layer int8"
    raise BudgetError(
        f"cannot meet the accuracy budget of {budget_pp:g} points: the best reachable loss is "
        f"{best.loss_pp:.2f} points ({with_layers}; fp32 {fp32:.2%}, int8 {int8:.2%}) after returning "
        f"{len(kept)} of {len(layers)} layers to fp32", span,
        "raise --budget, allow more fp32 layers (--max-float-layers), or calibrate differently "
        "(--method, --per-channel, more --calib data)", res)
