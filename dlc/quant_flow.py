"""`dlc quantize`: post-training static int8 quantization with an accuracy budget.

    res = dlc.quantize("specs/mlp.dln", "best.safetensors", calib="train", method="minmax", budget=0.5)
    res.save("mlp.int8.safetensors")        # dlc run/bench/compile --weights mlp.int8.safetensors

1. calibration: the float model runs on the calibration examples
   (`quant_data`), observers collect every site's input and output
   (`quant_observe`), and the method turns them into ranges (the compiler's
   `dlc.compiler.quant` estimators): the `QuantPlan`;
2. evaluation: fp32 and int8 accuracy on the held-out split, the int8 model
   being the float graph through the quantize and lower_int8 passes
   (`PipelineOptions.quant`) on `backend`;
3. the budget (`quant_budget`): layers back to fp32 by sensitivity until the
   loss fits;
4. the artifact (`quant_artifact`) and the per-layer report (`QuantResult.rows`).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

from .errors import DlcValueError
from .quant_budget import BudgetResult, fit_budget

METHODS = ("minmax", "percentile", "entropy")


@dataclass
class LayerRow:
    """One line of the per-layer table."""

    layer: str
    kind: str
    line: int | None
    in_scale: float
    in_zero_point: int
    out_scale: float
    out_zero_point: int
    weight_scales: tuple[float, float]      # (min, max) over output channels; equal per-tensor
    channels: int                           # 1 per-tensor
    sensitivity: float | None               # points regained in fp32 (only when a budget ran)
    precision: str                          # "int8" or "fp32"


@dataclass
class QuantResult:
    plan: object                            # dlc.compiler.quant.plan.QuantPlan
    rows: list[LayerRow]
    budget: BudgetResult | None             # None: no held-out evaluation ran
    model: str
    spec_path: str
    spec_sha256: str
    calib: str                              # where the calibration examples came from, and how many
    weights: dict = field(repr=False, default_factory=dict)

    @property
    def fp32_accuracy(self) -> float | None:
        return None if self.budget is None else self.budget.fp32

    @property
    def int8_accuracy(self) -> float | None:
        """All sites int8 (before any fallback)."""
        return None if self.budget is None else self.budget.int8

    @property
    def final_accuracy(self) -> float | None:
        return None if self.budget is None else self.budget.final.accuracy

    def save(self, path) -> None:
        from .quant_artifact import save_artifact
        save_artifact(path, self.weights, self.plan, spec_sha256=self.spec_sha256, model=self.model)


def parse_budget(text) -> float:
    """"0.5%" or "0.5" -> 0.5 percentage points."""
    s = str(text).strip()
    try:
        v = float(s[:-1] if s.endswith("%") else s)
    except ValueError:
        raise DlcValueError(f"--budget {text!r} is not a number of percentage points", None,
                            "write e.g. --budget 0.5% (absolute points of accuracy)") from None
    if not np.isfinite(v) or v < 0 or v > 100:
        raise DlcValueError(f"--budget {text!r} must be between 0% and 100%", None, "write e.g. --budget 0.5%")
    return v


def quantize(model_or_path, weights, *, calib: str = "train", method: str = "minmax", per_channel: bool = True,
             budget=None, max_float: int | None = None, calib_size: int | None = None, backend: str = "numpy",
             data_path=None, bind: dict | None = None, progress: bool = True, evaluate: bool = True,
             seed: int = 0) -> QuantResult:
    """Calibrate, evaluate, fit the budget; see the module docstring.

    `weights`: a dict or a .safetensors path (the float weights).  `budget`:
    percentage points (0.5 or "0.5%"), None for no fallback.  `calib_size`:
    calibrate on that many examples of `calib` (default all).  `evaluate`:
    measure fp32/int8 accuracy on the held-out split even without a budget
    (when the model has a train section)."""
    from .compiler.quant import QuantPlan
    from .quant_data import held_out, load_split, train_section_dataset
    from .quant_observe import calibrate_observers
    from .run_folder import spec_hash
    if method not in METHODS:
        raise DlcValueError(f"unknown calibration method '{method}'", None, "methods: " + ", ".join(METHODS))
    budget_pp = None if budget is None else parse_budget(budget)
    model = _as_model(model_or_path, bind)
    g = model.symbolic_graph("eval")
    weights = _float_weights(model, weights)
    dataset, _ = train_section_dataset(model.path, model.name, model.bind)
    split = load_split(calib, g, dataset, data_path=data_path, limit=calib_size, seed=seed)
    obs, site_weights, sites = calibrate_observers(model, weights, split.x, method, progress=progress)
    plan = QuantPlan(method=method, per_channel=bool(per_channel),
                     ranges={k: o.range() for k, o in obs.items()}, float_layers=set())
    layers = [s.name for s in sites]
    res_budget = None
    if budget_pp is not None or (evaluate and dataset is not None):
        test = held_out(dataset, g, data_path)
        if test.task == "classification":
            run = _Evaluator(model, weights, test, plan, backend, progress)
            res_budget = fit_budget(layers, run, budget_pp, max_float=max_float, span=g.span)
            plan = dataclasses.replace(plan, float_layers=set(res_budget.float_layers))
        elif budget_pp is not None:
            raise DlcValueError(f"the accuracy budget measures classification accuracy, and {model.name} is "
                                f"trained on {dataset}, a regression task", g.span, "drop --budget")
    rows = _rows(sites, plan, site_weights, res_budget)
    return QuantResult(plan, rows, res_budget, model.name, model.path, spec_hash(model.path),
                       f"{split.name} ({len(split.x)} examples)", weights)


def _as_model(model_or_path, bind):
    from .api import Model, load
    if isinstance(model_or_path, Model):
        return model_or_path
    return load(model_or_path, bind=bind)


def _float_weights(model, weights) -> dict:
    """The float weights as a dict, every parameter present with its shape."""
    from .quant_artifact import _check_params, is_artifact
    from .runtime.weights import load_weights
    if weights is None:
        raise DlcValueError("quantization needs the trained float weights", None, "pass --weights W.safetensors")
    if not isinstance(weights, dict):
        if is_artifact(weights):
            raise DlcValueError(f"{weights} is already a quantized artifact", None,
                                "quantize from the float weights dlc train wrote")
        path, weights = str(weights), load_weights(weights)
    else:
        path = "the weights"
    g = model.symbolic_graph("eval")
    _check_params(path, weights, g, "pass the weights this spec was trained into")
    return {k: np.asarray(v) for k, v in weights.items()}


class _Evaluator:
    """`evaluate(float_layers)` for the budget: accuracy on the held-out split
    of the fp32 model (None) or of the plan with those layers kept in fp32."""

    def __init__(self, model, weights, split, plan, backend: str, progress: bool):
        self.model, self.weights, self.split, self.plan = model, weights, split, plan
        self.backend, self.progress = backend, progress

    def __call__(self, float_layers) -> float:
        from .backends import get_backend
        from .runtime.metrics import accuracy
        from .quant_artifact import with_plan
        from .quant_observe import StepProgress
        plan = None if float_layers is None else dataclasses.replace(self.plan, float_layers=set(float_layers))
        m = with_plan(self.model, plan)
        exe = get_backend(self.backend).compile(m.optimized(m.symbolic_graph("eval"), self.backend))
        x, y = self.split.x, self.split.y
        name = m.graph.inputs[0].name
        what = "fp32" if float_layers is None else "int8" + (f" ({len(float_layers)} fp32)" if float_layers else "")
        correct = 0.0
        with StepProgress(f"evaluating {what}", -(-len(x) // 256), enabled=self.progress) as bar:
            for i in range(0, len(x), 256):
                outs, _ = exe.run({name: x[i:i + 256]}, self.weights)
                correct += accuracy(next(iter(outs.values())), y[i:i + 256]) * len(x[i:i + 256])
                bar.advance(len(x[i:i + 256]))
        return correct / max(1, len(x))


def _rows(sites, plan, site_weights: dict, budget: BudgetResult | None) -> list[LayerRow]:
    """The report's rows, with the scales the quantize pass will use (compiler.quant.scales)."""
    from .compiler.quant import activation_qparams, weight_scales
    rows = []
    for s in sites:
        scales = np.atleast_1d(weight_scales(site_weights[s.name], plan.per_channel))
        in_s, in_zp = activation_qparams(*plan.ranges[s.in_key])
        out_s, out_zp = activation_qparams(*plan.ranges[s.out_key])
        sens = None if budget is None or not budget.sensitivity else budget.sensitivity.get(s.name)
        span = s.node.span
        rows.append(LayerRow(s.name, s.kind, span.line if span else None, float(in_s), in_zp, float(out_s), out_zp,
                             (float(scales.min()), float(scales.max())), len(scales), sens,
                             "fp32" if s.name in plan.float_layers else "int8"))
    return rows
