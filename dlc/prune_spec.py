"""Rewriting a `.dln` spec's convolution widths in its source text.

Channel pruning gives each pruned convolution a new width.  The spec says the
width once per call site (`conv2d(x, 32, ...)`), and a call site inside a
block or a loop is applied many times (ResNet's BasicBlock: eight
instances, four widths).  The rewrite edits the width argument, found by the
call's AST span:

- every instance keeps the same width: the argument becomes that number;
- otherwise each instance must have kept C - C*num//den channels of its C
  (the channel pruner guarantees this: a fraction num/den of each layer is
  removed, rounded down), and the argument E becomes `E - E * num // den`
  (with `--round-to r`: `(E - E * num // den + r//2) // r * r`), which the
  elaborator evaluates per instance.

The text outside the edited arguments is kept as written (comments too).
Imported files are written beside the new spec, under `<stem>.imports/`,
with the same relative layout, and the new spec imports them from there.
"""
from __future__ import annotations

import dataclasses
import re
from fractions import Fraction
from pathlib import Path

from .errors import DlcValueError, Span
from .frontend import ast as A


def _walk(node):
    """Every AST node under `node` (dataclass fields, lists, tuples)."""
    stack = [node]
    while stack:
        n = stack.pop()
        if isinstance(n, (list, tuple)):
            stack.extend(n)
        elif dataclasses.is_dataclass(n) and not isinstance(n, type):
            yield n
            stack.extend(getattr(n, f.name) for f in dataclasses.fields(n) if f.name != "span")


def width_argument(tree: A.Module, span: Span):
    """The AST expression of the width (`channels`) argument of the conv call at `span`."""
    piped = {id(n.stage) for n in _walk(tree) if isinstance(n, A.Pipe)}
    for n in _walk(tree):
        if isinstance(n, A.Call) and n.span.line == span.line and n.span.col == span.col:
            for k in n.kwargs:
                if k.name == "channels":
                    return k.value
            pos = 0 if id(n) in piped else 1
            if len(n.args) > pos:
                return n.args[pos]
    return None


def _offset(lines_at: list[int], line: int, col: int) -> int:
    return lines_at[line - 1] + col - 1


def _line_starts(text: str) -> list[int]:
    starts, at = [0], 0
    for line in text.splitlines(keepends=True):
        at += len(line)
        starts.append(at)
    return starts


def new_width_text(expr, text: str, sizes: list[tuple[str, int, int]], frac: Fraction, round_to: int = 1) -> str:
    """The replacement for width expression `expr` (its source `text`) given
    each instance's (layer, channels, kept)."""
    kept = {k for _, _, k in sizes}
    if len(kept) == 1:
        return str(kept.pop())
    if isinstance(expr, A.Literal):
        layers = ", ".join(s[0] for s in sizes)
        raise DlcValueError(f"the literal width at this call site sizes {layers} differently", expr.span)
    e = text if isinstance(expr, A.Name) else f"({text})"
    num, den, r = frac.numerator, frac.denominator, round_to
    new = f"{e} - {e} * {num} // {den}"
    if r > 1:
        new = f"({new} + {r // 2}) // {r} * {r}"
    for layer, c, k in sizes:     # the expression must give every instance its width
        k_expr = c - c * num // den
        k_expr = (k_expr + r // 2) // r * r
        if k != k_expr:
            raise DlcValueError(f"the width of {layer} cannot be rewritten: its call site makes layers of "
                                f"different widths, and {c} -> {k} channels is not what `{new}` gives", expr.span,
                                "prune this layer with another --sparsity, or write its width as a literal")
    return new


def rewrite_files(edits: dict[str, list[tuple[Span, list, Fraction]]]) -> dict[str, str]:
    """{file: new text} after replacing each width argument.  `edits` maps a
    file to its call sites: (the conv call's span, [(layer, C, kept)], fraction, round_to)."""
    from .frontend.parser import parse_file
    out = {}
    for file, sites in edits.items():
        text = Path(file).read_text(encoding="utf-8")
        tree = parse_file(file)
        starts = _line_starts(text)
        reps = []
        for span, sizes, frac, round_to in sites:
            expr = width_argument(tree, span)
            if expr is None or expr.span.end_line is None:
                raise DlcValueError(f"the width of {sizes[0][0]} cannot be found in its call", span,
                                    "write the conv's width as its second argument or channels=")
            a = _offset(starts, expr.span.line, expr.span.col)
            b = _offset(starts, expr.span.end_line, expr.span.end_col)
            reps.append((a, b, new_width_text(expr, text[a:b], sizes, frac, round_to)))
        for a, b, new in sorted(reps, reverse=True):
            text = text[:a] + new + text[b:]
        out[file] = text
    return out


def imported_files(path: str) -> list[Path]:
    """Every file `path` imports, transitively (resolved paths)."""
    from .frontend.parser import parse_file
    seen: list[Path] = []
    todo = [Path(path)]
    while todo:
        f = todo.pop()
        for item in parse_file(f).items:
            if isinstance(item, A.Import):
                target = (f.parent / item.path).resolve()
                if target not in seen:
                    seen.append(target)
                    todo.append(target)
    return seen


def write_spec(spec: str, texts: dict[str, str], out: Path) -> list[Path]:
    """Write the pruned spec to `out` and its imports under `<stem>.imports/`;
    the paths written.  `texts` holds the rewritten texts by original file."""
    from .runtime.atomic import atomic_write
    root = Path(spec).resolve().parent
    by_path = {Path(f).resolve(): t for f, t in texts.items()}
    main = by_path.get(Path(spec).resolve(), Path(spec).read_text(encoding="utf-8"))
    folder = f"{out.stem}.imports"
    written = []
    for f in imported_files(spec):
        rel = f.relative_to(root)
        dest = out.parent / folder / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(dest, by_path.get(f, f.read_text(encoding="utf-8")).encode("utf-8"))
        written.append(dest)
    main = re.sub(r'(^\s*import\s+")([^"]+)(")', lambda m: f"{m[1]}{folder}/{m[2]}{m[3]}", main, flags=re.M)
    atomic_write(out, main.encode("utf-8"))
    return [out] + written
