"""The data `dlc quantize` calibrates and evaluates on.

Calibration (`--calib`) names where the calibration examples come from:

    train, val      that split of the train section's data set
    <data set>      the training split of a named data set (`digits`, ...)
    file.npz        the x (or x_train) array of a local .npz file

The budget evaluates on the held-out split: the validation part of the train
section's data set (for digits, the 360 examples `dlc train` validates on).
Examples are fitted to the model's input as the trainer fits them
(`Dataset.reshaped`); a set that does not fit is an error at the model's input.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import DlcError, DlcValueError

SPLITS = ("train", "val")


@dataclass
class Split:
    """Examples (and labels, when known) fitted to the model's input."""

    name: str                      # where they came from, for messages and the report
    x: np.ndarray
    y: np.ndarray | None
    task: str = "classification"   # or "regression": the budget's metric is accuracy


def train_section_dataset(path: str, model: str, bind: dict):
    """(the train section's data set name, the section's settings) or (None, None)."""
    from .frontend.modules import load_module
    from .frontend.train import train_settings
    mod = load_module(path)
    for t in mod.trains:
        if t.model == model:
            s = train_settings(mod, t, dict(bind))
            return s.dataset, s
    return None, None


def model_input(g):
    """The one input calibration feeds, with its per-example shape."""
    if len(g.inputs) != 1:
        names = ", ".join(v.name for v in g.inputs)
        raise DlcValueError(f"dlc quantize calibrates models with one input; {g.name} has {names}", g.span)
    x_in = g.inputs[0]
    per_example = tuple(x_in.type.shape[1:])
    if any(not isinstance(d, int) for d in per_example):
        raise DlcValueError(f"the model input {x_in.type} must have known sizes except the batch", g.span,
                            "bind them with --bind")
    return x_in, per_example


def load_split(calib: str, g, section_dataset: str | None, *, data_path=None, limit: int | None = None,
               seed: int = 0) -> Split:
    """The examples `calib` names, fitted to `g`'s input; `limit` keeps the first
    `limit` of them (after a seeded shuffle, so a small set spans the classes)."""
    x_in, per_example = model_input(g)
    if calib in SPLITS:
        if section_dataset is None:
            raise DlcValueError(f"--calib {calib} names a split of the train section's data set, and the "
                                f"model has no train section", g.span, "name a data set: --calib digits")
        ds = _load(section_dataset, data_path, per_example, g)
        x, y = ds.train if calib == "train" else ds.val
        name = f"{section_dataset}:{calib}"
    elif calib.endswith(".npz"):
        x, y, name = _load_npz(calib), None, calib
    else:
        ds = _load(calib, data_path, per_example, g)
        (x, y), name = ds.train, f"{calib}:train"
    x = _fit(x, per_example, name, x_in, g)
    if limit is not None and limit < len(x):
        order = np.random.default_rng(seed).permutation(len(x))[:limit]
        x, y = x[order], None if y is None else y[order]
    if len(x) == 0:
        raise DlcValueError(f"the calibration set {name} is empty", g.span)
    return Split(name, x.astype(x_in.type.dtype.numpy_name), y)


def held_out(section_dataset: str | None, g, data_path=None) -> Split:
    """The validation split of the train section's data set, with its labels."""
    x_in, per_example = model_input(g)
    if section_dataset is None:
        raise DlcValueError("an accuracy budget needs the train section's data set and metric, and the model "
                            "has no train section", g.span, "add `train Model on digits { ... }` or drop --budget")
    ds = _load(section_dataset, data_path, per_example, g)
    x, y = ds.val
    return Split(f"{section_dataset}:val", _fit(x, per_example, section_dataset, x_in, g)
                 .astype(x_in.type.dtype.numpy_name), y, ds.task)


def _load(name: str, data_path, per_example, g):
    from .runtime.data import load_dataset
    return load_dataset(name, seed=0, path=data_path, input_shape=per_example)


def _load_npz(path: str) -> np.ndarray:
    try:
        with np.load(Path(path), allow_pickle=False) as f:
            for key in ("x", "x_train"):
                if key in f.files:
                    return np.asarray(f[key])
            held = sorted(f.files)
    except FileNotFoundError:
        raise DlcError(f"no such calibration file: {path}") from None
    except Exception as e:  # a bad zip, object arrays (pickle refused), ...
        raise DlcError(f"cannot read calibration data from {path}: {e}",
                       hint="save plain arrays: np.savez(path, x=...)") from None
    raise DlcValueError(f"{path} holds {held}", None, "a calibration .npz holds an array named x (or x_train)")


def _fit(x: np.ndarray, per_example, name: str, x_in, g) -> np.ndarray:
    """The trainer's fitting (reshape, or zero-pad images), as a located error
    at the model when the examples cannot fit."""
    from .runtime.data import _fit as fit_examples
    if x.ndim == 0:
        raise DlcValueError(f"the calibration set {name} is a scalar, not examples", g.span)
    if tuple(x.shape[1:]) == tuple(per_example):
        return x
    try:
        return fit_examples(x, tuple(per_example), name)
    except DlcValueError:
        raise DlcValueError(f"the calibration examples of {name} have shape {tuple(x.shape[1:])}, and the "
                            f"model input '{x_in.name}' is {x_in.type} (one example: {tuple(per_example)})",
                            g.span, "calibrate with data shaped like the model's input") from None
