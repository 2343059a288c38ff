"""The report `dlc quantize` prints: one row per layer (scales, zero points,
sensitivity, final precision), then the budget's steps.  A rich table on a
terminal; plain aligned text (the same rows) in pipes and logs."""
from __future__ import annotations

from rich.console import Console

LAYER_COLUMNS = ("layer", "op", "line", "in scale", "in zp", "weight scale", "out scale", "out zp",
                 "sensitivity", "precision")
STEP_COLUMNS = ("step", "fp32 layers", "accuracy", "loss (points)")


def layer_cells(r) -> list[str]:
    lo, hi = r.weight_scales
    w = f"{lo:.4g}" if r.channels == 1 else f"{lo:.4g}..{hi:.4g} ({r.channels} ch)"
    sens = "-" if r.sensitivity is None else f"{r.sensitivity:+.2f}"
    return [r.layer, r.kind, str(r.line or ""), f"{r.in_scale:.4g}", str(r.in_zero_point), w,
            f"{r.out_scale:.4g}", str(r.out_zero_point), sens, r.precision]


def step_cells(s) -> list[str]:
    return [s.what, "all" if s.what == "fp32" else ", ".join(s.float_layers) or "-",
            f"{s.accuracy:.2%}", f"{s.loss_pp:+.2f}"]


def summary_lines(res) -> list[str]:
    p = res.plan
    lines = [f"{res.model}: {p.method} calibration on {res.calib}, weights "
             f"{'per-channel' if p.per_channel else 'per-tensor'} int8, activations per-tensor uint8"]
    b = res.budget
    if b is not None:
        budget = "no budget" if b.budget_pp is None else f"budget {b.budget_pp:g} points"
        fl = ", ".join(b.float_layers) or "none"
        lines.append(f"held-out accuracy: fp32 {b.fp32:.2%}, int8 {b.int8:.2%}, final {b.final.accuracy:.2%} "
                     f"(loss {b.final.loss_pp:+.2f} points; {budget}; fp32 layers: {fl})")
    return lines


def print_report(res, console: Console | None = None) -> None:
    """The layer table, the budget's steps and the summary."""
    console = console or Console()
    fancy = console.is_terminal and not console.is_dumb_terminal
    print_table(console, fancy, "layers", LAYER_COLUMNS, [layer_cells(r) for r in res.rows])
    b = res.budget
    if b is not None and b.budget_pp is not None:
        print_table(console, fancy, "budget steps", STEP_COLUMNS, [step_cells(s) for s in b.steps])
    for line in summary_lines(res):
        console.print(line, highlight=False, markup=False, soft_wrap=True)


def print_steps(console: Console, budget) -> None:
    fancy = console.is_terminal and not console.is_dumb_terminal
    print_table(console, fancy, "budget steps", STEP_COLUMNS, [step_cells(s) for s in budget.steps])


def print_table(console: Console, fancy: bool, title: str, columns, rows) -> None:
    if fancy:
        from rich.table import Table
        t = Table(title=title, title_justify="left")
        for c in columns:
            t.add_column(c, justify="left" if c in ("layer", "op", "step", "fp32 layers", "precision") else "right")
        for r in rows:
            t.add_row(*r)
        console.print(t)
        return
    console.print(plain_table(title, columns, rows), highlight=False, markup=False, soft_wrap=True)


def plain_table(title: str, columns, rows) -> str:
    widths = [max(len(c), *(len(r[i]) for r in rows)) if rows else len(c) for i, c in enumerate(columns)]
    out = [f"{title}:", "  ".join(c.ljust(w) for c, w in zip(columns, widths)).rstrip()]
    out += ["  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in rows]
    return "\n".join(out)
