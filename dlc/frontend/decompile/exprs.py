"""Expressions of a decompiled statement, rendered once every value has a name.

An operand is either an IR `Value` (rendered as its variable, or inline as a
literal when it is a scalar constant) or a ready string (a literal, a size).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Union

from ...compiler.ir import Value

Operand = Union[Value, str, "Expr"]


class Expr:
    def render(self, name: Callable[[Value], str]) -> str:
        raise NotImplementedError

    def values(self) -> list[Value]:
        raise NotImplementedError


def _r(o, name) -> str:
    if isinstance(o, Value):
        return name(o)
    if isinstance(o, Expr):
        return o.render(name)
    return o


def _vals(o) -> list[Value]:
    if isinstance(o, Value):
        return [o]
    if isinstance(o, Expr):
        return o.values()
    return []


@dataclass
class Call(Expr):
    """`fn(args..., key=value...)`; `layer` names the instance a layer call makes."""

    fn: str
    args: list = field(default_factory=list)
    kwargs: list = field(default_factory=list)

    def render(self, name, skip_first: bool = False) -> str:
        args = self.args[1:] if skip_first else self.args
        parts = [_r(a, name) for a in args] + [f"{k}={_r(v, name)}" for k, v in self.kwargs]
        if skip_first and not parts:
            return self.fn
        return f"{self.fn}({', '.join(parts)})"

    def values(self):
        return [v for a in self.args for v in _vals(a)] + [v for _, a in self.kwargs for v in _vals(a)]


@dataclass
class Infix(Expr):
    op: str
    a: Operand
    b: Operand

    def render(self, name) -> str:
        return f"{_paren(_r(self.a, name))} {self.op} {_paren(_r(self.b, name))}"

    def values(self):
        return _vals(self.a) + _vals(self.b)


@dataclass
class Prefix(Expr):
    op: str
    a: Operand

    def render(self, name) -> str:
        sep = " " if self.op.isalpha() else ""
        return f"{self.op}{sep}{_paren(_r(self.a, name))}"

    def values(self):
        return _vals(self.a)


@dataclass
class Index(Expr):
    x: Operand
    items: list

    def render(self, name) -> str:
        return f"{_r(self.x, name)}[{', '.join(self.items)}]"

    def values(self):
        return _vals(self.x)


@dataclass
class TupleOf(Expr):
    items: list

    def render(self, name) -> str:
        inner = ", ".join(_r(i, name) for i in self.items)
        return f"({inner},)" if len(self.items) == 1 else f"({inner})"

    def values(self):
        return [v for i in self.items for v in _vals(i)]


def _paren(s: str) -> str:
    """Operands are names, literals or calls; a negative literal is wrapped."""
    return f"({s})" if s.startswith("-") else s
