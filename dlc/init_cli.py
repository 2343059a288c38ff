"""`dlc init model.dln -o weights.safetensors [--seed S]`: the model's initial
weights (parameters and buffers, drawn as the spec's `init=` says, seeded as
`dlc run --seed` and `dlc train --seed` draw them) saved as safetensors.

The file loads strictly into `dlc run/train/compile --weights`, and into
PyTorch (`load_state_dict(safetensors.torch.load_file(...))`) under the same
names as `dlc compile --target torch`'s module."""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from .errors import DlcError


def default_output(spec) -> Path:
    return Path(Path(spec).stem + ".safetensors")


def init_weights_file(spec, out, *, model=None, bind=None, seed: int = 0, overwrite: bool = False) -> dict:
    """Write `spec`'s seeded initial weights to `out`; returns a summary
    ({"model", "out", "tensors", "params", "buffers", "bytes", "seed"})."""
    from .api import load
    from .runtime.weights import save_weights
    out = Path(out)
    if out.exists() and not overwrite:
        raise DlcError(f"{out} exists; dlc init does not replace weights",
                       hint="pass --overwrite, or give another -o")
    m = load(spec, model, bind)
    weights = m.init_weights(seed)
    kinds = {p.name: p.kind for p in m._elaborate().params}
    meta = {"dlc.model": m.name, "dlc.seed": str(seed),
            "dlc.spec_sha256": hashlib.sha256(Path(spec).read_bytes()).hexdigest()}
    save_weights(out, {k: np.asarray(v) for k, v in weights.items()}, meta)
    count = {kind: sum(int(np.asarray(v).size) for k, v in weights.items() if kinds.get(k) == kind)
             for kind in ("param", "buffer")}
    return {"model": m.name, "out": str(out), "tensors": len(weights), "params": count["param"],
            "buffers": count["buffer"], "bytes": out.stat().st_size, "seed": seed}
