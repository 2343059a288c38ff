"""The quantized artifact: one safetensors file that `dlc run`, `dlc bench` and
`dlc compile` take as `--weights`.

    tensors    the model's float weights, by parameter name (unchanged: the
               integer weights are derived by the quantize pass at compile time)
    metadata   dlc.quant         the QuantPlan as JSON (below)
               dlc.spec_sha256   sha256 of the .dln text it was calibrated for
               dlc.model         the model's name
               format            "dlc-quant", version "1"

The plan's JSON is `QuantPlan.to_json()`: {"version": 1, "method": "minmax",
"per_channel": true, "ranges": {"conv1:in": [lo, hi], ...}, "float_layers": ["output"]}.

A plain weights file loads as before; an artifact also yields its plan, after
checking that it was made for this spec and holds this model's parameters.
"""
from __future__ import annotations

import numpy as np

from .errors import DlcError
from .runtime.weights import read_metadata

FORMAT = "dlc-quant"
VERSION = "1"
PLAN_KEY = "dlc.quant"
SPEC_KEY = "dlc.spec_sha256"


def plan_from_json(text: str, where: str):
    from .compiler.quant import QuantPlan
    try:
        return QuantPlan.from_json(text)
    except DlcError as e:
        raise DlcError(f"{where}: the quantization plan (metadata {PLAN_KEY}) is damaged: {e.message}",
                       hint="write the artifact again with dlc quantize") from None


def save_artifact(path, weights: dict, plan, *, spec_sha256: str, model: str) -> None:
    """Write the float weights and the plan atomically (temporary name, fsync, rename)."""
    from .runtime.weights import save_weights
    meta = {"format": FORMAT, "version": VERSION, PLAN_KEY: plan.to_json(), SPEC_KEY: spec_sha256,
            "dlc.model": model}
    save_weights(path, {k: np.asarray(v) for k, v in weights.items()}, meta)


def is_artifact(path) -> bool:
    return PLAN_KEY in read_metadata(path)


def load_artifact(path, spec_path: str, model_graph) -> tuple[dict, object | None]:
    """(weights, plan or None) from a weights file; for an artifact, checks
    that it belongs to `spec_path` and holds `model_graph`'s parameters."""
    from .run_folder import spec_hash
    from .runtime.weights import load_weights
    meta = read_metadata(path)
    weights = load_weights(path)
    if PLAN_KEY not in meta:
        return weights, None
    hint = f"quantize this spec again: dlc quantize {spec_path} --weights W.safetensors -o {path}"
    if meta.get("version", VERSION) != VERSION:
        raise DlcError(f"{path} is a version {meta.get('version')} quantized artifact; this dlc reads "
                       f"version {VERSION}", hint=hint)
    if meta.get(SPEC_KEY) != spec_hash(spec_path):
        raise DlcError(f"{path} was quantized for another spec than {spec_path} (its dlc.spec_sha256 "
                       f"differs from the spec's sha256)", model_graph.span, hint)
    _check_params(path, weights, model_graph, hint)
    return weights, plan_from_json(meta[PLAN_KEY], str(path))


def _check_params(path, weights: dict, g, hint: str) -> None:
    want = {p.name: tuple(int(d) for d in p.type.shape) for p in g.params}
    missing = sorted(set(want) - set(weights))
    extra = sorted(set(weights) - set(want))
    wrong = sorted(k for k in set(want) & set(weights) if tuple(weights[k].shape) != want[k])
    if not (missing or extra or wrong):
        return
    parts = []
    if missing:
        parts.append("missing " + ", ".join(missing[:3]))
    if extra:
        parts.append("not in the model: " + ", ".join(extra[:3]))
    if wrong:
        parts.append("; ".join(f"{k} is {tuple(weights[k].shape)}, the model's {want[k]}" for k in wrong[:3]))
    raise DlcError(f"{path} does not hold {g.name}'s parameters ({'; '.join(parts)})", g.span, hint)


def weights_for(model, path) -> tuple[object, dict]:
    """(model, weights) for `--weights path`: a plain weights file leaves the
    model as it is; an artifact is checked against the model's spec and turns
    quantization on in the model's pipeline (`PipelineOptions.quant`)."""
    weights, plan = load_artifact(path, model.path, model.symbolic_graph("eval"))
    if plan is None:
        return model, weights
    return with_plan(model, plan), weights


def with_plan(model, plan):
    """A copy of `model` whose pipeline quantizes with `plan` (None: float)."""
    import copy
    import dataclasses
    m = copy.copy(model)
    m.opt = dataclasses.replace(model.opt, quant=plan)
    m.pass_records = []
    return m
