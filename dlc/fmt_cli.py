"""`dlc fmt`: lay `.dln` files out canonically, in place, or say which would
change (`--check`, for CI) and how (`--diff`).  The layout itself is
`dlc.frontend.fmt.format_text`."""
from __future__ import annotations

import difflib
import os
import stat
import sys
from dataclasses import dataclass
from pathlib import Path

import click

from .errors import DlcError
from .frontend.fmt import format_text
from .frontend.parser import read_source
from .runtime.atomic import atomic_open


@dataclass
class FmtResult:
    changed: list[str]
    failed: list[str]


def spec_files(paths) -> list[Path]:
    """The files named, a folder standing for every `.dln` file under it."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(q for q in p.rglob("*.dln") if q.is_file())
            if not found:
                click.echo(f"note: no .dln files in {p}", err=True)
            out.extend(found)
        else:
            out.append(p)
    return out


def _write_keeping_mode(path: Path, text: str) -> None:
    mode = stat.S_IMODE(path.stat().st_mode)
    with atomic_open(path) as f:
        f.write(text.encode("utf-8"))
        os.fchmod(f.fileno(), mode)   # a reformatted file keeps its permissions


def _diff(path: str, old: str, new: str) -> str:
    return "".join(difflib.unified_diff(old.splitlines(keepends=True), new.splitlines(keepends=True),
                                        f"{path} (before)", f"{path} (formatted)"))


def format_paths(paths, check: bool = False, diff: bool = False) -> FmtResult:
    """Format each file in place (or, with `check`/`diff`, only report); a file
    that does not parse is reported and left alone, the others go on."""
    result = FmtResult([], [])
    for path in spec_files(paths):
        name = str(path)
        try:
            old = read_source(path)
            new = format_text(old, name)
        except DlcError as e:
            click.echo(e.render(), err=True)
            result.failed.append(name)
            continue
        if new == old:
            continue
        result.changed.append(name)
        if diff:
            click.echo(_diff(name, old, new), nl=False)
        if check:
            click.echo(f"would reformat {name}", err=True)
        elif not diff:
            _write_keeping_mode(path, new)
            click.echo(f"reformatted {name}", err=True)
    return result


def run_fmt(files, check: bool, diff: bool) -> int:
    """The command's body; returns its exit status: 1 when a file does not parse,
    or under --check when one would change; 0 otherwise."""
    if list(files) == ["-"]:
        text = sys.stdin.read()
        out = format_text(text, "<stdin>")
        if check:
            return int(out != text.removeprefix("\ufeff").replace("\r\n", "\n"))
        click.echo(_diff("<stdin>", text, out) if diff else out, nl=False)
        return 0
    result = format_paths(files, check=check, diff=diff)
    if check:
        n = len(result.changed)
        if n:
            click.echo(f"{n} file{'s' if n != 1 else ''} would be reformatted; run `dlc fmt` on them", err=True)
        return 1 if result.changed or result.failed else 0
    return 1 if result.failed else 0
