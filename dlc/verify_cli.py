"""The `dlc verify` command (registered on the CLI group in cli.py)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from .cli import _guard, _parse_bind
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


@click.command("verify")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--model", "-m", help="The model (default: the last one in the file).")
@click.option("--backends", default="numpy,torch,tvm", show_default=True, help="Backends to check.")
@click.option("-O", "levels", default="0,2,3", show_default=True, help="Optimisation levels to check, e.g. 0,2,3.")
@click.option("--train", is_flag=True, help="Also the loss gradients and one optimizer step of the train section.")
@click.option("--seed", default=0, show_default=True, help="Seed of the random weights and inputs.")
@click.option("--bind", "-b", multiple=True, help="Size a dimension: N=8.")
@click.option("--weights", "-w", type=click.Path(dir_okay=False), help="A .safetensors file (default: from --seed).")
@click.option("--inputs", "inputs_file", type=click.Path(dir_okay=False),
              help="A .npz of the inputs (default: FILE's stem .npz if present, else random from --seed).")
@click.option("--repro-dir", default="dlc-verify-repro", show_default=True,
              help="Where a mismatch's reproducer (repro.dln, repro.npz) is written.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as one JSON object.")
@_guard
def verify_command(file, model, backends, levels, train, seed, bind, weights, inputs_file, repro_dir, as_json):
    """Check every backend at every -O level against the float64 NumPy
    reference at -O0 (same weights and inputs).  On a mismatch, name the first
    diverging IR node at its .dln line and write a reproducer; exit status 1."""
    from .api import load
    from .runtime.weights import load_weights
    from .verify_core import verify
    m = load(file, model, _parse_bind(bind))
    names = tuple(b.strip() for b in backends.split(",") if b.strip())
    inputs, from_file = _inputs(file, inputs_file)
    w = load_weights(weights) if weights else None
    report = verify(m, backends=names, levels=_int_list(levels, "-O"), train=train, seed=seed,
                    bind=_parse_bind(bind), weights=w, inputs=inputs, repro_dir=repro_dir)
    if as_json:
        click.echo(json.dumps(report.to_dict()))
    else:
        if from_file:
            click.echo(f"inputs from {from_file}")
        click.echo(report.render())
    if not report.ok:
        sys.exit(1)
