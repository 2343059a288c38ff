"""Variable names for a body: a hint per value, rebinding a name once its
value is dead (`x = relu(x)`), never hiding a builtin or a keyword."""
from __future__ import annotations

from .text import identifier, is_ident


class NameAllocator:
    """Names values in statement order.  `last_use[value id]` is the index of
    the last statement reading it (a model output reads at infinity)."""

    def __init__(self, reserved: frozenset, last_use: dict, fixed: dict | None = None):
        self.reserved = set(reserved)
        self.last_use = last_use
        self.holder: dict[str, int] = {}     # variable -> value id it holds now
        self.names: dict[int, str] = {}
        # values that must carry a given name (model outputs): nobody else may take it
        self.fixed = dict(fixed or {})
        self.reserved |= set(self.fixed.values())

    def _free(self, name: str, at: int) -> bool:
        if name not in self.holder:
            return True
        held = self.holder[name]
        return held is not None and self.last_use.get(held, -1) <= at

    def bind(self, value_id: int, hint: str, at: int) -> str:
        """A name for the value defined by statement `at`."""
        if value_id in self.fixed:
            name = self.fixed[value_id]
        else:
            base = identifier(hint, "v") if not is_ident(hint) else hint
            name, k = base, 1
            while name in self.reserved or not self._free(name, at):
                name = f"{base}_{k}"
                k += 1
        self.holder[name] = value_id
        self.names[value_id] = name
        return name

    def declare(self, value_id: int, name: str) -> None:
        """A name given outright (inputs, parameters): held for good."""
        self.holder[name] = value_id
        self.names[value_id] = name
        self.reserved.add(name)
