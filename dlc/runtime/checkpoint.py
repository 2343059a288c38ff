"""Training checkpoints: ONE safetensors file, written atomically, never pickled.

Layout of the file:

    tensors   weights/<param name>        the model's weights, as given
              optim/<path>                 every array in the optimizer state
              rng/<path>, extra/<path>     arrays in rng_state / extra, if any
    metadata  format = "dlc-checkpoint", version = "1"
              step, epoch                  decimal integers
              optim, rng, extra            JSON trees (below)

Nested state (dicts, lists, tuples) is stored as a JSON tree whose leaves are
either `{"t": "<tensor key>"}` for an array or `{"v": <json value>}` for a
scalar, so any key spelling survives the round trip and nothing is
executed on load.  The file goes to disk through `atomic_write` (temporary
file, fsync, rename): a crash or `kill -9` leaves the previous checkpoint or
the new one, never a mixture; at worst an orphaned `.<name>.*.tmp` is left
beside it (`remove_stale_temps` deletes those).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import DlcError
from .atomic import atomic_write

FORMAT = "dlc-checkpoint"
VERSION = "1"


@dataclass
class Checkpoint:
    weights: dict[str, np.ndarray]
    optimizer_state: dict
    step: int
    epoch: int
    rng_state: dict | None = None
    extra: dict = field(default_factory=dict)


def save_checkpoint(path, *, weights: dict, optimizer_state: dict, step: int, epoch: int,
                    rng_state: dict | None = None, extra: dict | None = None) -> None:
    """Write a checkpoint to `path` (conventionally `*.safetensors`) atomically."""
    from safetensors.numpy import save
    tensors: dict[str, np.ndarray] = {}
    for name, w in weights.items():
        tensors[f"weights/{name}"] = _contiguous(w)
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "step": str(int(step)),
        "epoch": str(int(epoch)),
        "optim": json.dumps(_encode(optimizer_state, "optim", tensors)),
        "rng": json.dumps(None if rng_state is None else _encode(rng_state, "rng", tensors)),
        "extra": json.dumps(_encode(extra or {}, "extra", tensors)),
        "weights": json.dumps(list(weights)),       # the original order
    }
    atomic_write(path, save(tensors, metadata=meta))


def load_checkpoint(path) -> Checkpoint:
    """Read a checkpoint written by `save_checkpoint`; `DlcError` if it is not one."""
    from safetensors import safe_open
    path = Path(path)
    if not path.is_file():
        raise DlcError(f"no such checkpoint: {path}", hint="checkpoints are written by `dlc train`")
    try:
        with safe_open(str(path), framework="numpy") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (a safe_open handle)
    except Exception as e:  # safetensors raises its own error types
        raise DlcError(f"cannot read checkpoint {path}: {e}", hint="checkpoints are .safetensors files") from None
    if meta.get("format") != FORMAT:
        raise DlcError(f"{path} is a safetensors file but not a dlc checkpoint",
                       hint="plain weights load with dlc.runtime.weights.load_weights")
    if meta.get("version") != VERSION:
        raise DlcError(f"{path} is a version {meta.get('version')} checkpoint; this dlc reads version {VERSION}")
    try:
        order = json.loads(meta["weights"])
        weights = {n: tensors[f"weights/{n}"] for n in order}
        rng = json.loads(meta["rng"])
        return Checkpoint(
            weights=weights,
            optimizer_state=_decode(json.loads(meta["optim"]), tensors),
            step=int(meta["step"]),
            epoch=int(meta["epoch"]),
            rng_state=None if rng is None else _decode(rng, tensors),
            extra=_decode(json.loads(meta["extra"]), tensors),
        )
    except (KeyError, ValueError, TypeError) as e:
        raise DlcError(f"checkpoint {path} is damaged: {e!r}") from None


def remove_stale_temps(path) -> list[Path]:
    """Delete temporary files that an interrupted `atomic_write` of `path` left behind.

    Only call this when no other process is writing `path`."""
    path = Path(path)
    gone = []
    for p in path.parent.glob(f".{path.name}.*.tmp"):
        try:
            p.unlink()
            gone.append(p)
        except OSError:
            pass
    return gone


# JSON trees -----------------------------------------------------------------------
def _encode(obj, prefix: str, tensors: dict):
    if isinstance(obj, (np.ndarray, np.generic)):
        key, n = prefix, 1
        while key in tensors:          # keys with "/" in them can collide: {"a/b": .., "a": {"b": ..}}
            key, n = f"{prefix}#{n}", n + 1
        tensors[key] = _contiguous(obj)
        return {"t": key}
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            if not isinstance(k, str):
                raise DlcError(f"checkpoint state keys must be strings, got {k!r} under '{prefix}'")
            out[k] = _encode(v, f"{prefix}/{k}", tensors)
        return {"d": out}
    if isinstance(obj, (list, tuple)):
        items = [_encode(v, f"{prefix}/{i}", tensors) for i, v in enumerate(obj)]
        return {"tuple" if isinstance(obj, tuple) else "l": items}
    if isinstance(obj, float) and not math.isfinite(obj):
        return {"f": repr(obj)}                       # "nan", "inf", "-inf": strict JSON has none
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return {"v": obj}
    raise DlcError(f"cannot store {type(obj).__name__} at '{prefix}' in a checkpoint",
                   hint="checkpoint state holds arrays, numbers, strings, lists and dicts")


def _decode(node, tensors: dict):
    if "t" in node:
        return tensors[node["t"]]
    if "d" in node:
        return {k: _decode(v, tensors) for k, v in node["d"].items()}
    if "l" in node:
        return [_decode(v, tensors) for v in node["l"]]
    if "tuple" in node:
        return tuple(_decode(v, tensors) for v in node["tuple"])
    if "f" in node:
        return float(node["f"])
    return node["v"]


def _contiguous(a) -> np.ndarray:
    """C-contiguous without `np.ascontiguousarray`'s promotion of 0-d arrays to shape (1,)."""
    return np.asarray(a, order="C")
