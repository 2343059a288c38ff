"""`dlc fmt`: the layout rules on a messy spec, the zoo as a fixed point,
idempotence, comments kept, the IR unchanged, and the command's behaviour."""
from __future__ import annotations

import random
import re
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner

from dlc.api import Model
from dlc.cli import main
from dlc.errors import DlcError, DlcSyntaxError
from dlc.frontend import fmt as fmt_module
from dlc.frontend.fmt import format_text
from dlc.frontend.fmt_lines import _lexer

ROOT = Path(__file__).resolve().parents[2]
ZOO = sorted((ROOT / "specs").glob("*.dln")) + sorted((ROOT / "specs" / "blocks").glob("*.dln"))
MODELS = sorted((ROOT / "specs").glob("*.dln"))

MESSY = '''

# header comment
import   "blocks/resnet_blocks.dln"   as rb
const  a=3   # trailing
const bb   =  [1,2 ,3]
const cc = [
  (1,2),
     (3,4),
]
block B( planes:int , stride : int=1 ,k=2 )( x : f32[N,C,H,W] )->f32[N,C,H,W]{


      # leading comment
   y=conv2d( x,planes,kernel=3,padding = 1 ,name="c" )|>relu
     |>batchnorm ( name = "bn" )
   z = y[ : , :H-1 , ::2 ]   # slice
   w = - z ** -2 + + 1 * (3 -  -4)
   if stride!=1 or  C!=planes{ y=y } else { y = -y }
   q = 1 if a>2
          else 2
   for i,(p,q) in enumerate(zip([1,2],[3,4])){
     y = y+p
          # inside comment before close
   }
   return y

}
model M(x:f32[N,3,8,8])->f32[N,3,8,8] {
  example N=1, C = 3
  param  w : f32[3] = normal(std=0.1)
  a , b = (x , x) ; c = a
  return B(3)( x ,name="b0")   # t1
                               # t2 continued
}
train M on synthetic {
    loss  = mse(output, label)
    optimizer =   sgd(lr=0.1, groups=[{match = "fc.*",lr=1e-2}])
    epochs=3
}
'''

# what the rules of docs/fmt.md make of MESSY, written out by hand
MESSY_FORMATTED = '''# header comment
import "blocks/resnet_blocks.dln" as rb
const a = 3  # trailing
const bb = [1, 2, 3]
const cc = [
    (1, 2),
    (3, 4),
]

block B(planes: int, stride: int = 1, k=2)(x: f32[N, C, H, W]) -> f32[N, C, H, W] {
    # leading comment
    y = conv2d(x, planes, kernel=3, padding=1, name="c") |> relu
        |> batchnorm(name="bn")
    z = y[:, :H - 1, ::2]    # slice
    w = -z ** -2 + +1 * (3 - -4)
    if stride != 1 or C != planes { y = y } else { y = -y }
    q = 1 if a > 2
        else 2
    for i, (p, q) in enumerate(zip([1, 2], [3, 4])) {
        y = y + p
        # inside comment before close
    }
    return y
}

model M(x: f32[N, 3, 8, 8]) -> f32[N, 3, 8, 8] {
    example N = 1, C = 3
    param w: f32[3] = normal(std=0.1)
    a, b = (x, x); c = a
    return B(3)(x, name="b0")  # t1
                               # t2 continued
}

train M on synthetic {
    loss = mse(output, label)
    optimizer = sgd(lr=0.1, groups=[{match = "fc.*", lr = 1e-2}])
    epochs = 3
}
'''


def _comments(text: str) -> list[str]:
    return [str(t).rstrip() for t in _lexer().lex(text, dont_ignore=True) if t.type == "COMMENT"]


def test_messy_spec_gets_the_documented_layout():
    assert format_text(MESSY) == MESSY_FORMATTED
    assert format_text(MESSY_FORMATTED) == MESSY_FORMATTED
    assert _comments(MESSY_FORMATTED) == _comments(MESSY)


@pytest.mark.parametrize("src, out", [
    ("const a=[1,2]\n", "const a = [1, 2]\n"),                      # commas and =
    ("const b = -  3\n", "const b = -3\n"),                         # a sign hugs its operand
    ("const c = 2**-1\n", "const c = 2 ** -1\n"),
    ("const d = f(a = 1)\n", "const d = f(a=1)\n"),                 # keyword arguments hug =
    ("const e = x [1 :2]\n", "const e = x[1:2]\n"),                 # slices hug :
    ("const f = (1,\n  2)\n", "const f = (1,\n           2)\n"),  # aligned after the bracket
    ("const g = (\n1, 2)\n", "const g = (\n    1, 2)\n"),          # hanging
    ("const h = 1\n\n\n\nconst i = 2\n", "const h = 1\n\nconst i = 2\n"),  # one blank line at most
    ("const j = 1   \n", "const j = 1\n"),                          # trailing space, final newline
    ("const k = 1", "const k = 1\n"),
    ("const l = 1\r\nconst m = 2\r\n", "const l = 1\nconst m = 2\n"),
    ("const n = a.b .c\n", "const n = a.b.c\n"),
    ("const o = not(x)\n", "const o = not (x)\n"),
    ("const p = x[...,0]\n", "const p = x[..., 0]\n"),
    ("const q = [\n    1,\n\n]\n", "const q = [\n    1,\n]\n"),         # no blank line before a closer
    ("", ""),
])
def test_spacing_rules(src, out):
    assert format_text(src) == out
    assert format_text(out) == out


def test_alignment_of_a_run_is_kept_and_a_lone_pad_removed():
    src = "const aa  = 1\nconst bbb = 2\nconst c     = 3\n\nconst d   = 4\n"
    out = "const aa  = 1\nconst bbb = 2\nconst c = 3\n\nconst d = 4\n"
    assert format_text(src) == out
    assert format_text(out) == out


def test_bodies_are_reindented_and_blank_lines_at_their_edges_dropped():
    src = "model M(x: f32[N]) {\n\n\t  y = x\n  \n        return y\n\n}\n"
    assert format_text(src) == "model M(x: f32[N]) {\n    y = x\n\n    return y\n}\n"


def test_else_on_its_own_line_stays_at_its_if():
    src = "model M(x: f32[N]) {\n  if true {\n y = x\n    }\n        else {\n  y = -x\n }\n  return y\n}\n"
    out = "model M(x: f32[N]) {\n    if true {\n        y = x\n    }\n    else {\n        y = -x\n    }\n    return y\n}\n"
    assert format_text(src) == out
    assert format_text(out) == out


@pytest.mark.parametrize("path", ZOO, ids=lambda p: p.name)
def test_zoo_is_formatted_and_formatting_is_idempotent(path):
    text = path.read_text()
    once = format_text(text, str(path))
    assert format_text(once, str(path)) == once
    assert once == text, f"{path.name} is not formatted: run `dlc fmt {path.relative_to(ROOT)}`"


# tokens next to which a space may be removed without joining two tokens
_HUGGABLE = {"(", ")", "[", "]", ",", "=", ":", "{", "}"}


def _unformat(text: str) -> str:
    """`text` with its indentation stripped and the spaces after each line's
    first `=` removed where no token joins, or widened where the line has no
    trailing comment; comments stay at their columns and alignments before `=`
    are untouched, so `dlc fmt` should give `text` back exactly."""
    toks = list(_lexer().lex(text, dont_ignore=True))
    out: list[str] = []
    line: list[str] = []
    comment_on_line = set()
    for t in toks:
        if t.type == "COMMENT":
            comment_on_line.add(t.line)
    seen_eq, n = False, 0
    for i, t in enumerate(toks):
        value = str(t)
        if t.type == "_NL" and value != ";":
            nxt = toks[i + 1] if i + 1 < len(toks) else None
            keep_indent = nxt is not None and nxt.type == "COMMENT"
            out.append("".join(line))
            line = [value if keep_indent else value[:value.rfind("\n") + 1]]
            seen_eq = False
            continue
        if t.type == "COMMENT":
            width = len("".join(line).split("\n")[-1])
            line.append(" " * max(t.column - 1 - width, 0) if width else "")
            line.append(value)
            continue
        if t.type.startswith("__IGNORE") and value.strip() == "" and seen_eq:
            prev, nxt = toks[i - 1], toks[i + 1]
            if nxt.type == "COMMENT":
                continue                        # the comment pads itself to its column
            n += 1
            if (str(prev) in _HUGGABLE or str(nxt) in _HUGGABLE) and n % 2:
                continue
            line.append("   " if t.line not in comment_on_line else value)
            continue
        if value == "=":
            seen_eq = True
        line.append(value)
    out.append("".join(line))
    return "".join(out)


def _scramble(text: str, rng: random.Random) -> str:
    """`text` with random spaces, line breaks inside brackets, backslash
    continuations, blank lines, indentation and comments: the same program."""
    out, depth = [], 0
    toks = list(_lexer().lex(text, dont_ignore=True))
    for i, t in enumerate(toks):
        v = str(t)
        depth += (v in "([") - (v in ")]")
        r = rng.random()
        if t.type.startswith("__IGNORE") and not v.startswith("\\"):
            near = {str(toks[i - 1]), str(toks[i + 1]) if i + 1 < len(toks) else ""}
            if r < 0.3 and near & _HUGGABLE:
                v = ""
            elif r < 0.4:
                v = " " * rng.randint(2, 6)
            elif r < 0.45 and depth > 0:
                v = "\n" + " " * rng.randint(0, 9)
            elif r < 0.47 and depth > 0:
                v = "  # inside\n" + " " * rng.randint(0, 9)
            elif r < 0.48:
                v = " \\\n  "
        elif t.type == "_NL" and v != ";":
            if r < 0.3:
                v = "\n" * rng.randint(1, 3) + " " * rng.randint(0, 12)
            elif r < 0.35:
                v = "\n   # between\n\n" + " " * rng.randint(0, 5)
        out.append(v)
    return "".join(out)


@pytest.mark.parametrize("seed", range(40))
def test_scrambled_zoo_formats_idempotently_keeping_every_comment(seed):
    rng = random.Random(seed)
    path = ZOO[seed % len(ZOO)]
    messy = _scramble(path.read_text(), rng)
    once = format_text(messy, str(path))      # raises if the parse changed
    assert format_text(once, str(path)) == once
    assert _comments(once) == _comments(messy)


def _ir(path: Path, text: str, mode: str) -> str:
    # columns move when spaces do; lines and everything else must not
    return re.sub(r"(\.dln:\d+):\d+", r"\1", Model(str(path), text=text).ir(mode))


@pytest.mark.parametrize("path", MODELS, ids=lambda p: p.name)
def test_unformatted_zoo_formats_back_with_the_same_ir(path):
    text = path.read_text()
    messy = _unformat(text)
    assert messy != text
    formatted = format_text(messy, str(path))
    assert formatted == text
    assert _comments(formatted) == _comments(messy)
    for mode in ("eval", "train"):
        assert _ir(path, formatted, mode) == _ir(path, messy, mode)


def test_a_syntax_error_is_reported_where_the_parser_reports_it():
    with pytest.raises(DlcSyntaxError) as e:
        format_text("model M(x: f32[N]) {\n    return x +\n}\n", "bad.dln")
    assert e.value.span.file == "bad.dln" and e.value.span.line == 2


def test_a_layout_that_changes_the_meaning_is_refused(monkeypatch, tmp_path):
    render = fmt_module._Layout.render
    monkeypatch.setattr(fmt_module._Layout, "render", lambda self, lines: render(self, lines).replace("+", "-"))
    with pytest.raises(DlcError, match="change the meaning"):
        format_text("const a = 1 + 2\n")
    spec = tmp_path / "m.dln"
    spec.write_text("const a = 1+2\n")
    r = CliRunner().invoke(main, ["fmt", str(spec)])
    assert r.exit_code == 1 and "change the meaning" in r.output
    assert spec.read_text() == "const a = 1+2\n"


def test_cli_check_diff_and_in_place(tmp_path):
    good = tmp_path / "good.dln"
    good.write_text("const a = 1\n")
    bad = tmp_path / "sub" / "bad.dln"
    bad.parent.mkdir()
    bad.write_text("const  b=2\n")
    bad.chmod(0o640)
    runner = CliRunner()

    r = runner.invoke(main, ["fmt", "--check", str(tmp_path)])
    assert r.exit_code == 1 and f"would reformat {bad}" in r.output and "good.dln" not in r.output
    assert bad.read_text() == "const  b=2\n"

    r = runner.invoke(main, ["fmt", "--diff", str(bad)])
    assert r.exit_code == 0 and "-const  b=2\n+const b = 2\n" in r.output
    assert bad.read_text() == "const  b=2\n"

    r = runner.invoke(main, ["fmt", str(good), str(bad)])
    assert r.exit_code == 0 and f"reformatted {bad}" in r.output and "good" not in r.output
    assert bad.read_text() == "const b = 2\n"
    assert stat.S_IMODE(bad.stat().st_mode) == 0o640
    assert runner.invoke(main, ["fmt", "--check", str(tmp_path)]).exit_code == 0


def test_cli_stdin_and_a_file_that_does_not_parse(tmp_path):
    runner = CliRunner()
    r = runner.invoke(main, ["fmt", "-"], input="const  a=1\n")
    assert r.exit_code == 0 and r.output == "const a = 1\n"
    assert runner.invoke(main, ["fmt", "--check", "-"], input="const  a=1\n").exit_code == 1
    broken = tmp_path / "broken.dln"
    broken.write_text("const a = (\n")
    r = runner.invoke(main, ["fmt", str(broken)])
    assert r.exit_code == 1 and "broken.dln:" in r.output and "Traceback" not in r.output
    assert broken.read_text() == "const a = (\n"


def test_cli_check_passes_on_the_zoo():
    """What CI runs: `dlc fmt --check specs/*.dln specs/blocks/*.dln`."""
    r = CliRunner().invoke(main, ["fmt", "--check", *map(str, ZOO)])
    assert r.exit_code == 0, r.output
