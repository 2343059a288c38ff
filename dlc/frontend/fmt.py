"""`dlc fmt`: the canonical layout of a `.dln` text.

What it changes: the space between tokens (PEP 8's rules, as the zoo is
written), indentation (4 spaces per body; a continuation line inside ( [ is
aligned after its bracket when the bracket's line goes on, else indented 4;
a line starting with `|>` is indented 4 past its statement), blank lines (at
most one; none at the start of a body or before its `}`), trailing spaces
and the final newline.  What it keeps: every token, every comment, and where
each line breaks.  Two alignments an author chose are kept when they still
line up: the `=` of a run of `name   = value` statements (a train section,
a block of consts) and a trailing comment's column.

`format_text` parses its input first (a syntax error is reported as the
parser reports it) and parses its output again: if the two trees differ, it
raises instead of returning a text that means something else.
"""
from __future__ import annotations

import dataclasses

from ..errors import DlcError, DlcLimitError, Span
from . import ast as A
from .fmt_lines import Line, scan
from .parser import parse

INDENT = 4


def format_text(text: str, file: str = "<string>") -> str:
    """`text` laid out canonically; raises `DlcSyntaxError` when it does not parse."""
    text = text.removeprefix("\ufeff").replace("\r\n", "\n")
    before = parse(text, file)
    lines = scan(text)
    _separate_definitions(lines)
    _align_keys(lines)
    out = _Layout().render(lines)
    try:
        after = parse(out, f"{file} (formatted)")
    except DlcError as e:
        raise _changed(file, f"the formatted text does not parse ({e.message})") from None
    try:
        same = _shape(before) == _shape(after)
    except RecursionError:   # the parser's nesting limits make this unreachable in practice
        raise DlcLimitError("this spec nests too deeply to format", Span(file, 1, 1),
                            "split long expressions into several statements") from None
    if not same:
        raise _changed(file, "the formatted text parses to a different program")
    return out


def _changed(file: str, why: str) -> DlcError:
    return DlcError(f"dlc fmt would change the meaning of {file}: {why}; the file is left as it was",
                    Span(file, 1, 1), "this is a bug in dlc fmt; please report it with the file")


def _shape(node):
    """An AST without its source positions, for comparing two parses."""
    if isinstance(node, Span):
        return None
    if isinstance(node, A.Module):
        return ("Module", _shape(node.items))
    if dataclasses.is_dataclass(node):
        return (type(node).__name__,) + tuple(_shape(getattr(node, f.name)) for f in dataclasses.fields(node)
                                             if f.name != "span")
    if isinstance(node, (list, tuple)):
        return tuple(_shape(x) for x in node)
    if isinstance(node, float):
        return ("float", repr(node))
    return node


def _separate_definitions(lines: list[Line]) -> None:
    """One blank line before each top-level `model`, `block` and `train` (above
    the comments that introduce it) and after each one's closing `}`."""
    prev_code: Line | None = None
    for i, line in enumerate(lines):
        if not line.toks:
            continue
        top_level = line.kind == "stmt" and line.depth == 0
        starts_def = top_level and line.toks[0].text in ("model", "block", "train")
        after_def = top_level and prev_code is not None and prev_code.depth == 1 and prev_code.toks[0].closes
        if (starts_def or after_def) and prev_code is not None:
            j = i
            while j > 0 and not lines[j].blank_before and not lines[j - 1].toks and lines[j - 1].comment is not None:
                j -= 1
            lines[j].blank_before = True
        prev_code = line


def _key_width(line: Line) -> int:
    """The width of what stands before a statement's `=`, laid out."""
    toks = line.toks[:line.key_end]
    return sum(len(t.text) for t in toks) + sum(1 for t in toks[1:] if t.space)


def _align_keys(lines: list[Line]) -> None:
    """Keep the padding before `=` of a statement whose `=` lines up with
    another's in its run (statements of one body with no blank line, `}` or
    nested body between: a train section, a block of consts); every other
    `x   = 1` becomes `x = 1`.  Applied to its own output it keeps everything it
    kept, so the layout is idempotent."""
    runs: list[list[Line]] = [[]]
    depth = None
    for line in lines:
        if line.kind != "stmt" or not line.toks:
            if line.blank_before and line.comment is not None:
                runs.append([])
            continue
        if line.blank_before or line.toks[0].closes or line.depth != depth:
            runs.append([])
        depth = line.depth
        if not line.toks[0].closes and line.key_end is not None:
            runs[-1].append(line)
    for run in runs:
        cols = [_key_width(line) + line.pad_in for line in run]
        for line, col in zip(run, cols):
            if line.pad_in > 1 and cols.count(col) < 2:
                line.pad_in = 1


class _Layout:
    """Renders the scanned lines, keeping the stack of open brackets and bodies
    that decides each line's indentation."""

    def __init__(self):
        self.out: list[str] = []
        self.stack: list[dict] = []      # {"opens", "child", "opener_indent", "stmt_indent"}
        self.stmt_indent = 0
        self.opened_body = False         # the last line ended by opening a body: no blank line after it
        self.comments: list[Line] = []   # comment-only lines waiting for the next code line's indentation
        self.last_comment: tuple[int, int] | None = None   # (input col, output col) of the previous line's comment

    def render(self, lines: list[Line]) -> str:
        for line in lines:
            if not line.toks:
                if line.comment is not None:
                    self.comments.append(line)
                continue
            indent = self._indent(line)
            self._flush_comments(self._comment_indent(line, indent))
            self._code_line(line, indent)
        self._flush_comments(self.stack[-1]["child"] if self.stack else 0)
        return "".join(self.out)

    def _top_child(self) -> int:
        return self.stack[-1]["child"] if self.stack else 0

    def _indent(self, line: Line) -> int:
        first = line.toks[0]
        if first.closes and self.stack:
            top = self.stack[-1]
            return top["stmt_indent"] if top["opens"] == "body" else top["opener_indent"]
        if line.kind == "bracket":
            return self._top_child()
        if line.kind == "cont":
            return self.stmt_indent + INDENT
        if line.kind == "else":
            return self.stmt_indent
        self.stmt_indent = self._top_child()
        return self.stmt_indent

    def _comment_indent(self, line: Line, indent: int) -> int:
        """Comments before a `}` or `)` belong inside what it closes."""
        if line.toks[0].closes and self.stack:
            return self.stack[-1]["child"]
        return indent

    def _emit(self, blank: bool, text: str) -> None:
        if blank and self.out and not self.opened_body and not text.lstrip().startswith(("}", ")", "]")):
            self.out.append("\n")
        self.opened_body = False
        self.out.append(text.rstrip() + "\n")

    def _flush_comments(self, indent: int) -> None:
        for c in self.comments:
            col = indent
            if self.last_comment is not None and not c.blank_before and c.comment_col == self.last_comment[0]:
                col = self.last_comment[1]     # a comment continued under a trailing comment
            else:
                self.last_comment = None
            self._emit(c.blank_before, " " * col + c.comment)
        self.comments = []

    def _code_line(self, line: Line, indent: int) -> None:
        parts = [" " * indent]
        col = indent
        for i, tok in enumerate(line.toks):
            if i > 0:
                gap = line.pad_in if i == line.key_end else int(tok.space)
                parts.append(" " * gap)
                col += gap
            parts.append(tok.text)
            col += len(tok.text)
            last = i == len(line.toks) - 1
            self._brackets(tok, indent, col, last)
        self.last_comment = None
        if line.comment is not None:
            ccol = max(line.comment_col, col + 2)
            parts.append(" " * (ccol - col) + line.comment)
            self.last_comment = (line.comment_col, ccol)
        if line.backslash:
            parts.append(" \\")
        self._emit(line.blank_before, "".join(parts))
        self.opened_body = line.toks[-1].opens == "body"

    def _brackets(self, tok, indent: int, col: int, last: bool) -> None:
        if tok.opens == "body":
            self.stack.append({"opens": "body", "child": self.stmt_indent + INDENT,
                               "opener_indent": indent, "stmt_indent": self.stmt_indent})
        elif tok.opens:
            # visual indent after a bracket its line continues past; hanging otherwise
            self.stack.append({"opens": tok.opens, "child": indent + INDENT if last else col,
                               "opener_indent": indent, "stmt_indent": self.stmt_indent})
        elif tok.closes and self.stack:
            top = self.stack.pop()
            if top["opens"] == "body":
                self.stmt_indent = top["stmt_indent"]
