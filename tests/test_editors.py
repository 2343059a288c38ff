"""Editor support: the VS Code extension folder (valid JSON, a TextMate grammar
that is up to date and gives every keyword, builtin and dtype its scope) and
the pygments lexer (every word its token type, the zoo without Error tokens,
the `dln` entry point)."""
from __future__ import annotations

import json
import re
from importlib.metadata import entry_points
from pathlib import Path

import pytest
from pygments import lex
from pygments.lexers import get_lexer_by_name, get_lexer_for_filename
from pygments.token import Comment, Error, Keyword, Name, Number, Operator, String

from dlc.editors import DECLARATIONS, LITERALS, OPERATOR_WORDS, builtin_names, dtype_names, keywords
from dlc.editors.pygments_lexer import DlnLexer
from dlc.editors.vscode import GRAMMAR_PATH, grammar_text, main as vscode_main
from dlc.frontend.builtins import BUILTINS
from dlc.frontend.fmt_lines import KEYWORDS as FMT_KEYWORDS

ROOT = Path(__file__).resolve().parents[1]
VSCODE = ROOT / "editors" / "vscode"
ZOO = sorted((ROOT / "specs").glob("*.dln")) + sorted((ROOT / "specs" / "blocks").glob("*.dln"))
CONTROL = [k for k in keywords() if k not in DECLARATIONS + LITERALS + OPERATOR_WORDS]


def _grammar() -> dict:
    return json.loads(GRAMMAR_PATH.read_text())


def _scope(text: str) -> tuple[str | None, str]:
    """What a TextMate engine gives the start of `text`: the first pattern, in
    order, that matches there (all our patterns are single-line `match`es or
    strings), with the scope of the text it matched first."""
    g = _grammar()
    for ref in g["patterns"]:
        rule = g["repository"][ref["include"][1:]]
        regex = rule.get("match") or rule["begin"]
        m = re.match(regex, text)
        if m:
            scope = rule.get("name") or rule["captures"]["1"]["name"]
            return scope, m.group(1) if "captures" in rule else m.group(0)
    return None, ""


def test_extension_folder_is_valid_json_that_vscode_can_load():
    pkg = json.loads((VSCODE / "package.json").read_text())
    config = json.loads((VSCODE / "language-configuration.json").read_text())
    lang, = pkg["contributes"]["languages"]
    grammar, = pkg["contributes"]["grammars"]
    assert lang["extensions"] == [".dln"] and grammar["language"] == lang["id"]
    assert (VSCODE / lang["configuration"]).is_file() and (VSCODE / grammar["path"]).resolve() == GRAMMAR_PATH
    assert _grammar()["scopeName"] == grammar["scopeName"]
    assert config["comments"]["lineComment"] == "#"
    for key in ("increaseIndentPattern", "decreaseIndentPattern"):
        re.compile(config["indentationRules"][key])
    assert re.match(config["indentationRules"]["increaseIndentPattern"], "model M(x: f32[N]) {  # c")
    assert not re.match(config["indentationRules"]["increaseIndentPattern"], "if a { b = 1 }")


def test_textmate_grammar_is_generated_from_the_language_and_up_to_date():
    assert GRAMMAR_PATH.read_text() == grammar_text(), "run `python -m dlc.editors.vscode`"
    assert vscode_main(["--check"]) == 0
    g = _grammar()
    assert [p["include"][1:] for p in g["patterns"]] == list(g["repository"])
    for rule in g["repository"].values():
        for key in ("match", "begin", "end"):
            if key in rule:
                re.compile(rule[key])


def test_keyword_lists_agree_with_the_grammar():
    grammar = (ROOT / "dlc" / "frontend" / "grammar.lark").read_text()
    assert set(keywords()) == set(re.findall(r'"([a-z]+)"', grammar))
    assert set(keywords()) == set(FMT_KEYWORDS) | set(LITERALS)
    assert {n for n, b in BUILTINS.items() if hasattr(b, "fn")} <= set(builtin_names())
    assert {"conv2d", "relu", "sgd", "multistep", "hflip"} <= set(builtin_names())
    assert {"f32", "i64", "bf16"} <= set(dtype_names())


@pytest.mark.parametrize("words, scope", [
    (CONTROL, "keyword.control.dln"),
    (LITERALS, "constant.language.dln"),
    (OPERATOR_WORDS, "keyword.operator.logical.dln"),
    (("import",), "keyword.control.import.dln"),
    (builtin_names(), "support.function.builtin.dln"),
    (dtype_names(), "support.type.dln"),
])
def test_textmate_grammar_scopes_every_word(words, scope):
    for w in words:
        assert _scope(w + " x") == (scope, w), w
        assert _scope(w + "x")[1] != w, w          # a longer name is not the word


def test_textmate_definitions_strings_and_numbers():
    for kw in ("model", "block", "train", "const", "param", "buffer"):
        assert _scope(f"{kw} Net") == ("storage.type.dln", kw)
    assert _scope("step adam {")[0] == "keyword.control.dln"
    assert _scope('"layer{i + 1}"')[0] == "string.quoted.double.dln"
    assert _scope("# note")[0] == "comment.line.number-sign.dln"
    for number in ("0x1F", "1_000", "1e-12", "0.5", ".5"):
        assert _scope(number) == ("constant.numeric.dln", number)


def _types(text: str) -> list:
    return [(t, v) for t, v in lex(text, DlnLexer()) if v.strip()]


@pytest.mark.parametrize("words, ttype", [
    (CONTROL, Keyword),
    (LITERALS, Keyword.Constant),
    (OPERATOR_WORDS, Operator.Word),
    (("import",), Keyword.Namespace),
    (builtin_names(), Name.Builtin),
    (dtype_names(), Keyword.Type),
])
def test_pygments_lexer_gives_every_word_its_type(words, ttype):
    for w in words:
        assert _types(w + " x")[0] == (ttype, w), w
        assert _types(w + "x")[0] == (Name, w + "x"), w


def test_pygments_lexer_definitions_strings_numbers_comments():
    assert _types("model Net(") [:2] == [(Keyword.Declaration, "model"), (Name.Class, "Net")]
    assert _types("param w")[1] == (Name.Variable, "w")
    assert _types("step adam {")[:2] == [(Keyword, "step"), (Name.Function, "adam")]
    assert (String.Interpol, "{i + 1}") in _types('name="layer{i + 1}"')
    assert _types("x |> relu  # c")[1:] == [(Operator, "|>"), (Name.Builtin, "relu"), (Comment.Single, "# c")]
    assert [t for t, _ in _types("0x1F 1_000 1e-12 .5")] == [Number.Hex, Number.Integer, Number.Float, Number.Float]


@pytest.mark.parametrize("path", ZOO, ids=lambda p: p.name)
def test_pygments_lexes_the_zoo_without_error_tokens(path):
    text = path.read_text()
    toks = list(lex(text, DlnLexer()))
    assert [v for t, v in toks if t in Error] == []
    assert "".join(v for _, v in toks) == text


def test_pygments_entry_point_dln():
    eps = {ep.name: ep.value for ep in entry_points(group="pygments.lexers")}
    assert eps.get("dln") == "dlc.editors.pygments_lexer:DlnLexer", "reinstall dlc: pip install -e ."
    assert type(get_lexer_by_name("dln")).__name__ == "DlnLexer"
    assert type(get_lexer_for_filename("model.dln")).__name__ == "DlnLexer"


def _dln_blocks():
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]:
        text = page.read_text()
        for m in re.finditer(r"^```dln\n(.*?)^```", text, re.S | re.M):
            line = text.count("\n", 0, m.start()) + 1
            yield pytest.param(m.group(1), id=f"{page.relative_to(ROOT)}:{line}")


@pytest.mark.parametrize("code", list(_dln_blocks()))
def test_dln_fences_in_the_docs_highlight_and_are_formatted(code):
    from dlc.errors import DlcSyntaxError
    from dlc.frontend.fmt import format_text
    assert [v for t, v in lex(code, DlnLexer()) if t in Error] == []
    try:
        formatted = format_text(code)
    except DlcSyntaxError:
        return                      # an excerpt, not a whole spec
    assert formatted == code, "format the example with `dlc fmt -`"
