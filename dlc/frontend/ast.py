"""AST of a `.dln` file: plain dataclasses, each with the span it came from."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..errors import Span


@dataclass
class Node:
    span: Span


# expressions ---------------------------------------------------------------
@dataclass
class Name(Node):
    id: str


@dataclass
class Literal(Node):
    value: Any


@dataclass
class TupleLit(Node):
    items: list


@dataclass
class ListLit(Node):
    items: list


@dataclass
class RecordLit(Node):
    """`{name = expr, ...}` (a train section's param group): items are (name, expr, span)."""
    items: list


@dataclass
class BinOp(Node):
    op: str
    left: Any
    right: Any


@dataclass
class Compare(Node):
    op: str
    left: Any
    right: Any


@dataclass
class BoolOp(Node):
    op: str  # "and" / "or"
    left: Any
    right: Any


@dataclass
class Not(Node):
    operand: Any


@dataclass
class Neg(Node):
    operand: Any


@dataclass
class IfExp(Node):
    cond: Any
    then: Any
    other: Any


@dataclass
class Kwarg(Node):
    name: str
    value: Any


@dataclass
class Call(Node):
    func: Any
    args: list
    kwargs: list  # [Kwarg]


@dataclass
class Pipe(Node):
    """`value |> stage`: the stage is called with `value` as first argument."""
    value: Any
    stage: Any


@dataclass
class Slice(Node):
    start: Any
    stop: Any
    step: Any


@dataclass
class Ellipsis_(Node):
    pass


@dataclass
class Index(Node):
    value: Any
    items: list


@dataclass
class Attr(Node):
    value: Any
    name: str


# types ---------------------------------------------------------------------
@dataclass
class TensorTypeExpr(Node):
    dtype: str
    dims: list


@dataclass
class TupleTypeExpr(Node):
    items: list


# statements ----------------------------------------------------------------
@dataclass
class Target(Node):
    """A binding target: a name or a nested tuple of targets."""
    name: str | None = None
    items: list | None = None


@dataclass
class Assign(Node):
    targets: list  # [Target]
    value: Any


@dataclass
class ParamStmt(Node):
    kind: str  # "param" / "buffer"
    name: str
    type: TensorTypeExpr
    init: Any


@dataclass
class For(Node):
    targets: list
    iter: Any
    body: list


@dataclass
class If(Node):
    branches: list  # [(cond, body)]
    orelse: list | None


@dataclass
class Return(Node):
    values: list


@dataclass
class Assert(Node):
    cond: Any
    message: Any


@dataclass
class Example(Node):
    bindings: list  # [(name, expr, span)]


@dataclass
class Step(Node):
    name: str
    body: list


# declarations ---------------------------------------------------------------
@dataclass
class CParam(Node):
    name: str
    type: str | None
    default: Any


@dataclass
class TParam(Node):
    name: str
    type: Any  # TensorTypeExpr | TupleTypeExpr | None


@dataclass
class Import(Node):
    path: str
    alias: str | None


@dataclass
class Const(Node):
    name: str
    value: Any


@dataclass
class ModelDef(Node):
    name: str
    params: list  # [TParam]
    returns: Any
    body: list
    cparams: list = field(default_factory=list)
    is_block: bool = False


@dataclass
class TrainDef(Node):
    model: str
    dataset: str | None
    body: list


@dataclass
class Module(Node):
    file: str
    items: list


def children(e) -> list:
    """The sub-expressions of expression `e`."""
    if isinstance(e, Call):
        return [e.func] + list(e.args) + [k.value for k in e.kwargs]
    if isinstance(e, Pipe):
        return [e.value, e.stage]
    if isinstance(e, (BinOp, Compare, BoolOp)):
        return [e.left, e.right]
    if isinstance(e, (Not, Neg)):
        return [e.operand]
    if isinstance(e, IfExp):
        return [e.cond, e.then, e.other]
    if isinstance(e, (TupleLit, ListLit)):
        return list(e.items)
    if isinstance(e, Index):
        return [e.value] + [x for x in e.items if x is not None]
    if isinstance(e, Attr):
        return [e.value]
    if isinstance(e, Slice):
        return [x for x in (e.start, e.stop, e.step) if x is not None]
    return []
