"""Per-op lowering of the dlc IR to TVM Relax.

`LOWERING[op](low, node, args, env)` emits Relax for one node and returns its
result(s) as Relax expressions.  `low` is the `Lowerer` (block builder,
dimension variables), `args` the operands' Relax expressions (None for an
absent optional operand) and `env` the value map (scan bodies use it).

Conventions:
* results keep dlc's layouts (NCHW, OIHW); the pipeline converts layouts;
* the result dtype is always the one dlc's shape rule inferred
  (`node.outputs[i].type`), so operands are cast to it where dlc promotes;
* bfloat16 values are stored as float32 and rounded at casts, as in the
  NumPy reference;
* ops missing from `LOWERING` are listed in `UNSUPPORTED` with the reason.

Semantics follow the NumPy reference kernels (backends/numpy/kernels).  What
the two share lives with the ops in the compiler (`compiler.ops.conv`'s
`conv_pads` and `ntuple`, `compiler.ops.shape.sinusoidal_table`) or in the
runtime (`runtime.random`'s streams), so the backends cannot drift apart and
never import one another.
"""
from __future__ import annotations

import math

import numpy as np

from ...compiler.dims import Dim
from .relaxgen import NeedsConcrete, Unsupported, storage_dtype

LOWERING: dict = {}

# ops with no TVM lowering, and why (a test crosses every op with every backend)
UNSUPPORTED: dict[str, str] = {}


def lowers(*names):
    def deco(fn):
        for n in names:
            LOWERING[n] = fn
        return fn
    return deco


def _R():
    from tvm import relax
    return relax


def _op():
    from tvm import relax
    return relax.op


def out_dtype(node, i=0) -> str:
    return storage_dtype(node.outputs[i].type)


def in_dtype(node, i) -> str:
    return storage_dtype(node.inputs[i].type)


def ndim(node, i=0, out=False) -> int:
    v = node.outputs[i] if out else node.inputs[i]
    return len(v.type.shape)


def cast(low, x, have: str, want: str):
    if have == want:
        return x
    return low.emit(_op().astype(x, want))


def arg_as(low, node, args, i, dtype):
    return cast(low, args[i], in_dtype(node, i), dtype)


def scalar(low, value, dtype):
    return low.const(value, dtype)


def norm_axis(axis, rank):
    axis = int(axis)
    return axis + rank if axis < 0 else axis


def out_shape(low, node, i=0):
    return low.shape(node.outputs[i].type.shape)


# ---------------------------------------------------------------------------
# elementwise
# ---------------------------------------------------------------------------

_UNARY = {"exp": "exp", "log": "log", "sqrt": "sqrt", "rsqrt": "rsqrt", "sin": "sin", "cos": "cos",
          "erf": "erf", "floor": "floor", "ceil": "ceil",
          "neg": "negative", "abs": "abs", "square": "square", "sign": "sign"}


def _unary(name):
    def fn(low, node, args, env):
        dt = out_dtype(node)
        x = arg_as(low, node, args, 0, dt)
        return low.emit(getattr(_op(), _UNARY[name])(x))
    return fn


for _n in _UNARY:
    LOWERING[_n] = _unary(_n)


@lowers("tanh")
def _tanh(low, node, args, env):
    dt = out_dtype(node)
    x = arg_as(low, node, args, 0, dt)
    if dt != "float32":
        return low.emit(_op().tanh(x))
    # topi's fast_tanh: Eigen's rational approximation, which vectorises
    # (libm's tanhf is a scalar call per element)
    from tvm import topi
    return low.bb.emit_te(topi.fast_tanh, x, primfunc_name_hint="tanh")


@lowers("sigmoid")
def _sigmoid(low, node, args, env):
    dt = out_dtype(node)
    x = arg_as(low, node, args, 0, dt)
    return fast_sigmoid(low, x) if dt == "float32" else low.emit(_op().sigmoid(x))


@lowers("log1p")
def _log1p(low, node, args, env):
    from tvm import te, tirx
    dt = out_dtype(node)
    x = arg_as(low, node, args, 0, dt)
    return low.bb.emit_te(lambda a: te.compute(a.shape, lambda *i: tirx.log1p(a(*i)), name="log1p"), x)


@lowers("reciprocal")
def _reciprocal(low, node, args, env):
    dt = out_dtype(node)
    return low.emit(_op().divide(scalar(low, 1, dt), arg_as(low, node, args, 0, dt)))


@lowers("logical_not")
def _logical_not(low, node, args, env):
    x = cast(low, args[0], in_dtype(node, 0), "bool")
    return low.emit(_op().logical_not(x))


@lowers("relu")
def _relu(low, node, args, env):
    return low.emit(_op().nn.relu(arg_as(low, node, args, 0, out_dtype(node))))


def _clip(low, x, lo, hi, dt):
    op = _op()
    return low.emit(op.minimum(op.maximum(x, scalar(low, lo, dt)), scalar(low, hi, dt)))


@lowers("relu6")
def _relu6(low, node, args, env):
    dt = out_dtype(node)
    return _clip(low, arg_as(low, node, args, 0, dt), 0.0, 6.0, dt)


@lowers("hardtanh")
def _hardtanh(low, node, args, env):
    dt = out_dtype(node)
    return _clip(low, arg_as(low, node, args, 0, dt), node.attrs["min_val"], node.attrs["max_val"], dt)


@lowers("leaky_relu")
def _leaky_relu(low, node, args, env):
    return low.emit(_op().nn.leakyrelu(arg_as(low, node, args, 0, out_dtype(node)),
                                       float(node.attrs["negative_slope"])))


@lowers("elu")
def _elu(low, node, args, env):
    op, dt = _op(), out_dtype(node)
    x = arg_as(low, node, args, 0, dt)
    neg = op.multiply(scalar(low, node.attrs["alpha"], dt),
                      op.subtract(op.exp(op.minimum(x, scalar(low, 0, dt))), scalar(low, 1, dt)))
    return low.emit(op.where(op.greater(x, scalar(low, 0, dt)), x, neg))


@lowers("selu")
def _selu(low, node, args, env):
    op, dt = _op(), out_dtype(node)
    alpha, lam = 1.6732632423543772848170429916717, 1.0507009873554804934193349852946
    x = arg_as(low, node, args, 0, dt)
    neg = op.multiply(scalar(low, alpha, dt),
                      op.subtract(op.exp(op.minimum(x, scalar(low, 0, dt))), scalar(low, 1, dt)))
    return low.emit(op.multiply(scalar(low, lam, dt), op.where(op.greater(x, scalar(low, 0, dt)), x, neg)))


# Eigen's rational approximation of erf for float32 (what TVM's fast_erf
# uses): a few ulp from the exact value on [-4, 4], +-1 outside
_ERF_ALPHA = (-2.72614225801306e-10, 2.77068142495902e-08, -2.10102402082508e-06,
              -5.69250639462346e-05, -7.34990630326855e-04, -2.95459980854025e-03,
              -1.60960333262415e-02)
_ERF_BETA = (-1.45660718464996e-05, -2.13374055278905e-04, -1.68282697438203e-03,
             -7.37332916720468e-03, -1.42647390514189e-02)


def erf_f32(x):
    """erf(x) as a TIR expression (float32), vectorisable."""
    from tvm import tirx
    x = tirx.max(tirx.min(x, tirx.const(4.0, "float32")), tirx.const(-4.0, "float32"))
    x2 = x * x
    p = tirx.const(_ERF_ALPHA[0], "float32")
    for a in _ERF_ALPHA[1:]:
        p = p * x2 + tirx.const(a, "float32")
    p = p * x
    q = tirx.const(_ERF_BETA[0], "float32")
    for b in _ERF_BETA[1:]:
        q = q * x2 + tirx.const(b, "float32")
    return p / q


@lowers("gelu")
def _gelu(low, node, args, env):
    x = arg_as(low, node, args, 0, out_dtype(node))
    if node.attrs["approximate"] == "tanh":
        return low.emit(_op().nn.gelu_tanh(x))
    if out_dtype(node) != "float32":
        return low.emit(_op().nn.gelu(x))
    from tvm import te
    # one elementwise block with a polynomial erf: it inlines into the
    # epilogue of the matmul before it and vectorises (libm's erff is a
    # scalar call per element, and relax's gelu is four blocks the epilogue
    # inliner cannot merge)
    return low.bb.emit_te(lambda t: te.compute(
        t.shape, lambda *i: t(*i) * (0.5 + 0.5 * erf_f32(t(*i) * 0.7071067811865476)), name="gelu"), x,
        primfunc_name_hint="gelu")


def fast_sigmoid(low, x, times_x: bool = False):
    """1 / (1 + exp(-x)) (times x for silu) with topi's vectorisable
    polynomial exp; float32 only."""
    from tvm import te, topi

    def f(t):
        e = topi.fast_exp(topi.negative(t))
        if times_x:
            return te.compute(t.shape, lambda *i: t(*i) / (1.0 + e(*i)), name="silu")
        return te.compute(t.shape, lambda *i: 1.0 / (1.0 + e(*i)), name="sigmoid")
    return low.bb.emit_te(f, x, primfunc_name_hint="silu" if times_x else "sigmoid")


@lowers("silu")
def _silu(low, node, args, env):
    x = arg_as(low, node, args, 0, out_dtype(node))
    if out_dtype(node) == "float32":
        return fast_sigmoid(low, x, times_x=True)
    return low.emit(_op().nn.silu(x))


@lowers("softplus")
def _softplus(low, node, args, env):
    return low.emit(_op().nn.softplus(arg_as(low, node, args, 0, out_dtype(node)),
                                      float(node.attrs["beta"]), float(node.attrs["threshold"])))


@lowers("hardsigmoid")
def _hardsigmoid(low, node, args, env):
    op, dt = _op(), out_dtype(node)
    x = arg_as(low, node, args, 0, dt)
    y = low.emit(op.add(op.divide(x, scalar(low, 6.0, dt)), scalar(low, 0.5, dt)))
    return _clip(low, y, 0.0, 1.0, dt)


@lowers("hardswish")
def _hardswish(low, node, args, env):
    op, dt = _op(), out_dtype(node)
    x = arg_as(low, node, args, 0, dt)
    r = _clip(low, low.emit(op.add(x, scalar(low, 3.0, dt))), 0.0, 6.0, dt)
    return low.emit(op.divide(op.multiply(x, r), scalar(low, 6.0, dt)))


@lowers("prelu")
def _prelu(low, node, args, env):
    op, dt = _op(), out_dtype(node)
    x = arg_as(low, node, args, 0, dt)
    w = arg_as(low, node, args, 1, dt)
    r = ndim(node, 0)
    wshape = node.inputs[1].type.shape
    # torch: one weight, or one per channel (axis 1)
    if len(wshape) == 1 and r >= 2 and wshape[0] != 1:
        w = low.emit(_op().reshape(w, [1, low.prim(wshape[0])] + [1] * (r - 2)))
    return low.emit(op.where(op.greater(x, scalar(low, 0, dt)), x, op.multiply(w, x)))


@lowers("cast")
def _cast(low, node, args, env):
    have, want = in_dtype(node, 0), out_dtype(node)
    x = args[0]
    if node.outputs[0].type.dtype.numpy_name == "bfloat16":
        # round to bfloat16, keep float32 storage (the reference's convention)
        x = cast(low, x, have, "float32")
        return round_bf16(low, x)
    if want == "bool":
        return low.emit(_op().not_equal(x, scalar(low, 0, have)))
    return cast(low, x, have, want)


def round_bf16(low, x):
    """float32 rounded to bfloat16 precision in float32 storage: round to
    nearest even on the top 16 bits, NaN kept (the reference's round_to_bf16).
    Done on the bits: a float32 -> bfloat16 -> float32 astype pair can be
    simplified away by the optimiser."""
    from tvm import te, tirx

    def f(a):
        def one(*i):
            v = a(*i)
            bits = tirx.reinterpret("uint32", v)
            lsb = tirx.bitwise_and(tirx.shift_right(bits, tirx.const(16, "uint32")), tirx.const(1, "uint32"))
            r = tirx.bitwise_and(bits + tirx.const(0x7FFF, "uint32") + lsb, tirx.const(0xFFFF0000, "uint32"))
            return tirx.Select(tirx.isnan(v), v, tirx.reinterpret("float32", r))
        return te.compute(a.shape, one, name="round_bf16")
    return low.bb.emit_te(f, x)


_BINARY = {"add": "add", "sub": "subtract", "mul": "multiply", "maximum": "maximum",
           "minimum": "minimum", "pow": "power"}


def _binary(name):
    def fn(low, node, args, env):
        dt = out_dtype(node)
        a, b = arg_as(low, node, args, 0, dt), arg_as(low, node, args, 1, dt)
        return low.emit(getattr(_op(), _BINARY[name])(a, b))
    return fn


for _n in _BINARY:
    LOWERING[_n] = _binary(_n)


@lowers("div")
def _div(low, node, args, env):
    dt = out_dtype(node)
    a, b = arg_as(low, node, args, 0, dt), arg_as(low, node, args, 1, dt)
    if dt.startswith(("int", "uint")):
        # torch.div on integers rounds toward zero when asked to; dlc's shape
        # rule makes true division float, so an int result is floor division
        return low.emit(_op().floor_divide(a, b))
    return low.emit(_op().divide(a, b))


def _common_dtype(node):
    """The dtype two compared operands are promoted to."""
    from ...compiler.ops.common import promote
    return storage_dtype(promote(node.inputs[0].type.dtype, node.inputs[1].type.dtype, node.op.name))


_COMPARE = {"eq": "equal", "ne": "not_equal", "lt": "less", "le": "less_equal", "gt": "greater",
            "ge": "greater_equal"}


def _compare(name):
    def fn(low, node, args, env):
        dt = _common_dtype(node)
        a, b = arg_as(low, node, args, 0, dt), arg_as(low, node, args, 1, dt)
        return low.emit(getattr(_op(), _COMPARE[name])(a, b))
    return fn


for _n in _COMPARE:
    LOWERING[_n] = _compare(_n)


@lowers("logical_and", "logical_or")
def _logical(low, node, args, env):
    a = cast(low, args[0], in_dtype(node, 0), "bool")
    b = cast(low, args[1], in_dtype(node, 1), "bool")
    fn = _op().logical_and if node.op.name == "logical_and" else _op().logical_or
    return low.emit(fn(a, b))


@lowers("where")
def _where(low, node, args, env):
    dt = out_dtype(node)
    c = cast(low, args[0], in_dtype(node, 0), "bool")
    return low.emit(_op().where(c, arg_as(low, node, args, 1, dt), arg_as(low, node, args, 2, dt)))


@lowers("softmax", "log_softmax")
def _softmax(low, node, args, env):
    x = arg_as(low, node, args, 0, out_dtype(node))
    axis = norm_axis(node.attrs["axis"], ndim(node))
    if node.op.name == "softmax":
        return softmax(low, x, axis, out_dtype(node))
    return low.emit(_op().nn.log_softmax(x, axis=axis))


def softmax(low, x, axis, dt):
    """Softmax; for float32 topi's fast_softmax, whose polynomial exp
    vectorises (libm's expf is a scalar call per element), a few ulp from
    exp."""
    if dt == "float32":
        from tvm import topi
        return low.bb.emit_te(topi.nn.fast_softmax, x, axis, primfunc_name_hint="softmax")
    return low.emit(_op().nn.softmax(x, axis=axis))


# ---------------------------------------------------------------------------
# linear algebra
# ---------------------------------------------------------------------------

@lowers("matmul")
def _matmul(low, node, args, env):
    dt = out_dtype(node)
    return low.emit(_op().matmul(arg_as(low, node, args, 0, dt), arg_as(low, node, args, 1, dt)))


@lowers("linear")
def _linear(low, node, args, env):
    dt = out_dtype(node)
    x, w = arg_as(low, node, args, 0, dt), arg_as(low, node, args, 1, dt)
    b = arg_as(low, node, args, 2, dt) if len(args) > 2 and args[2] is not None else None
    return low.emit(_op().linear(x, w, b))


# ---------------------------------------------------------------------------
# reductions
# ---------------------------------------------------------------------------

def _axes(node, i=0):
    axis = node.attrs.get("axis")
    r = ndim(node, i)
    if axis is None:
        return None
    if isinstance(axis, (list, tuple)):
        return sorted(norm_axis(a, r) for a in axis)
    return [norm_axis(axis, r)]


def _count(low, node, axes):
    shape = node.inputs[0].type.shape
    dims = range(len(shape)) if axes is None else axes
    n = 1
    for a in dims:
        n = n * shape[a]
    return n


@lowers("sum", "prod", "mean", "max", "min")
def _reduce(low, node, args, env):
    op = _op()
    dt = out_dtype(node)
    x = arg_as(low, node, args, 0, dt)
    axes = _axes(node)
    keep = bool(node.attrs["keepdims"])
    if ndim(node) == 0:
        return x
    fn = {"sum": op.sum, "prod": op.prod, "mean": op.mean, "max": op.max, "min": op.min}[node.op.name]
    return low.emit(fn(x, axes, keep))


@lowers("logsumexp")
def _logsumexp(low, node, args, env):
    op = _op()
    dt = out_dtype(node)
    x = arg_as(low, node, args, 0, dt)
    axes = _axes(node)
    keep = bool(node.attrs["keepdims"])
    m = low.emit(op.max(x, axes, True))
    # a row of -inf gives -inf, not NaN: shift by 0 there (as the reference)
    m = low.emit(op.where(op.isfinite(m), m, scalar(low, 0, dt)))
    s = low.emit(op.log(op.sum(op.exp(op.subtract(x, m)), axes, True)))
    y = low.emit(op.add(s, m))
    if not keep:
        y = low.emit(op.squeeze(y, axes))
    return y


@lowers("var", "std")
def _var(low, node, args, env):
    op = _op()
    dt = out_dtype(node)
    x = arg_as(low, node, args, 0, dt)
    axes = _axes(node)
    keep = bool(node.attrs["keepdims"])
    v = low.emit(op.variance(x, axes, keep))
    corr = node.attrs["correction"]
    if corr:
        v = low.emit(op.multiply(v, bessel_factor(low, _count(low, node, axes), corr, dt)))
    if node.op.name == "std":
        v = low.emit(op.sqrt(v))
    return v


def bessel_factor(low, count, corr, dt):
    """n / (n - corr) as a scalar: a constant when the sample count n is
    known, else computed at run time from the symbolic shape (so a symbolic
    batch needs no recompile)."""
    from tvm import relax
    op = _op()
    if isinstance(count, int) or (isinstance(count, Dim) and count.is_const):
        n = int(count.value if isinstance(count, Dim) else count)
        return scalar(low, n / (n - corr) if n - corr > 0 else float("inf"), dt)
    n = low.emit(op.shape_to_tensor(relax.ShapeExpr([low.prim(count)])))
    n = low.emit(op.reshape(op.astype(n, dt), []))
    return low.emit(op.divide(n, op.subtract(n, scalar(low, corr, dt))))


@lowers("argmax", "argmin")
def _argmax(low, node, args, env):
    op = _op()
    x = args[0]
    axis = node.attrs["axis"]
    keep = bool(node.attrs["keepdims"])
    fn = op.argmax if node.op.name == "argmax" else op.argmin
    if axis is None:
        x = low.emit(op.reshape(x, [-1]))
        y = low.emit(fn(x, 0, False))
        if keep:
            y = low.emit(op.reshape(y, [1] * ndim(node)))
    else:
        y = low.emit(fn(x, norm_axis(axis, ndim(node)), keep))
    return cast(low, y, "int64", out_dtype(node))


# ---------------------------------------------------------------------------
# shape ops
# ---------------------------------------------------------------------------

@lowers("reshape")
def _reshape(low, node, args, env):
    return low.emit(_op().reshape(args[0], out_shape(low, node)))


@lowers("transpose")
def _transpose(low, node, args, env):
    r = ndim(node)
    return low.emit(_op().permute_dims(args[0], [norm_axis(a, r) for a in node.attrs["axes"]]))


@lowers("expand")
def _expand(low, node, args, env):
    return low.emit(_op().broadcast_to(args[0], out_shape(low, node)))


@lowers("concat")
def _concat(low, node, args, env):
    dt = out_dtype(node)
    xs = [arg_as(low, node, args, i, dt) for i in range(len(args))]
    axis = norm_axis(node.attrs["axis"], ndim(node))
    from tvm import relax
    return low.emit(_op().concat(relax.Tuple(xs), axis=axis))


@lowers("split")
def _split(low, node, args, env):
    axis = norm_axis(node.attrs["axis"], ndim(node))
    outs = []
    start = 0
    for i, o in enumerate(node.outputs):
        size = o.type.shape[axis]
        outs.append(_slice_axis(low, args[0], axis, start, start + size))
        start = start + size
    return outs


def _slice_axis(low, x, axis, begin, end):
    from tvm import relax
    b, e = low.prim(begin), low.prim(end)
    return low.emit(_op().strided_slice(x, [axis], [b], [e], assume_inbound=True))


@lowers("strided_slice")
def _strided_slice(low, node, args, env):
    op = _op()
    shape = node.inputs[0].type.shape
    out = node.outputs[0].type.shape
    r = len(shape)
    begin = node.attrs["begin"] or [None] * r
    end = node.attrs["end"] or [None] * r
    strides = node.attrs["strides"] or [None] * r
    x = args[0]
    axes, bs, es, ss = [], [], [], []
    for a in range(r):
        b, e, s = begin[a], end[a], strides[a]
        s = 1 if s is None else int(s)
        if b is None and e is None and s == 1:
            continue
        n = shape[a]
        if s < 0:
            # reverse the axis, then slice it with a positive stride
            x = low.emit(op.flip(x, a))
            b = 0 if b is None else n - 1 - _py_index(b, n, True)
            s = -s
        else:
            b = 0 if b is None else _py_index(b, n, False)
        # the shape rule already worked out the length; end = begin + (len-1)*s + 1
        # stays in bounds whatever the Python bounds were
        axes.append(a)
        bs.append(low.prim(b))
        es.append(low.prim(Dim.of(b) + (Dim.of(out[a]) - 1) * s + 1))
        ss.append(s)
    if not axes:
        return x
    return low.emit(op.strided_slice(x, axes, bs, es, ss, assume_inbound=True))


def _py_index(i, n, for_reverse):
    """A Python slice bound made non-negative and clamped to [0, n] (or
    [-1, n-1] on a reversed axis); symbolic bounds are taken as in range."""
    if isinstance(i, Dim) and i.is_const:
        i = i.value
    if isinstance(i, int) and i < 0:
        i = n + i
        if isinstance(i, Dim) and i.is_const:
            i = i.value
    if isinstance(i, int) and isinstance(n, int):
        lo, hi = (-1, n - 1) if for_reverse else (0, n)
        i = min(max(i, lo), hi)
    return i


@lowers("pad")
def _pad(low, node, args, env):
    op = _op()
    pad = [int(p) for p in low.concrete_attr(node.attrs["pad"], "padding amounts")]
    mode = node.attrs["mode"]
    shape = node.inputs[0].type.shape
    r = len(shape)
    widths = [[0, 0] for _ in range(r)]
    for i in range(len(pad) // 2):
        widths[r - 1 - i] = [pad[2 * i], pad[2 * i + 1]]
    x = args[0]
    if any(lo < 0 or hi < 0 for lo, hi in widths):
        axes, bs, es = [], [], []
        for d, (lo, hi) in enumerate(widths):
            if lo < 0 or hi < 0:
                axes.append(d)
                bs.append(-min(lo, 0))
                es.append(low.prim(shape[d] + min(hi, 0)))
        x = low.emit(op.strided_slice(x, axes, bs, es, assume_inbound=True))
        widths = [[max(lo, 0), max(hi, 0)] for lo, hi in widths]
    if not any(lo or hi for lo, hi in widths):
        return x
    flat = [w for pair in widths for w in pair]
    if mode == "constant":
        return low.emit(op.nn.pad(x, flat, "constant", float(node.attrs["value"])))
    if mode in ("reflect", "replicate", "circular"):
        return _pad_by_concat(low, node, x, widths, mode)
    raise Unsupported(f"pad mode {mode!r}", node.span)


def _pad_by_concat(low, node, x, widths, mode):
    """reflect / replicate / circular padding as slices and concatenations."""
    from tvm import relax
    op = _op()
    shape = list(node.inputs[0].type.shape)
    for d, (lo, hi) in enumerate(widths):
        if not lo and not hi:
            continue
        n = low.concrete(shape[d], "the size of a reflect/replicate/circular padded axis")
        parts = []

        def sl(b, e, step=1):
            return low.emit(op.strided_slice(x, [d], [b], [e], [step], assume_inbound=True))

        if mode == "reflect":
            if lo:
                parts.append(low.emit(op.flip(sl(1, lo + 1), d)))
            parts.append(x)
            if hi:
                parts.append(low.emit(op.flip(sl(n - hi - 1, n - 1), d)))
        elif mode == "replicate":
            if lo:
                parts.append(low.emit(op.repeat(sl(0, 1), lo, d)))
            parts.append(x)
            if hi:
                parts.append(low.emit(op.repeat(sl(n - 1, n), hi, d)))
        else:  # circular
            if lo:
                parts.append(sl(n - lo, n))
            parts.append(x)
            if hi:
                parts.append(sl(0, hi))
        x = low.emit(op.concat(relax.Tuple(parts), axis=d))
        shape[d] = n + lo + hi
    return x


@lowers("gather")
def _gather(low, node, args, env):
    axis = norm_axis(node.attrs["axis"], ndim(node))
    idx = cast(low, args[1], in_dtype(node, 1), "int64")
    return low.emit(_op().gather_elements(args[0], idx, axis))


@lowers("index_select")
def _index_select(low, node, args, env):
    axis = norm_axis(node.attrs["axis"], ndim(node))
    idx = cast(low, args[1], in_dtype(node, 1), "int64")
    return low.emit(_op().take(args[0], idx, axis, mode="clip"))  # out-of-range ids must not crash compiled code


@lowers("embedding")
def _embedding(low, node, args, env):
    idx = cast(low, args[0], in_dtype(node, 0), "int64")
    return low.emit(_op().take(args[1], idx, 0, mode="clip"))  # out-of-range ids must not crash compiled code


@lowers("tril", "triu")
def _tril(low, node, args, env):
    fn = _op().tril if node.op.name == "tril" else _op().triu
    return low.emit(fn(args[0], int(node.attrs["k"])))


@lowers("one_hot")
def _one_hot(low, node, args, env):
    from tvm import relax
    depth = int(node.outputs[0].type.shape[-1]) if not isinstance(node.outputs[0].type.shape[-1], Dim) \
        else low.concrete(node.outputs[0].type.shape[-1], "the number of one-hot classes")
    dt = out_dtype(node)
    idx = cast(low, args[0], in_dtype(node, 0), "int64")
    if dt == "bool":
        y = low.emit(_op().one_hot(idx, _prim_const(1, "int64"), _prim_const(0, "int64"), depth, -1))
        return cast(low, y, "int64", "bool")
    one = _prim_const(1, dt)
    zero = _prim_const(0, dt)
    return low.emit(_op().one_hot(idx, one, zero, depth, -1))


def _prim_const(v, dt):
    from tvm import tirx
    if dt.startswith("float"):
        return tirx.FloatImm(dt, float(v))
    return tirx.IntImm(dt, int(v))


@lowers("arange")
def _arange(low, node, args, env):
    a = node.attrs
    dt = out_dtype(node)
    start, stop, step = (low.concrete_attr(a[k], "arange bounds") for k in ("start", "stop", "step"))
    return low.const(np.arange(start, stop, step).astype(dt), dt)


@lowers("full")
def _full(low, node, args, env):
    dt = out_dtype(node)
    shape = node.outputs[0].type.shape
    value = node.attrs["value"]
    if all(isinstance(d, int) for d in shape):
        return low.const(np.full(tuple(shape), value, dtype=dt), dt)
    from tvm import relax
    return low.emit(_op().full(low.shape(shape), low.const(value, dt), dt))


@lowers("sinusoidal_positions")
def _sinusoidal(low, node, args, env):
    from ...compiler.ops.shape import sinusoidal_table
    from ...compiler.types import DType
    from ...runtime.floats import to_float
    a = node.attrs
    length = low.concrete(a["length"], "the length of sinusoidal positions")
    dim = low.concrete(a["dim"], "the width of sinusoidal positions")
    dt = out_dtype(node)
    arr = to_float(sinusoidal_table(length, dim), DType.parse(a["dtype"]).numpy_name)
    return low.const(arr.astype(dt), dt)


@lowers("scatter_add")
def _scatter_add(low, node, args, env):
    dt = out_dtype(node)
    axis = norm_axis(node.attrs["axis"], ndim(node))
    idx = cast(low, args[1], in_dtype(node, 1), "int64")
    x, src = arg_as(low, node, args, 0, dt), arg_as(low, node, args, 2, dt)
    # torch.scatter_add allows index smaller than src: take the matching corner
    ishape, sshape = node.inputs[1].type.shape, node.inputs[2].type.shape
    if list(ishape) != list(sshape):
        src = low.emit(_op().strided_slice(src, list(range(len(ishape))), [0] * len(ishape),
                                           low.shape(ishape), assume_inbound=True))
    return low.emit(_op().scatter_elements(x, idx, src, axis, "add"))


@lowers("scatter_add_rows")
def _scatter_add_rows(low, node, args, env):
    """zeros(num_rows, *updates.shape[idx.ndim:]) with updates added at rows idx."""
    op = _op()
    dt = out_dtype(node)
    idx = cast(low, args[0], in_dtype(node, 0), "int64")
    upd = arg_as(low, node, args, 1, dt)
    ishape = node.inputs[0].type.shape
    ushape = node.inputs[1].type.shape
    tail = list(ushape[len(ishape):])
    n = 1
    for d in ishape:
        n = n * d
    idx = low.emit(op.reshape(idx, [low.prim(n), 1]))
    upd = low.emit(op.reshape(upd, [low.prim(n)] + low.shape(tail)))
    zeros = low.emit(op.zeros(out_shape(low, node), dt))
    return low.emit(op.scatter_nd(zeros, idx, upd, "add"))


# ---------------------------------------------------------------------------
# random ops: drawn on the host (see relaxgen), here only consumed.  The
# tensors come from `runtime.random.draw_random`, the NumPy reference's streams.
# ---------------------------------------------------------------------------

def random_plan(node):
    """(kind, shape, dtype, attrs) of the host-drawn tensor `node` needs, or None."""
    name = node.op.name
    a = node.attrs
    if name == "dropout":
        if not a["training"] or a["p"] == 0 or a["p"] == 1:
            return None
        return ("dropout", list(node.inputs[0].type.shape), out_dtype(node),
                {"p": float(a["p"]), "seed": int(a["seed"])})
    if name == "randn":
        return ("randn", list(node.outputs[0].type.shape), out_dtype(node), {"seed": int(a["seed"])})
    if name == "uniform":
        return ("uniform", list(node.outputs[0].type.shape), out_dtype(node),
                {"seed": int(a["seed"]), "low": float(a["low"]), "high": float(a["high"])})
    return None


@lowers("dropout")
def _dropout(low, node, args, env):
    a = node.attrs
    dt = out_dtype(node)
    x = arg_as(low, node, args, 0, dt)
    if not a["training"] or a["p"] == 0:
        return x
    if a["p"] == 1:
        return low.emit(_op().multiply(x, scalar(low, 0, dt)))
    kind, shape, _, attrs = random_plan(node)
    noise = low.random_input(node, kind, shape, dt, attrs)
    return low.emit(_op().multiply(x, noise))


@lowers("randn", "uniform")
def _random(low, node, args, env):
    kind, shape, dt, attrs = random_plan(node)
    return low.random_input(node, kind, shape, dt, attrs)


# the neural-network, loss and sequence families register themselves
from . import lowering_nn  # noqa: E402,F401
