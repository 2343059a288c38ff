"""`dlc bench` reports as text: a terminal table, markdown, CSV or JSON."""
from __future__ import annotations

import csv
import io
import json

MODEL_COLUMNS = ("name", "kind", "batch", "status", "median_ms", "iqr_ms", "throughput_per_s", "peak_mem_bytes",
                 "ratio_to_torch_eager", "check_error", "reason")
OPS_COLUMNS = ("suite", "op", "shape", "runtime", "status", "median_ms", "iqr_ms", "gflops", "gflop_per_s",
               "peak_share", "reason")
FORMATS = ("table", "md", "csv", "json")


def _cells(report: dict) -> tuple[tuple, list[dict]]:
    if report["kind"] == "ops":
        return OPS_COLUMNS, report["rows"]
    rows = [{**r, "check_error": (r.get("check") or {}).get("error")} for r in report["rows"]]
    return MODEL_COLUMNS, rows


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 1e-2 or abs(v) >= 1e5 else f"{v:.4g}"
    return str(v)


def header_lines(report: dict) -> list[str]:
    mc = report["machine"]
    cpu, v = mc["cpu"], mc["versions"]
    lines = [f"{report.get('model', 'op suite')} ({report.get('file', report.get('suite'))}), {mc['date']}",
             (f"CPU {cpu['model']}, {cpu['cores']} logical cores, ISA {' '.join(cpu['isa']) or '-'}; "
              f"GPU {', '.join(mc['gpu']) or 'none'}"),
             "versions " + ", ".join(f"{k} {v[k]}" for k in v),
             (f"threads {report['threads']['threads']}, repeat {report['repeat']}, warmup {report['warmup']}, "
              f"load average {_fmt(mc['loadavg_start'][0]) if mc['loadavg_start'] else '-'} at start, "
              f"{_fmt(report['loadavg_end'][0]) if report.get('loadavg_end') else '-'} at end")]
    if report["kind"] == "ops":
        pk, p0, p1 = report["peak"], report["peak_start"], report["peak_end"]
        lines.append(f"peak: sgemm n={pk['n']} through NumPy's BLAS, fastest call {pk['gflop_per_s']:.4g} GFLOP/s "
                     f"(median {p0['median_gflop_per_s']:.4g} at the start, {p1['median_gflop_per_s']:.4g} at the end)")
    else:
        if report.get("precision", "fp32") != "fp32":
            lines.append(f"precision {report['precision']}: dlc's autocast pass, the torch baselines under "
                         "torch.autocast; float outputs held to that dtype's tolerance")
        lines.append(f"check: against {report['reference']}; tolerances {report['tolerances']}; "
                     f"peak memory: {report['peak_memory_method']}")
    return lines


def render(report: dict, fmt: str) -> str:
    if fmt == "json":
        return json.dumps(report, indent=2) + "\n"
    cols, rows = _cells(report)
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(cols)
        for r in rows:
            w.writerow(["" if r.get(c) is None else r.get(c) for c in cols])
        return buf.getvalue()
    if fmt == "md":
        out = [f"- {line}" for line in header_lines(report)] + [""]
        out.append("| " + " | ".join(cols) + " |")
        out.append("|" + "---|" * len(cols))
        out += ["| " + " | ".join(_fmt(r.get(c)).replace("|", "/") for c in cols) + " |" for r in rows]
        out += [""] + [f"- warning: {w}" for w in report.get("warnings", [])]
        return "\n".join(out) + "\n"
    return _table(report, cols, rows)


def _table(report, cols, rows) -> str:
    from rich.console import Console
    from rich.table import Table
    t = Table(title="\n".join(header_lines(report)), title_justify="left")
    for c in cols:
        t.add_column(c, overflow="fold")
    for r in rows:
        t.add_row(*(_fmt(r.get(c)) for c in cols))
    con = Console(record=True, width=200, file=io.StringIO())
    con.print(t)   # the warnings go to stderr (bench_cli)
    return con.export_text()
