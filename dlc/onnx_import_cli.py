"""`dlc import model.onnx [-o model.dln] [--weights out.safetensors] [--bind N=1] [--ir]`."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import click


def run_import(file: str, output: str | None, weights_out: str | None, bind: dict, show_ir: bool,
               qdq: str = "int8") -> None:
    from .frontend.onnx import import_onnx
    from .runtime.weights import save_weights
    imp = import_onnx(file, bind=bind, qdq=qdq)
    g = imp.graph
    ops = Counter(n.op.name for n in g.walk())
    n_params = sum(int(w.size) for p, w in imp.weights.items()
                   if next(v for v in g.params if v.name == p).kind == "param")
    click.echo(f"{file}: opset {imp.opset}, {len(g.nodes)} nodes, {n_params:,} parameters")
    for v in g.inputs:
        click.echo(f"  input  {v.name}: {v.type}")
    for name, v in zip(g.output_names, g.outputs):
        click.echo(f"  output {name}: {v.type}")
    click.echo("  ops: " + ", ".join(f"{k} x{c}" for k, c in ops.most_common()))
    if imp.qdq:
        kept = imp.qdq.get("kept_float", 0)
        done = ", ".join(f"{k} x{c}" for k, c in imp.qdq.items() if k != "kept_float") or "none"
        click.echo(f"  QDQ layers as int8 ops: {done}" + (f"; {kept} kept float (docs/onnx-import.md)" if kept else ""))
    if show_ir:
        click.echo(str(g))
    weights = imp.weights
    if output:
        weights = write_spec(g, weights, output)
        click.echo(f"spec -> {output}")
    if weights_out:
        save_weights(weights_out, weights)
        click.echo(f"weights -> {weights_out} ({len(weights)} tensors)")
    elif output:
        w = str(Path(output).with_suffix(".safetensors"))
        save_weights(w, weights)
        click.echo(f"weights -> {w} ({len(weights)} tensors)")


def write_spec(g, weights: dict, output: str) -> dict:
    """Decompile `g` into a `.dln` spec at `output`; the weights renamed to the spec's parameter names."""
    from .frontend.decompile import decompile
    from .runtime.atomic import atomic_write
    name = Path(output).stem
    name = "".join(p[:1].upper() + p[1:] for p in name.replace("-", "_").split("_") if p) or "Net"
    if not name[0].isalpha():
        name = "Net" + name
    from .api import load
    from .frontend.decompile import rename_weights
    d = decompile(g, name=name)
    atomic_write(output, d.text.encode())
    spec = load(output)       # the spec checks, and its buffers (num_batches_tracked) get zeros
    return rename_weights(d, weights, spec.graph)
