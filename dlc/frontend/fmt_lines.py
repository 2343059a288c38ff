"""The first half of `dlc fmt`: a `.dln` text cut into lines of tokens, each
token knowing whether a space goes before it.

The tokens are the parser's own (the lark lexer of `grammar.lark`, run with
the ignored whitespace and comments kept), so the formatter can never split
or join a token differently from the parser.  Line breaks are the author's:
the formatter changes the space between tokens, the indentation and the
blank lines, never where a line ends (see `fmt.py` for the layout).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from lark import Lark

_GRAMMAR = Path(__file__).with_name("grammar.lark")
LITERAL_WORDS = frozenset({"true", "false", "none"})
# the reserved words: every quoted word of the grammar (`"model"`, `"for"`, ...)
KEYWORDS = frozenset(re.findall(r'"([a-z]+)"', _GRAMMAR.read_text())) - LITERAL_WORDS
BINARY_OPS = frozenset({"+", "-", "*", "/", "//", "%", "@", "**", "==", "!=", "<=", ">=", "<", ">", "|>", "->"})
# a newline before one of these continues the statement (parser.Postlex)
CONTINUES = frozenset({"|>", "else", "elif"})
OPENERS = {"(": "paren", "[": "bracket"}
CLOSERS = frozenset({")", "]", "}"})
# after one of these, `-`/`+` is a sign and `(`/`[`/`{` starts a new value
_BEFORE_VALUE = frozenset({"(", "[", "{", ",", "=", ":", ";"}) | BINARY_OPS | KEYWORDS


@dataclass
class Tok:
    text: str
    kind: str             # "word" (names, literals), "kw", "op", "punct"
    space: bool = True    # a space before it (when it is not first on its line)
    unary: bool = False   # a sign: no space after it
    opens: str = ""       # "paren", "bracket", "body" or "record" for ( [ {
    closes: str = ""      # the same for ) ] }


@dataclass
class Line:
    toks: list[Tok] = field(default_factory=list)
    comment: str | None = None
    comment_col: int = 0          # where the comment started in the input (0-based)
    blank_before: bool = False
    kind: str = "stmt"            # "stmt", "cont" (|>, else, after a backslash) or "bracket" (inside ( [ {)
    depth: int = 0                # bodies open at the line's start
    backslash: bool = False       # ends with a `\` continuation
    key_end: int | None = None    # index of the statement's `=` (for the alignment of runs of `x = ...`)
    pad_in: int = 1               # spaces before that `=` in the input


@lru_cache(maxsize=1)
def _lexer() -> Lark:
    return Lark(_GRAMMAR.read_text(), parser="lalr", lexer="basic", start=["start"])


def _ends_value(t: Tok | None) -> bool:
    """Whether `t` can end an operand, so that `(`/`[` after it is a call/index
    and `{` after it opens a body."""
    return t is not None and (t.kind == "word" or t.text in (")", "]", "..."))


class _Scanner:
    """Walks the tokens once, keeping the bracket stack the spacing rules need."""

    def __init__(self):
        self.lines: list[Line] = [Line()]
        self.stack: list[dict] = []       # {"kind": ..., "colon": bool} per open ( [ {
        self.prev: Tok | None = None      # the previous code token (None at a statement start)
        self.prev_real: Tok | None = None  # the previous code token even across statements
        self.gap = 0                      # width of the whitespace just read
        self.pending_blank = False
        self.line_depth = 0               # brackets opened and not closed on the current line

    @property
    def line(self) -> Line:
        return self.lines[-1]

    def bodies(self) -> int:
        return sum(1 for e in self.stack if e["kind"] == "body")

    def newline(self, text: str, backslash: bool = False) -> None:
        self.line.backslash = backslash
        self.lines.append(Line(depth=self.bodies()))
        self.line_depth = 0
        if text.count("\n") > 1:
            self.pending_blank = True
        if not backslash and (not self.stack or self.stack[-1]["kind"] == "body"):
            self.prev = None   # a statement boundary (unless the next token continues it)

    def comment(self, text: str, col: int) -> None:
        if not self.line.toks:
            self._start_line()
        self.line.comment = text.rstrip()
        self.line.comment_col = col

    def _start_line(self) -> None:
        """The first thing on a line: it carries the blank lines read before it."""
        self.line.blank_before = self.pending_blank
        self.pending_blank = False

    def token(self, text: str, ttype: str) -> None:
        line = self.line
        if not line.toks and line.comment is None:
            self._start_line()
            line.kind = self._line_kind(text)
            if line.kind == "cont":
                if text != "|>" and self.prev_real is not None and self.prev_real.text == "}":
                    line.kind = "else"     # `}` newline `else {`: at the statement's own indentation
                self.prev = self.prev_real
        tok = Tok(text, self._kind(text, ttype))
        self._space(tok)
        self._track_brackets(tok)
        if text == "=" and line.kind == "stmt" and line.key_end is None and self.line_depth == 0 and line.toks:
            line.key_end = len(line.toks)
            line.pad_in = max(1, self.gap)
        line.toks.append(tok)
        self.gap = 0
        self.prev = None if text == ";" else tok
        self.prev_real = tok

    def _line_kind(self, text: str) -> str:
        if self.stack and self.stack[-1]["kind"] != "body":
            return "bracket"
        if (len(self.lines) > 1 and self.lines[-2].backslash) or text in CONTINUES:
            return "cont"
        return "stmt"

    @staticmethod
    def _kind(text: str, ttype: str) -> str:
        if text in KEYWORDS:
            return "kw"
        if ttype in ("NAME", "INT", "FLOAT", "STRING") or text in LITERAL_WORDS or text == "...":
            return "word"
        if text in BINARY_OPS or text == "=":
            return "op"
        return "punct"

    def _space(self, tok: Tok) -> None:
        """Whether a space goes before `tok`: PEP 8's rules, as the zoo is written
        (`f(x, stride=2)`, `a: int = 1`, `x[:, :T - 1]`, `-x`, `block B()(x) {`)."""
        prev, text = self.prev, tok.text
        inner = self.stack[-1]["kind"] if self.stack else "body"
        if text in ("+", "-") and (prev is None or prev.text in _BEFORE_VALUE):
            tok.unary = True
        if prev is None:
            tok.space = self.prev_real is not None and self.prev_real.text == ";"
        elif text in (",", ";", ")", "]"):
            tok.space = False
        elif text == "}":
            tok.space = inner == "body" and prev.text != "{"
        elif prev.text in ("(", "[") or prev.unary:
            tok.space = False
        elif prev.text == "{":
            tok.space = prev.opens == "body"
        elif text == "." or prev.text == ".":
            tok.space = False
        elif prev.text == ",":
            tok.space = True
        elif text == ":":
            tok.space = False
        elif prev.text == ":":
            tok.space = inner != "bracket"        # `x: f32[N]`, but slices `x[1:-1, ::2]`
        elif text == "=" or prev.text == "=":
            # keyword arguments and untyped defaults hug their `=`; a typed default does not
            tok.space = not (inner == "paren" and not self.stack[-1]["colon"])
        elif text in ("(", "["):
            tok.space = not _ends_value(prev)      # a call/index/type, or a new value
        else:
            tok.space = True

    def _track_brackets(self, tok: Tok) -> None:
        text = tok.text
        if text in OPENERS or text == "{":
            if text == "{":
                kind = "body" if (_ends_value(self.prev) or (self.prev is not None and self.prev.text == "else")) \
                    else "record"
            else:
                kind = OPENERS[text]
            tok.opens = kind
            self.stack.append({"kind": kind, "colon": False})
            self.line_depth += 1
        elif text in CLOSERS and self.stack:
            tok.closes = self.stack.pop()["kind"]
            self.line_depth -= 1
        elif text == "," and self.stack:
            self.stack[-1]["colon"] = False
        elif text == ":" and self.stack:
            self.stack[-1]["colon"] = True


def scan(text: str) -> list[Line]:
    """`text` (already known to parse) as lines of spaced tokens; the last line
    is empty."""
    sc = _Scanner()
    for t in _lexer().lex(text, dont_ignore=True):
        value = str(t)
        if t.type == "_NL" and value == ";":
            sc.token(";", "SEMICOLON")
        elif t.type == "_NL":
            sc.newline(value)
        elif t.type == "COMMENT":
            sc.comment(value, t.column - 1)
        elif t.type.startswith("__IGNORE"):
            if value.startswith("\\"):
                sc.newline("\n", backslash=True)
            else:
                sc.gap = len(value.expandtabs(1))
        else:
            sc.token(value, t.type)
    return sc.lines
