"""Builtins made from the op registry: a plain functional op needs no frontend code.

For every `OpDef` whose `builtin` is None and that no hand-written builtin
(`builtins.py`, `builtins_shape.py`) already covers, `register_op_builtins`
makes `name(operands..., attrs...)`: the op's tensor operands in order (an
optional one defaults to `none`), then its attributes with the registry's
defaults, by position or keyword.  So adding an op is one `defop` (with its
rules or decomposition) and the language has it; the defaults live only in
the `OpDef`.

A number in place of a tensor operand becomes a 0-d constant of another
operand's dtype; a unary math function of a number is folded at compile
time (`exp(1.0)`).  A numeric attribute must be given a number; the op's
shape rule checks the rest.
"""
from __future__ import annotations

import inspect
import math

from ..compiler.ops import OPS, OpDef
from ..compiler.ops.registry import required
from ..errors import DlcValueError
from .values import Builtin, is_tensor

_REQUIRED = required()

# unary math on a plain number, evaluated at compile time
SCALAR_MATH = {"exp": math.exp, "log": math.log, "sqrt": math.sqrt, "sin": math.sin, "cos": math.cos,
               "tanh": math.tanh, "abs": abs, "erf": math.erf, "log1p": math.log1p,
               "rsqrt": lambda v: 1 / math.sqrt(v), "reciprocal": lambda v: 1 / v}


def _signature(op: OpDef) -> inspect.Signature:
    P = inspect.Parameter
    params = [P("F", P.POSITIONAL_ONLY)]
    for o in op.operands:
        params.append(P(o.rstrip("?"), P.POSITIONAL_OR_KEYWORD, **({"default": None} if o.endswith("?") else {})))
    for k, default in op.attrs.items():
        params.append(P(k, P.POSITIONAL_OR_KEYWORD, **({} if default is _REQUIRED else {"default": default})))
    return inspect.Signature(params)


def _fold(F, op: OpDef, x):
    """`op` of a plain number, at compile time."""
    try:
        return SCALAR_MATH[op.name](float(x))
    except (ValueError, OverflowError, ZeroDivisionError):
        F.fail(f"{op.name}({x}) is undefined", cls=DlcValueError)


def op_builtin(op: OpDef) -> Builtin:
    """The `.dln` function of a plain functional op, from its registry entry."""
    sig = _signature(op)
    names = [o.rstrip("?") for o in op.operands]

    def fn(F, *args, **kwargs):
        bound = sig.bind(F, *args, **kwargs)
        bound.apply_defaults()
        values = dict(bound.arguments)
        operands = [values[n] for n in names]
        tensors = [v for v in operands if is_tensor(v)]
        if not tensors:
            x = operands[0] if operands else None
            if len(operands) == 1 and op.name in SCALAR_MATH and isinstance(x, (int, float)) \
                    and not isinstance(x, bool):
                return _fold(F, op, x)
            F.tensor(x)
        like = tensors[0]
        operands = [v if v is None or is_tensor(v) else F.scalar(F.number(v, n), like)
                    for v, n in zip(operands, names)]
        attrs = {}
        for k, default in op.attrs.items():   # a string must not reach a numeric kernel
            v = values[k]
            attrs[k] = F.number(v, k) if isinstance(default, float) else v
        return F.op(op.name, *operands, **attrs)

    fn.__signature__ = sig
    fn.__name__ = op.name
    return Builtin(op.name, fn, "op", op.doc or f"the {op.name} op")


def register_op_builtins(builtins: dict) -> None:
    """Add a builtin for every op that wants one and has no hand-written one."""
    for name, op in OPS.items():
        if op.builtin is None and not op.variadic and name not in builtins:
            builtins[name] = op_builtin(op)


def missing_builtins(builtins: dict) -> list[str]:
    """Ops that have neither a builtin of their own name nor a reason why not."""
    return sorted(n for n, op in OPS.items() if op.builtin is None and n not in builtins)
