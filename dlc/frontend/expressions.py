"""Evaluating expressions: compile-time arithmetic, tensor operators, calls,
chains, indexing and block application."""
from __future__ import annotations

import math
import operator
import re

from ..compiler.dims import Dim, as_dim, dim, floordiv, known_equal
from ..compiler.types import DType
from ..errors import DlcError, DlcLimitError, DlcNameError, DlcTypeError, DlcValueError, Span
from . import ast as A
from .limits import MAX_INT
from .values import (BlockValue, Builtin, ModuleEnv, PartialBlock, describe, is_int, is_tensor)

_TENSOR_BINOPS = {"+": "add", "-": "sub", "*": "mul", "/": "div", "**": "pow", "@": "matmul"}
_TENSOR_CMP = {"==": "eq", "!=": "ne", "<": "lt", "<=": "le", ">": "gt", ">=": "ge"}
_PY_CMP = {"==": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le,
           ">": operator.gt, ">=": operator.ge}


def eval_expr(frame, e):
    if isinstance(e, A.Literal):
        if isinstance(e.value, str):
            return interpolate(frame, e.value, e.span)
        return e.value
    if isinstance(e, A.Name):
        return frame.lookup(e.id, e.span)
    if isinstance(e, A.TupleLit):
        return tuple(frame.eval(x) for x in e.items)
    if isinstance(e, A.ListLit):
        return [frame.eval(x) for x in e.items]
    if isinstance(e, A.BinOp):
        return binop(frame, e.op, frame.eval(e.left), frame.eval(e.right), e.span)
    if isinstance(e, A.Compare):
        return compare(frame, e.op, frame.eval(e.left), frame.eval(e.right), e.span)
    if isinstance(e, A.BoolOp):
        left = frame.eval(e.left)
        if is_tensor(left):
            right = frame.eval(e.right)
            return frame.emit("logical_" + e.op, [left, right], {}, e.span)
        lv = frame.truth(left, e.left.span)
        if e.op == "and":
            return frame.eval(e.right) if lv else left
        return left if lv else frame.eval(e.right)
    if isinstance(e, A.Not):
        v = frame.eval(e.operand)
        if is_tensor(v):
            return frame.emit("logical_not", [v], {}, e.span)
        return not frame.truth(v, e.span)
    if isinstance(e, A.Neg):
        v = frame.eval(e.operand)
        if is_tensor(v):
            return frame.emit("neg", [v], {}, e.span)
        if isinstance(v, bool) or not isinstance(v, (int, float, Dim)):
            raise DlcTypeError(f"cannot negate {describe(v)}", e.span, "only numbers and tensors can be negated")
        return dim(-v) if isinstance(v, Dim) else -v
    if isinstance(e, A.IfExp):
        return frame.eval(e.then) if frame.truth(frame.eval(e.cond), e.cond.span) else frame.eval(e.other)
    if isinstance(e, A.Call):
        return eval_call(frame, e)
    if isinstance(e, A.Pipe):
        return eval_pipe(frame, e)
    if isinstance(e, A.Index):
        from .indexing import index_value
        return index_value(frame, frame.eval(e.value), e)
    if isinstance(e, A.Attr):
        return attribute(frame, frame.eval(e.value), e)
    if isinstance(e, (A.Slice, A.Ellipsis_)):
        raise DlcTypeError("a slice is only allowed inside [ ]", e.span, "write x[a:b]")
    if isinstance(e, A.RecordLit):
        raise DlcTypeError("a { name = value } record is only a train section's param group", e.span,
                           'write e.g. `param_groups = [{match = "fc.*", lr = 1e-2}]` in a train section')
    raise DlcTypeError(f"unsupported expression {type(e).__name__}", e.span, "see docs/language.md")


_BRACES = re.compile(r"\{\{|\}\}|\{([^{}]*)\}")


def interpolate(frame, text: str, span: Span) -> str:
    """Strings interpolate `{expr}` like Python f-strings; `{{` is a brace."""
    if "{" not in text and "}" not in text:
        return text
    from .parser import parse_expr

    def sub(m):
        if m.group(0) == "{{":
            return "{"
        if m.group(0) == "}}":
            return "}"
        v = frame.eval(parse_expr(m.group(1), span))
        if is_tensor(v):
            raise DlcTypeError("only compile-time values can be interpolated into a string", span,
                               "interpolate sizes or names, e.g. \"layer{i}\"")
        return str(v).lower() if isinstance(v, bool) else str(v)

    return _BRACES.sub(sub, text)


# arithmetic -------------------------------------------------------------------
def _num(v) -> bool:
    return not isinstance(v, bool) and isinstance(v, (int, float, Dim))


def binop(frame, op: str, a, b, span: Span):
    if is_tensor(a) or is_tensor(b):
        return tensor_binop(frame, op, a, b, span)
    if op == "+" and ((isinstance(a, (tuple, list)) and type(a) is type(b))
                      or (isinstance(a, str) and isinstance(b, str))):
        from .elaborate import MAX_ITERATIONS
        if len(a) + len(b) > MAX_ITERATIONS:
            raise DlcLimitError(f"{describe(a)} + {describe(b)} is too long", span,
                                f"compile-time sequences are limited to {MAX_ITERATIONS} items")
        frame.ctx.charge(len(a) + len(b), span)
        return a + b
    if not (_num(a) and _num(b)):
        raise DlcTypeError(f"unsupported operands for {op}: {describe(a)} and {describe(b)}", span,
                           "arithmetic works on numbers and tensors; + also joins tuples, lists and strings")
    try:
        if isinstance(a, float) or isinstance(b, float):
            if isinstance(a, Dim) or isinstance(b, Dim):
                raise DlcTypeError(f"cannot mix the symbolic dimension with a float in {op}", span,
                                   "sizes are integers; use // for division")
            return {"+": operator.add, "-": operator.sub, "*": operator.mul, "/": operator.truediv,
                    "//": operator.floordiv, "%": operator.mod, "**": operator.pow}[op](a, b) \
                if op != "@" else _bad_matmul(a, b, span)
        # integers and dimensions: integer arithmetic ("/" floors, as in shape formulas)
        if op in ("+", "-", "*"):
            fn = {"+": operator.add, "-": operator.sub, "*": operator.mul}[op]
            r = dim(fn(as_dim(a), b)) if isinstance(a, Dim) or isinstance(b, Dim) else fn(a, b)
            if isinstance(r, int) and abs(r) > MAX_INT:
                raise DlcLimitError(f"integer overflow: {a} {op} {b}", span,
                                    "integers are limited to 2**62; that size is far too large")
            return r
        if op in ("/", "//"):
            if b == 0:
                raise DlcValueError("division by zero", span, "check the divisor")
            return floordiv(a, b)
        if op == "%":
            if isinstance(a, Dim) or isinstance(b, Dim):
                q = floordiv(a, b)
                return dim(as_dim(a) - as_dim(q) * b)
            if b == 0:
                raise DlcValueError("modulo by zero", span, "check the divisor")
            return a % b
        if op == "**":
            if isinstance(a, Dim) or isinstance(b, Dim) or b < 0:
                raise DlcTypeError("'**' needs known non-negative integer exponents", span,
                                   "use a float base for negative powers, e.g. 2.0 ** -1")
            if b > 64 or (abs(a) > 1 and b * math.log2(abs(a)) > 62):
                raise DlcLimitError(f"{a} ** {b} is too large", span, "results are limited to 2**62")
            return a ** b
        if op == "@":
            return _bad_matmul(a, b, span)
    except ZeroDivisionError:
        raise DlcValueError("division by zero", span, "check the divisor") from None
    except ValueError as err:
        raise DlcTypeError(str(err), span, "symbolic dimensions divide only by known ints") from None
    except OverflowError:
        raise DlcLimitError("arithmetic overflow", span, "that number is far too large") from None
    raise DlcTypeError(f"unknown operator {op}", span, "operators: + - * / // % ** @")


def _bad_matmul(a, b, span):
    raise DlcTypeError(f"'@' multiplies tensors, got {describe(a)} and {describe(b)}", span,
                       "use * for numbers")


def tensor_binop(frame, op: str, a, b, span: Span):
    if op in ("//", "%"):
        raise DlcTypeError(f"'{op}' is not defined on tensors", span, "use floor(a / b)")
    like = a if is_tensor(a) else b
    a = _as_tensor(frame, a, like, span)
    b = _as_tensor(frame, b, like, span)
    return frame.emit(_TENSOR_BINOPS[op], [a, b], {}, span)


def _as_tensor(frame, v, like, span):
    if is_tensor(v):
        return v
    if isinstance(v, Dim):
        raise DlcTypeError(f"cannot use the symbolic dimension {v} as a tensor value", span,
                           "bind it with --bind, or build a tensor with full((), ...)")
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise DlcTypeError(f"cannot combine a tensor with {describe(v)}", span,
                           "tensors combine with tensors and numbers")
    if like.type.dtype.name == "bool":
        # bool tensors combine with numbers as 0/1, as in PyTorch: (x > 0) * 1.0 is float
        from ..compiler.types import DType
        return frame.emit("full", [], {"shape": (), "value": v,
                                       "dtype": "float32" if isinstance(v, float) else "int64"}, span)
    if like.type.dtype.is_int and isinstance(v, float):
        raise DlcTypeError(f"cannot combine the integer tensor {like.type} with the float {v:g}", span,
                           "cast the tensor first, e.g. cast(x, f32)")
    return frame.const(v, like, span)


def compare(frame, op: str, a, b, span: Span):
    if is_tensor(a) or is_tensor(b):
        like = a if is_tensor(a) else b
        return frame.emit(_TENSOR_CMP[op], [_as_tensor(frame, a, like, span), _as_tensor(frame, b, like, span)],
                          {}, span)
    if isinstance(a, Dim) or isinstance(b, Dim):
        if op in ("==", "!="):
            eq = known_equal(a, b) if is_int(a) and is_int(b) else False
            if eq is None:
                raise DlcTypeError(f"cannot decide {a} {op} {b} at compile time: it depends on the "
                                   "symbolic dimensions", span, "bind the dimension with --bind")
            return eq if op == "==" else not eq
        raise DlcTypeError(f"cannot order the symbolic {a if isinstance(a, Dim) else b} at compile time",
                           span, "bind the dimension with --bind")
    try:
        return _PY_CMP[op](a, b)
    except TypeError:
        raise DlcTypeError(f"cannot compare {describe(a)} with {describe(b)}", span,
                           "compare numbers with numbers and strings with strings") from None


def attribute(frame, v, e: A.Attr):
    if isinstance(v, ModuleEnv):
        from .modules import module_lookup
        found, value = module_lookup(v, e.name, frame.ctx)
        if not found:
            raise DlcNameError(f"{v.file} defines no '{e.name}'", e.span,
                               "defined there: " + (", ".join(list(v.defs) + list(v.consts)) or "nothing"))
        return value
    if is_tensor(v):
        if e.name == "shape":
            return tuple(v.type.shape)
        if e.name == "dtype":
            return v.type.dtype
        if e.name in ("rank", "ndim"):
            return v.type.rank
        if e.name == "T":
            if v.type.rank < 2:
                raise DlcTypeError(f".T needs a tensor of rank >= 2, got {v.type}", e.span,
                                   "use reshape or unsqueeze to add an axis")
            axes = list(range(v.type.rank))
            axes[-1], axes[-2] = axes[-2], axes[-1]
            return frame.emit("transpose", [v], {"axes": tuple(axes)}, e.span)
        raise DlcNameError(f"a tensor has no attribute '{e.name}'", e.span,
                           "tensor attributes: shape, dtype, rank, T")
    raise DlcNameError(f"{describe(v)} has no attribute '{e.name}'", e.span,
                       "attributes exist on tensors (shape, dtype, rank, T) and imported modules")


# calls ----------------------------------------------------------------------------
def eval_call(frame, e: A.Call):
    f = frame.eval(e.func)
    args = [frame.eval(a) for a in e.args]
    kwargs = {}
    for kw in e.kwargs:
        if kw.name in kwargs:
            raise DlcTypeError(f"keyword argument '{kw.name}' given twice", kw.span, "remove one of them")
        kwargs[kw.name] = frame.eval(kw.value)
    return call_value(frame, f, args, kwargs, e.span)


def eval_pipe(frame, e: A.Pipe):
    x = frame.eval(e.value)
    st = e.stage
    if isinstance(st, A.Call):
        # `x |> f(a)` is f(x, a); `x |> Block(c)(name="b")` applies the block to x
        f = frame.eval(st.func)
        if isinstance(f, (Builtin, PartialBlock)) or (isinstance(f, BlockValue) and not f.has_cparams):
            args = [x] + [frame.eval(a) for a in st.args]
            kwargs = {kw.name: frame.eval(kw.value) for kw in st.kwargs}
            return call_value(frame, f, args, kwargs, st.span)
    f = frame.eval(st)
    return call_value(frame, f, [x], {}, st.span)


def call_value(frame, f, args: list, kwargs: dict, span: Span):
    if isinstance(f, Builtin):
        from .builtins import call_builtin
        return call_builtin(frame, f, args, kwargs, span)
    if isinstance(f, BlockValue):
        if f.has_cparams:
            from .blocks import bind_cparams
            return bind_cparams(frame, f, args, kwargs, span)
        from .blocks import apply_block
        return apply_block(frame, PartialBlock(f, {}), args, kwargs, span)
    if isinstance(f, PartialBlock):
        from .blocks import apply_block
        return apply_block(frame, f, args, kwargs, span)
    if isinstance(f, DType):
        if len(args) != 1 or kwargs:
            raise DlcTypeError(f"{f}(x) converts one tensor", span, f"write {f}(x) or cast(x, {f})")
        from .builtins import call_builtin, BUILTINS
        return call_builtin(frame, BUILTINS["cast"], [args[0], f], {}, span)
    raise DlcTypeError(f"{describe(f)} is not callable", span,
                       "only functions, layers, blocks and dtypes can be called")
