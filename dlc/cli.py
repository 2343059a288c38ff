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


def _debug() -> bool:
    from .debugging import debug_enabled
    return debug_enabled()


def _guard(fn):
    @wraps(fn)
    def inner(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except DlcError as e:
            click.echo(e.render(), err=True)
            from .debugging import underlying_report
            if _debug() and (full := underlying_report(e)):
                click.echo(full, err=True)       # the backend's whole message, as the hint promises
            sys.exit(1)
        except RecursionError:
            click.echo("error: the spec nests too deeply to compile", err=True)
            sys.exit(1)
        except OSError as e:  # a missing, unreadable, read-only or full path: the user's to fix, not a bug
            if _debug():
                raise
            where = f"{e.filename}: " if e.filename else ""
            click.echo(f"error: {where}{e.strerror or e}\n"
                       "hint: check the path, its permissions and the free space", err=True)
            sys.exit(1)
        except (KeyboardInterrupt, click.exceptions.Exit, click.ClickException, SystemExit):
            raise
        except Exception as e:  # a bug in dlc, reported without a traceback
            if _debug():
                raise
            click.echo(f"internal error: {type(e).__name__}: {e}\n"
                       "hint: this is a bug in dlc; rerun with DLC_DEBUG=1 for a traceback", err=True)
            sys.exit(3)
    return inner


# Option values are checked by click, so that a bad one is a one-line usage
# error (exit 2) before any work starts.
SEED = click.IntRange(0, 2**63 - 1)
POSITIVE = click.IntRange(min=1)
NON_NEGATIVE = click.IntRange(min=0)


class PositiveFloat(click.ParamType):
    """A finite number above zero (click's FloatRange lets NaN through)."""

    name = "positive number"

    def convert(self, value, param, ctx):
        import math
        try:
            x = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number", param, ctx)
        if not math.isfinite(x) or x <= 0:
            self.fail(f"{value!r} must be a finite number above 0", param, ctx)
        return x


def _output_path(ctx, param, value):
    """An output file or folder whose parent folder exists and is writable;
    checked before minutes of compiling or training, not after."""
    if value is None:
        return value
    parent = Path(value).absolute().parent
    if not parent.is_dir():
        raise click.BadParameter(f"{value}: the folder {parent} does not exist", ctx, param)
    if not os.access(parent, os.W_OK | os.X_OK):
        raise click.BadParameter(f"{value}: the folder {parent} is not writable", ctx, param)
    if Path(value).is_dir() and param.name != "out":
        raise click.BadParameter(f"{value} is a folder; give a file name", ctx, param)
    return value


def _parse_data_options(items) -> dict:
    """KEY=VALUE pairs: a value is JSON (32, [0.5, 0.5], true, "x"), a comma
    list of such values (0.5,0.5,0.5 or a,b), or else text."""
    out = {}
    for it in items:
        if "=" not in it:
            raise click.BadParameter(f"{it!r}: expected KEY=VALUE", param_hint="--data-option")
        k, v = it.split("=", 1)
        out[k.strip()] = _option_value(v.strip())
    return out


def _option_value(v: str):
    def one(x: str):
        try:
            return json.loads(x)
        except ValueError:
            return x
    if "," in v and not v.startswith(("[", "{", '"')):
        return [one(x.strip()) for x in v.split(",")]
    return one(v)


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


def _opt_options(fn):
    """-O<level>, --passes and --disable-pass, turned into one `opt` argument
    (a `compiler.passes.PipelineOptions`; an unknown pass name is a DlcError
    that lists the passes)."""
    @click.option("-O", "opt_level", type=click.IntRange(0, 3), default=2, show_default=True,
                  help="Optimisation level: -O0 none, -O1 simplify, -O2 fold and fuse, -O3 everything.")
    @click.option("--passes", "passes", metavar="P1,P2", help="Run exactly these passes (pipeline order).")
    @click.option("--disable-pass", "disable", multiple=True, metavar="PASS", help="Skip this pass (repeatable).")
    @click.option("--precision", "precision", type=click.Choice(["fp32", "bf16", "fp16"]), default="fp32",
                  show_default=True, help="Mixed precision: convs/matmuls in bf16 or fp16, statistics in fp32 "
                  "(the autocast pass; docs/precision.md).")
    @wraps(fn)
    def inner(*args, opt_level, passes, disable, precision, **kwargs):
        # under _guard: an unknown pass name is reported like any DlcError
        return _guard(lambda: fn(*args, opt=_pipeline_options(opt_level, passes, disable, precision), **kwargs))()
    return inner


def _pipeline_options(level, passes, disable, precision="fp32"):
    from .compiler.passes import PipelineOptions
    names = None if passes is None else tuple(p.strip() for p in passes.split(",") if p.strip())
    dis = tuple(d.strip() for item in disable for d in item.split(",") if d.strip())
    return PipelineOptions(level=level, passes=names, disable=dis, precision=precision)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="dlc")
@click.option("--include", "-I", multiple=True, type=click.Path(file_okay=False),
              help="A folder `import \"...\"` searches (before DLC_PATH); may be repeated.")
def main(include):
    """dlc: a declarative deep-learning compiler for .dln specs."""
    from .frontend.search_path import prepend_env
    prepend_env(include)


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
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (as --format json).")
@click.option("--format", "fmt", type=click.Choice(["table", "md", "csv", "json"]), default="table",
              show_default=True, help="table: rich on a wide terminal, plain full columns otherwise.")
@click.option("--memory", is_flag=True, help="Also the peak activation memory and kernel count, -O0 and after -O.")
@_opt_options
@_guard
def info(file, model, bind, as_json, fmt, memory, opt):
    """Layer table: names, ops, shapes, parameters and MACs."""
    from .api import load
    m = load(file, model, _parse_bind(bind), opt=opt)
    data = m.info(memory=memory)
    if as_json or fmt == "json":
        click.echo(json.dumps(data))
        return
    from .reporting import info_tables, memory_table
    from .tables import render, stdout_width
    raw = fmt == "csv"      # CSV: plain integers, for spreadsheets and scripts
    tables = info_tables(data, raw=raw) + ([memory_table(data["memory"], raw=raw)] if memory else [])
    click.echo(render(tables, fmt, stdout_width()), nl=False)


@main.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--model", "-m")
@click.option("--bind", "-b", multiple=True)
@click.option("--mode", type=click.Choice(["eval", "train"]), default="eval", show_default=True)
@click.option("--after", "after", metavar="PASS", help="The IR after this pass of the pipeline (with -O, --passes).")
@click.option("--dump-ir-after", "dump_after", metavar="all|P1,P2", help="Print the IR after each of these passes.")
@click.option("--backend", default="numpy", show_default=True, help="The backend the pipeline prepares for.")
@click.option("--stats", is_flag=True, help="After the IR, what each pass did.")
@_opt_options
@_guard
def ir(file, model, bind, mode, after, dump_after, backend, stats, opt):
    """Print the IR, each node with its type and .dln location.  Without
    --after/--dump-ir-after/--stats, the IR as elaborated (before any pass)."""
    from .api import load
    from .compiler.passes import check_pass_name
    m = load(file, model, _parse_bind(bind), opt=opt)
    if after is None and dump_after is None and not stats:
        click.echo(m.ir(mode))
        return
    wanted = None
    if dump_after is not None and dump_after != "all":
        wanted = {p.strip() for p in dump_after.split(",") if p.strip()}
        for p in wanted:
            check_pass_name(p)

    def show(name, g):
        if dump_after is not None and (wanted is None or name in wanted):
            click.echo(f"// ---- IR after {name} ----")
            click.echo(str(g))
    g = m.optimized(m.symbolic_graph(mode), backend, after=show, stop_after=after)
    if dump_after is None:
        click.echo(str(g))
    if after is not None and after not in {r.name for r in m.pass_records}:
        raise DlcError(f"pass '{after}' does not run at -O{opt.level} in {mode} mode",
                       hint="raise -O, or name it with --passes")
    if stats:
        from .reporting import print_pass_records
        print_pass_records(m.pass_records, m.pass_stats)


@main.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--model", "-m")
@click.option("--bind", "-b", multiple=True)
@click.option("--mode", type=click.Choice(["eval", "train"]), default="eval", show_default=True)
@click.option("--after", "after", metavar="PASS", help="The graph after this pass of the pipeline (with -O, --passes).")
@click.option("--before-after", is_flag=True, help="The graph before the pipeline (-O0) and after it, side by side.")
@click.option("--backend", default="numpy", show_default=True, help="The backend the pipeline prepares for.")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), callback=_output_path,
              help="graph.svg, .png or .pdf (drawn by graphviz's dot), or .dot (the DOT text).")
@_opt_options
@_guard
def viz(file, model, bind, mode, after, before_after, backend, output, opt):
    """Draw the graph with graphviz: a box per node (op, shapes, .dln line),
    fused regions and scan bodies as clusters, parameters one node per layer.
    Without --after, the graph the -O pipeline leaves (-O0: as elaborated)."""
    from .api import load
    from .viz import check_output, model_dot, summary, write_picture
    check_output(output)
    m = load(file, model, _parse_bind(bind), opt=opt)
    text, graphs = model_dot(m, mode, backend, after, before_after)
    write_picture(text, output)
    click.echo(f"{m.name} -> {output}: {summary(graphs)}")


@main.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--model", "-m")
@click.option("--backend", default="numpy", show_default=True,
              help="numpy, torch or tvm (tvm: compiled for this CPU, cached). A .dlcpkg always runs on TVM.")
@click.option("--input", "-i", "inputs", multiple=True, help="NAME=file.npy")
@click.option("--weights", "-w", type=click.Path(dir_okay=False), help="A .safetensors file.")
@click.option("--bind", "-b", multiple=True)
@click.option("--seed", default=0, show_default=True, type=SEED)
@click.option("--mode", type=click.Choice(["eval", "train"]), default="eval", show_default=True)
@click.option("--dtype", type=click.Choice(["float32", "float64"]), default=None)
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True,
              help="Device for a .dlcpkg.")
@click.option("-o", "--output", type=click.Path(dir_okay=False), callback=_output_path,
              help="Write outputs to an .npz file.")
@click.option("--expect-sha256", metavar="HEX",
              help="Run the .dlcpkg only if its sha256 is HEX (loading a package runs its native code).")
@click.option("--allow-missing", multiple=True, metavar="PATTERN",
              help="Parameters --weights may lack (initialised from --seed as the spec says).")
@click.option("--allow-unused", multiple=True, metavar="PATTERN", help="Entries of --weights the model may lack.")
@click.option("--format", "fmt", type=click.Choice(["table", "md", "csv", "json"]), default="table",
              show_default=True, help="How the outputs' statistics are printed (json: full precision).")
@_opt_options
@_guard
def run(file, model, backend, inputs, weights, bind, seed, mode, dtype, device, output, expect_sha256,
        allow_missing, allow_unused, fmt, opt):
    """Forward pass with given or seeded inputs and weights (a .dln spec or a
    compiled .dlcpkg package)."""
    import numpy as np
    arrays = _read_inputs(inputs)
    if expect_sha256 is not None and not _is_package(file):
        raise DlcError(f"--expect-sha256 pins a compiled .dlcpkg package; {file} is a spec",
                       hint="drop --expect-sha256, or run the package: dlc run model.dlcpkg --expect-sha256 HEX")
    if _is_package(file):
        _precision_fixed(opt, f"{file} is compiled", "compile it with --precision instead")
        from .runtime.package import load as load_package
        pkg = load_package(file, device, expect_sha256)
        if weights:
            pkg.set_weights(_strict_package_weights(pkg, weights, allow_unused))
        known = {s["name"] for s in pkg.inputs}
        unknown = set(arrays) - known
        if unknown:
            raise DlcError(f"the model has no input {', '.join(sorted(unknown))}", hint="inputs: " + ", ".join(known))
        _check_package_binds(pkg, _parse_bind(bind))
        if len(arrays) < len(known):
            for k, v in pkg.example_inputs(seed, _parse_bind(bind)).items():
                arrays.setdefault(k, v)
        outs = pkg.run(arrays, seed=seed)
    else:
        from .api import load
        m = load(file, model, _parse_bind(bind), opt=opt)
        unknown = set(arrays) - {v.name for v in m.inputs}
        if unknown:
            raise DlcError(f"the model has no input {', '.join(sorted(unknown))}",
                           hint="inputs: " + ", ".join(v.name for v in m.inputs))
        w = None
        if weights:     # strict, as load_state_dict; a quantized artifact (dlc quantize) also turns int8 on
            from .quant_artifact import is_artifact, weights_for
            if is_artifact(weights):
                m, w = weights_for(m, weights)
            else:
                w = _strict_weights(m, weights, seed, allow_missing, allow_unused)
        outs = m.run(arrays, w, backend=backend, bind=_parse_bind(bind), seed=seed, mode=mode, dtype=dtype)
    from .reporting import print_outputs
    print_outputs(outs, fmt)
    if output:
        from .runtime.atomic import atomic_write
        import io
        buf = io.BytesIO()
        np.savez(buf, **outs)
        atomic_write(output, buf.getvalue())


def _strict_weights(m, path, seed, allow_missing, allow_unused) -> dict:
    """--weights loaded as load_state_dict(strict=True) does (one error lists every
    missing, unused and mis-shaped entry); allowed-missing ones are the seed's."""
    from .runtime.weights import check_state_dict, load_weights
    fresh = m.init_weights(seed)
    given = load_weights(path)
    loaded, _missing = check_state_dict({k: (v.shape, v.dtype.name) for k, v in fresh.items()}, given,
                                        source=f"the weights {path}", allow_missing=allow_missing,
                                        allow_unused=allow_unused)
    return {**fresh, **{k: given[k] for k in loaded}}


def _strict_package_weights(pkg, path, allow_unused) -> dict:
    """--weights for a package: no unused entries (the package checks shapes and dtypes,
    and cannot initialise a missing weight)."""
    from .runtime.weights import check_state_dict, load_weights
    given = load_weights(path)
    expected = {}
    for p in pkg.signature["params"]:     # shapes may be symbolic: compare names here
        a = given.get(p["name"])
        expected[p["name"]] = (a.shape, a.dtype.name) if a is not None else (tuple(p["shape"]), p["dtype"])
    loaded, _ = check_state_dict(expected, given, source=f"the weights {path}", allow_unused=allow_unused)
    return {k: given[k] for k in loaded}


def _read_inputs(items) -> dict:
    from .runtime.npy import load_npy
    arrays = {}
    for it in items:
        if "=" not in it:
            raise click.BadParameter(f"{it!r}: expected NAME=file.npy", param_hint="--input")
        k, path = it.split("=", 1)
        arrays[k] = load_npy(path, f"input {k}")
    return arrays


def _check_package_binds(pkg, bind: dict) -> None:
    dims = sorted({d for s in pkg.inputs for d in s.get("shape", []) if isinstance(d, str)})
    for k in bind:
        if k not in dims:
            raise DlcError(f"--bind {k}: the package has no dimension named '{k}'",
                           hint=f"dimensions: {', '.join(dims)}" if dims else "its inputs have fixed sizes")


def _check_train_binds(file, bind) -> None:
    """--bind names must size a dimension or set a constant of some model in the file."""
    from .frontend.blocks import bindable_names
    from .frontend.modules import load_module
    mod = load_module(file)
    known = {n for m in mod.models for part in bindable_names(mod, m) for n in part}
    for k in _parse_bind(bind):
        if k not in known:
            raise DlcError(f"--bind {k}: no model in {file} has a dimension or constant named '{k}'",
                           hint="names: " + (", ".join(sorted(known)) or "none"))


def _precision_fixed(opt, why: str, hint: str) -> None:
    """--precision where it cannot take effect: an error, not an fp32 run."""
    if opt is not None and opt.precision != "fp32":
        raise DlcError(f"--precision {opt.precision} cannot apply here: {why}", hint=hint)


def _is_package(file) -> bool:
    """A .dlcpkg (by name, or by content: a zip file)."""
    if str(file).endswith(".dlcpkg"):
        return True
    try:
        with open(file, "rb") as f:
            return f.read(4) == b"PK\x03\x04"
    except OSError:
        return False


@main.command("init")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--model", "-m", help="Model (default: the last one in the file).")
@click.option("--bind", "-b", multiple=True, help="Set a constant the parameters' shapes depend on: width=64.")
@click.option("--seed", default=0, show_default=True, type=SEED, help="The seed, as dlc run/train --seed.")
@click.option("-o", "--output", type=click.Path(dir_okay=False), callback=_output_path,
              help="The .safetensors file (default: <spec stem>.safetensors).")
@click.option("--overwrite", is_flag=True, help="Replace an existing file.")
@_guard
def init_(file, model, bind, seed, output, overwrite):
    """Save the model's initial weights (as the spec's init= draws them from
    --seed) to a .safetensors file that run/train/compile --weights load."""
    from .init_cli import default_output, init_weights_file
    r = init_weights_file(file, output or default_output(file), model=model, bind=_parse_bind(bind), seed=seed,
                          overwrite=overwrite)
    click.echo(f"{r['model']} -> {r['out']}: {r['tensors']} tensors, {r['params']:,} parameters, "
               f"{r['buffers']:,} buffer values, {_human(r['bytes'])} (seed {r['seed']})")


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
@click.option("--data-path", type=click.Path(),
              help="The data set's file or folder (npz/csv file, image_folder/npy folder); overrides the section's.")
@click.option("--data-option", "data_options", multiple=True, metavar="KEY=VALUE",
              help="A data source option, e.g. mean=0.5,0.5,0.5 or label=species (see docs/data.md).")
@click.option("--backend", default="numpy", show_default=True, help="numpy, torch or tvm.")
@click.option("--epochs", type=POSITIVE)
@click.option("--batch", type=POSITIVE)
@click.option("--lr", type=PositiveFloat(), help="Override the optimizer's learning rate.")
@click.option("--seed", type=SEED)
@click.option("--out", "-o", default="run", show_default=True, type=click.Path(file_okay=False),
              callback=_output_path,
              help="Run directory: metrics.jsonl, epoch-*.safetensors, best.safetensors.")
@click.option("--resume", is_flag=True, help="Continue from the latest checkpoint in --out.")
@click.option("--overwrite", is_flag=True, help="Start over in a non-empty --out (deletes its run files).")
@click.option("--drop-last/--keep-last", "drop_last", default=None,
              help="Skip a short last batch of each epoch (default: the train section's drop_last, else keep).")
@click.option("--bind", "-b", multiple=True)
@click.option("--no-progress", is_flag=True, help="Plain one-line-per-epoch output.")
@click.option("--grad", "grad_mode", type=click.Choice(["autograd", "symbolic"]), default=None,
              help="torch backend: gradients from torch autograd (default) or dlc's symbolic backward.")
@click.option("--nproc", type=POSITIVE, default=1, show_default=True,
              help="torch backend: DistributedDataParallel processes (gloo) on this machine.")
@click.option("--weights", "-w", type=click.Path(dir_okay=False),
              help="Start from these weights (.safetensors, loaded strictly; default: the train section's).")
@click.option("--allow-missing", multiple=True, metavar="PATTERN",
              help="Parameters the weights file may lack (initialised as the spec says), e.g. \"fc.*\".")
@click.option("--allow-unused", multiple=True, metavar="PATTERN",
              help="Entries of the weights file the model may lack, e.g. \"head.*\".")
@click.option("--freeze", multiple=True, metavar="PATTERN",
              help="Keep these parameters fixed (repeatable; adds to the train section's freeze).")
@_opt_options
@_guard
def train(file, model, data, data_path, data_options, backend, epochs, batch, lr, seed, out, resume, overwrite,
          drop_last, bind, no_progress, grad_mode, nproc, weights, allow_missing, allow_unused, freeze, opt):
    """Train as the spec's train section declares; flags override it."""
    from .trainer import train as run_training
    _check_train_binds(file, bind)
    res = run_training(file, model=model, data=data, data_path=data_path,
                       data_options=_parse_data_options(data_options), epochs=epochs, batch=batch, seed=seed,
                       out=out, resume=resume, bind=_parse_bind(bind), progress=not no_progress, lr=lr,
                       backend=backend, grad=grad_mode, nproc=nproc, overwrite=overwrite, drop_last=drop_last,
                       opt=opt, weights=weights, allow_missing=allow_missing, allow_unused=allow_unused,
                       freeze=freeze)
    if res.history and res.rank == 0:      # under torchrun every rank runs this; one reports
        last = res.history[-1]
        parts = [f"{k}={v:.4f}" for k, v in last.items() if k.startswith("val_")]
        click.echo(f"trained {res.epochs_run} epoch(s); last: {' '.join(parts)}; best: {res.best}; run: {res.out}")


@main.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--target", "-t", default="cpu", show_default=True, help="TVM target to tune for (this machine's CPU).")
@click.option("--model", "-m", help="Model to tune (default: the last one in the file).")
@click.option("--budget", default="20m", show_default=True, help="Wall-clock budget: 90s, 20m, 1h, 1h30m.")
@click.option("--bind", "-b", multiple=True,
              help="Fix a dimension: N=1 (tuning needs static shapes; default: the example sizes).")
@click.option("--tuning-db", type=click.Path(file_okay=False),
              help="Database directory (default: $DLC_CACHE_DIR/tuning/<target-hash>, ~/.cache/dlc/...).")
@click.option("--trials-per-task", type=int, help="Measured candidates per kernel and round (default 32).")
@click.option("--no-progress", is_flag=True, help="Plain one-line-per-kernel output.")
@_opt_options
@_guard
def tune(file, target, model, budget, bind, tuning_db, trials_per_task, no_progress, opt):
    """Tune the model's kernels with MetaSchedule; `dlc compile` applies the records."""
    from .backends import get_backend
    get_backend("tvm")
    from .api import load
    from .backends.tvm.tune import check_tunable, format_report, parse_budget, tune_graph
    seconds = parse_budget(budget)
    check_tunable(target)
    binds = _parse_bind(bind)
    m = load(file, model, binds, opt=opt)
    # tune the kernels `dlc compile` at the same -O level will build
    r = tune_graph(m.optimized(m.symbolic_graph("eval"), "tvm", target, binds), target, budget_s=seconds, db_dir=tuning_db, bind=binds,
                   trials_per_task=trials_per_task, progress="plain" if no_progress else True)
    click.echo(format_report(r))
    if r.interrupted:
        sys.exit(130)


@main.command("compile")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--target", "-t", required=True,
              help="torch (a PyTorch module), or a TVM target: cpu, llvm, cuda, aarch64, rasp4, jetson-orin "
                   "(dlc targets lists them).")
@click.option("--model", "-m", help="Model to compile (default: the last one in the file).")
@click.option("--bind", "-b", multiple=True, help="Size a dimension or override a constant: layers=6.")
@click.option("-o", "--output", type=click.Path(dir_okay=False), callback=_output_path,
              help="torch: write the code here (default: stdout). TVM: the package (default: <stem>.dlcpkg).")
@click.option("--arch", help="CUDA architecture: sm_80, sm_87, sm_90 (default sm_90).")
@click.option("--target-opt", "target_opts", multiple=True, help="TVM target option KEY=VALUE: mcpu=skylake-avx512.")
@click.option("--tuning-db", type=click.Path(file_okay=False), help="A MetaSchedule database directory (dlc tune).")
@click.option("--no-cache", is_flag=True, help="Compile even if the cache has this model.")
@click.option("--weights", "-w", type=click.Path(dir_okay=False),
              help="TVM: package these weights (default: initialised from --seed).")
@click.option("--seed", default=0, show_default=True, type=SEED)
@click.option("--script", is_flag=True, help="torch: check that the module compiles with torch.jit.script.")
@click.option("--flat", is_flag=True, help="torch: one class, every block written inline in its forward.")
@_opt_options
@_guard
def compile_(file, target, model, bind, output, arch, target_opts, tuning_db, no_cache, weights, seed, script,
             flat, opt):
    """Generate code for a target: `--target torch` writes a PyTorch nn.Module;
    a TVM target (cpu, cuda, aarch64, ...) writes a .dlcpkg package."""
    if target == "torch":
        _precision_fixed(opt, "--target torch writes the fp32 nn.Module",
                         "wrap its forward in torch.autocast, or run: dlc run --backend torch --precision ...")
        _compile_torch(file, model, bind, output, script, flat, weights, opt)
        return
    if script or flat:
        raise click.UsageError("--script and --flat are options of --target torch")
    import time
    from .backends.tvm.target import canonical_name, parse_options, resolve_target, short
    t0 = time.perf_counter()
    opts = parse_options(target_opts)
    resolve_target(target, arch, opts)             # a bad name or --arch fails before parsing
    from .api import load
    from .backends.tvm.cache import compile_cached
    from .backends.tvm.package import example_input_specs, source_hash, write_package
    b = _parse_bind(bind)
    m = load(file, model, b, opt=opt)
    w = None
    if weights:     # a quantized artifact (dlc quantize) also turns int8 on
        from .quant_artifact import weights_for
        m, w = weights_for(m, weights)
    g = m.optimized(m.symbolic_graph("eval"), "tvm", target, b)
    cm, hit = compile_cached(g, target, arch=arch, options=opts, database=tuning_db, cache=not no_cache)
    w = w if w is not None else m.init_weights(seed)
    out = Path(output) if output else Path(Path(file).stem + ".dlcpkg")
    write_package(out, cm, w, source_hash=source_hash(file, b, m.name), spec_path=file, model_name=m.name,
                  target_name=canonical_name(target), example_inputs=example_input_specs(m._elaborate("eval")),
                  example_dims={k: v for k, v in m.graph.dims.items() if v is not None})
    size = out.stat().st_size
    note = "" if cm.lib_info.get("format") == "so" else f"; {cm.lib_info.get('note', 'library stored as lib.tar')}"
    if cm.database:
        note += f"; tuning records from {cm.database}"
    click.echo(f"{m.name} -> {out}: {canonical_name(target)} ({short(cm.target)}), "
               f"{time.perf_counter() - t0:.2f} s, cache {'hit' if hit else 'miss'}, {_human(size)}{note}")
    from .runtime.pkgfile import sha256_file
    click.echo(f"sha256 {sha256_file(out)} (pin it: dlc run {out} --expect-sha256 HEX)")


def _artifact_plan(m, weights):
    """The quantization plan of `--weights` when it is a dlc quantize artifact
    (checked against the spec), else None."""
    if not weights:
        return None
    from .quant_artifact import weights_for
    q, _ = weights_for(m, weights)
    m.opt = q.opt
    return getattr(q.opt, "quant", None)


def _compile_torch(file, model, bind, output, script: bool, flat: bool, weights=None, opt=None) -> None:
    """`--target torch`: the module's source to `output` (or stdout); with
    `script`, then whether torch.jit.script takes it (exit status 1 if not).
    An int8 artifact as `weights` gives the module of the quantized graph
    (integer ops, written flat: the passes have rewritten the blocks' layers)."""
    from .api import load
    from .backends.torch.modgen import generate_module, module_class_name
    m = load(file, model, _parse_bind(bind), opt=opt)
    plan = _artifact_plan(m, weights)
    if plan:
        source = generate_module(m.optimized(m.symbolic_graph("eval"), "torch", bind=_parse_bind(bind)),
                                 structured=False)
    else:
        source = generate_module(m, structured=not flat)
    cls = module_class_name(m.name)
    if output:
        from .runtime.atomic import atomic_write
        atomic_write(output, source.encode("utf-8"))
    else:
        click.echo(source, nl=False)
    if script:
        from .backends.torch.modgen_script import script_check
        why = script_check(source, cls)
        if why is None:
            click.echo(f"{cls}: torch.jit.script compiles it", err=True)
        else:
            click.echo(f"{cls}: torch.jit.script cannot compile it:\n{why}", err=True)
            sys.exit(1)


def _human(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON array.")
@_guard
def targets(as_json):
    """TVM targets: what each compiles for, what it needs, what this machine has."""
    from .backends.tvm.target import availability
    rows = availability()
    if as_json:
        click.echo(json.dumps(rows))
        return
    from rich.console import Console
    from rich.table import Table
    t = Table(title="TVM targets (dlc compile --target NAME)", title_justify="left")
    for c in ("target", "compiles for", "needs", "on this machine"):
        t.add_column(c, overflow="fold")
    for r in rows:
        name = r["name"] + (f" ({', '.join(r['aliases'])})" if r["aliases"] else "")
        here = ("[green]compiles[/green]" if r["compile_here"] else "[red]cannot compile[/red]") + \
            (", [green]runs[/green]" if r["run_here"] else "")
        t.add_row(name, r["description"], "; ".join(r["needs"]),
                  here + ("; " + "; ".join(r["notes"]) if r["notes"] else ""))
    Console().print(t)


@main.command()
@click.argument("file", type=click.Path(dir_okay=False), required=False)
@click.option("--model", "-m")
@click.option("--backend", default="tvm", show_default=True, help="numpy, torch or tvm (one backend, no check).")
@click.option("--backends", help="Compare: check then time these backends (numpy,torch,tvm).")
@click.option("--baselines", help="Compare against torch-eager,torch-compile,onnxruntime ('' for none).")
@click.option("--batch", "batches", help="Batch sizes to compare, e.g. 1,32 (binds N).")
@click.option("--train", is_flag=True, help="Time training steps (forward, loss, backward, update).")
@click.option("--threads", type=POSITIVE, help="Pin every runtime's thread count (default: cores).")
@click.option("--format", "fmt", type=click.Choice(["table", "md", "csv", "json"]), help="Compare report format.")
@click.option("-o", "--output", "out", type=click.Path(dir_okay=False), help="Write the report here too.")
@click.option("--plot", type=click.Path(dir_okay=False), callback=_output_path,
              help="Draw the report as a bar chart (.png; needs Pillow).")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True,
              help="Where the torch baselines run (cuda: with --backends tvm-cuda on a GPU machine).")
@click.option("--ops", is_flag=True, help="Time kernels on the zoo's layer shapes (GFLOP/s, share of peak).")
@click.option("--suite", type=click.Choice(["resnet", "bert", "mobilenet", "all"]), default="resnet",
              show_default=True, help="With --ops: which layer shapes.")
@click.option("--target", "-t", default="cpu", show_default=True, help="TVM target for a .dln (with --rpc: the device's).")
@click.option("--arch", help="CUDA architecture.")
@click.option("--target-opt", "target_opts", multiple=True, help="TVM target option KEY=VALUE.")
@click.option("--bind", "-b", multiple=True, help="N=1 (batch size).")
@click.option("--repeat", default=20, show_default=True, type=POSITIVE)
@click.option("--warmup", default=3, show_default=True, type=NON_NEGATIVE)
@click.option("--seed", default=0, show_default=True, type=SEED)
@click.option("--rpc", "rpc_addr", help="HOST:PORT of a TVM RPC server: run there.")
@click.option("--weights", "-w", type=click.Path(dir_okay=False),
              help="A .safetensors file (a dlc quantize artifact benchmarks the int8 model).")
@click.option("--json", "as_json", is_flag=True)
@_opt_options
@_guard
def bench(file, model, backend, backends, baselines, batches, train, threads, fmt, out, plot, device, ops, suite,
          target, arch, target_opts, bind, repeat, warmup, seed, rpc_addr, weights, as_json, opt):
    """Check then time backends against PyTorch/onnxruntime baselines (--backends/--baselines/--batch/--ops),
    or the median latency of one backend's forward pass (.dln or .dlcpkg)."""
    from .bench_cli import compare_command, wants_compare
    if ops or wants_compare(backends, baselines, batches, train, threads, fmt, out or plot):
        if weights:
            raise click.UsageError("--weights (an int8 artifact) is timed by the one-backend form: "
                                   "dlc bench FILE --backend B --weights W")
        code = compare_command(file, model=model, backends=backends, baselines=baselines, batches=batches,
                               train=train, threads=threads, fmt=fmt or ("json" if as_json else "table"), out=out,
                               ops=ops, suite=suite, bind=_parse_bind(bind), repeat=repeat, warmup=warmup,
                               seed=seed, opt=opt, target=target, plot=plot, device=device)
        sys.exit(code)
    if file is None:
        raise click.UsageError("Missing argument 'FILE' (a .dln or .dlcpkg; or --ops).")
    from .bench import bench as run_bench
    if _is_package(file):
        _precision_fixed(opt, f"{file} is compiled", "compile it with --precision instead")
    res = run_bench(file, model=model, backend=backend, target=target, arch=arch, target_opts=target_opts,
                        bind=_parse_bind(bind), repeat=repeat, warmup=warmup, seed=seed, rpc_addr=rpc_addr,
                        is_package=_is_package(file), opt=opt, weights=weights)
    if as_json:
        click.echo(json.dumps(res))
        return
    click.echo(f"{res['model']} [{res['backend']}{' int8' if res.get('int8') else ''}"
               f"{' ' + res['where'] if res.get('where') else ''}] "
               f"{res['dims']}: median {res['median_ms']:.3f} ms, min {res['min_ms']:.3f} ms "
               f"({res['repeat']} runs after {res['warmup']} warm-up)")


@main.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--weights", "-w", required=True, type=click.Path(dir_okay=False), help="The trained .safetensors.")
@click.option("--sparsity", required=True, type=float,
              help="Fraction to remove, in [0, 1): of each layer's weights, or of each conv's channels.")
@click.option("--structured", type=click.Choice(["channel"]),
              help="channel: remove whole output channels and write a smaller .dln and its weights.")
@click.option("--scope", type=click.Choice(["layer", "global"]), default="layer", show_default=True,
              help="Unstructured: each layer loses --sparsity of its weights, or the model as a whole does.")
@click.option("--layers", help="Channel pruning: only these convolutions (comma-separated layer names).")
@click.option("--round-to", type=POSITIVE, default=1, show_default=True,
              help="Channel pruning: round each pruned width to a multiple of this (8 suits SIMD kernels).")
@click.option("--model", "-m")
@click.option("--bind", "-b", multiple=True)
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), callback=_output_path,
              help="Unstructured: the pruned .safetensors. Channel: the new .dln (weights beside it).")
@_guard
def prune(file, weights, sparsity, structured, scope, layers, round_to, model, bind, output):
    """Magnitude pruning: zero the smallest weights (masks kept for `dlc
    train --weights`), or remove the weakest conv channels (--structured channel)."""
    from .prune import prune_file
    names = [n.strip() for n in layers.split(",") if n.strip()] if layers else None
    for line in prune_file(file, weights, sparsity, output, structured=structured, scope=scope, layers=names,
                           round_to=round_to, model=model, bind=_parse_bind(bind)):
        click.echo(line)


@main.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--model", "-m", help="Model to quantize (default: the last one in the file).")
@click.option("--weights", "-w", required=True, type=click.Path(dir_okay=False),
              help="The trained float weights (.safetensors).")
@click.option("--calib", default="train", show_default=True,
              help="Calibration data: train or val (the train section's data set), a data set name, or a .npz.")
@click.option("--calib-size", type=POSITIVE, help="Calibrate on this many examples of --calib (default: all).")
@click.option("--data-path", type=click.Path(dir_okay=False), help="The .npz file of an npz data set.")
@click.option("--method", type=click.Choice(["minmax", "percentile", "entropy"]), default="minmax",
              show_default=True, help="How observed values become ranges.")
@click.option("--per-channel/--per-tensor", default=True, show_default=True, help="Weight scales.")
@click.option("--budget", metavar="POINTS%", help="Accuracy budget: the most the int8 model may lose on the "
              "held-out split, in percentage points (0.5%); layers return to fp32 until it fits.")
@click.option("--max-float-layers", type=NON_NEGATIVE, help="With --budget: at most this many layers in fp32 "
              "(default: all but one).")
@click.option("--backend", default="numpy", show_default=True, help="The backend the int8 model is evaluated on.")
@click.option("--bind", "-b", multiple=True)
@click.option("-o", "--output", type=click.Path(dir_okay=False), callback=_output_path,
              help="The artifact (default: <spec stem>.int8.safetensors).")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@_opt_options
@_guard
def quantize(file, model, weights, calib, calib_size, data_path, method, per_channel, budget, max_float_layers,
             backend, bind, output, no_progress, opt):
    """Static int8 quantization: calibrate, check the accuracy budget, write
    an artifact that run, bench and compile take as --weights."""
    from rich.console import Console
    from .api import load
    from .quant_budget import BudgetError
    from .quant_report import print_report, print_steps
    from .quant_flow import quantize as run_quantize
    m = load(file, model, _parse_bind(bind), opt=opt)
    try:
        res = run_quantize(m, weights, calib=calib, method=method, per_channel=per_channel, budget=budget,
                           max_float=max_float_layers, calib_size=calib_size, backend=backend,
                           data_path=data_path, progress=not no_progress)
    except BudgetError as e:
        print_steps(Console(), e.result)
        raise
    out = Path(output) if output else Path(Path(file).stem + ".int8.safetensors")
    res.save(out)
    print_report(res)
    click.echo(f"{res.model} -> {out}")


@main.command("verify")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--model", "-m", help="The model (default: the last one in the file).")
@click.option("--backends", default="numpy,torch,tvm", show_default=True, help="Backends to check.")
@click.option("-O", "levels", default="0,2,3", show_default=True, help="Optimisation levels to check, e.g. 0,2,3.")
@click.option("--precision", "precisions", default="fp32", show_default=True,
              help="Precisions to check, e.g. fp32,bf16,fp16 (bf16/fp16: the autocast pass, held to that dtype's "
                   "tolerance).")
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
def verify_command(file, model, bind, **options):
    """Check every backend at every -O level against the float64 NumPy
    reference at -O0 (same weights and inputs).  On a mismatch, name the first
    diverging IR node at its .dln line and write a reproducer; exit status 1."""
    from .verify_cli import run_verify
    if not run_verify(file, model, _parse_bind(bind), **options):
        sys.exit(1)


@main.command("fmt")
@click.argument("files", nargs=-1, required=True, type=click.Path())
@click.option("--check", is_flag=True, help="Change nothing; list the files that would change, exit 1 if any.")
@click.option("--diff", is_flag=True, help="Print what would change as a unified diff instead of writing it.")
@_guard
def fmt_command(files, check, diff):
    """Lay .dln files out canonically, in place (a folder: every .dln in it;
    -: stdin to stdout).  Comments and line breaks are kept; the meaning is
    checked to be unchanged (docs/fmt.md)."""
    from .fmt_cli import run_fmt
    sys.exit(run_fmt(files, check, diff))


@main.command("export")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--model", "-m", help="Model to export (default: the last one in the file).")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), callback=_output_path,
              help="The .onnx file to write.")
@click.option("--opset", type=click.IntRange(17, 21), default=17, show_default=True, help="ONNX opset (17..21).")
@click.option("--bind", "-b", multiple=True, help="Size a dimension (N=1); unbound ones stay named ONNX dims.")
@click.option("--weights", "-w", type=click.Path(dir_okay=False),
              help="A .safetensors file (default: from --seed); a `dlc quantize` artifact exports QDQ.")
@click.option("--train", is_flag=True, help="Export one training step of the train section, not the forward pass.")
@click.option("--seed", default=0, type=SEED, show_default=True, help="Seed of the weights when --weights is absent.")
@click.option("--noise-inputs", is_flag=True,
              help="Random ops (randn) become graph inputs: noise.<layer>, or noise.randn outside a layer.")
@_opt_options
@_guard
def export_command(file, model, output, opset, bind, weights, train, seed, noise_inputs, opt):
    """Write the model as ONNX: parameters as initializers under their names,
    symbolic dimensions as named dims, each node's .dln line in doc_string."""
    from .onnx_export_cli import export_spec
    _, info = export_spec(file, output, model=model, bind=_parse_bind(bind), weights_path=weights, opset=opset,
                          train=train, seed=seed, noise_inputs=noise_inputs, opt=opt)
    kind = "training step" if train else ("QDQ model" if info["qdq"] else "model")
    click.echo(f"wrote {output}: {info['model']} {kind}, opset {opset}, {info['nodes']} nodes, "
               f"{info['initializers']} initializers; inputs {', '.join(info['inputs'])}")


@main.command("import")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("-o", "output", type=click.Path(dir_okay=False), help="Write a readable .dln spec (decompiled).")
@click.option("--weights", "weights_out", type=click.Path(dir_okay=False),
              help="Write the weights as .safetensors under the spec's parameter names.")
@click.option("--bind", "-b", multiple=True, help="Fix a dynamic dimension: N=1.")
@click.option("--ir", "show_ir", is_flag=True, help="Print the imported IR.")
@click.option("--qdq", type=click.Choice(["int8", "fake"]), default="int8", show_default=True,
              help="QDQ layers: dlc's int8 ops (qconv2d/qdense), or float layers between Q/DQ ops.")
@_guard
def import_command(file, output, weights_out, bind, show_ir, qdq):
    """Import an ONNX model into dlc's IR (see docs/onnx-import.md)."""
    from .onnx_import_cli import run_import
    run_import(file, output, weights_out, _parse_bind(bind), show_ir, qdq=qdq)


@main.group()
def cache():
    """The compile cache and the folders packages are unpacked into."""


@cache.command("list")
@click.option("--format", "fmt", type=click.Choice(["table", "md", "csv", "json"]), default="table",
              show_default=True)
@_guard
def cache_list(fmt):
    """What dlc keeps on disk: compile cache entries, tuning databases, decoded
    image caches, and its folders under the temp dir (stale ones marked)."""
    from .cache_cli import cache_rows, list_report
    click.echo(list_report(cache_rows(), fmt), nl=False)


@cache.command("clear")
@click.option("--data", is_flag=True, help="Also the decoded image caches of image_folder data sets.")
@_guard
def cache_clear(data):
    """Delete the TVM compile cache and the package extraction and scratch
    folders left by killed processes (tuning databases are kept)."""
    from .backends.tvm.cache import cache_dir, clear_cache
    from .cache_cli import clear_data_caches, remove_folders
    from .runtime.pkgfile import stale_extractions
    n, size = clear_cache()
    click.echo(f"removed {n} compile cache entries ({_human(size)}) from {cache_dir()}")
    gone, kept = remove_folders(stale_extractions(legacy=True))
    click.echo(f"removed {len(gone)} package extraction folders ({_human(sum(b for _, b in gone))})"
               + "".join(f"\n  {d}" for d, _ in gone))
    if data:
        n, size = clear_data_caches()
        click.echo(f"removed {n} decoded image caches ({_human(size)})")
    for d in kept:
        click.echo(f"error: could not remove {d}", err=True)
    if kept:
        sys.exit(1)


if __name__ == "__main__":
    main()
