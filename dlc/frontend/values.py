"""Compile-time values the elaborator manipulates besides tensors.

Tensors are IR `Value`s; ints, floats, bools, strings, tuples and lists are
plain Python values; symbolic dimensions are `Dim`s.  This module adds the
callables: blocks and models, partially applied blocks, builtins and imported
modules.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from ..compiler.ir import Value
from . import ast as A


@dataclass
class ModuleEnv:
    """A parsed `.dln` file: its definitions and constants."""

    file: str
    ast: A.Module
    defs: dict[str, Any] = field(default_factory=dict)
    models: list[str] = field(default_factory=list)
    trains: list[A.TrainDef] = field(default_factory=list)
    consts: dict[str, A.Const] = field(default_factory=dict)


@dataclass
class BlockValue:
    """A `block` or `model` definition, closed over its module."""

    defn: A.ModelDef
    module: ModuleEnv

    @property
    def name(self) -> str:
        return self.defn.name

    @property
    def has_cparams(self) -> bool:
        return self.defn.is_block


@dataclass
class PartialBlock:
    """A block with its compile-time arguments bound: `Basic(64, stride=2)`."""

    block: BlockValue
    cargs: dict[str, Any]
    defaulted: frozenset = frozenset()    # the cargs that took their declared default

    @property
    def name(self) -> str:
        return self.block.name


@dataclass
class Builtin:
    """A function of the language.  `kind` is "layer" (owns parameters),
    "op" (a tensor function) or "ct" (a compile-time helper)."""

    name: str
    fn: Callable
    kind: str = "op"
    doc: str = ""
    # a layer's functional form with explicit weights (`conv2d(x, W, b)` beside
    # `conv2d(x, channels, kernel)`); `call_builtin` picks it by the arguments
    functional: "Builtin | None" = None


@dataclass
class InitValue:
    """An initialiser named in a `param` declaration (`xavier`, `normal(std=0.02)`)."""

    kind: str
    args: dict


def is_tensor(v) -> bool:
    return isinstance(v, Value)


def is_int(v) -> bool:
    from ..compiler.dims import Dim
    return (isinstance(v, int) and not isinstance(v, bool)) or isinstance(v, Dim)


class SelfName:
    """`name=self`: a layer or block application takes the enclosing instance's
    own name, so its parameters sit at the block's name (`features.0.1.weight`,
    as a PyTorch module subclassing nn.LayerNorm names them)."""

    def __repr__(self) -> str:
        return "self"


SELF = SelfName()


def describe(v) -> str:
    """How a value is named in error messages."""
    from ..compiler.dims import Dim
    if isinstance(v, Value):
        return f"a tensor {v.type}"
    if isinstance(v, bool):
        return f"the bool {str(v).lower()}"
    if isinstance(v, (int, Dim)):
        return f"the int {v}"
    if isinstance(v, float):
        return f"the float {v:g}"
    if isinstance(v, str):
        return f"the string {v!r}"
    if isinstance(v, tuple):
        return f"a tuple of {len(v)}"
    if isinstance(v, list):
        return f"a list of {len(v)}"
    if v is None:
        return "none"
    if isinstance(v, (BlockValue, PartialBlock)):
        return f"the block {v.name}"
    if isinstance(v, Builtin):
        return f"the function {v.name}"
    if isinstance(v, ModuleEnv):
        return f"the module {v.file}"
    if v is SELF:
        return "self"
    return type(v).__name__


def flatten(tree) -> list:
    """Leaves of a nest of tuples/lists, in order."""
    if isinstance(tree, (tuple, list)):
        out = []
        for t in tree:
            out.extend(flatten(t))
        return out
    return [tree]


def unflatten(structure, leaves: list):
    """Rebuild `structure`'s nesting from `leaves` (consumed in order)."""
    it = iter(leaves)

    def build(s):
        if isinstance(s, (tuple, list)):
            return tuple(build(x) for x in s)
        return next(it)

    return build(structure)
