"""Tables the CLI prints (`dlc info`, `dlc run`), in four formats.

- `table`: on a terminal wide enough, a rich table.  Piped, redirected, or on
  a terminal narrower than the table, plain aligned columns with every name
  and number in full (rich would cut them to `…` to fit 80 columns).
- `md`: a GitHub markdown table under its title.
- `csv`: the header row and the rows, nothing else (one table after another,
  separated by a blank line, where a command prints several).
- `json` is the command's own data, not a rendering of these tables.
"""
from __future__ import annotations

import csv
import io
import shutil
import sys
from dataclasses import dataclass, field

FORMATS = ("table", "md", "csv", "json")


@dataclass
class TextTable:
    title: str
    columns: list[str]
    rows: list[list[str]]
    right: set[str] = field(default_factory=set)     # right-aligned (numeric) columns
    notes: list[str] = field(default_factory=list)   # lines printed after the table (totals)


def render(tables: list[TextTable], fmt: str, terminal_width: int | None = None) -> str:
    """The tables as text.  `terminal_width`: the width of the terminal the
    text goes to, None when it goes to a pipe or a file."""
    if fmt == "csv":
        return "\n".join(_csv(t) for t in tables)
    if fmt == "md":
        return "\n".join(_markdown(t) for t in tables)
    if fmt != "table":
        raise ValueError(f"unknown table format {fmt!r}")
    return "".join(_rich(t, terminal_width) if terminal_width and _fits(t, terminal_width) else _plain(t)
                   for t in tables)


def stdout_width() -> int | None:
    """The terminal's width when stdout is one, else None."""
    try:
        if not sys.stdout.isatty():
            return None
    except (AttributeError, ValueError):
        return None
    return shutil.get_terminal_size().columns


def _csv(t: TextTable) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(t.columns)
    w.writerows(t.rows)
    return buf.getvalue()


def _markdown(t: TextTable) -> str:
    def cell(s: str) -> str:
        return s.replace("|", "\\|")
    lines = [f"**{cell(t.title)}**", "", "| " + " | ".join(cell(c) for c in t.columns) + " |",
             "|" + "|".join("---:" if c in t.right else "---" for c in t.columns) + "|"]
    lines += ["| " + " | ".join(cell(x) for x in r) + " |" for r in t.rows]
    if t.notes:
        lines += [""] + [f"{n}  " for n in t.notes]
    return "\n".join(lines) + "\n"


def _plain(t: TextTable) -> str:
    widths = [max([len(c)] + [len(r[i]) for r in t.rows]) for i, c in enumerate(t.columns)]

    def line(cells) -> str:
        return "  ".join(x.rjust(w) if c in t.right else x.ljust(w)
                         for x, w, c in zip(cells, widths, t.columns)).rstrip()
    out = [t.title, line(t.columns), "  ".join("-" * w for w in widths)]
    out += [line(r) for r in t.rows] + list(t.notes)
    return "\n".join(out) + "\n"


def _rich_table(t: TextTable):
    from rich.table import Table
    from rich.text import Text
    table = Table(title=Text(t.title), title_justify="left")
    for c in t.columns:
        table.add_column(c, justify="right" if c in t.right else "left", overflow="fold")
    for r in t.rows:
        table.add_row(*(Text(x) for x in r))     # text, not markup: a shape's "[1, 10]" is no style
    return table


def _fits(t: TextTable, width: int) -> bool:
    from rich.console import Console
    # measured unconstrained: a rich table measures at most the console's width
    natural = Console(width=1 << 16).measure(_rich_table(t)).maximum
    return natural <= width and len(t.title) <= width


def _rich(t: TextTable, width: int) -> str:
    from rich.console import Console
    console = Console(width=width, force_terminal=True, record=True, file=io.StringIO())
    console.print(_rich_table(t))
    for n in t.notes:
        console.print(n, markup=False, highlight=False)
    return console.export_text(styles=True)
