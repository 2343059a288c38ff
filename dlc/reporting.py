"""Terminal output for the CLI (rich tables)."""
from __future__ import annotations

import numpy as np
from rich.console import Console
from rich.table import Table


def _fmt(n: int) -> str:
    return f"{n:,}"


def print_info(data: dict) -> None:
    console = Console()
    t = Table(title=f"{data['model']}  ({data['file']})", title_justify="left")
    t.add_column("layer")
    t.add_column("op")
    t.add_column("output")
    t.add_column("params", justify="right")
    t.add_column("MACs", justify="right")
    t.add_column("line", justify="right")
    for r in data["layers"]:
        t.add_row(r["name"], r["kind"], r["shape"], _fmt(r["params"]) if r["params"] else "-",
                  _fmt(r["macs"]) if r["macs"] else "-", str(r["line"] or ""))
    console.print(t)
    dims = ", ".join(f"{k}={v}" for k, v in data["dims"].items())
    console.print(f"trainable params: {_fmt(data['params'])}   buffers: {_fmt(data['buffers'])}")
    console.print(f"MACs: {_fmt(data['macs'])} ({data['macs'] / 1e9:.4g} G)" + (f" at {dims}" if dims else ""))


def print_memory(mem: dict) -> None:
    """`dlc info --memory`: the memory plan and kernel count, -O0 against the pipeline."""
    from .runtime.memory import human_bytes
    before, after = mem["before"], mem["after"]
    label = f"-O{mem['level']}" if mem.get("passes") is None else "--passes " + ",".join(mem["passes"])
    t = Table(title="memory plan (activations; inputs and weights not counted)", title_justify="left")
    for col in ("", "-O0", label):
        t.add_column(col, justify="left" if not col else "right")
    rows = [("kernels", "kernels", str), ("naive (every intermediate kept)", "naive_bytes", human_bytes),
            ("planned peak (reused buffers)", "planned_bytes", human_bytes),
            ("buffers", "buffers", str), ("live peak (lower bound)", "live_peak_bytes", human_bytes),
            ("NumPy interpreter peak (with kernel scratch)", "interpreter_peak_bytes", human_bytes)]
    for name, key, fmt in rows:
        t.add_row(name, fmt(before[key]), fmt(after[key]))
    Console().print(t)
    Console().print(f"planned peak is {after['saving']:.0%} below the naive total at {label}")


def print_outputs(outs: dict) -> None:
    console = Console()
    t = Table(title="outputs", title_justify="left")
    for c in ("name", "shape", "dtype", "mean", "std", "min", "max", "finite"):
        t.add_column(c)
    for k, v in outs.items():
        a = np.asarray(v)
        if not a.size:   # an empty batch: no statistics to show, not zeros
            t.add_row(k, str(tuple(a.shape)), str(a.dtype), "-", "-", "-", "-", "yes")
            continue
        f = a.astype(np.float64)
        t.add_row(k, str(tuple(a.shape)), str(a.dtype), f"{f.mean():.6g}", f"{f.std():.6g}", f"{f.min():.6g}",
                  f"{f.max():.6g}", "yes" if np.isfinite(f).all() else "NO")
    console.print(t)


def print_pass_records(records, stats: dict | None = None) -> None:
    """One row per pass that ran: nodes before and after, its time, and what it
    reported doing (`ctx.count`)."""
    table = Table(title="passes")
    for col in ("pass", "nodes before", "nodes after", "ms", "did"):
        table.add_column(col, justify="right" if col in ("nodes before", "nodes after", "ms") else "left")
    for r in records:
        did = ", ".join(f"{k.split('.', 1)[1]} {v}" for k, v in (stats or {}).items() if k.startswith(r.name + "."))
        table.add_row(r.name, str(r.nodes_before), str(r.nodes_after), f"{r.seconds * 1e3:.1f}", did)
    Console().print(table)
