"""A pygments lexer for `.dln` specs: `pygmentize -l dln model.dln`, and
```dln fences in Sphinx and MkDocs.  Registered as the `pygments.lexers`
entry point `dln`; importable without it (`from dlc.editors.pygments_lexer
import DlnLexer`)."""
from __future__ import annotations

from pygments.lexer import RegexLexer, bygroups, include, words
from pygments.token import Comment, Keyword, Name, Number, Operator, Punctuation, String, Text, Whitespace

from . import DECLARATIONS, LITERALS, OPERATOR_WORDS, builtin_names, dtype_names, keywords

_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
_CONTROL = tuple(k for k in keywords() if k not in DECLARATIONS + LITERALS + OPERATOR_WORDS)


class DlnLexer(RegexLexer):
    """The `.dln` language of dlc, the declarative deep-learning compiler."""

    name = "dln"
    aliases = ["dln", "dlc"]
    filenames = ["*.dln"]
    mimetypes = ["text/x-dln"]

    tokens = {
        "root": [
            (r"[ \t\f]+", Whitespace),
            (r"\n", Whitespace),
            (r"\\[ \t\f]*\n", Text),                        # line continuation
            (r"#.*$", Comment.Single),
            (r"(model|block|train)(\s+)(" + _NAME + ")", bygroups(Keyword.Declaration, Whitespace, Name.Class)),
            (r"(const|param|buffer)(\s+)(" + _NAME + ")",
             bygroups(Keyword.Declaration, Whitespace, Name.Variable)),
            (r"(step)(\s+)(" + _NAME + r")(\s*)(\{)",        # `step` is a keyword only here
             bygroups(Keyword, Whitespace, Name.Function, Whitespace, Punctuation)),
            (words(("import",), suffix=r"\b"), Keyword.Namespace),
            (words(LITERALS, suffix=r"\b"), Keyword.Constant),
            (words(OPERATOR_WORDS, suffix=r"\b"), Operator.Word),
            (words(_CONTROL, suffix=r"\b"), Keyword),
            (words(dtype_names(), suffix=r"\b"), Keyword.Type),
            (words(builtin_names(), suffix=r"\b"), Name.Builtin),
            include("numbers"),
            (r'"', String.Double, "dstring"),
            (r"'", String.Single, "sstring"),
            (r"\|>|->|\*\*|//|==|!=|<=|>=|[-+*/%@<>=]", Operator),
            (r"\.\.\.", Punctuation),
            (r"[()\[\]{},:;.]", Punctuation),
            (_NAME, Name),
        ],
        "numbers": [
            (r"0[xX][0-9a-fA-F]+", Number.Hex),
            (r"([0-9][0-9_]*)?\.[0-9]+([eE][-+]?[0-9]+)?", Number.Float),
            (r"[0-9][0-9_]*\.([eE][-+]?[0-9]+)?", Number.Float),
            (r"[0-9][0-9_]*[eE][-+]?[0-9]+", Number.Float),
            (r"[0-9][0-9_]*", Number.Integer),
        ],
        # names are templates: "layer{i + 1}" interpolates, {{ and }} are braces
        "dstring": [
            (r'\\.', String.Escape),
            (r"\{\{|\}\}", String.Double),
            (r"\{[^{}\"\n]*\}", String.Interpol),
            (r'"', String.Double, "#pop"),
            (r'[^"\\{}\n]+|[{}]', String.Double),
        ],
        "sstring": [
            (r"\\.", String.Escape),
            (r"\{\{|\}\}", String.Single),
            (r"\{[^{}'\n]*\}", String.Interpol),
            (r"'", String.Single, "#pop"),
            (r"[^'\\{}\n]+|[{}]", String.Single),
        ],
    }
