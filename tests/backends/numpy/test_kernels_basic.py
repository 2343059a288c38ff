"""NumPy reference kernels against PyTorch: one table of cases.

Each case names an op, builds its inputs (from a seeded RNG, in the dtype
under test when the op is floating), gives its attributes and a PyTorch
reference.  Floating cases run in float32 and float64, each compared with
torch computing in the same dtype; the result's dtype and shape must match
torch exactly, and no NumPy floating-point warning may escape a kernel.
"""
from __future__ import annotations

import math
import warnings
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

from dlc.backends.numpy.interpreter import Interpreter
from dlc.backends.numpy.kernels import elementwise, losses, reduce, shape
from dlc.backends.numpy.kernels import random as rnd
from dlc.compiler.builder import Builder
from dlc.compiler.ir import Graph
from dlc.compiler.ops import OPS
from dlc.compiler.ops.registry import required
from dlc.compiler.types import DType, TensorType
from op_inputs import OP_ROWS

pytestmark = pytest.mark.torch

MODULES = (elementwise, reduce, shape, losses, rnd)
KERNELS: dict[str, Callable] = {}
for _m in MODULES:
    KERNELS.update(_m.KERNELS)

FLOATS = (np.float32, np.float64)
_REQUIRED = required()
DTYPE = object()   # attribute placeholder: replaced by the dtype under test's name
INF, NAN = math.inf, math.nan

# ---------------------------------------------------------------------------
# input constructors: (rng, dtype) -> array.  `dtype` is the float dtype under
# test (None for cases that are not parametrised over dtypes).
# ---------------------------------------------------------------------------


def _fdt(dtype):
    return np.float64 if dtype is None else dtype


def R(*shp, lo=-3.0, hi=3.0):
    """uniform floats in [lo, hi)"""
    return lambda rng, dt: rng.uniform(lo, hi, size=shp).astype(_fdt(dt))


def POS(*shp, lo=0.1, hi=5.0):
    return R(*shp, lo=lo, hi=hi)


def PROB(*shp):
    return R(*shp, lo=0.02, hi=0.98)


def RI(*shp, lo=-2, hi=3):
    """integer-valued floats (ties for comparisons, argmax, ...)"""
    return lambda rng, dt: rng.integers(lo, hi, size=shp).astype(_fdt(dt))


def I(*shp, lo=0, hi=5, dtype=np.int64):
    return lambda rng, dt: rng.integers(lo, hi, size=shp).astype(dtype)


def B(*shp):
    return lambda rng, dt: rng.random(size=shp) < 0.5


def V(values, dtype=None):
    """fixed values; float values take the dtype under test unless given one"""
    def make(rng, dt):
        if dtype is not None:
            return np.array(values, dtype=dtype)
        return np.array(values, dtype=_fdt(dt))
    return make


def DIST(*shp, axis=-1):
    """rows of a probability distribution (softmax of normals)"""
    def make(rng, dt):
        z = rng.standard_normal(shp)
        e = np.exp(z - z.max(axis=axis, keepdims=True))
        return (e / e.sum(axis=axis, keepdims=True)).astype(_fdt(dt))
    return make


def T(*shp, C, ignore=None, every=3):
    """class-index targets in [0, C), every `every`-th entry set to `ignore`"""
    def make(rng, dt):
        t = rng.integers(0, C, size=shp).astype(np.int64)
        if ignore is not None:
            t.reshape(-1)[::every] = ignore
        return t
    return make


EXTREME = V([-100.0, -50.0, -20.0, -1.0, 0.0, 1.0, 20.0, 50.0, 100.0])


@dataclass
class Case:
    id: str
    op: str
    inputs: list
    attrs: dict
    ref: Callable
    floating: bool = True          # run in float32 and float64
    pass_dtype: bool = False       # ref(*tensors, dt=torch dtype)
    tol: float = 1.0               # multiplies the default tolerances
    extra: dict = field(default_factory=dict)


CASES: list[Case] = []


def case(id, op, inputs, attrs=None, ref=None, **kw):
    CASES.append(Case(id, op, inputs, attrs or {}, ref, **kw))


# ---------------------------------------------------------------------------
# unary math and activations
# ---------------------------------------------------------------------------

for name, fn, inp in [
    ("neg", torch.neg, R(3, 4)),
    ("abs", torch.abs, R(3, 4)),
    ("exp", torch.exp, R(3, 4, lo=-10, hi=10)),
    ("log", torch.log, POS(3, 4, lo=1e-3, hi=100)),
    ("log1p", torch.log1p, R(3, 4, lo=-0.9, hi=5)),
    ("sqrt", torch.sqrt, POS(3, 4)),
    ("rsqrt", torch.rsqrt, POS(3, 4)),
    ("reciprocal", torch.reciprocal, V([-4.0, -0.5, 0.25, 3.0, 1e-3])),
    ("square", torch.square, R(3, 4)),
    ("sin", torch.sin, R(3, 4, lo=-7, hi=7)),
    ("cos", torch.cos, R(3, 4, lo=-7, hi=7)),
    ("tanh", torch.tanh, R(3, 4, lo=-5, hi=5)),
    ("sigmoid", torch.sigmoid, R(3, 4, lo=-10, hi=10)),
    ("erf", torch.erf, R(5, 7, lo=-5, hi=5)),
    ("floor", torch.floor, R(3, 4)),
    ("ceil", torch.ceil, R(3, 4)),
    ("relu", torch.relu, R(3, 4)),
    ("selu", F.selu, R(3, 4)),
    ("elu", F.elu, R(3, 4)),
]:
    case(name, name, [inp], ref=fn)
for row in OP_ROWS:   # the per-op table every backend test shares
    case(row.id, row.op, row.inputs, row.attrs, ref=row.ref)
# NaN and infinities pass through as in torch (kernels and decompositions alike)
# (gelu(+inf) is inf in torch's float64 kernel but NaN in its vectorised float32 one: left out)
NONFINITE = V([NAN, INF, -INF, 0.0, -0.0, 2.5, -2.5])
for row in OP_ROWS:
    vals = V([NAN, -INF, 0.0, -0.0, 2.5, -2.5]) if row.op == "gelu" else NONFINITE
    case(f"{row.id}-nonfinite", row.op, [vals], row.attrs, ref=row.ref)

case("sign-zeros-nan", "sign", [V([-2.5, -0.0, 0.0, 3.0, NAN, -INF])], ref=torch.sign)
case("relu-nan", "relu", [V([NAN, -1.0, 2.0])], ref=torch.relu)
case("erf-extreme", "erf", [V([-INF, -30.0, -6.0, -2.5, -0.5, -1e-300, 0.0, 1e-8, 0.49, 2.4999,
                                 3.0, 27.0, INF, NAN])], ref=torch.erf)
case("sigmoid-extreme", "sigmoid", [EXTREME], ref=torch.sigmoid)
case("silu-extreme", "silu", [EXTREME], ref=F.silu)
case("tanh-extreme", "tanh", [EXTREME], ref=torch.tanh)
case("softplus-extreme", "softplus", [EXTREME], ref=F.softplus)
case("softplus-beta-threshold", "softplus", [R(3, 4, lo=-6, hi=6)], {"beta": 2.0, "threshold": 5.0},
     ref=lambda x: F.softplus(x, beta=2.0, threshold=5.0))
case("leaky_relu-slope", "leaky_relu", [R(3, 4)], {"negative_slope": 0.2},
     ref=lambda x: F.leaky_relu(x, 0.2))
case("elu-alpha", "elu", [R(3, 4)], {"alpha": 0.5}, ref=lambda x: F.elu(x, alpha=0.5))
case("elu-extreme", "elu", [EXTREME], ref=F.elu)
case("selu-extreme", "selu", [EXTREME], ref=F.selu)
case("hardtanh-bounds", "hardtanh", [R(3, 4)], {"min_val": -2.0, "max_val": 0.5},
     ref=lambda x: F.hardtanh(x, -2.0, 0.5))
case("gelu-tanh", "gelu", [R(3, 4, lo=-6, hi=6)], {"approximate": "tanh"},
     ref=lambda x: F.gelu(x, approximate="tanh"))
case("gelu-none-explicit", "gelu", [R(4, 3)], {"approximate": "none"},
     ref=lambda x: F.gelu(x, approximate="none"))
case("gelu-extreme", "gelu", [EXTREME], ref=F.gelu)
case("gelu-tanh-extreme", "gelu", [EXTREME], {"approximate": "tanh"},
     ref=lambda x: F.gelu(x, approximate="tanh"))
case("exp-0d", "exp", [V(0.75)], ref=torch.exp)
case("log-zero-neg", "log", [V([0.0, -1.0, 1.0])], ref=torch.log)
# integer inputs of float math become float32, as torch
case("exp-int", "exp", [I(2, 3, lo=-3, hi=4)], ref=torch.exp, floating=False)
case("sigmoid-int", "sigmoid", [I(2, 3, lo=-3, hi=4)], ref=torch.sigmoid, floating=False)
case("abs-int", "abs", [I(2, 3, lo=-3, hi=4, dtype=np.int32)], ref=torch.abs, floating=False)
case("neg-int", "neg", [I(2, 3, lo=-3, hi=4)], ref=torch.neg, floating=False)
case("square-int", "square", [I(2, 3, lo=-3, hi=4, dtype=np.int32)], ref=torch.square,
     floating=False)
case("sign-int", "sign", [I(2, 3, lo=-3, hi=4)], ref=torch.sign, floating=False)
case("relu-int", "relu", [I(2, 3, lo=-3, hi=4)], ref=torch.relu, floating=False)
case("floor-int", "floor", [I(2, 3, lo=-3, hi=4)], ref=torch.floor, floating=False)
case("logical_not", "logical_not", [B(3, 4)], ref=torch.logical_not, floating=False)

# prelu: weight per channel (axis 1) or a single slope
case("prelu-channels", "prelu", [R(2, 3, 4), R(3, lo=0, hi=0.5)], ref=F.prelu)
case("prelu-2d", "prelu", [R(5, 3), R(3, lo=0, hi=0.5)], ref=F.prelu)
case("prelu-single", "prelu", [R(2, 3, 4), V([0.25])], ref=F.prelu)
case("prelu-single-1d", "prelu", [R(6), V([0.1])], ref=F.prelu)

# cast
TDT = {"int32": torch.int32, "int64": torch.int64, "int8": torch.int8, "bool": torch.bool,
       "float16": torch.float16, "float32": torch.float32, "float64": torch.float64}
for dst, inp in [
    ("int32", R(3, 4, lo=-5, hi=5)),
    ("int64", V([-2.7, -0.5, 0.0, 0.5, 2.7])),
    ("int8", R(3, 4, lo=-100, hi=100)),
    ("bool", V([0.0, -0.0, 1.5, -2.0, NAN])),
    ("float16", R(3, 4, lo=-100, hi=100)),
    ("float32", R(3, 4)),
    ("float64", R(3, 4)),
    ("bfloat16", R(5, 6, lo=-100, hi=100)),
]:
    if dst == "bfloat16":
        case("cast-bfloat16", "cast", [inp], {"dtype": dst},
             ref=lambda x: x.to(torch.bfloat16).to(torch.float32))
    else:
        case(f"cast-{dst}", "cast", [inp], {"dtype": dst}, ref=lambda x, d=TDT[dst]: x.to(d))
case("cast-int-float32", "cast", [I(3, 4, lo=-9, hi=9)], {"dtype": "float32"},
     ref=lambda x: x.to(torch.float32), floating=False)
case("cast-bool-float64", "cast", [B(3, 4)], {"dtype": "float64"},
     ref=lambda x: x.to(torch.float64), floating=False)
case("cast-int64-int8", "cast", [I(3, 4, lo=-100, hi=100)], {"dtype": "int8"},
     ref=lambda x: x.to(torch.int8), floating=False)
case("cast-int-bool", "cast", [I(3, 4, lo=-2, hi=2)], {"dtype": "bool"},
     ref=lambda x: x.to(torch.bool), floating=False)

# ---------------------------------------------------------------------------
# binary ops: broadcasting, 0-d operands, promotion
# ---------------------------------------------------------------------------

BIN_SHAPES = [
    ("same", (3, 4), (3, 4)),
    ("bcast", (2, 3, 4), (3, 1)),
    ("bcast-both", (2, 1, 4), (3, 1)),
    ("0d", (2, 3), ()),
    ("0d-left", (), (4,)),
]
for name, fn in [("add", torch.add), ("sub", torch.sub), ("mul", torch.mul), ("div", torch.div),
                 ("maximum", torch.maximum), ("minimum", torch.minimum)]:
    for sid, sa, sb in BIN_SHAPES:
        rhs = POS(*sb, lo=0.5, hi=3) if name == "div" else R(*sb)
        case(f"{name}-{sid}", name, [R(*sa), rhs], ref=fn)
case("pow-bcast", "pow", [POS(2, 3, 4), R(4)], ref=torch.pow)
case("pow-0d", "pow", [POS(3, 4), V(2.5)], ref=torch.pow)
case("pow-neg-base-int-exp", "pow", [R(3, 4), V(3.0)], ref=torch.pow)
case("maximum-nan", "maximum", [V([NAN, 1.0, -INF]), V([0.0, NAN, 2.0])], ref=torch.maximum)
case("minimum-nan", "minimum", [V([NAN, 1.0, -INF]), V([0.0, NAN, 2.0])], ref=torch.minimum)
case("div-by-zero", "div", [V([1.0, -1.0, 0.0]), V(0.0)], ref=torch.div)
for name, fn in [("eq", torch.eq), ("ne", torch.ne), ("lt", torch.lt), ("le", torch.le),
                 ("gt", torch.gt), ("ge", torch.ge)]:
    case(f"{name}-bcast", name, [RI(2, 3, 4), RI(3, 1)], ref=fn)
    case(f"{name}-0d", name, [RI(3, 4), V(1.0)], ref=fn)
case("eq-nan", "eq", [V([NAN, 1.0]), V([NAN, 1.0])], ref=torch.eq)
for name, fn in [("logical_and", torch.logical_and), ("logical_or", torch.logical_or)]:
    case(f"{name}-bcast", name, [B(2, 3, 4), B(3, 1)], ref=fn, floating=False)
    case(f"{name}-0d", name, [B(3,), V(True, np.bool_)], ref=fn, floating=False)
# integer and mixed-dtype arithmetic follow torch.result_type
case("add-int64-int32", "add", [I(3, 4, dtype=np.int64), I(4, dtype=np.int32)], ref=torch.add,
     floating=False)
case("mul-int32-0d-int64", "mul", [I(3, 4, dtype=np.int32), V(3, np.int64)], ref=torch.mul,
     floating=False)
case("div-int", "div", [I(3, 4, lo=-5, hi=5), I(4, lo=1, hi=4)], ref=torch.div, floating=False)
case("add-f32-0d-f64", "add", [R(3, 4), V(0.1, np.float64)], ref=torch.add)
case("mul-0d-f64-f32", "mul", [V(1.1, np.float64), R(3,)], ref=torch.mul)
case("add-f32-f64", "add", [V([1.5, 2.5], np.float32), V([0.1, 0.2], np.float64)],
     ref=torch.add, floating=False)
case("add-int-f32", "add", [I(3, 4, dtype=np.int64), R(4)], ref=torch.add)
case("add-int-0d-f64", "add", [I(3, 4, dtype=np.int32), V(0.5, np.float64)], ref=torch.add,
     floating=False)
case("add-bool-int", "add", [B(3, 4), I(4, dtype=np.int32)], ref=torch.add, floating=False)
case("lt-int-float", "lt", [I(3, 4, lo=-2, hi=3), RI(4)], ref=torch.lt)
case("pow-int", "pow", [I(3, 4, lo=-3, hi=4), I(4, lo=0, hi=4)], ref=torch.pow, floating=False)

case("where-bcast", "where", [B(3, 1), R(2, 3, 4), R(4)], ref=torch.where)
case("where-0d", "where", [B(2, 3), R(2, 3), V(0.0)], ref=torch.where)
case("where-int", "where", [B(5,), I(5), I(1)], ref=torch.where, floating=False)

for ax in (-1, 0, 1):
    case(f"softmax-axis{ax}", "softmax", [R(2, 3, 4)], {"axis": ax},
         ref=lambda x, ax=ax: torch.softmax(x, dim=ax))
    case(f"log_softmax-axis{ax}", "log_softmax", [R(2, 3, 4)], {"axis": ax},
         ref=lambda x, ax=ax: torch.log_softmax(x, dim=ax))
SOFT_EXTREME = V([[-100.0, 0.0, 100.0], [1000.0, 1000.0, -1000.0], [-INF, 0.0, 1.0],
                  [100.0, 100.0, 100.0]])
case("softmax-extreme", "softmax", [SOFT_EXTREME], ref=lambda x: torch.softmax(x, -1))
case("log_softmax-extreme", "log_softmax", [SOFT_EXTREME], ref=lambda x: torch.log_softmax(x, -1))
case("log_softmax-1d", "log_softmax", [R(7)], ref=lambda x: torch.log_softmax(x, 0))

# ---------------------------------------------------------------------------
# reductions
# ---------------------------------------------------------------------------


def _dims(axis, ndim):
    if axis is None:
        return tuple(range(ndim))
    return (axis,) if isinstance(axis, int) else tuple(axis)


def _prod_ref(x, axis, keepdims):
    dims = sorted((d % x.ndim for d in _dims(axis, x.ndim)), reverse=True)
    for d in dims:
        x = torch.prod(x, dim=d, keepdim=True)
    if not keepdims:
        x = x.reshape([n for i, n in enumerate(x.shape) if i not in dims])
    return x


RED_REFS = {
    "sum": lambda x, a, k: torch.sum(x, dim=_dims(a, x.ndim), keepdim=k),
    "mean": lambda x, a, k: torch.mean(x, dim=_dims(a, x.ndim), keepdim=k),
    "max": lambda x, a, k: torch.amax(x, dim=_dims(a, x.ndim), keepdim=k),
    "min": lambda x, a, k: torch.amin(x, dim=_dims(a, x.ndim), keepdim=k),
    "prod": _prod_ref,
    "logsumexp": lambda x, a, k: torch.logsumexp(x, dim=_dims(a, x.ndim), keepdim=k),
    "var": lambda x, a, k: torch.var(x, dim=_dims(a, x.ndim), keepdim=k),
    "std": lambda x, a, k: torch.std(x, dim=_dims(a, x.ndim), keepdim=k),
}
for name, fn in RED_REFS.items():
    for axis in (None, 1, -1, (0, 2), (0, -1)):
        for keep in (False, True):
            inp = R(2, 3, 4, lo=0.5, hi=1.5) if name == "prod" else R(2, 3, 4)
            case(f"{name}-axis{axis}-keep{int(keep)}", name, [inp],
                 {"axis": axis, "keepdims": keep},
                 ref=lambda x, fn=fn, a=axis, k=keep: fn(x, a, k))
for corr in (0, 2):
    case(f"var-correction{corr}", "var", [R(3, 5)], {"axis": 1, "correction": corr},
         ref=lambda x, c=corr: torch.var(x, dim=1, correction=c))
    case(f"std-correction{corr}", "std", [R(3, 5)], {"axis": 0, "correction": corr},
         ref=lambda x, c=corr: torch.std(x, dim=0, correction=c))


def _quiet_ref(fn):
    def ref(*ts):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return fn(*ts)
    return ref


case("var-single", "var", [R(4, 1)], {"axis": 1}, ref=_quiet_ref(lambda x: torch.var(x, dim=1)))
case("sum-list-axis", "sum", [R(2, 3, 4)], {"axis": [-1, 0]}, ref=lambda x: x.sum(dim=(-1, 0)))
case("mean-0d", "mean", [V(2.5)], ref=lambda x: torch.mean(x))
case("logsumexp-extreme", "logsumexp",
     [V([[-INF, -INF, -INF], [INF, 0.0, 1.0], [1000.0, 1000.0, -5.0], [-1000.0, -1000.0, -INF]])],
     {"axis": 1}, ref=lambda x: torch.logsumexp(x, dim=1))
case("max-nan", "max", [V([[1.0, NAN, 3.0], [1.0, 2.0, 3.0]])], {"axis": 1},
     ref=lambda x: torch.amax(x, dim=1))
case("sum-int32", "sum", [I(3, 4, dtype=np.int32)], {"axis": 1}, ref=lambda x: x.sum(dim=1),
     floating=False)
case("sum-bool", "sum", [B(3, 4)], ref=lambda x: x.sum(), floating=False)
case("prod-int", "prod", [I(3, 4, lo=-3, hi=4)], {"axis": 0}, ref=lambda x: x.prod(dim=0),
     floating=False)
case("max-int", "max", [I(3, 4, lo=-9, hi=9, dtype=np.int32)], {"axis": -1},
     ref=lambda x: x.amax(dim=-1), floating=False)
for name, tfn in (("argmax", torch.argmax), ("argmin", torch.argmin)):
    for axis in (None, 0, 1, -1):
        for keep in (False, True):
            case(f"{name}-axis{axis}-keep{int(keep)}", name, [RI(3, 4, 5)],
                 {"axis": axis, "keepdims": keep},
                 ref=lambda x, f=tfn, a=axis, k=keep: f(x, dim=a, keepdim=k))
    case(f"{name}-nan", name, [V([[1.0, NAN, 3.0, NAN], [5.0, 2.0, 5.0, 0.0]])], {"axis": 1},
         ref=lambda x, f=tfn: f(x, dim=1))
    case(f"{name}-int", name, [I(4, 6, lo=0, hi=3)], {"axis": 1},
         ref=lambda x, f=tfn: f(x, dim=1), floating=False)

# ---------------------------------------------------------------------------
# matmul / linear
# ---------------------------------------------------------------------------

for sid, sa, sb in [
    ("1d-1d", (3,), (3,)),
    ("1d-2d", (3,), (3, 4)),
    ("2d-1d", (2, 3), (3,)),
    ("2d-2d", (2, 3), (3, 4)),
    ("batched-2d", (5, 2, 3), (3, 4)),
    ("1d-batched", (3,), (2, 3, 4)),
    ("batched-1d", (2, 5, 3), (3,)),
    ("batch-bcast", (2, 1, 2, 3), (3, 3, 2)),
    ("batch-bcast2", (4, 1, 2, 3), (1, 5, 3, 2)),
]:
    case(f"matmul-{sid}", "matmul", [R(*sa), R(*sb)], ref=torch.matmul)
case("matmul-int", "matmul", [I(2, 3, lo=-3, hi=3), I(3, 4, lo=-3, hi=3)], ref=torch.matmul,
     floating=False)
case("linear-bias", "linear", [R(2, 5, 3), R(4, 3), R(4)], ref=F.linear)
case("linear-nobias", "linear", [R(6, 3), R(4, 3)], ref=F.linear)
case("linear-1d", "linear", [R(3), R(4, 3), R(4)], ref=F.linear)

# ---------------------------------------------------------------------------
# shape ops
# ---------------------------------------------------------------------------

for shp in [(6, -1), (-1,), (4, 1, 6), (24,), (2, 12)]:
    case(f"reshape-{shp}", "reshape", [R(2, 3, 4)], {"shape": shp},
         ref=lambda x, s=shp: x.reshape(s))
case("reshape-0d", "reshape", [R(1, 1)], {"shape": ()}, ref=lambda x: x.reshape(()))
for axes in [(2, 0, 1), (-1, 0, 1), (0, 1, 2), (1, 2, 0)]:
    case(f"transpose-{axes}", "transpose", [R(2, 3, 4)], {"axes": axes},
         ref=lambda x, a=axes: x.permute(a))
case("concat-axis0", "concat", [R(2, 3), R(4, 3)], {"axis": 0}, ref=lambda *xs: torch.cat(xs, 0))
case("concat-axis-1", "concat", [R(2, 3, 1), R(2, 3, 4), R(2, 3, 2)], {"axis": -1},
     ref=lambda *xs: torch.cat(xs, -1))
case("concat-axis1", "concat", [R(2, 1, 4), R(2, 3, 4)], {"axis": 1},
     ref=lambda *xs: torch.cat(xs, 1))
case("concat-single", "concat", [R(2, 3)], {"axis": 1}, ref=lambda *xs: torch.cat(xs, 1))
case("concat-int-float", "concat", [I(2, 3), R(1, 3)], {"axis": 0},
     ref=lambda *xs: torch.cat(xs, 0))
case("split-count", "split", [R(2, 6, 4)], {"sections": 3, "axis": 1},
     ref=lambda x: torch.chunk(x, 3, dim=1))
case("split-count-axis-1", "split", [R(2, 3, 4)], {"sections": 2, "axis": -1},
     ref=lambda x: torch.chunk(x, 2, dim=-1))
case("split-count-default-axis", "split", [R(4, 3)], {"sections": 4},
     ref=lambda x: torch.chunk(x, 4, dim=0))
case("split-sizes", "split", [R(2, 6, 4)], {"sections": [1, 2, 3], "axis": 1},
     ref=lambda x: torch.split(x, [1, 2, 3], dim=1))
case("split-sizes-zero", "split", [R(5, 2)], {"sections": [0, 4, 1], "axis": 0},
     ref=lambda x: torch.split(x, [0, 4, 1], dim=0))


def _slice_ref(begin, end, strides):
    """torch reference for Python slicing, via index_select (handles negative steps)."""
    def ref(x):
        for d, (b, e, s) in enumerate(zip(begin, end, strides)):
            idx = list(range(*slice(b, e, s).indices(x.shape[d])))
            x = torch.index_select(x, d, torch.tensor(idx, dtype=torch.int64))
        return x
    return ref


for sid, b, e, s in [
    ("basic", [0, 1, 1], [2, 3, 4], [1, 1, 2]),
    ("none", [None, None, 1], [None, 2, None], [1, 1, 1]),
    ("negative-idx", [-2, -3, 0], [None, -1, -1], [1, 1, 1]),
    ("negative-step", [None, None, None], [None, None, None], [1, -1, -2]),
    ("negative-step-bounds", [1, 2, -1], [None, 0, 0], [-1, -1, -3]),
    ("clamped", [-100, 1, 0], [100, 100, 100], [2, 5, 3]),
    ("empty", [1, 2, 0], [1, 0, 4], [1, 1, 1]),
]:
    case(f"strided_slice-{sid}", "strided_slice", [R(3, 4, 5)],
         {"begin": b, "end": e, "strides": s}, ref=_slice_ref(b, e, s))

for mode in ("constant", "reflect", "replicate", "circular"):
    case(f"pad-{mode}-last", "pad", [R(2, 3, 5)], {"pad": [2, 1], "mode": mode},
         ref=lambda x, m=mode: F.pad(x, (2, 1), mode=m))
    case(f"pad-{mode}-2dims", "pad", [R(2, 3, 5)], {"pad": [1, 2, 2, 1], "mode": mode},
         ref=lambda x, m=mode: F.pad(x, (1, 2, 2, 1), mode=m))
    case(f"pad-{mode}-4d", "pad", [R(1, 2, 4, 5)], {"pad": [3, 0, 1, 3], "mode": mode},
         ref=lambda x, m=mode: F.pad(x, (3, 0, 1, 3), mode=m))
case("pad-constant-value", "pad", [R(3, 4)], {"pad": [1, 1, 0, 2], "value": 1.5},
     ref=lambda x: F.pad(x, (1, 1, 0, 2), value=1.5))
case("pad-constant-3dims", "pad", [R(2, 3, 4)], {"pad": [1, 0, 0, 1, 2, 0], "value": -2.0},
     ref=lambda x: F.pad(x, (1, 0, 0, 1, 2, 0), value=-2.0))
case("pad-constant-negative", "pad", [R(3, 5)], {"pad": [-1, 2, 1, -2]},
     ref=lambda x: F.pad(x, (-1, 2, 1, -2)))
case("pad-constant-int", "pad", [I(2, 3)], {"pad": [1, 1], "value": 7},
     ref=lambda x: F.pad(x, (1, 1), value=7), floating=False)

case("gather-axis0", "gather", [R(3, 4), I(2, 4, hi=3)], {"axis": 0},
     ref=lambda x, i: torch.gather(x, 0, i))
case("gather-axis1", "gather", [R(3, 4), I(3, 6, hi=4)], {"axis": 1},
     ref=lambda x, i: torch.gather(x, 1, i))
case("gather-axis-1-smaller", "gather", [R(3, 4, 5), I(2, 3, 2, hi=5)], {"axis": -1},
     ref=lambda x, i: torch.gather(x, -1, i))
case("gather-axis1-3d", "gather", [R(3, 4, 5), I(3, 7, 5, hi=4)], {"axis": 1},
     ref=lambda x, i: torch.gather(x, 1, i))
case("scatter_add-axis0", "scatter_add", [R(3, 4), I(2, 4, hi=3), R(2, 4)], {"axis": 0},
     ref=lambda x, i, s: x.scatter_add(0, i, s))
case("scatter_add-axis-1-smaller", "scatter_add", [R(3, 4, 5), I(2, 3, 6, hi=5), R(2, 3, 6)], {"axis": -1},
     ref=lambda x, i, s: x.scatter_add(-1, i, s))
case("index_select-axis0", "index_select", [R(4, 3), V([3, 0, 3, 1], np.int64)], {"axis": 0},
     ref=lambda x, i: torch.index_select(x, 0, i))
case("index_select-axis-1", "index_select", [R(2, 3, 5), V([4, 4, 0], np.int64)], {"axis": -1},
     ref=lambda x, i: torch.index_select(x, -1, i))
case("index_select-axis1-int32", "index_select", [R(2, 3, 5), V([2, 1], np.int32)], {"axis": 1},
     ref=lambda x, i: torch.index_select(x, 1, i))
case("index_select-0d-index", "index_select", [R(4, 3), V(2, np.int64)], {"axis": 0},
     ref=lambda x, i: torch.index_select(x, 0, i))
for sid, src, tgt in [("lead", (3, 1), (2, 3, 4)), ("minus1", (3, 1), (-1, 5)),
                      ("same", (2, 3), (2, 3)), ("lead-minus1", (1, 4), (3, 2, -1)),
                      ("0d", (), (2, 3))]:
    case(f"expand-{sid}", "expand", [R(*src)], {"shape": tgt},
         ref=lambda x, t=tgt: x.expand(*t))
for k in (0, 1, -1, 3):
    case(f"tril-k{k}", "tril", [R(4, 5)], {"k": k}, ref=lambda x, k=k: torch.tril(x, k))
    case(f"triu-k{k}", "triu", [R(2, 4, 3)], {"k": k}, ref=lambda x, k=k: torch.triu(x, k))
case("tril-bool", "tril", [B(3, 3)], ref=torch.tril, floating=False)

# ---------------------------------------------------------------------------
# constants
# ---------------------------------------------------------------------------

case("one_hot", "one_hot", [I(2, 3, hi=5)], {"num_classes": 5, "dtype": DTYPE},
     ref=lambda i, dt: F.one_hot(i, 5).to(dt), pass_dtype=True)
case("one_hot-int64", "one_hot", [I(4, hi=3)], {"num_classes": 3, "dtype": "int64"},
     ref=lambda i: F.one_hot(i, 3), floating=False)
case("one_hot-infer", "one_hot", [V([0, 3, 1], np.int64)], {"num_classes": -1, "dtype": "int64"},
     ref=lambda i: F.one_hot(i), floating=False)


def _torch_arange(a, dt=torch.int64):
    return torch.arange(a.get("start", 0), a["stop"], a.get("step", 1), dtype=dt)


for sid, a in [("stop", {"stop": 7}), ("start-step", {"start": 2, "stop": 11, "step": 3}),
               ("negative", {"start": 5, "stop": -4, "step": -2}),
               ("empty", {"start": 3, "stop": 3})]:
    case(f"arange-{sid}", "arange", [], dict(a), ref=lambda a=a: _torch_arange(a),
         floating=False)
    case(f"arange-float-{sid}", "arange", [], {**a, "dtype": DTYPE},
         ref=lambda dt, a=a: _torch_arange(a, dt), pass_dtype=True)
case("arange-float-step", "arange", [], {"start": -1.0, "stop": 2.3, "step": 0.1, "dtype": DTYPE},
     ref=lambda dt: torch.arange(-1.0, 2.3, 0.1, dtype=dt), pass_dtype=True)
case("arange-int32", "arange", [], {"stop": 5, "dtype": "int32"},
     ref=lambda: torch.arange(5, dtype=torch.int32), floating=False)
case("full", "full", [], {"shape": (2, 3), "value": 1.7, "dtype": DTYPE},
     ref=lambda dt: torch.full((2, 3), 1.7, dtype=dt), pass_dtype=True)
case("full-int", "full", [], {"shape": [4], "value": -3, "dtype": "int64"},
     ref=lambda: torch.full((4,), -3, dtype=torch.int64), floating=False)
case("full-bool", "full", [], {"shape": (2,), "value": True, "dtype": "bool"},
     ref=lambda: torch.full((2,), True), floating=False)
case("full-0d", "full", [], {"shape": (), "value": 2.0, "dtype": DTYPE},
     ref=lambda dt: torch.full((), 2.0, dtype=dt), pass_dtype=True)


def _pe_ref(length, dim):
    def ref(dt):
        pos = torch.arange(length, dtype=torch.float64)[:, None]
        div = torch.exp(torch.arange(0, dim, 2, dtype=torch.float64) * (-math.log(10000.0) / dim))
        pe = torch.zeros(length, dim, dtype=torch.float64)
        pe[:, 0::2] = torch.sin(pos * div)
        pe[:, 1::2] = torch.cos(pos * div)[:, : dim // 2]
        return pe.to(dt)
    return ref


for length, dim in [(7, 8), (50, 16), (5, 7)]:
    case(f"sinusoidal_positions-{length}x{dim}", "sinusoidal_positions", [],
         {"length": length, "dim": dim, "dtype": DTYPE}, ref=_pe_ref(length, dim),
         pass_dtype=True, tol=10.0)

# ---------------------------------------------------------------------------
# losses: every reduction of every loss
# ---------------------------------------------------------------------------

REDS = ("mean", "sum", "none")
for red in REDS:
    case(f"mse_loss-{red}", "mse_loss", [R(4, 5), R(4, 5)], {"reduction": red},
         ref=lambda x, t, r=red: F.mse_loss(x, t, reduction=r))
    case(f"l1_loss-{red}", "l1_loss", [R(4, 5), R(4, 5)], {"reduction": red},
         ref=lambda x, t, r=red: F.l1_loss(x, t, reduction=r))
    for beta in (1.0, 0.5, 0.0):
        case(f"smooth_l1_loss-beta{beta}-{red}", "smooth_l1_loss", [R(4, 5), R(4, 5)],
             {"reduction": red, "beta": beta},
             ref=lambda x, t, r=red, b=beta: F.smooth_l1_loss(x, t, reduction=r, beta=b))
    case(f"binary_cross_entropy-{red}", "binary_cross_entropy", [PROB(4, 5), PROB(4, 5)],
         {"reduction": red}, ref=lambda x, t, r=red: F.binary_cross_entropy(x, t, reduction=r))
    case(f"binary_cross_entropy-weight-{red}", "binary_cross_entropy",
         [PROB(4, 5), RI(4, 5, lo=0, hi=2), POS(5)], {"reduction": red},
         ref=lambda x, t, w, r=red: F.binary_cross_entropy(x, t, w, reduction=r))
    case(f"binary_cross_entropy-clamp-{red}", "binary_cross_entropy",
         [V([0.0, 1.0, 0.0, 1.0, 1e-30, 0.5]), V([0.0, 1.0, 1.0, 0.0, 0.3, 0.5])],
         {"reduction": red}, ref=lambda x, t, r=red: F.binary_cross_entropy(x, t, reduction=r))
    case(f"bce_with_logits-{red}", "binary_cross_entropy_with_logits", [R(4, 5), PROB(4, 5)],
         {"reduction": red},
         ref=lambda x, t, r=red: F.binary_cross_entropy_with_logits(x, t, reduction=r))
    case(f"bce_with_logits-weights-{red}", "binary_cross_entropy_with_logits",
         [R(4, 5), RI(4, 5, lo=0, hi=2), POS(4, 1), POS(5)], {"reduction": red},
         ref=lambda x, t, w, pw, r=red: F.binary_cross_entropy_with_logits(
             x, t, w, reduction=r, pos_weight=pw))
    case(f"bce_with_logits-posweight-{red}", "binary_cross_entropy_with_logits",
         [R(3, 5), PROB(3, 5), None, POS(5)], {"reduction": red},
         ref=lambda x, t, w, pw, r=red: F.binary_cross_entropy_with_logits(
             x, t, reduction=r, pos_weight=pw))
    case(f"bce_with_logits-extreme-{red}", "binary_cross_entropy_with_logits",
         [EXTREME, V([0.0, 1.0, 0.5, 1.0, 0.0, 1.0, 0.0, 0.5, 1.0])], {"reduction": red},
         ref=lambda x, t, r=red: F.binary_cross_entropy_with_logits(x, t, reduction=r))

    # cross entropy with class indices
    for sid, inputs, attrs in [
        ("basic", [R(6, 4), T(6, C=4)], {}),
        ("weight", [R(6, 4), T(6, C=4), POS(4)], {}),
        ("ignore", [R(6, 4), T(6, C=4, ignore=-100)], {}),
        ("ignore-custom", [R(6, 4), T(6, C=4, ignore=2, every=2)], {"ignore_index": 2}),
        ("weight-ignore", [R(7, 4), T(7, C=4, ignore=-100), POS(4)], {}),
        ("smooth", [R(6, 4), T(6, C=4)], {"label_smoothing": 0.1}),
        ("smooth-weight", [R(6, 4), T(6, C=4), POS(4)], {"label_smoothing": 0.2}),
        ("smooth-ignore", [R(6, 4), T(6, C=4, ignore=-100)], {"label_smoothing": 0.15}),
        ("smooth-weight-ignore", [R(8, 5), T(8, C=5, ignore=1, every=3), POS(5)],
         {"label_smoothing": 0.3, "ignore_index": 1}),
        ("spatial", [R(2, 4, 3, 5), T(2, 3, 5, C=4)], {}),
        ("spatial-all", [R(2, 4, 3, 2), T(2, 3, 2, C=4, ignore=-100, every=4), POS(4)],
         {"label_smoothing": 0.25}),
        ("unbatched", [R(5), V(3, np.int64)], {}),
        ("unbatched-smooth-weight", [R(5), V(1, np.int64), POS(5)], {"label_smoothing": 0.1}),
        ("extreme", [V([[-100.0, 0.0, 100.0], [1000.0, -1000.0, 0.0]]), V([0, 2], np.int64)], {}),
        ("prob-target", [R(4, 5), DIST(4, 5, axis=1)], {}),
        ("prob-target-smooth-weight", [R(4, 5), DIST(4, 5, axis=1), POS(5)],
         {"label_smoothing": 0.1}),
        ("prob-target-spatial", [R(2, 3, 4), DIST(2, 3, 4, axis=1)], {}),
    ]:
        def _ce_ref(*ts, a=attrs, r=red):
            x, t = ts[0], ts[1]
            w = ts[2] if len(ts) > 2 else None
            return F.cross_entropy(x, t, w, reduction=r, **a)
        case(f"cross_entropy-{sid}-{red}", "cross_entropy", inputs, dict(attrs, reduction=red),
             ref=_ce_ref)

    for sid, inputs, attrs in [
        ("basic", [R(6, 4), T(6, C=4)], {}),
        ("weight-ignore", [R(7, 4), T(7, C=4, ignore=-100), POS(4)], {}),
        ("ignore-custom", [R(6, 3), T(6, C=3, ignore=0, every=2)], {"ignore_index": 0}),
        ("spatial", [R(2, 3, 4), T(2, 4, C=3, ignore=-100, every=3), POS(3)], {}),
        ("unbatched", [R(4), V(2, np.int64)], {}),
    ]:
        def _nll_ref(*ts, a=attrs, r=red):
            w = ts[2] if len(ts) > 2 else None
            return F.nll_loss(ts[0], ts[1], w, reduction=r, **a)
        case(f"nll_loss-{sid}-{red}", "nll_loss", inputs, dict(attrs, reduction=red), ref=_nll_ref)

for red in REDS + ("batchmean",):
    def _kl(x, t, r=red, lt=False):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")   # torch warns about reduction="mean"
            return F.kl_div(x, t, reduction=r, log_target=lt)
    case(f"kl_div-{red}", "kl_div", [R(3, 5, lo=-4, hi=0), DIST(3, 5)], {"reduction": red},
         ref=_kl)
    case(f"kl_div-zeros-{red}", "kl_div", [R(2, 3, lo=-4, hi=0), V([[0.0, 0.5, 0.5], [1.0, 0.0, 0.0]])],
         {"reduction": red}, ref=_kl)
    case(f"kl_div-log_target-{red}", "kl_div", [R(3, 5, lo=-4, hi=0), R(3, 5, lo=-4, hi=0)],
         {"reduction": red, "log_target": True}, ref=lambda x, t, k=_kl: k(x, t, lt=True))
case("all-ignored-mean", "cross_entropy", [R(3, 4), V([-100, -100, -100], np.int64)], {},
     ref=lambda x, t: F.cross_entropy(x, t))
case("nll-all-ignored-mean", "nll_loss", [R(3, 4), V([-100, -100, -100], np.int64)], {},
     ref=lambda x, t: F.nll_loss(x, t))


# ---------------------------------------------------------------------------
# the runner
# ---------------------------------------------------------------------------

_TORCH_DT = {np.float32: torch.float32, np.float64: torch.float64}


def _params():
    for c in CASES:
        if c.floating:
            for dt in FLOATS:
                yield pytest.param(c, dt, id=f"{c.id}-{np.dtype(dt).name}")
        else:
            yield pytest.param(c, None, id=c.id)


def _to_torch(a):
    return None if a is None else torch.tensor(a)


def _assert_close(got, want: torch.Tensor, dt, tol: float, what: str):
    want = want.detach().cpu().numpy()
    assert isinstance(got, np.ndarray), f"{what}: returned {type(got).__name__}, not an ndarray"
    assert got.shape == want.shape, f"{what}: shape {got.shape} != torch {want.shape}"
    assert got.dtype == want.dtype, f"{what}: dtype {got.dtype} != torch {want.dtype}"
    if got.dtype.kind != "f":
        np.testing.assert_array_equal(got, want, err_msg=what)
        return
    finite = np.abs(want[np.isfinite(want)])
    scale = max(1.0, float(finite.max())) if finite.size else 1.0
    if got.dtype == np.float64:
        rtol, atol = 1e-10, 1e-12 * scale
    else:                          # float32, float16
        rtol, atol = 1e-5, 1e-6 * scale
    np.testing.assert_allclose(got, want, rtol=rtol * tol, atol=atol * tol, err_msg=what)


@pytest.mark.parametrize("c, dt", list(_params()))
def test_kernel_matches_torch(c: Case, dt):
    rng = np.random.default_rng(zlib.crc32(c.id.encode()))
    inputs = [None if make is None else make(rng, dt) for make in c.inputs]
    attrs = {k: (np.dtype(dt).name if v is DTYPE else v) for k, v in c.attrs.items()}
    attrs = _with_defaults(c.op, attrs)
    originals = [None if a is None else a.copy() for a in inputs]

    with warnings.catch_warnings():
        warnings.simplefilter("error")        # kernels must not leak NumPy fp warnings
        if c.op in KERNELS:
            got = KERNELS[c.op](*inputs, **attrs)
        else:                                 # an op without a kernel: its decomposition
            got = _run_one_node(c.op, inputs, attrs, decompose=True)

    for a, o in zip(inputs, originals):        # inputs are never modified
        if a is not None:
            np.testing.assert_array_equal(a, o)
    tin = [_to_torch(a) for a in inputs]
    while tin and tin[-1] is None:
        tin.pop()
    want = c.ref(*tin, dt=_TORCH_DT[dt]) if c.pass_dtype else c.ref(*tin)
    if isinstance(want, (tuple, list)):
        assert isinstance(got, tuple), f"{c.op} should return a tuple"
        assert len(got) == len(want)
        for i, (g, w) in enumerate(zip(got, want)):
            _assert_close(g, w, dt, c.tol, f"{c.id}[{i}]")
    else:
        _assert_close(got, want, dt, c.tol, c.id)


def _with_defaults(op: str, attrs: dict) -> dict:
    """The attributes as the interpreter passes them: every default filled in
    from the OpDef (the kernels do not repeat the defaults)."""
    return {**{k: d for k, d in OPS[op].attrs.items() if k not in attrs and d is not _REQUIRED}, **attrs}


def _run_one_node(op: str, inputs: list, attrs: dict, decompose: bool):
    """`op` as a one-node graph run by the interpreter; `decompose` runs the
    op's decomposition even where a kernel exists."""
    g = Graph("one_op")
    xs = [None if a is None else g.add_input(f"x{i}", TensorType(DType.parse(a.dtype.name), a.shape))
          for i, a in enumerate(inputs)]
    out = Builder(g).op(op, *xs, **attrs)
    outs = list(out) if isinstance(out, tuple) else [out]
    interp = Interpreter(g)
    env = {x.id: a for x, a in zip(xs, inputs) if x is not None}
    with np.errstate(over="ignore", under="ignore", invalid="ignore", divide="ignore"):  # as Interpreter.run
        return _run_env(interp, g, env, outs, decompose, isinstance(out, tuple))


def _run_env(interp, g, env, outs, decompose, multi):
    if decompose:
        res = interp.run_decomposition(outs[0].producer, env)
    else:
        interp.run_nodes(g, env)
        res = tuple(env[o.id] for o in outs)
    return res if multi else res[0]


_DECOMPOSED = [p for p in _params() if OPS[p.values[0].op].decompose is not None]


@pytest.mark.parametrize("c, dt", _DECOMPOSED)
def test_decomposition_matches_torch(c: Case, dt):
    """Every decomposition against torch, also where a kernel takes precedence."""
    rng = np.random.default_rng(zlib.crc32(c.id.encode()))
    inputs = [None if make is None else make(rng, dt) for make in c.inputs]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = _run_one_node(c.op, inputs, dict(c.attrs), decompose=True)
    want = c.ref(*[_to_torch(a) for a in inputs if a is not None])
    _assert_close(got, want, dt, c.tol, f"{c.id} (decomposition)")


# ---------------------------------------------------------------------------
# beyond the table
# ---------------------------------------------------------------------------

SPEC_OPS = """
neg abs exp log log1p sqrt rsqrt reciprocal square sin cos tanh sigmoid erf sign floor ceil
relu relu6 leaky_relu elu selu gelu silu softplus hardsigmoid hardtanh logical_not cast
add sub mul div pow maximum minimum eq ne lt le gt ge logical_and logical_or prelu
where softmax log_softmax
sum mean max min prod logsumexp var std argmax argmin
matmul linear reshape transpose concat split strided_slice pad gather index_select expand scatter_add
tril triu one_hot arange full sinusoidal_positions
mse_loss l1_loss smooth_l1_loss binary_cross_entropy binary_cross_entropy_with_logits
cross_entropy nll_loss kl_div
randn uniform
""".split()


def test_kernel_tables_are_complete_and_disjoint():
    seen = {}
    for m in MODULES:
        for name, fn in m.KERNELS.items():
            assert callable(fn)
            assert name not in seen, f"{name} in both {seen[name]} and {m.__name__}"
            seen[name] = m.__name__
    assert set(seen) == set(SPEC_OPS)
    tested = {c.op for c in CASES}
    assert set(SPEC_OPS) - tested == {"randn", "uniform"}


def test_erf_accuracy_dense():
    x = np.concatenate([np.linspace(-7, 7, 200001), np.geomspace(1e-300, 7, 2000),
                        -np.geomspace(1e-300, 7, 2000), [0.5, 2.5, -0.5, -2.5]])
    want = torch.erf(torch.from_numpy(x)).numpy()
    got = elementwise.erf(x)
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, want, rtol=2e-15, atol=0)
    x32 = x.astype(np.float32)
    got32 = elementwise.erf(x32)
    assert got32.dtype == np.float32
    np.testing.assert_allclose(got32, torch.erf(torch.from_numpy(x32)).numpy(), rtol=1e-6,
                               atol=1e-37)


def test_cast_bfloat16_rounding_matches_torch():
    rng = np.random.default_rng(0)
    bits = rng.integers(0, 2**32, size=20000, dtype=np.uint64).astype(np.uint32)
    # include exact ties (lower 16 bits = 0x8000) with both parities, and overflow
    bits[:1000] = (bits[:1000] & np.uint32(0xFFFF0000)) | np.uint32(0x8000)
    x = bits.view(np.float32)
    x = np.concatenate([x, np.array([3.3895314e38, -3.4e38, 1e-40, np.inf, -0.0], np.float32)])
    got = elementwise.cast(x, dtype="bfloat16")
    want = torch.from_numpy(x).to(torch.bfloat16).to(torch.float32).numpy()
    assert got.dtype == np.float32
    nan = np.isnan(want)
    np.testing.assert_array_equal(np.isnan(got), nan)
    np.testing.assert_array_equal(got[~nan].view(np.uint32), want[~nan].view(np.uint32))


def test_float32_is_never_widened():
    x = np.linspace(-3, 3, 12, dtype=np.float32).reshape(3, 4)
    for name in ("exp", "sigmoid", "erf", "gelu", "selu", "softplus", "silu", "elu"):
        assert KERNELS[name](x, **_with_defaults(name, {})).dtype == np.float32, name
    for name in ("add", "mul", "sub", "div", "pow", "maximum"):
        assert KERNELS[name](np.abs(x), np.float64(2.0)).dtype == np.float32, name
        assert KERNELS[name](np.abs(x), 2.0).dtype == np.float32, name
    for name in ("mean", "var", "std", "logsumexp", "sum", "prod"):
        assert KERNELS[name](x, axis=1).dtype == np.float32, name
    assert KERNELS["where"](x > 0, x, np.array(0.0)).dtype == np.float32
    assert KERNELS["cross_entropy"](x, np.array([0, 1, 2])).dtype == np.float32
    assert KERNELS["sinusoidal_positions"](length=3, dim=4).dtype == np.float32


@pytest.mark.parametrize("op, args, attrs, exc", [
    ("split", [np.zeros((5, 2))], {"sections": 2}, ValueError),
    ("split", [np.zeros((5, 2))], {"sections": [2, 2]}, ValueError),
    ("reshape", [np.zeros((4, 2))], {"shape": (-1, -1)}, ValueError),
    ("gather", [np.zeros((3, 4)), np.array([[3, 0]])], {"axis": 0}, IndexError),
    ("gather", [np.zeros((3, 4)), np.array([[-1, 0]])], {"axis": 0}, IndexError),
    ("index_select", [np.zeros((3, 4)), np.array([4])], {"axis": 1}, IndexError),
    ("expand", [np.zeros((3, 2))], {"shape": (3, 4)}, ValueError),
    ("binary_cross_entropy", [np.array([1.5]), np.array([1.0])], {}, ValueError),
    ("cross_entropy", [np.zeros((2, 3)), np.array([0, 3])], {}, IndexError),
    ("nll_loss", [np.zeros((2, 3)), np.array([0, -1])], {}, IndexError),
    ("pad", [np.zeros((2, 3))], {"pad": [3, 0], "mode": "reflect"}, ValueError),
    ("one_hot", [np.array([0, 5])], {"num_classes": 5}, IndexError),
    ("transpose", [np.zeros((2, 3))], {"axes": (0, 0)}, ValueError),
    ("prelu", [np.zeros((2, 3)), np.ones(2)], {}, ValueError),
])
def test_errors(op, args, attrs, exc):
    with pytest.raises(exc):
        KERNELS[op](*args, **attrs)


def test_sinusoidal_positions_closed_form():
    pe = shape.sinusoidal_positions(length=11, dim=6, dtype="float64")
    for pos in (0, 1, 10):
        for i in range(3):
            angle = pos / 10000 ** (2 * i / 6)
            assert pe[pos, 2 * i] == pytest.approx(math.sin(angle), abs=1e-15)
            assert pe[pos, 2 * i + 1] == pytest.approx(math.cos(angle), abs=1e-15)


@pytest.mark.parametrize("dtype", ["float32", "float64", "float16", "bfloat16"])
def test_random_deterministic_shapes_and_dtypes(dtype):
    want = np.float32 if dtype == "bfloat16" else np.dtype(dtype)
    a = rnd.randn(shape=(3, 4), seed=7, dtype=dtype)
    b = rnd.randn(shape=(3, 4), seed=7, dtype=dtype)
    c = rnd.randn(shape=(3, 4), seed=8, dtype=dtype)
    assert a.shape == (3, 4) and a.dtype == want
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    u = rnd.uniform(shape=(2, 5), low=-1.0, high=3.0, seed=(1, 2), dtype=dtype)
    np.testing.assert_array_equal(u, rnd.uniform(shape=[2, 5], low=-1.0, high=3.0, seed=(1, 2),
                                                 dtype=dtype))
    assert u.shape == (2, 5) and u.dtype == want
    assert np.all(u >= -1.0) and np.all(u < 3.0)


def test_random_same_values_across_dtypes():
    n64 = rnd.randn(shape=(100,), seed=3, dtype="float64")
    n32 = rnd.randn(shape=(100,), seed=3, dtype="float32")
    np.testing.assert_array_equal(n32, n64.astype(np.float32))
    u64 = rnd.uniform(shape=(100,), seed=3, low=2.0, high=5.0, dtype="float64")
    u32 = rnd.uniform(shape=(100,), seed=3, low=2.0, high=5.0, dtype="float32")
    np.testing.assert_allclose(u32, u64, rtol=1e-6)
    assert rnd.randn(shape=(), seed=0).shape == ()


def test_random_moments():
    n = rnd.randn(shape=(200_000,), seed=11, dtype="float64")
    assert abs(n.mean()) < 0.01 and abs(n.std() - 1) < 0.01
    assert abs(np.mean(n ** 3)) < 0.03 and abs(np.mean(n ** 4) - 3) < 0.06
    u = rnd.uniform(shape=(200_000,), low=-2.0, high=4.0, seed=12, dtype="float32")
    assert abs(u.mean() - 1.0) < 0.02 and abs(u.var() - 3.0) < 0.03
    assert u.min() >= -2.0 and u.max() < 4.0
    # the half-open interval survives rounding in a narrow dtype
    h = rnd.uniform(shape=(100_000,), seed=5, dtype="float16")
    assert h.max() < 1.0
    bf = rnd.uniform(shape=(100_000,), seed=5, dtype="bfloat16")
    assert bf.max() < 1.0
