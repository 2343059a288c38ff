"""The functions of the language that are not layers: tensor functions and
compile-time helpers.  Each maps onto primitive IR ops.

A plain functional op needs nothing here: its builtin is made from its
registry entry (`builtins_ops.py`).  The functions below add what the
registry cannot say: compile-time evaluation, numbers for tensors, axis
checks, aliases.

Builtins are registered with `@builtin`; `call_builtin` checks arity with the
Python signature so that a wrong call reads like a compiler error.
"""
from __future__ import annotations

import inspect
import math

from ..compiler.dims import Dim, dim, floordiv, prod
from ..compiler.types import DType
from ..errors import DlcError, DlcLimitError, DlcTypeError, DlcValueError, Span
from .callctx import CallCtx
from .limits import CALL_STEPS
from .values import Builtin, describe, is_int, is_tensor

BUILTINS: dict[str, Builtin] = {}


def builtin(name: str | None = None, kind: str = "op", aliases: tuple = ()):
    def deco(fn):
        b = Builtin(name or fn.__name__.rstrip("_"), fn, kind, (fn.__doc__ or "").strip())
        for n in (b.name,) + tuple(aliases):
            BUILTINS[n] = b
        return fn
    return deco


def _sig_text(b: Builtin) -> str:
    sig = inspect.signature(b.fn)
    parts = []
    for p in list(sig.parameters.values())[1:]:
        if p.kind == p.VAR_POSITIONAL:
            parts.append(f"*{p.name}")
        elif p.default is inspect.Parameter.empty:
            parts.append(p.name)
        else:
            dv = p.default
            dv = str(dv).lower() if isinstance(dv, bool) or dv is None else repr(dv) if isinstance(dv, str) else dv
            parts.append(f"{p.name}={dv}")
    return f"{b.name}({', '.join(parts)})"


def functional_form(layer: str):
    """Register the decorated function as the functional form of the layer
    builtin `layer` (and of its aliases): called with explicit weights."""
    def deco(fn):
        BUILTINS[layer].functional = Builtin(layer, fn, "op", (fn.__doc__ or "").strip())
        return fn
    return deco


def _is_functional_call(b: Builtin, args: list, kwargs: dict) -> bool:
    """A layer call is its functional form when it passes a tensor beyond the
    input (weights), a shape as its second argument (`layer_norm(x, (8,))`),
    or a keyword only the functional form has (`running_mean=`)."""
    if len(args) > 1 and isinstance(args[1], (list, tuple)):
        return True
    if any(is_tensor(a) for a in args[1:]) or any(is_tensor(v) for v in kwargs.values()):
        return True
    layer_params = inspect.signature(b.fn).parameters
    return any(k not in layer_params and k in inspect.signature(b.functional.fn).parameters for k in kwargs)


def signatures(b: Builtin) -> str:
    """`signature: ...` of a builtin, naming its functional form too."""
    if b.functional is not None:    # the caller may have meant either form
        return f"signature: {_sig_text(b)}, or with explicit weights {_sig_text(b.functional)}"
    return f"signature: {_sig_text(b)}"


def call_builtin(frame, b: Builtin, args: list, kwargs: dict, span: Span):
    from ..compiler.ir import Layer
    if b.functional is not None and _is_functional_call(b, args, kwargs):
        b = b.functional
    name = share = None
    if b.kind == "layer":
        explicit, share = kwargs.pop("name", None), kwargs.pop("share", None)
        if share is not None:
            from .sharing import shared_instance
            name = shared_instance(frame, share, explicit, span)
        else:
            name = frame.instance_name(b.name, explicit, span)
    elif ("name" in kwargs or "share" in kwargs) and b.kind != "ct":
        raise DlcTypeError(f"{b.name} is not a layer and takes no {'name' if 'name' in kwargs else 'share'}",
                           span, "only layers (functions with parameters) take name=\"...\" and share=\"...\"")
    F = CallCtx(frame, span, b.name, name)
    try:
        inspect.signature(b.fn).bind(F, *args, **kwargs)
    except TypeError as e:
        msg = str(e).replace("missing a required argument:", "needs the argument").replace(
            "got an unexpected keyword argument", "has no argument")
        raise DlcTypeError(f"{b.name}: {msg}", span, signatures(BUILTINS.get(b.name, b))) from None
    # a call costs about ten plain statements, and builtins that walk a sequence
    # (sum, zip, concat of many tensors) do work in proportion to it
    frame.ctx.charge(CALL_STEPS + sum(len(a) for a in (*args, *kwargs.values()) if isinstance(a, (list, tuple))),
                     span)
    if share is not None:
        from .sharing import sharing
        with sharing(frame, name, share, span):
            return b.fn(F, *args, **kwargs)    # the same layer again: no new layer record
    out = b.fn(F, *args, **kwargs)
    if b.kind == "layer" and not frame.ctx.sharing:   # inside a shared application: recorded once
        outs = [v for v in _leaves(out) if is_tensor(v)]
        frame.ctx.layers.append(Layer(name, b.name, span, list(F.param_names), outs))
    return out


def _leaves(v):
    if isinstance(v, (tuple, list)):
        for x in v:
            yield from _leaves(x)
    else:
        yield v


def _dtype(F: CallCtx, v) -> DType:
    if isinstance(v, DType):
        return v
    if isinstance(v, str):
        try:
            return DType.parse(v)
        except KeyError:
            pass
    F.fail(f"{F.fname}: unknown dtype {describe(v)}", "dtypes: f16, bf16, f32, f64, i8, i32, i64, bool")


for _d in DType:
    BUILTINS[_d.short] = _d  # dtype names are values: cast(x, f16), zeros(3, dtype=i64)


def _self_value():
    from .values import SELF
    return SELF


BUILTINS["self"] = _self_value()  # name=self: parameters at the block's own name


# ---------------------------------------------------------------- compile time
@builtin(kind="ct")
def range_(F, a, b=None, step=1):
    """range(n) / range(a, b, step) at compile time."""
    lo, hi = (0, a) if b is None else (a, b)
    for v, w in ((lo, "start"), (hi, "stop"), (step, "step")):
        F.int(v, w, minimum=None)
    if step == 0:
        F.fail("range: step must not be zero", cls=DlcValueError)
    r = range(int(lo), int(hi), int(step))
    from .elaborate import MAX_ITERATIONS
    n = (r.stop - r.start + r.step - (1 if r.step > 0 else -1)) // r.step  # len() overflows past 2**63
    if n > MAX_ITERATIONS:
        F.fail(f"range of {n} elements is too long for a compile-time loop",
               f"compile-time ranges are limited to {MAX_ITERATIONS} elements", cls=DlcLimitError)
    return list(r)


@builtin(kind="ct")
def len_(F, v):
    if is_tensor(v):
        return v.type.shape[0] if v.type.rank else F.fail("len of a 0-d tensor")
    if not isinstance(v, (tuple, list, str)):
        F.fail(f"len of {describe(v)}")
    return len(v)


@builtin(kind="ct")
def enumerate_(F, v, start=0):
    if not isinstance(v, (list, tuple)):
        F.fail(f"enumerate needs a list or tuple, got {describe(v)}")
    start = F.int(start, "start", minimum=None)
    return [(i + start, x) for i, x in enumerate(v)]


@builtin(kind="ct")
def zip_(F, *vs):
    for v in vs:
        if not isinstance(v, (list, tuple)):
            F.fail(f"zip needs lists or tuples, got {describe(v)}")
    return [tuple(t) for t in zip(*vs)]


def _bounded(F, n: int) -> int:
    """An int made from a float (int(1e300) has 301 digits) stays within the
    integer limit that literals and arithmetic keep."""
    from .limits import MAX_INT
    if abs(n) > MAX_INT:
        F.fail(f"{F.fname}: the result has {len(str(abs(n)))} digits", "integers are limited to 2**62",
               cls=DlcLimitError)
    return n


@builtin(kind="ct")
def int_(F, v):
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return _bounded(F, int(F.finite(v, "value")))
    if isinstance(v, Dim):
        return v
    F.fail(f"int() of {describe(v)}")


@builtin(kind="ct")
def float_(F, v):
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return float(v)
    F.fail(f"float() of {describe(v)}")


@builtin(kind="ct")
def str_(F, v):
    return str(v).lower() if isinstance(v, bool) else str(v)


@builtin(kind="ct")
def round_(F, v, ndigits=None):
    if ndigits is not None:
        return round(F.number(v, "value"), F.int(ndigits, "ndigits", minimum=None))
    return _bounded(F, int(round(F.finite(v, "value"))))


@builtin(kind="ct")
def make_divisible(F, v, divisor=8, min_value=None):
    """Round channels to a multiple of `divisor` (MobileNet / EfficientNet rule)."""
    v = F.finite(v, "value")
    d = F.int(divisor, "divisor")
    m = d if min_value is None else F.int(min_value, "min_value")
    new = max(m, int(v + d / 2) // d * d)
    if new < 0.9 * v:
        new += d
    return new


@builtin(kind="ct")
def ceil_(F, v):
    if is_tensor(v):
        return F.op("ceil", v)
    return _bounded(F, int(math.ceil(F.finite(v, "value"))))


@builtin(kind="ct")
def floor_(F, v):
    if is_tensor(v):
        return F.op("floor", v)
    return _bounded(F, int(math.floor(F.finite(v, "value"))))


@builtin(kind="ct")
def list_(F, v=()):
    if not isinstance(v, (list, tuple)):
        F.fail(f"list() of {describe(v)}")
    return list(v)


@builtin(kind="ct")
def tuple_(F, v=()):
    if not isinstance(v, (list, tuple)):
        F.fail(f"tuple() of {describe(v)}")
    return tuple(v)


@builtin(kind="ct")
def shape(F, x):
    """The shape of a tensor as a tuple of (possibly symbolic) ints."""
    return tuple(F.tensor(x).type.shape)


# ------------------------------------------------------ unary math, activations
# come from the op registry (builtins_ops.py); `swish` is silu's other name


@builtin()
def softmax(F, x, axis=-1):
    return F.op("softmax", F.float_tensor(x), axis=F.axis(axis, x))


@builtin()
def log_softmax(F, x, axis=-1):
    return F.op("log_softmax", F.float_tensor(x), axis=F.axis(axis, x))


@builtin()
def cast(F, x, dtype):
    return F.op("cast", F.tensor(x), dtype=_dtype(F, dtype).numpy_name)


@builtin()
def where(F, cond, a, b):
    cond = F.tensor(cond, "condition")
    like = a if is_tensor(a) else b if is_tensor(b) else None
    if like is None:
        F.fail("where: a or b must be a tensor")
    a = a if is_tensor(a) else F.scalar(F.number(a, "a"), like)
    b = b if is_tensor(b) else F.scalar(F.number(b, "b"), like)
    return F.op("where", cond, a, b)


def _binary_fn(opname):
    def fn(F, a, b):
        like = a if is_tensor(a) else b if is_tensor(b) else None
        if like is None:
            if opname in ("maximum", "minimum"):
                return _compile_time_extreme(F, opname, a, b)
            F.fail(f"{opname} needs a tensor operand")
        a = a if is_tensor(a) else F.scalar(F.number(a, "a"), like)
        b = b if is_tensor(b) else F.scalar(F.number(b, "b"), like)
        return F.op(opname, a, b)
    return fn


def _compile_time_reduce(F, opname: str, vals: list):
    """max, min or sum of compile-time numbers (sizes may be symbolic)."""
    for v in vals:
        if isinstance(v, bool) or not isinstance(v, (int, float, Dim)):
            F.fail(f"{opname}: expected numbers, got {describe(v)}")
    if opname != "sum":
        out = vals[0]
        for v in vals[1:]:
            out = _compile_time_extreme(F, opname, out, v)
        return out
    if any(isinstance(v, Dim) for v in vals):
        if any(isinstance(v, float) for v in vals):
            F.fail("sum: cannot add a symbolic dimension and a float", "sizes are integers")
        return dim(sum((Dim.of(v) for v in vals), Dim.of(0)))
    return sum(vals)


def _compile_time_extreme(F, opname: str, a, b):
    """maximum/minimum (or max/min) of two compile-time numbers; a symbolic
    dimension is compared only where the difference is known (`maximum(N + 1, N)`)."""
    bigger = opname in ("maximum", "max")
    for v, what in ((a, "a"), (b, "b")):
        if isinstance(v, bool) or not isinstance(v, (int, float, Dim)):
            F.fail(f"{opname}: {what} must be a number or a tensor, got {describe(v)}")
    if isinstance(a, Dim) or isinstance(b, Dim):
        if isinstance(a, float) or isinstance(b, float):
            F.fail(f"{opname}: cannot compare a symbolic dimension with a float", "sizes are integers")
        diff = dim(Dim.of(a) - b)
        if isinstance(diff, Dim):
            F.fail(f"{opname}({a}, {b}) depends on the symbolic size {', '.join(sorted(diff.symbols()))}, "
                   "which is not known at compile time",
                   "dlc check keeps input sizes symbolic, so this comparison cannot be decided; "
                   "write the size explicitly, or compare sizes whose difference is known")
        first = diff >= 0 if bigger else diff <= 0
        return a if first else b
    return (max if bigger else min)(a, b)


for _n in ("maximum", "minimum", "pow", "add", "sub", "mul", "div"):
    BUILTINS[_n] = Builtin(_n, _binary_fn(_n), "op")


@builtin(aliases=("bmm",))
def matmul(F, a, b):
    return F.op("matmul", F.tensor(a, "a"), F.tensor(b, "b"))


@builtin()
def linear(F, x, weight, bias=None):
    """Functional linear with explicit weights: x @ weight.T + bias."""
    return F.op("linear", F.tensor(x), F.tensor(weight, "weight"), bias)


# ------------------------------------------------------------------ reductions
def _reduction(opname):
    def fn(F, x, *rest, axis=None, keepdims=False):
        if not is_tensor(x):
            if opname in ("max", "min", "sum"):
                vals = list(x) if isinstance(x, (list, tuple)) and not rest else [x, *rest]
                if not vals or any(is_tensor(v) for v in vals):
                    F.fail(f"{opname} of tensors: use maximum/minimum for elementwise")
                return _compile_time_reduce(F, opname, vals)
            F.tensor(x)
        if rest:
            if len(rest) == 1 and axis is None:
                axis = rest[0]
            else:
                F.fail(f"{opname}(x, axis=..., keepdims=...) takes one tensor",
                       "for the elementwise maximum of two tensors use maximum(a, b)")
        if axis is not None:
            axis = tuple(F.axis(a, x) for a in axis) if isinstance(axis, (tuple, list)) else F.axis(axis, x)
        return F.op(opname, x, axis=axis, keepdims=F.boolean(keepdims, "keepdims"))
    fn.__doc__ = f"{opname} over `axis` (all axes when none)"
    return fn


for _n in ("sum", "mean", "max", "min", "prod", "logsumexp", "argmax", "argmin"):
    BUILTINS[_n] = Builtin(_n, _reduction(_n), "op")


@builtin()
def var(F, x, axis=None, keepdims=False, correction=1):
    if axis is not None:
        axis = tuple(F.axis(a, x) for a in axis) if isinstance(axis, (tuple, list)) else F.axis(axis, x)
    return F.op("var", F.tensor(x), axis=axis, keepdims=keepdims, correction=correction)


@builtin()
def std(F, x, axis=None, keepdims=False, correction=1):
    if axis is not None:
        axis = tuple(F.axis(a, x) for a in axis) if isinstance(axis, (tuple, list)) else F.axis(axis, x)
    return F.op("std", F.tensor(x), axis=axis, keepdims=keepdims, correction=correction)


from . import builtins_shape  # noqa: E402,F401  (registers shape, pooling, loss and random builtins)
from .builtins_ops import register_op_builtins  # noqa: E402

register_op_builtins(BUILTINS)   # every op without a hand-written builtin, from its OpDef
BUILTINS["swish"] = BUILTINS["silu"]
BUILTINS["upsample"] = BUILTINS["interpolate"]   # nn.Upsample's arguments are interpolate's
