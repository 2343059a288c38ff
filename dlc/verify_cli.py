"""The body of the `dlc verify` command (its click options are in cli.py)."""
from __future__ import annotations

import json
from pathlib import Path

import click

from .errors import DlcError, DlcValueError


def _int_list(text: str, what: str) -> tuple[int, ...]:
    try:
        return tuple(int(t) for t in text.split(",") if t.strip())
    except ValueError:
        raise DlcValueError(f"{what} {text!r}: a comma-separated list of integers, e.g. 0,2,3") from None


def _inputs(file: str, given: str | None) -> tuple[dict | None, str | None]:
    """The inputs from --inputs, else a `.npz` beside the spec with its stem
    (a reproducer's operand values), else None (random inputs from --seed)."""
    import numpy as np
    path = Path(given) if given else Path(file).with_suffix(".npz")
    if not given and not path.is_file():
        return None, None
    try:
        with np.load(path) as z:
            return {k: z[k] for k in z.files}, str(path)
    except (ValueError, OSError) as e:
        raise DlcError(f"{path}: not a readable .npz ({e})") from None


def run_verify(file, model, bind: dict, *, backends, levels, train, seed, weights, inputs_file, repro_dir,
               as_json, precisions="fp32") -> bool:
    """`dlc verify` (the click command is in cli.py): print the report; True when every run passed."""
    from .api import load
    from .runtime.weights import load_weights
    from .verify_core import verify
    m = load(file, model, bind)
    names = tuple(b.strip() for b in backends.split(",") if b.strip())
    inputs, from_file = _inputs(file, inputs_file)
    w = load_weights(weights) if weights else None
    report = verify(m, backends=names, levels=_int_list(levels, "-O"), train=train, seed=seed,
                    bind=bind, weights=w, inputs=inputs, repro_dir=repro_dir,
                    precisions=tuple(p.strip() for p in precisions.split(",") if p.strip()))
    if as_json:
        click.echo(json.dumps(report.to_dict()))
    else:
        if from_file:
            click.echo(f"inputs from {from_file}")
        click.echo(report.render())
    return report.ok
