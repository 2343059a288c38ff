"""One optimizer step of a model's train section on a backend, for `dlc verify --train`."""
from __future__ import annotations

import numpy as np

from .errors import DlcNameError


def one_step(model, backend: str, inputs: dict, weights: dict, label, bind: dict, seed: int) -> dict:
    """{"loss": loss, "update:<param>": new weight - old weight, ...} after one step of the train
    section's optimizer (at its declared learning rate) from `weights`, on
    `backend` with `model.opt`'s pipeline: the step graph every `dlc train`
    step runs (`Backend.train_step`)."""
    from .backends import get_backend
    from .backends.protocol import StepPlan
    from .frontend.blocks import elaborate_model
    from .frontend.train import train_settings
    mod = model.module
    tdef = next((t for t in mod.trains if t.model == model.name), None)
    if tdef is None:
        raise DlcNameError(f"{model.path} has no train section for model '{model.name}'", None,
                           "--train checks the gradients and one step of the train section's optimizer")
    ex = model._elaborate("eval", bind).dims
    b_all = {**{k: v for k, v in ex.items() if v is not None}, **model.bind, **bind}
    s = train_settings(mod, tdef, b_all)
    plan = StepPlan(spec=s, model_graph=lambda: elaborate_model(mod, model.name, "train", b_all),
                    weights=dict(weights), optimizer_state=None, seed=seed, bind=b_all, opt=model.opt,
                    backend=backend)
    step = get_backend(backend).train_step(plan)
    feed = dict(inputs)
    if label is not None:
        feed["label"] = np.asarray(label)
    loss = step.run(feed, float(s.optimizer_args.get("lr", 1e-3)), 1, seed)
    new_weights, _ = step.state()
    trainable = {p.name for p in elaborate_model(mod, model.name, "train", b_all).trainable_params()}
    # the update, not the new weight: an error in it would vanish against the weight's own scale
    return {"loss": np.asarray(loss), **{f"update:{k}": np.asarray(v, dtype=np.float64) - np.asarray(weights[k])
                                         for k, v in new_weights.items() if k in trainable}}
