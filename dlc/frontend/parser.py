"""Text to AST: the lark LALR parser, a newline-aware postlexer, and syntax
errors reported as `file:line:col: error:` with a caret and a hint."""
from __future__ import annotations

import ast as pyast
from functools import lru_cache
from pathlib import Path

from lark import Lark, Token, Transformer, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken, VisitError

from ..errors import DlcError, DlcLimitError, DlcSyntaxError, DlcValueError, Span, register_source
from . import ast as A
from .limits import MAX_INT_LITERAL, MAX_NESTING, MAX_SOURCE_BYTES

_OPEN = {"(", "["}
_CLOSE = {")", "]"}
# a newline followed by one of these continues the statement
_CONTINUES = {"|>", "else", "elif"}
_PREFIX = {"-", "+", "not"}


class _TooDeep(Exception):
    def __init__(self, tok):
        super().__init__("nesting too deep")
        self.tok = tok


class Postlex:
    """Makes newlines mean what a reader expects.

    Newlines inside ( ) and [ ] are ignored, runs of newlines collapse into
    one, and a newline before `|>`, `else` or `elif` is dropped so that chains
    and `} else {` can be split over lines.
    """

    always_accept = ("_NL",)

    def process(self, stream):
        depth = 0
        prefix_run = 0
        pending = None
        for tok in stream:
            if tok.type != "_NL":
                # `- - - ... x` and `((((...))))` nest the parse tree; cap them so
                # that a runaway spec is a located error, not a RecursionError
                prefix_run = prefix_run + 1 if tok.value in _PREFIX else 0
                if prefix_run > MAX_NESTING or (tok.value in _OPEN and depth >= MAX_NESTING):
                    raise _TooDeep(tok)
            if tok.type == "_NL":
                if depth == 0 and pending is None:
                    pending = tok
                continue
            if pending is not None:
                if tok.value not in _CONTINUES:
                    yield pending
                pending = None
            if tok.value in _OPEN:
                depth += 1
            elif tok.value in _CLOSE:
                depth = max(0, depth - 1)
            yield tok
        if pending is not None:
            yield pending


@lru_cache(maxsize=1)
def _parser() -> Lark:
    grammar = (Path(__file__).with_name("grammar.lark")).read_text()
    return Lark(grammar, parser="lalr", lexer="basic", postlex=Postlex(), propagate_positions=True,
                maybe_placeholders=True, start=["start", "expr"])


_PRETTY = {
    "RPAR": "')'", "LPAR": "'('", "RSQB": "']'", "LSQB": "'['", "LBRACE": "'{'", "RBRACE": "'}'",
    "COMMA": "','", "COLON": "':'", "EQUAL": "'='", "_NL": "end of line", "NAME": "a name",
    "INT": "an integer", "FLOAT": "a number", "STRING": "a string", "MINUS": "'-'", "PLUS": "'+'",
    "$END": "end of file", "MUL_OP": "an operator", "ADD_OP": "'+' or '-'", "COMP_OP": "a comparison",
    "DOT": "'.'", "MORETHAN": "'>'", "SEMICOLON": "';'",
}


def _pretty(t: str) -> str:
    if t in _PRETTY:
        return _PRETTY[t]
    try:
        pattern = _parser().get_terminal(t).pattern
        if pattern.type == "str":
            return repr(pattern.value)
    except KeyError:
        pass
    return f"'{t.lower()}'" if t.isalpha() else t


def _describe(token_types) -> str:
    names = sorted({_pretty(t) for t in token_types})
    if len(names) > 8:
        names = names[:8] + ["..."]
    return ", ".join(names)


def _syntax_error(err: UnexpectedInput, file: str, text: str) -> DlcSyntaxError:
    line = getattr(err, "line", None) or 1
    col = getattr(err, "column", None) or 1
    if line < 0 or col < 0:  # end of input
        lines = text.splitlines() or [""]
        line, col = len(lines), len(lines[-1]) + 1
    if isinstance(err, UnexpectedCharacters):
        ch = text[err.pos_in_stream] if err.pos_in_stream < len(text) else "?"
        if ch in "\"'":
            return DlcSyntaxError("unterminated string", Span(file, line, col, line, col + 1),
                                  f"close the string with a matching {ch} on the same line")
        return DlcSyntaxError(f"unexpected character {ch!r}", Span(file, line, col, line, col + 1),
                              "remove it, or check for a missing quote or operator")
    if isinstance(err, UnexpectedToken):
        tok = err.token
        if tok.type == "$END":
            what = "end of file"
            hint = "a block may be missing its closing '}' or ')'"
        elif tok.type == "_NL":
            what = "end of line"
            hint = f"expected {_describe(err.expected)}; the statement looks unfinished"
        else:
            what = repr(str(tok.value))
            hint = f"expected {_describe(err.expected)}"
        end = col + max(1, len(str(tok.value))) if tok.type not in ("$END", "_NL") else col + 1
        return DlcSyntaxError(f"unexpected {what}", Span(file, line, col, line, end), hint)
    if isinstance(err, UnexpectedEOF):
        return DlcSyntaxError("unexpected end of file", Span(file, line, col),
                              "a block may be missing its closing '}'")
    return DlcSyntaxError(str(err).splitlines()[0], Span(file, line, col), "check the syntax near here")


def parse(text: str, file: str = "<string>") -> A.Module:
    """Parse `.dln` text into an `ast.Module`; raises `DlcSyntaxError`."""
    if len(text) > MAX_SOURCE_BYTES:
        raise SourceError(f"{file} has {len(text):,} characters; a .dln file may have at most "
                          f"{MAX_SOURCE_BYTES:,}", hint="split it into several files joined by import")
    # a UTF-8 byte order mark is not part of the text; CRLF line ends are plain newlines
    # (columns are unchanged: the \r sat at the end of its line)
    text = text.removeprefix("\ufeff").replace("\r\n", "\n")
    register_source(file, text)
    try:
        tree = _parser().parse(text, start="start")
    except UnexpectedInput as e:
        raise _syntax_error(e, file, text) from None
    except _TooDeep as e:
        raise DlcLimitError(f"brackets or operators nested more than {MAX_NESTING} deep",
                            _tok_span(file, e.tok), "split the expression into several statements") from None
    except RecursionError:
        raise _too_deep(file, text) from None
    try:
        return ToAST(file).transform(tree)
    except VisitError as e:
        if isinstance(e.orig_exc, DlcError):
            raise e.orig_exc from None
        if isinstance(e.orig_exc, RecursionError):
            raise _too_deep(file, text) from None
        meta = getattr(e.obj, "meta", None)
        raise DlcSyntaxError(f"malformed {e.rule or 'syntax'}: {e.orig_exc}",
                             _span(file, meta) if meta is not None else Span(file, 1, 1),
                             "check the syntax near here") from None
    except RecursionError:
        raise _too_deep(file, text) from None


def _too_deep(file: str, text: str) -> DlcLimitError:
    """A located error for a parse tree too deep to build: blame the longest line."""
    lines = text.splitlines() or [""]
    i = max(range(len(lines)), key=lambda k: len(lines[k]))
    col = len(lines[i]) - len(lines[i].lstrip()) + 1
    return DlcLimitError("this expression is too long or nests too deeply to compile",
                         Span(file, i + 1, col, i + 1, len(lines[i]) + 1),
                         "split it into several statements")


class SourceError(DlcError):
    """A spec file that cannot be read as a whole: unreadable, too large, or
    not UTF-8.  Unlocated: an importer reports it at its `import` line."""


def read_source(path: str | Path) -> str:
    """The text of a `.dln` file, read in one bounded gulp.

    At most MAX_SOURCE_BYTES + 1 bytes are read, so /dev/zero, a pipe or a
    multi-gigabyte file is refused without being read whole."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_SOURCE_BYTES + 1)
    except OSError as e:
        raise SourceError(f"cannot read {path}: {e.strerror or e}", hint="check the path and its permissions") from None
    except ValueError as e:  # a NUL in the name
        raise SourceError(f"cannot read {path!r}: {e}", hint="check the path") from None
    if len(data) > MAX_SOURCE_BYTES:
        raise SourceError(f"{path} is larger than {MAX_SOURCE_BYTES:,} bytes, the limit for a .dln file",
                          hint="split it into several files joined by import")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        col = len(data[data.rfind(b"\n", 0, e.start) + 1:e.start].decode("utf-8", "replace")) + 1
        register_source(str(path), data.decode("utf-8", "replace"))
        raise DlcSyntaxError(f"the file is not UTF-8 text (byte 0x{data[e.start]:02x})",
                             Span(str(path), line, col), "save the spec as UTF-8") from None


def parse_file(path: str | Path) -> A.Module:
    return parse(read_source(path), str(path))


def _span(file: str, meta) -> Span:
    if getattr(meta, "empty", True):
        return Span(file, 1, 1)
    return Span(file, meta.line, meta.column, meta.end_line, meta.end_column)


def _tok_span(file: str, tok: Token) -> Span:
    return Span(file, tok.line, tok.column, tok.end_line, tok.end_column)


@v_args(meta=True)
class ToAST(Transformer):
    """One method per grammar rule, as lark's examples do."""

    def __init__(self, file: str):
        super().__init__()
        self.file = file

    def _s(self, meta):
        return _span(self.file, meta)

    # file level
    def start(self, meta, items):
        return A.Module(self._s(meta), self.file, [i for i in items if i is not None])

    def import_decl(self, meta, c):
        return A.Import(self._s(meta), _unquote(c[0], self.file), str(c[1]) if c[1] else None)

    def const_decl(self, meta, c):
        return A.Const(self._s(meta), str(c[0]), c[1])

    def model_def(self, meta, c):
        name, tparams, rtype, body = c
        return A.ModelDef(self._s(meta), str(name), tparams or [], rtype, body)

    def block_def(self, meta, c):
        name, cparams, tparams, rtype, body = c
        return A.ModelDef(self._s(meta), str(name), tparams or [], rtype, body, cparams or [], True)

    def train_def(self, meta, c):
        return A.TrainDef(self._s(meta), str(c[0]), str(c[1]) if c[1] else None, c[2])

    def cparams(self, meta, c):
        return list(c)

    def cparam(self, meta, c):
        return A.CParam(self._s(meta), str(c[0]), str(c[1]) if c[1] else None, c[2])

    def tparams(self, meta, c):
        return list(c)

    def tparam(self, meta, c):
        return A.TParam(self._s(meta), str(c[0]), c[1])

    def tensor_type(self, meta, c):
        return A.TensorTypeExpr(self._s(meta), str(c[0]), [d for d in c[1:] if d is not None])

    def tuple_type(self, meta, c):
        return A.TupleTypeExpr(self._s(meta), list(c))

    def body(self, meta, c):
        return [s for s in c if s is not None]

    # statements
    def assign(self, meta, c):
        return A.Assign(self._s(meta), c[0], c[1])

    def targets(self, meta, c):
        return list(c)

    def target_tuple(self, meta, c):
        return A.Target(self._s(meta), items=c[0])

    def target_name(self, meta, c):
        return A.Target(self._s(meta), name=str(c[0]))

    def param_decl(self, meta, c):
        return A.ParamStmt(self._s(meta), "param", str(c[0]), c[1], c[2])

    def buffer_decl(self, meta, c):
        return A.ParamStmt(self._s(meta), "buffer", str(c[0]), c[1], c[2])

    def for_stmt(self, meta, c):
        return A.For(self._s(meta), c[0], c[1], c[2])

    def if_stmt(self, meta, c):
        branches = [(c[0], c[1])]
        orelse = None
        for item in c[2:]:
            if isinstance(item, tuple):
                branches.append(item)
            elif item is not None:
                orelse = item
        return A.If(self._s(meta), branches, orelse)

    def elif_clause(self, meta, c):
        return (c[0], c[1])

    def return_stmt(self, meta, c):
        return A.Return(self._s(meta), [x for x in c if x is not None])

    def assert_stmt(self, meta, c):
        return A.Assert(self._s(meta), c[0], c[1])

    def example_stmt(self, meta, c):
        return A.Example(self._s(meta), list(c))

    def binding(self, meta, c):
        return (str(c[0]), c[1], self._s(meta))

    def step_stmt(self, meta, c):
        if str(c[0]) != "step":
            raise DlcSyntaxError(f"unexpected '{c[1]}'", _tok_span(self.file, c[1]),
                                 f"did you mean `step {c[1]} {{ ... }}`, or a missing '='?")
        return A.Step(self._s(meta), str(c[1]), c[2])

    # expressions
    def pipe(self, meta, c):
        return A.Pipe(self._s(meta), c[0], c[1])

    def ifexp(self, meta, c):
        return A.IfExp(self._s(meta), c[1], c[0], c[2])

    def or_op(self, meta, c):
        return A.BoolOp(self._s(meta), "or", c[0], c[1])

    def and_op(self, meta, c):
        return A.BoolOp(self._s(meta), "and", c[0], c[1])

    def not_op(self, meta, c):
        return A.Not(self._s(meta), c[0])

    def compare(self, meta, c):
        return A.Compare(self._s(meta), str(c[1]), c[0], c[2])

    def binop(self, meta, c):
        return A.BinOp(self._s(meta), str(c[1]), c[0], c[2])

    def add_op(self, meta, c):
        return A.BinOp(self._s(meta), "+", c[0], c[1])

    def sub_op(self, meta, c):
        return A.BinOp(self._s(meta), "-", c[0], c[1])

    def pow_op(self, meta, c):
        return A.BinOp(self._s(meta), "**", c[0], c[2])

    def neg(self, meta, c):
        return A.Neg(self._s(meta), c[0])

    def call(self, meta, c):
        func, args = c
        pos, kws = [], []
        for a in args or []:
            if isinstance(a, A.Kwarg):
                kws.append(a)
            else:
                if kws:
                    raise DlcSyntaxError("positional argument after keyword argument", a.span,
                                         "put positional arguments first")
                pos.append(a)
        return A.Call(self._s(meta), func, pos, kws)

    def args(self, meta, c):
        return list(c)

    def kwarg(self, meta, c):
        return A.Kwarg(self._s(meta), str(c[0]), c[1])

    def index(self, meta, c):
        return A.Index(self._s(meta), c[0], list(c[1:]))

    def slice(self, meta, c):
        return A.Slice(self._s(meta), c[0], c[1], c[2])

    def ellipsis(self, meta, c):
        return A.Ellipsis_(self._s(meta))

    def attr(self, meta, c):
        return A.Attr(self._s(meta), c[0], str(c[1]))

    def name(self, meta, c):
        return A.Name(self._s(meta), str(c[0]))

    def int_lit(self, meta, c):
        text = str(c[0]).replace("_", "")
        # decimal, even with leading zeros (`007`); hexadecimal with 0x.  The length is
        # checked first: Python refuses to convert more than 4300 digits at all
        hexa = text[:2] in ("0x", "0X")
        digits = text[2:].lstrip("0") if hexa else text.lstrip("0")
        value = None
        if len(digits) <= 40:
            value = int(text, 16) if hexa else int(text, 10)
        if value is None or value > MAX_INT_LITERAL:
            shown = text if len(text) <= 24 else f"{text[:10]}...{text[-4:]} ({len(text)} digits)"
            raise DlcValueError(f"integer {shown} is too large", self._s(meta),
                                "integer literals are limited to 2**128; sizes and counts to 2**62")
        return A.Literal(self._s(meta), value)

    def float_lit(self, meta, c):
        # 1e400 is infinity, as in Python (the language's way to write it)
        return A.Literal(self._s(meta), float(str(c[0]).replace("_", "")))

    def str_lit(self, meta, c):
        return A.Literal(self._s(meta), _unquote(c[0], self.file))

    def true_lit(self, meta, c):
        return A.Literal(self._s(meta), True)

    def false_lit(self, meta, c):
        return A.Literal(self._s(meta), False)

    def none_lit(self, meta, c):
        return A.Literal(self._s(meta), None)

    def tuple_lit(self, meta, c):
        return A.TupleLit(self._s(meta), [x for x in c if x is not None])

    def list_lit(self, meta, c):
        return A.ListLit(self._s(meta), [x for x in c if x is not None])

    def record_lit(self, meta, c):
        # `{match = "fc.*", lr = 1e-2}`: a train section's param group
        return A.RecordLit(self._s(meta), [x for x in c if x is not None])


def _unquote(tok: Token, file: str) -> str:
    try:
        return pyast.literal_eval(str(tok))
    except (ValueError, SyntaxError):
        raise DlcSyntaxError("malformed string literal", _tok_span(file, tok),
                             "check its backslash escapes") from None


def parse_expr(text: str, span: Span) -> object:
    """Parse an expression embedded in a string (`"layer{i + 1}"`)."""
    try:
        tree = _parser().parse(text, start="expr")
        return _respan(ToAST(span.file).transform(tree), span)
    except (UnexpectedInput, VisitError, _TooDeep, RecursionError):
        raise DlcSyntaxError(f"malformed expression {{{text}}} in a string", span,
                             "write {{ and }} for literal braces") from None


def _respan(node, span: Span):
    """Point every node of an expression parsed out of a string at the string itself
    (its own positions are relative to the text between the braces)."""
    import dataclasses
    if isinstance(node, A.Node):
        node.span = span
        for f in dataclasses.fields(node):
            if f.name != "span":
                _respan(getattr(node, f.name), span)
    elif isinstance(node, (list, tuple)):
        for x in node:
            _respan(x, span)
    return node
