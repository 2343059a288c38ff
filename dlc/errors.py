"""One error hierarchy for every stage of dlc.

Every error a user can provoke is a `DlcError` carrying the `.dln` span it is
about, a message and a hint.  `render()` gives the compiler-style report:

    model.dln:12:9: error: dense expects f32[N, 400], got f32[N, 256]
       12 |     f5 = dense(s4, 120)
          |          ^~~~~
    hint: ...

The CLI prints that and exits non-zero; a Python traceback reaching a user is a
bug.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Span:
    """A region of `.dln` source: 1-based line and column, end exclusive."""

    file: str
    line: int
    col: int
    end_line: int | None = None
    end_col: int | None = None

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"


# Source texts by file name, so that an error raised far from the parser can
# still show the offending line.
_SOURCES: dict[str, str] = {}
_MAX_ECHO_BYTES = 1 << 20


def register_source(file: str, text: str) -> None:
    _SOURCES[file] = text


def source_line(file: str, line: int) -> str | None:
    text = _SOURCES.get(file)
    if text is None:
        try:  # bounded: a span may name /dev/zero or a huge file that was never parsed
            with open(file, "rb") as f:
                text = f.read(_MAX_ECHO_BYTES).decode("utf-8", errors="replace")
        except (OSError, ValueError):
            return None
        _SOURCES[file] = text
    lines = text.splitlines()
    if 1 <= line <= len(lines):
        return lines[line - 1]
    return None


class DlcError(Exception):
    """Base of every user-facing error."""

    kind = "error"

    def __init__(self, message: str, span: Span | None = None, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.span = span
        self.hint = hint

    def render(self) -> str:
        head = f"{self.span}: error: {self.message}" if self.span else f"error: {self.message}"
        out = [head]
        if self.span is not None:
            text = source_line(self.span.file, self.span.line)
            if text is not None:
                text = text.expandtabs(4)
                num = str(self.span.line)
                out.append(f" {num} | {text}")
                width = 1
                if self.span.end_line == self.span.line and self.span.end_col:
                    width = max(1, self.span.end_col - self.span.col)
                width = min(width, max(1, len(text) - self.span.col + 1))
                out.append(" " + " " * len(num) + " | " + " " * (self.span.col - 1) + "^" + "~" * (width - 1))
        if self.hint:
            out.append(f"hint: {self.hint}")
        return "\n".join(out)

    def __str__(self) -> str:
        return self.render()


class DlcSyntaxError(DlcError):
    """The text does not parse."""


class DlcNameError(DlcError):
    """An unknown name, op, keyword or import."""


class DlcTypeError(DlcError):
    """A dtype or shape that does not fit: found while elaborating."""


class DlcValueError(DlcError):
    """A compile-time value that is out of range (zero dims, bad strides...)."""


class DlcLimitError(DlcError):
    """Something absurdly large or deep: terabyte tensors, runaway recursion."""


class DlcRuntimeError(DlcError):
    """A failure while running a compiled model, reported at its `.dln` line."""


class ShapeError(Exception):
    """Raised by op shape rules; the elaborator adds the source span.

    Shape rules live in the compiler and know nothing about source text, so
    they raise this and the caller turns it into a located `DlcTypeError`.
    """

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint
