"""`dlc check`: elaborate every model of a file, in eval and train mode,
symbolically, and validate its train sections."""
from __future__ import annotations

from ..errors import DlcNameError
from .blocks import elaborate_model
from .modules import load_module


def check_file(path: str, model: str | None = None) -> None:
    mod = load_module(path)
    names = [model] if model else list(mod.models)
    if model and model not in mod.models:
        raise DlcNameError(f"no model named '{model}' in {path}", None,
                           "models: " + (", ".join(mod.models) or "none"))
    from ..compiler.verify import verify
    for name in names:
        for mode in ("eval", "train"):
            g = elaborate_model(mod, name, mode)
            verify(g)
    from .train import check_train
    for t in mod.trains:
        check_train(mod, t)
