"""TVM lowerings of the elementwise ops: unary math and activations (with
float32 erf and the overflow-safe sigmoid), casts and bfloat16 rounding,
binary arithmetic and comparisons, where, and softmax.

Registered into `lowering.LOWERING`; see that module for the conventions.
"""
from __future__ import annotations

from .lowering import arg_as, cast, in_dtype, LOWERING, lowers, ndim, norm_axis, out_dtype, scalar, _op
from .relaxgen import storage_dtype


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


# relu6, hardtanh, leaky_relu and hardsigmoid have no entry: their
# decompositions (compiler/ops/activation.py) fuse into the same single loop
# (bench/bench_activations.py measured no slowdown)


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
    if node.attrs["approximate"] == "tanh":
        # the decomposition fuses into one loop; relax's gelu_tanh was slower
        # (bench/bench_activations.py: x0.67 and x0.24 of its time, two runs)
        return low.decomposed(node, args)
    x = arg_as(low, node, args, 0, out_dtype(node))
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
    if want == "bool":     # NaN casts to True, as in NumPy
        return compare(low, "ne", x, scalar(low, 0, have), have)
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


def compare(low, name: str, a, b, dt: str):
    """`a <name> b` (dlc's eq/ne/lt/...) for operands stored as `dt`, with
    NumPy's semantics where TVM's LLVM codegen differs: it compares every
    non-integer type with `fcmp`, so bools (i1) would be compared as floats
    (invalid IR), and `!=` is the ordered `fcmp one`, false when an operand is
    NaN (NumPy: true; so isnan, x != x, was always false).  `not (a == b)` is
    simplified back to `a != b`, hence the explicit isnan terms."""
    op = _op()
    if dt == "bool":       # False < True, as uint8 0 < 1
        a, b, dt = op.astype(a, "uint8"), op.astype(b, "uint8"), "uint8"
    if name == "ne" and dt.startswith("float"):
        nan = op.isnan(a) if a.same_as(b) else op.logical_or(op.isnan(a), op.isnan(b))
        return low.emit(op.logical_or(op.not_equal(a, b), nan))
    return low.emit(getattr(op, _COMPARE[name])(a, b))


def _compare(name):
    def fn(low, node, args, env):
        dt = _common_dtype(node)
        a, b = arg_as(low, node, args, 0, dt), arg_as(low, node, args, 1, dt)
        return compare(low, name, a, b, dt)
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
