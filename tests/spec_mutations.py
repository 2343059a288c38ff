"""Mutations of `.dln` spec text for fuzzing the front end.

Two kinds, both driven by an `rnd` object with `choice(seq)` and
`randint(lo, hi)` (a `random.Random`, or a chooser that draws from hypothesis):

- token-level: delete, duplicate, swap or replace tokens and lines, change
  numbers, insert random characters;
- grammar-aware: the spec is parsed with dlc's own parser and whole
  statements and expressions (by their source spans) are deleted, duplicated,
  moved, spliced in from other specs, wrapped in (nested) compile-time loops,
  or given extra arguments; imports with hostile paths, huge numbers, a BOM,
  CRLF line ends and runs of blank lines are added.

Used by tests/frontend/test_fuzz_no_traceback.py (the default-run property
test) and tests/fuzz/run_long.py (the long campaign).
"""
from __future__ import annotations

import dataclasses
import re
from functools import lru_cache

# --------------------------------------------------------------------------- tokens
_TOKEN = re.compile(r'''
      "(?:[^"\\\n]|\\.)*"            # strings
    | '(?:[^'\\\n]|\\.)*'
    | \#[^\n]*                       # comments
    | 0x[0-9a-fA-F]+
    | (?:\d[\d_]*)?\.\d+(?:[eE][-+]?\d+)?   # floats
    | \d[\d_]*(?:[eE][-+]?\d+)?      # ints (and 1e5)
    | [A-Za-z_]\w*                   # names and keywords
    | \|> | \*\* | // | == | != | <= | >= | -> | \.\.\.
    | \s+
    | .
''', re.X | re.S)

_NUMBER = re.compile(r"^(?:0x[0-9a-fA-F]+|(?:\d[\d_]*)?\.?\d[\d_]*(?:[eE][-+]?\d+)?)$")

NUMBERS = ["0", "-1", "-3", "1", "2", "3", "7", "1000000", "1000000000000", "99999999999999999999",
           "2.5", "0.0", "1e-9", "1e308", "0.5", "-0.25", "1_0", "0x10", "9" * 400, "1" + "0" * 400 + ".0",
           "1e400", "4611686018427387904", "4611686018427387905", "100000", "99999"]
VOCAB = ["model", "block", "train", "import", "const", "param", "buffer", "for", "in", "if", "elif",
         "else", "return", "assert", "example", "step", "true", "false", "none", "and", "or", "not",
         "(", ")", "[", "]", "{", "}", ",", ":", "=", "|>", "->", "+", "-", "*", "/", "//", "%", "@",
         "**", "==", "<", ".", "...", ";", "\n", "x", "N", "f32", "i64", "f64", "bool", "dense",
         "conv2d", "relu", "flatten", "concat", "reshape", "range", "len", "scan", "batchnorm",
         "multihead_attention", "embedding", "softmax", "_", '"s"', "'{x}'", '"{"', "output", "label",
         "adam", "sgd", "epochs", "loss", "maximum", "minimum", "x.shape[0]"]
CHARS = list("{}()[]<>,.:;=+-*/%@!?&|^~$#\\\"'`\t\n 0123456789abzAZ_") + ["é", "\u00a0", "\u2028", "\x00",
                                                                          "\r", "\x0c", "𝔁", "\ufeff"]
IMPORT_PATHS = ["/etc/passwd", "../outside.dln", "/dev/zero", "a" * 5000 + ".dln", "x" * 300 + ".dln",
                "a\\x00b.dln", "a\\ud800.dln", "blocks/resnet_blocks.dln", "blocks", "missing.dln",
                "_self_", "blocks/../blocks/vgg_blocks.dln", "~/.ssh/id_rsa", "", "."]


def tokenize(text: str) -> list[str]:
    toks = _TOKEN.findall(text)
    assert "".join(toks) == text
    return toks


def _significant(toks: list[str]) -> list[int]:
    return [i for i, t in enumerate(toks) if not t.isspace()]


def token_mutation(text: str, rnd, vocab: list[str] = VOCAB) -> str:
    """One random token- or line-level mutation."""
    kind = rnd.choice([
        "delete_token", "duplicate_token", "swap_tokens", "replace_token", "change_number",
        "delete_line", "duplicate_line", "swap_lines", "insert_char", "insert_token",
    ])
    if kind.endswith("_line") or kind == "swap_lines":
        lines = text.split("\n")
        i = rnd.randint(0, len(lines) - 1)
        if kind == "delete_line":
            del lines[i]
        elif kind == "duplicate_line":
            lines.insert(i, lines[i])
        else:
            j = rnd.randint(0, len(lines) - 1)
            lines[i], lines[j] = lines[j], lines[i]
        return "\n".join(lines)
    if kind == "insert_char":
        pos = rnd.randint(0, len(text))
        return text[:pos] + rnd.choice(CHARS) + text[pos:]
    toks = tokenize(text)
    sig = _significant(toks)
    if not sig:
        return text + rnd.choice(vocab)
    if kind == "change_number":
        nums = [i for i in sig if _NUMBER.match(toks[i])]
        if nums:
            i = rnd.choice(nums)
            toks[i] = rnd.choice(NUMBERS)
            return "".join(toks)
        kind = "replace_token"
    i = rnd.choice(sig)
    if kind == "delete_token":
        del toks[i]
    elif kind == "duplicate_token":
        toks.insert(i, toks[i])
    elif kind == "swap_tokens":
        j = rnd.choice(sig)
        toks[i], toks[j] = toks[j], toks[i]
    elif kind == "replace_token":
        pool = vocab + [toks[k] for k in sig]
        toks[i] = rnd.choice(pool)
    else:  # insert_token
        toks.insert(i, " " + rnd.choice(vocab + [toks[k] for k in sig]) + " ")
    return "".join(toks)


# --------------------------------------------------------------------------- grammar
@dataclasses.dataclass(frozen=True)
class Piece:
    start: int      # offsets into the text
    end: int
    indent: str     # the indentation of the line it starts on


@dataclasses.dataclass(frozen=True)
class Structure:
    statements: tuple   # Pieces of statements inside model/block/train bodies
    expressions: tuple  # Pieces of expressions (calls, operators, names, literals, ...)
    calls: tuple        # Pieces of calls: the offset of their closing ')' is end - 1


def _offsets(text: str) -> list[int]:
    starts = [0]
    for i, ch in enumerate(text):
        if ch == "\n":
            starts.append(i + 1)
    return starts


@lru_cache(maxsize=256)
def structure(text: str) -> Structure | None:
    """Statement and expression spans of a spec that parses (None if it does not)."""
    from dlc.errors import DlcError
    from dlc.frontend import ast as A
    from dlc.frontend.parser import parse
    try:
        mod = parse(text, "<fuzz>")
    except (DlcError, RecursionError):
        return None
    starts = _offsets(text)
    stmts, exprs, calls = [], [], []
    stmt_types = (A.Assign, A.ParamStmt, A.For, A.If, A.Return, A.Assert, A.Example, A.Step)
    expr_types = (A.Name, A.Literal, A.TupleLit, A.ListLit, A.BinOp, A.Compare, A.BoolOp, A.Not, A.Neg,
                  A.IfExp, A.Call, A.Pipe, A.Index, A.Attr)

    def piece(node):
        s = node.span
        if s.end_line is None or s.end_col is None or s.line > len(starts) or s.end_line > len(starts):
            return None
        a = starts[s.line - 1] + s.col - 1
        b = starts[s.end_line - 1] + s.end_col - 1
        if not 0 <= a < b <= len(text):
            return None
        line = text[starts[s.line - 1]:a]
        return Piece(a, b, line[:len(line) - len(line.lstrip())])

    def walk(node):
        if isinstance(node, (list, tuple)):
            for x in node:
                walk(x)
            return
        if not dataclasses.is_dataclass(node) or isinstance(node, type):
            return
        if isinstance(node, A.Node):
            p = piece(node)
            if p is not None:
                if isinstance(node, stmt_types):
                    stmts.append(p)
                elif isinstance(node, expr_types):
                    exprs.append(p)
                    if isinstance(node, A.Call):
                        calls.append(p)
        for f in dataclasses.fields(node):
            if f.name != "span":
                walk(getattr(node, f.name))
    walk(mod.items)
    return Structure(tuple(stmts), tuple(exprs), tuple(calls))


def _line_end(text: str, pos: int) -> int:
    k = text.find("\n", pos)
    return len(text) if k < 0 else k


def grammar_mutation(text: str, rnd, donors: list[str]) -> str:
    """One structure-aware mutation; falls back to a token mutation when the
    text no longer parses or has nothing of the chosen kind."""
    kind = rnd.choice(["splice_expr", "splice_expr", "wrap_loop", "nest_loops", "delete_stmt",
                       "duplicate_stmt", "move_stmt", "donor_stmt", "extra_arg", "huge_number",
                       "import", "bom", "crlf", "blank_lines", "deep_nesting", "long_chain"])
    if kind == "bom":
        return "\ufeff" + text
    if kind == "crlf":
        return text.replace("\n", "\r\n")
    if kind == "blank_lines":
        pos = rnd.randint(0, len(text))
        return text[:pos] + "\n" * rnd.choice([1, 100, 10_000, 100_000]) + text[pos:]
    if kind == "import":
        path = rnd.choice(IMPORT_PATHS)
        alias = rnd.choice(["", " as lib"])
        return f'import "{path}"{alias}\n' + text
    st = structure(text)
    if st is None:
        return token_mutation(text, rnd)
    if kind in ("splice_expr", "extra_arg", "huge_number", "deep_nesting", "long_chain") and not st.expressions:
        return token_mutation(text, rnd)
    if kind == "splice_expr":
        target = rnd.choice(st.expressions)
        donor = rnd.choice(donors)
        dst = structure(donor)
        if dst is None or not dst.expressions:
            return token_mutation(text, rnd)
        src = rnd.choice(dst.expressions)
        return text[:target.start] + donor[src.start:src.end] + text[target.end:]
    if kind == "huge_number":
        target = rnd.choice(st.expressions)
        return text[:target.start] + rnd.choice(["9" * 400, "1e400", "(2**62 + 2**62)", "-(2**62)",
                                                  "x.shape[0] * 4611686018427387904"]) + text[target.end:]
    if kind == "deep_nesting":
        target = rnd.choice(st.expressions)
        k = rnd.choice([20, 99, 101, 500])
        inner = text[target.start:target.end]
        return text[:target.start] + "(" * k + inner + ")" * k + text[target.end:]
    if kind == "long_chain":
        target = rnd.choice(st.expressions)
        k = rnd.choice([10, 200, 5000])
        inner = text[target.start:target.end]
        return text[:target.start] + inner + " |> relu" * k + text[target.end:]
    if kind == "extra_arg":
        if not st.calls:
            return token_mutation(text, rnd)
        call = rnd.choice(st.calls)
        close = call.end - 1
        if text[close] != ")":
            return token_mutation(text, rnd)
        arg = rnd.choice(["0", "-1", "name=\"a\"", "name=\"a..b\"", "axis=99", "kernel=0", "p=2.0",
                          "bias=none", "dtype=f16", "x", "(1, 2)", "[]", "stride=" + "9" * 30, "groups=3"])
        sep = "" if text[call.start:close].rstrip().endswith("(") else ", "
        return text[:close] + sep + arg + text[close:]
    return _statement_mutation(text, rnd, kind, st, donors)


def _statement_mutation(text: str, rnd, kind: str, st: Structure, donors: list[str]) -> str:
    """Mutations of whole statements: loops around them, delete, duplicate, move, splice."""
    if not st.statements:
        return token_mutation(text, rnd)
    s = rnd.choice(st.statements)
    body = text[s.start:s.end]
    if kind == "wrap_loop":
        n = rnd.choice(["2", "3", "100", "1000", "100000", "len(x.shape)", "0"])
        inner = body.replace("\n", "\n    ")
        return text[:s.start] + f"for i in range({n}) {{\n{s.indent}    {inner}\n{s.indent}}}" + text[s.end:]
    if kind == "nest_loops":
        a, b = rnd.choice(["10", "1000", "100000"]), rnd.choice(["10", "1000", "100000"])
        i1, i2 = s.indent + "    ", s.indent + "        "
        inner = body.replace("\n", "\n        ")
        return (text[:s.start] + f"for i in range({a}) {{\n{i1}for j in range({b}) {{\n{i2}{inner}\n{i1}}}\n"
                f"{s.indent}}}" + text[s.end:])
    if kind == "delete_stmt":
        return text[:s.start] + text[s.end:]
    if kind == "duplicate_stmt":
        return text[:s.end] + "\n" + s.indent + body + text[s.end:]
    if kind == "move_stmt":
        t = rnd.choice(st.statements)
        if t.start >= s.start:
            return text[:s.start] + text[s.end:t.end] + "\n" + t.indent + body + text[t.end:]
        return text[:t.start] + body + "\n" + t.indent + text[t.start:s.start] + text[s.end:]
    # donor_stmt: a statement of another spec, inserted after this one
    donor = rnd.choice(donors)
    dst = structure(donor)
    if dst is None or not dst.statements:
        return token_mutation(text, rnd)
    d = rnd.choice(dst.statements)
    return text[:s.end] + "\n" + s.indent + donor[d.start:d.end] + text[s.end:]


def mutate(text: str, rnd, donors: list[str] | None = None, grammar_share: int = 50,
           vocab: list[str] = VOCAB) -> str:
    """One mutation: grammar-aware with probability grammar_share %, else token-level."""
    if donors and rnd.randint(1, 100) <= grammar_share:
        return grammar_mutation(text, rnd, donors)
    return token_mutation(text, rnd, vocab)
