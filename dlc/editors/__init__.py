"""Editor support for `.dln`: the word lists a highlighter needs, taken from
the language itself (the keywords from `grammar.lark`, the builtins from the
frontend's registry), so the pygments lexer and the VS Code grammar cannot
drift from what the parser and the elaborator accept."""
from __future__ import annotations

from functools import lru_cache

LITERALS = ("true", "false", "none")
# keywords that declare something; the rest steer control flow or join clauses
DECLARATIONS = ("model", "block", "train", "const", "param", "buffer", "import")
OPERATOR_WORDS = ("and", "or", "not")


@lru_cache(maxsize=1)
def keywords() -> tuple[str, ...]:
    """Every reserved word of the grammar (`"model"`, `"for"`, ...), literals included."""
    from ..frontend.fmt_lines import KEYWORDS, LITERAL_WORDS
    return tuple(sorted(KEYWORDS | LITERAL_WORDS))


@lru_cache(maxsize=1)
def dtype_names() -> tuple[str, ...]:
    from ..frontend.builtins import BUILTINS
    return tuple(sorted(n for n, b in BUILTINS.items() if not hasattr(b, "fn")))


@lru_cache(maxsize=1)
def builtin_names() -> tuple[str, ...]:
    """Every builtin function and layer, optimizer, schedule and augmentation a
    spec can call (dtype names excluded: they are types)."""
    from ..frontend import layers  # noqa: F401  (registers the layer builtins)
    from ..frontend.builtins import BUILTINS
    from ..frontend.train import AUGMENTS, OPTIMIZERS, SCHEDULES
    names = {n for n, b in BUILTINS.items() if hasattr(b, "fn")}
    return tuple(sorted(names | set(OPTIMIZERS) | set(SCHEDULES) | set(AUGMENTS)))
