"""Terminal output for the CLI: tables (in `dlc.tables`' formats) and pass records."""
from __future__ import annotations

import numpy as np
from rich.console import Console
from rich.table import Table


def _fmt(n: int) -> str:
    return f"{n:,}"


def _emit(tables, fmt: str) -> None:
    import click
    from .tables import render, stdout_width
    click.echo(render(tables, fmt, stdout_width()), nl=False)


def info_tables(data: dict, raw: bool = False) -> list:
    """`dlc info`'s layer table, with the totals as notes; `raw`: plain
    integers (no thousands separators, 0 not "-"), for CSV."""
    from .tables import TextTable
    def count(n):
        return str(n) if raw else _fmt(n) if n else "-"
    rows = [[r["name"], r["kind"], r["shape"], count(r["params"]), count(r["macs"]), str(r["line"] or "")]
            for r in data["layers"]]
    dims = ", ".join(f"{k}={v}" for k, v in data["dims"].items())
    notes = [f"trainable params: {_fmt(data['params'])}   buffers: {_fmt(data['buffers'])}",
             f"MACs: {_fmt(data['macs'])} ({data['macs'] / 1e9:.4g} G)" + (f" at {dims}" if dims else "")]
    return [TextTable(f"{data['model']}  ({data['file']})", ["layer", "op", "output", "params", "MACs", "line"],
                      rows, right={"params", "MACs", "line"}, notes=notes)]


def print_info(data: dict, fmt: str = "table") -> None:
    _emit(info_tables(data), fmt)


def memory_table(mem: dict, raw: bool = False):
    """`dlc info --memory`: the memory plan and kernel count, -O0 against the
    pipeline; `raw`: bytes as plain integers (for CSV)."""
    from .runtime.memory import human_bytes as human
    from .tables import TextTable
    human_bytes = str if raw else human
    before, after = mem["before"], mem["after"]
    label = f"-O{mem['level']}" if mem.get("passes") is None else "--passes " + ",".join(mem["passes"])
    rows = [("kernels", "kernels", str), ("naive (every intermediate kept)", "naive_bytes", human_bytes),
            ("planned peak (reused buffers)", "planned_bytes", human_bytes),
            ("buffers", "buffers", str), ("live peak (lower bound)", "live_peak_bytes", human_bytes),
            ("NumPy interpreter peak (with kernel scratch)", "interpreter_peak_bytes", human_bytes)]
    return TextTable("memory plan (activations; inputs and weights not counted)", ["", "-O0", label],
                     [[name, fmt(before[key]), fmt(after[key])] for name, key, fmt in rows], right={"-O0", label},
                     notes=[f"planned peak is {after['saving']:.0%} below the naive total at {label}"])


def print_memory(mem: dict, fmt: str = "table") -> None:
    _emit([memory_table(mem)], fmt)


def output_stats(outs: dict) -> list[dict]:
    """Per output: name, shape, dtype and (None for an empty batch) mean, std,
    min, max as float64, and whether every value is finite."""
    stats = []
    for k, v in outs.items():
        a = np.asarray(v)
        row = {"name": k, "shape": list(a.shape), "dtype": str(a.dtype)}
        if not a.size:   # an empty batch: no statistics to show, not zeros
            stats.append({**row, "mean": None, "std": None, "min": None, "max": None, "finite": True})
            continue
        f = a.astype(np.float64)
        stats.append({**row, "mean": float(f.mean()), "std": float(f.std()), "min": float(f.min()),
                      "max": float(f.max()), "finite": bool(np.isfinite(f).all())})
    return stats


def outputs_table(stats: list[dict], raw: bool = False):
    """`dlc run`'s outputs; `raw`: every digit of the float64 statistics (for CSV)."""
    from .tables import TextTable
    def num(x):
        return ("" if raw else "-") if x is None else repr(x) if raw else f"{x:.6g}"
    rows = [[s["name"], str(tuple(s["shape"])), s["dtype"], num(s["mean"]), num(s["std"]), num(s["min"]),
             num(s["max"]), "yes" if s["finite"] else "NO"] for s in stats]
    return TextTable("outputs", ["name", "shape", "dtype", "mean", "std", "min", "max", "finite"], rows,
                     right={"mean", "std", "min", "max"})


def print_outputs(outs: dict, fmt: str = "table") -> None:
    if fmt == "json":
        import click
        import json
        click.echo(json.dumps({"outputs": output_stats(outs)}))
        return
    _emit([outputs_table(output_stats(outs), raw=fmt == "csv")], fmt)


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
