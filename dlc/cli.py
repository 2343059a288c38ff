"""The `dlc` command line.

Every user-facing failure is a `DlcError`, printed as
`file.dln:line:col: error: message`, the source line, a caret and a hint,
with a non-zero exit status.  A Python traceback reaching the user is a bug:
unexpected exceptions are reported in one line (set DLC_DEBUG=1 to see the
traceback).
"""
from __future__ import annotations

import json
import os
import sys
from functools import wraps
from pathlib import Path

import click

from .errors import DlcError


def _guard(fn):
    @wraps(fn)
    def inner(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except DlcError as e:
            click.echo(e.render(), err=True)
            sys.exit(1)
        except RecursionError:
            click.echo("error: the spec nests too deeply to compile", err=True)
            sys.exit(1)
        except (KeyboardInterrupt, click.exceptions.Exit, click.ClickException, SystemExit):
            raise
        except Exception as e:  # a bug in dlc, reported without a traceback
            if os.environ.get("DLC_DEBUG"):
                raise
            click.echo(f"internal error: {type(e).__name__}: {e}\n"
                       "hint: this is a bug in dlc; rerun with DLC_DEBUG=1 for a traceback", err=True)
            sys.exit(3)
    return inner


def _parse_bind(items) -> dict:
    out = {}
    for it in items:
        if "=" not in it:
            raise click.BadParameter(f"{it!r}: expected NAME=VALUE", param_hint="--bind")
        k, v = it.split("=", 1)
        try:
            out[k.strip()] = int(v)
        except ValueError:
            try:
                out[k.strip()] = float(v)
            except ValueError:
                raise click.BadParameter(f"{it!r}: the value must be a number", param_hint="--bind")
    return out


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="dlc")
def main():
    """dlc: a declarative deep-learning compiler for .dln specs."""


@main.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--model", "-m", help="Check only this model (default: every model in the file).")
@_guard
def check(files, model):
    """Parse, elaborate and type/shape-check; silent on success."""
    from .frontend.check import check_file
    failed = False
    for f in files:
        try:
            check_file(f, model)
        except DlcError as e:
            click.echo(e.render(), err=True)
            failed = True
    if failed:
        sys.exit(1)


@main.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--model", "-m", help="Model to describe (default: the last one in the file).")
@click.option("--bind", "-b", multiple=True, help="Size a dimension or override a constant: N=8.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@_guard
def info(file, model, bind, as_json):
    """Layer table: names, ops, shapes, parameters and MACs."""
    from .api import load
    m = load(file, model, _parse_bind(bind))
    data = m.info()
    if as_json:
        click.echo(json.dumps(data))
        return
    from .reporting import print_info
    print_info(data)


@main.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--model", "-m")
@click.option("--bind", "-b", multiple=True)
@click.option("--mode", type=click.Choice(["eval", "train"]), default="eval", show_default=True)
@_guard
def ir(file, model, bind, mode):
    """Print the IR, each node with its type and .dln location."""
    from .api import load
    m = load(file, model, _parse_bind(bind))
    click.echo(m.ir(mode))


@main.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--model", "-m")
@click.option("--backend", default="numpy", show_default=True)
@click.option("--input", "-i", "inputs", multiple=True, help="NAME=file.npy")
@click.option("--weights", "-w", type=click.Path(dir_okay=False), help="A .safetensors file.")
@click.option("--bind", "-b", multiple=True)
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--mode", type=click.Choice(["eval", "train"]), default="eval", show_default=True)
@click.option("--dtype", type=click.Choice(["float32", "float64"]), default=None)
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write outputs to an .npz file.")
@_guard
def run(file, model, backend, inputs, weights, bind, seed, mode, dtype, output):
    """Forward pass with given or seeded inputs and weights."""
    import numpy as np
    from .api import load
    from .runtime.weights import load_weights
    m = load(file, model, _parse_bind(bind))
    arrays = {}
    for it in inputs:
        if "=" not in it:
            raise click.BadParameter(f"{it!r}: expected NAME=file.npy", param_hint="--input")
        k, path = it.split("=", 1)
        try:
            arrays[k] = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as e:
            raise DlcError(f"cannot read input {k} from {path}: {e}")
    unknown = set(arrays) - {v.name for v in m.inputs}
    if unknown:
        raise DlcError(f"the model has no input {', '.join(sorted(unknown))}",
                       hint="inputs: " + ", ".join(v.name for v in m.inputs))
    w = load_weights(weights) if weights else None
    outs = m.run(arrays, w, backend=backend, bind=_parse_bind(bind), seed=seed, mode=mode, dtype=dtype)
    from .reporting import print_outputs
    print_outputs(outs)
    if output:
        from .runtime.atomic import atomic_write
        import io
        buf = io.BytesIO()
        np.savez(buf, **outs)
        atomic_write(output, buf.getvalue())


@main.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--model", "-m")
@click.option("--bind", "-b", multiple=True)
@click.option("--mode", type=click.Choice(["eval", "train"]), default="train", show_default=True)
@_guard
def grad(file, model, bind, mode):
    """Print the backward IR: gradients of the train section's loss (or of the
    sum of the first output) with respect to every parameter."""
    from .api import load
    from .compiler.printer import print_graph
    m = load(file, model, _parse_bind(bind))
    g, n_forward = m.grad_graph(mode=mode)
    click.echo(print_graph(g, marks={n_forward: "---- backward: each node carries the span of the forward "
                                                "node it differentiates ----"}))


@main.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--model", "-m", help="Model to train (default: the train section's).")
@click.option("--data", help="Data set (default: the train section's `on ...`).")
@click.option("--data-path", type=click.Path(dir_okay=False), help="The .npz file for --data npz.")
@click.option("--backend", default="numpy", show_default=True)
@click.option("--epochs", type=int)
@click.option("--batch", type=int)
@click.option("--lr", type=float, help="Override the optimizer's learning rate.")
@click.option("--seed", type=int)
@click.option("--out", "-o", default="run", show_default=True, type=click.Path(file_okay=False),
              help="Run directory: metrics.jsonl, epoch-*.safetensors, best.safetensors.")
@click.option("--resume", is_flag=True, help="Continue from the latest checkpoint in --out.")
@click.option("--bind", "-b", multiple=True)
@click.option("--no-progress", is_flag=True, help="Plain one-line-per-epoch output.")
@click.option("--grad", "grad_mode", type=click.Choice(["autograd", "symbolic"]), default=None,
              help="torch backend: gradients from torch autograd (default) or dlc's symbolic backward.")
@click.option("--nproc", type=int, default=1, show_default=True,
              help="torch backend: DistributedDataParallel processes (gloo) on this machine.")
@_guard
def train(file, model, data, data_path, backend, epochs, batch, lr, seed, out, resume, bind, no_progress,
          grad_mode, nproc):
    """Train as the spec's train section declares; flags override it."""
    if backend != "numpy":
        from .backends import get_backend
        get_backend(backend)
    from .trainer import train as run_training
    grad_mode = grad_mode or ("autograd" if backend == "torch" else "symbolic")
    res = run_training(file, model=model, data=data, data_path=data_path, epochs=epochs, batch=batch, seed=seed,
                       out=out, resume=resume, bind=_parse_bind(bind), progress=not no_progress, lr=lr,
                       backend=backend, grad=grad_mode, nproc=nproc)
    if res.history:
        last = res.history[-1]
        parts = [f"{k}={v:.4f}" for k, v in last.items() if k.startswith("val_")]
        click.echo(f"trained {res.epochs_run} epoch(s); last: {' '.join(parts)}; best: {res.best}; run: {res.out}")


@main.command("compile")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--target", "-t", required=True, help="Code generator: torch (a self-contained PyTorch module).")
@click.option("--model", "-m", help="Model to compile (default: the last one in the file).")
@click.option("--bind", "-b", multiple=True, help="Size a dimension or override a constant: layers=6.")
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write the code here (default: stdout).")
@_guard
def compile_(file, target, model, bind, output):
    """Generate source code for a target: `--target torch` writes a PyTorch nn.Module."""
    if target != "torch":
        hint = ("the TVM backend (cpu, cuda, aarch64) is not built yet: see the issue 'TVM backend'"
                if target.split(":")[0] in ("tvm", "cpu", "cuda", "aarch64", "llvm") else "available targets: torch")
        raise DlcError(f"compile target '{target}' is not available yet", hint=hint)
    from .api import load
    from .backends.torch.modgen import generate_module
    source = generate_module(load(file, model, _parse_bind(bind)))
    if output:
        from .runtime.atomic import atomic_write
        atomic_write(output, source.encode("utf-8"))
    else:
        click.echo(source, nl=False)


if __name__ == "__main__":
    main()
