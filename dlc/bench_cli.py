"""The comparing forms of `dlc bench` (--backends/--baselines/--batch/--ops):
build the report, print it, write it, and choose the exit status (1 when a
result was wrong, failed or a requested baseline could not run)."""
from __future__ import annotations

from pathlib import Path

import click

from .bench_format import FORMATS, render

_SUFFIX_FORMAT = {".json": "json", ".md": "md", ".csv": "csv", ".txt": "table"}


def wants_compare(backends, baselines, batches, train, threads, fmt, out) -> bool:
    """Any of the comparing options given (the bare `dlc bench f.dln` keeps timing one backend)."""
    return any(x is not None and x is not False for x in (backends, baselines, batches, threads, fmt, out)) or train


def compare_command(file, *, model, backends, baselines, batches, train, threads, fmt, out, ops, suite, bind,
                    repeat, warmup, seed, opt, target, plot=None, device="cpu") -> int:
    from .bench_baselines import BASELINES
    from .bench_compare import BACKENDS, KNOWN_BACKENDS, bench_compare, parse_batches, parse_names
    from .bench_train import TRAIN_BASELINES
    if ops:
        from .bench_ops import bench_ops
        report = bench_ops(suite=suite, runtimes=parse_names(backends, ("torch", "tvm"), "op-suite backend",
                                                             ("torch", "tvm")),
                           threads=threads, repeat=repeat, warmup=warmup, seed=seed)
    else:
        if file is None:
            raise click.UsageError("Missing argument 'FILE' (a .dln model to compare; or --ops).")
        report = bench_compare(file, model=model, backends=parse_names(backends, KNOWN_BACKENDS, "backend", BACKENDS),
                               baselines=parse_names(baselines, BASELINES, "baseline",
                                                     TRAIN_BASELINES if train else BASELINES),
                               batches=parse_batches(batches), train=train, threads=threads, repeat=repeat,
                               warmup=warmup, seed=seed, bind=bind, opt=opt, target=target, device=device)
    if out:
        out_fmt = fmt if fmt != "table" or Path(out).suffix not in _SUFFIX_FORMAT else _SUFFIX_FORMAT[Path(out).suffix]
        from .runtime.atomic import atomic_write
        atomic_write(out, render(report, out_fmt if out_fmt in FORMATS else "json").encode())
    if plot:
        from .bench_plot import render_png
        from .runtime.atomic import atomic_write
        atomic_write(plot, render_png(report))
    click.echo(render(report, fmt), nl=False)
    bad = [r for r in report["rows"] if r["status"] != "ok"]
    for r in bad:
        where = f"{r['name']}" + (f" at batch {r['batch']}" if "batch" in r else f" {r.get('op')} {r.get('shape')}")
        word = {"wrong": "WRONG result, not timed", "unavailable": "not run"}.get(r["status"], "failed")
        click.echo(f"error: {where}: {word}: {r['reason']}", err=True)
    for w in report.get("warnings", []):
        click.echo(f"warning: {w}", err=True)
    return 1 if bad else 0
