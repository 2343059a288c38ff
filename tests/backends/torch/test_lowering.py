"""The PyTorch lowering table and code generator against the NumPy interpreter.

Every op in OPS is lowered (a test names any that is not), and every op but
the random ones is checked the same way: a one-node graph is run by the
NumPy reference interpreter and by the generated torch function, in float32
and float64, over the attribute variants that matter.  dropout, randn and
uniform draw from torch's generator, so their semantics are tested instead of
their values.  Whole graphs follow: LeNet-5, the scan-based LSTM, training
steps (symbolic backward + Adam), and a graph full of hostile names.
"""
from __future__ import annotations

import io
import math
import tokenize
import zlib
from dataclasses import dataclass, field

import numpy as np
import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

from dlc.backends.numpy.interpreter import Interpreter
from dlc.backends.torch.funcgen import compile_function, generate_function, sanitize
from dlc.backends.torch.lowering import LOWERING, render, string_literal
from dlc.compiler.builder import Builder
from dlc.compiler.dims import Dim
from dlc.compiler.ir import Graph, Init, ParamInfo
from dlc.compiler.ops import OPS
from dlc.compiler.types import DType, TensorType
from dlc.errors import Span

pytestmark = [
    pytest.mark.torch,
    pytest.mark.filterwarnings("ignore:Using padding='same':UserWarning"),
    pytest.mark.filterwarnings("ignore:LSTM with projections:UserWarning"),
]

INF, NAN = math.inf, math.nan

# input constructors (rng, dtype) -> array: shared with the TVM tests
from op_inputs import OP_ROWS, B, DIST, FMASK, I, MASK, N, POS, PROB, R, RI, T, V  # noqa: E402
from pool_reference import POOL_ND_CASES

def RNN_WEIGHTS(kind, input_size, hidden, **kw):
    """torch's _flat_weights of a fresh nn.RNN/LSTM/GRU, as arrays."""
    def make(rng, dt):
        torch.manual_seed(int(rng.integers(1 << 30)))
        mod = getattr(torch.nn, kind)(input_size, hidden, **kw)
        return [w.detach().numpy().astype(dt) for w in mod._flat_weights]
    return make


EXTREME = V([-100.0, -50.0, -20.0, -1.0, 0.0, 1.0, 20.0, 50.0, 100.0])


@dataclass
class Case:
    id: str
    op: str
    inputs: list
    attrs: dict = field(default_factory=dict)
    floating: bool = True       # run in float32 and float64 (else once, float64 for float makers)
    tol: float = 1.0


CASES: list[Case] = []


def case(id, op, inputs, attrs=None, **kw):
    CASES.append(Case(id, op, inputs, attrs or {}, **kw))


# ---------------------------------------------------------------------------
# elementwise
# ---------------------------------------------------------------------------

for name, inp in [
    ("neg", R(3, 4)), ("abs", R(3, 4)), ("exp", R(3, 4, lo=-10, hi=10)),
    ("log", POS(3, 4, lo=1e-3, hi=100)), ("log1p", R(3, 4, lo=-0.9, hi=5)), ("sqrt", POS(3, 4)),
    ("rsqrt", POS(3, 4)), ("reciprocal", V([-4.0, -0.5, 0.25, 3.0, 1e-3])), ("square", R(3, 4)),
    ("sin", R(3, 4, lo=-7, hi=7)), ("cos", R(3, 4, lo=-7, hi=7)), ("tanh", R(3, 4, lo=-5, hi=5)),
    ("sigmoid", R(3, 4, lo=-10, hi=10)), ("erf", R(5, 7, lo=-5, hi=5)), ("floor", R(3, 4)),
    ("ceil", R(3, 4)), ("sign", V([-2.5, -0.0, 0.0, 3.0, NAN, -INF])), ("relu", R(3, 4)),
    ("selu", R(3, 4)),
    ("elu", R(3, 4)),
]:
    case(name, name, [inp])
for row in OP_ROWS:   # the per-op table every backend test shares
    case(row.id, row.op, row.inputs, row.attrs)
for name in ("sigmoid", "tanh", "silu", "softplus", "elu", "selu", "gelu", "erf"):
    case(f"{name}-extreme", name, [EXTREME])
case("relu-nan", "relu", [V([NAN, -1.0, 2.0])])
case("exp-0d", "exp", [V(0.75)])
case("softplus-beta-threshold", "softplus", [R(3, 4, lo=-6, hi=6)], {"beta": 2.0, "threshold": 5.0})
case("leaky_relu-slope", "leaky_relu", [R(3, 4)], {"negative_slope": 0.2})
case("elu-alpha", "elu", [R(3, 4)], {"alpha": 0.5})
case("hardtanh-bounds", "hardtanh", [R(3, 4)], {"min_val": -2.0, "max_val": 0.5})
case("gelu-tanh", "gelu", [R(3, 4, lo=-6, hi=6)], {"approximate": "tanh"})
for name in ("neg", "abs", "square", "sign"):
    case(f"{name}-int", name, [I(2, 3, lo=-3, hi=4, dtype=np.int32)], floating=False)
case("logical_not", "logical_not", [B(3, 4)], floating=False)

case("prelu-channels", "prelu", [R(2, 3, 4), R(3, lo=0, hi=0.5)])
case("prelu-2d", "prelu", [R(5, 3), R(3, lo=0, hi=0.5)])
case("prelu-single", "prelu", [R(2, 3, 4), V([0.25])])
case("prelu-single-1d", "prelu", [R(6), V([0.1])])

for dst, inp in [("int32", R(3, 4, lo=-5, hi=5)), ("int64", V([-2.7, -0.5, 0.0, 0.5, 2.7])),
                 ("int8", R(3, 4, lo=-100, hi=100)), ("bool", V([0.0, -0.0, 1.5, -2.0, NAN])),
                 ("float16", R(3, 4, lo=-100, hi=100)), ("float32", R(3, 4)), ("float64", R(3, 4)),
                 ("bfloat16", R(5, 6, lo=-100, hi=100))]:
    case(f"cast-{dst}", "cast", [inp], {"dtype": dst})
case("cast-int-float32", "cast", [I(3, 4, lo=-9, hi=9)], {"dtype": "float32"}, floating=False)
case("cast-bool-float64", "cast", [B(3, 4)], {"dtype": "f64"}, floating=False)
case("cast-int64-int8", "cast", [I(3, 4, lo=-100, hi=100)], {"dtype": "int8"}, floating=False)
case("cast-int-bool", "cast", [I(3, 4, lo=-2, hi=2)], {"dtype": "bool"}, floating=False)

BIN_SHAPES = [("same", (3, 4), (3, 4)), ("bcast", (2, 3, 4), (3, 1)), ("bcast-both", (2, 1, 4), (3, 1)),
              ("0d", (2, 3), ()), ("0d-left", (), (4,))]
for name in ("add", "sub", "mul", "div", "maximum", "minimum"):
    for sid, sa, sb in BIN_SHAPES:
        case(f"{name}-{sid}", name, [R(*sa), POS(*sb, lo=0.5, hi=3) if name == "div" else R(*sb)])
case("pow-bcast", "pow", [POS(2, 3, 4), R(4)])
case("pow-0d", "pow", [POS(3, 4), V(2.5)])
case("pow-neg-base", "pow", [R(3, 4), V(3.0)])
case("maximum-nan", "maximum", [V([NAN, 1.0, -INF]), V([0.0, NAN, 2.0])])
case("div-by-zero", "div", [V([1.0, -1.0, 0.0]), V(0.0)])
for name in ("eq", "ne", "lt", "le", "gt", "ge"):
    case(f"{name}-bcast", name, [RI(2, 3, 4), RI(3, 1)])
    case(f"{name}-0d", name, [RI(3, 4), V(1.0)])
case("eq-nan", "eq", [V([NAN, 1.0]), V([NAN, 1.0])])
for name in ("logical_and", "logical_or"):
    case(f"{name}-bcast", name, [B(2, 3, 4), B(3, 1)], floating=False)
case("add-int64-int32", "add", [I(3, 4), I(4, dtype=np.int32)], floating=False)
case("mul-int32-0d", "mul", [I(3, 4, dtype=np.int32), V(3, np.int32)], floating=False)
case("add-bool-int", "add", [B(3, 4), I(4, dtype=np.int32)], floating=False)
case("add-bool-bool", "add", [B(3, 4), B(3, 4)], floating=False)
case("mul-bool-bool", "mul", [B(3, 4), B(4)], floating=False)
case("sub-int", "sub", [I(3, 4), I(3, 1)], floating=False)

case("where-bcast", "where", [B(3, 1), R(2, 3, 4), R(4)])
case("where-0d", "where", [B(2, 3), R(2, 3), V(0.0)])
case("where-int", "where", [B(5,), I(5), I(1)], floating=False)
for ax in (-1, 0, 1):
    case(f"softmax-axis{ax}", "softmax", [R(2, 3, 4)], {"axis": ax})
    case(f"log_softmax-axis{ax}", "log_softmax", [R(2, 3, 4)], {"axis": ax})
SOFT_EXTREME = V([[-100.0, 0.0, 100.0], [1000.0, 1000.0, -1000.0], [-INF, 0.0, 1.0], [100.0, 100.0, 100.0]])
case("softmax-extreme", "softmax", [SOFT_EXTREME])
case("log_softmax-extreme", "log_softmax", [SOFT_EXTREME])

# ---------------------------------------------------------------------------
# matmul, linear, reductions
# ---------------------------------------------------------------------------

for sid, sa, sb in [("1d-1d", (3,), (3,)), ("1d-2d", (3,), (3, 4)), ("2d-1d", (2, 3), (3,)),
                    ("2d-2d", (2, 3), (3, 4)), ("batched-2d", (5, 2, 3), (3, 4)), ("1d-batched", (3,), (2, 3, 4)),
                    ("batch-bcast", (2, 1, 2, 3), (3, 3, 2)), ("batch-bcast2", (4, 1, 2, 3), (1, 5, 3, 2))]:
    case(f"matmul-{sid}", "matmul", [R(*sa), R(*sb)])
case("matmul-int", "matmul", [I(2, 3, lo=-3, hi=3), I(3, 4, lo=-3, hi=3)], floating=False)
case("linear-bias", "linear", [R(2, 5, 3), R(4, 3), R(4)])
case("linear-nobias", "linear", [R(6, 3), R(4, 3)])
case("linear-1d", "linear", [R(3), R(4, 3), R(4)])

for name in ("sum", "mean", "max", "min", "prod", "logsumexp", "var", "std"):
    for axis in (None, 1, -1, (0, 2), (0, -1), [2]):
        for keep in (False, True):
            inp = R(2, 3, 4, lo=0.5, hi=1.5) if name == "prod" else R(2, 3, 4)
            case(f"{name}-axis{axis}-keep{int(keep)}", name, [inp], {"axis": axis, "keepdims": keep})
for corr in (0, 2):
    case(f"var-correction{corr}", "var", [R(3, 5)], {"axis": 1, "correction": corr})
    case(f"std-correction{corr}", "std", [R(3, 5)], {"axis": 0, "correction": corr})
case("mean-0d", "mean", [V(2.5)])
case("prod-3axes", "prod", [R(2, 3, 4, lo=0.5, hi=1.5)], {"axis": (-1, 0, 1)})
case("logsumexp-extreme", "logsumexp",
     [V([[-INF, -INF, -INF], [INF, 0.0, 1.0], [1000.0, 1000.0, -5.0], [-1000.0, -1000.0, -INF]])], {"axis": 1})
case("max-nan", "max", [V([[1.0, NAN, 3.0], [1.0, 2.0, 3.0]])], {"axis": 1})
case("sum-int32", "sum", [I(3, 4, dtype=np.int32)], {"axis": 1}, floating=False)
case("sum-bool", "sum", [B(3, 4)], floating=False)
case("prod-int", "prod", [I(3, 4, lo=-3, hi=4)], {"axis": 0}, floating=False)
case("max-int", "max", [I(3, 4, lo=-9, hi=9, dtype=np.int32)], {"axis": -1}, floating=False)
for name in ("argmax", "argmin"):
    for axis in (None, 0, -1):
        for keep in (False, True):
            case(f"{name}-axis{axis}-keep{int(keep)}", name, [RI(3, 4, 5)], {"axis": axis, "keepdims": keep})
    case(f"{name}-nan", name, [V([[1.0, NAN, 3.0, NAN], [5.0, 2.0, 5.0, 0.0]])], {"axis": 1})
    case(f"{name}-int", name, [I(4, 6, lo=0, hi=3)], {"axis": 1}, floating=False)

# ---------------------------------------------------------------------------
# shape ops and constants
# ---------------------------------------------------------------------------

for shp in [(6, -1), (-1,), (4, 1, 6), (24,), (2, 12), 24]:
    case(f"reshape-{shp}", "reshape", [R(2, 3, 4)], {"shape": shp})
case("reshape-0d", "reshape", [R(1, 1)], {"shape": ()})
for axes in [(2, 0, 1), (-1, 0, 1), (0, 1, 2), (1, 0)]:
    case(f"transpose-{axes}", "transpose", [R(2, 3) if len(axes) == 2 else R(2, 3, 4)], {"axes": axes})
case("concat-axis0", "concat", [R(2, 3), R(4, 3)], {"axis": 0})
case("concat-axis-1", "concat", [R(2, 3, 1), R(2, 3, 4), R(2, 3, 2)], {"axis": -1})
case("concat-single", "concat", [R(2, 3)], {"axis": 1})
case("concat-int", "concat", [I(2, 3), I(1, 3)], {"axis": 0}, floating=False)
case("split-count", "split", [R(2, 6, 4)], {"sections": 3, "axis": 1})
case("split-count-axis-1", "split", [R(2, 3, 4)], {"sections": 2, "axis": -1})
case("split-one", "split", [R(4, 3)], {"sections": 1})
case("split-sizes", "split", [R(2, 6, 4)], {"sections": [1, 2, 3], "axis": 1})
case("split-sizes-zero", "split", [R(5, 2)], {"sections": [0, 4, 1], "axis": 0})
for sid, b, e, s in [
    ("basic", [0, 1, 1], [2, 3, 4], [1, 1, 2]),
    ("none", [None, None, 1], [None, 2, None], [1, 1, 1]),
    ("negative-idx", [-2, -3, 0], [None, -1, -1], [1, 1, 1]),
    ("negative-step", [None, None, None], [None, None, None], [1, -1, -2]),
    ("negative-step-bounds", [1, 2, -1], [None, 0, 0], [-1, -1, -3]),
    ("negative-step-clamped", [100, -100, 7], [-100, 100, -7], [-1, -2, -2]),
    ("negative-step-neg-end", [-1, 3, 4], [-3, -5, -6], [-1, -1, -2]),
    ("clamped", [-100, 1, 0], [100, 100, 100], [2, 5, 3]),
    ("empty", [1, 2, 0], [1, 0, 4], [1, 1, 1]),
    ("strides-none", [0, 1, None], [2, None, 3], None),
]:
    case(f"strided_slice-{sid}", "strided_slice", [R(3, 4, 5)], {"begin": b, "end": e, "strides": s})
for mode in ("constant", "reflect", "replicate", "circular"):
    case(f"pad-{mode}-last", "pad", [R(2, 3, 5)], {"pad": [2, 1], "mode": mode})
    case(f"pad-{mode}-2dims", "pad", [R(2, 3, 5)], {"pad": [1, 2, 2, 1], "mode": mode})
    case(f"pad-{mode}-4d", "pad", [R(1, 2, 4, 5)], {"pad": [3, 0, 1, 3], "mode": mode})
    # ranks torch's F.pad refuses in these modes: the _pad helper folds leading dims
    case(f"pad-{mode}-1d", "pad", [R(5)], {"pad": [2, 1], "mode": mode})
    case(f"pad-{mode}-5d-one-pair", "pad", [R(2, 1, 2, 3, 5)], {"pad": [1, 2], "mode": mode})
case("pad-constant-value", "pad", [R(3, 4)], {"pad": [1, 1, 0, 2], "value": 1.5})
case("pad-constant-3dims", "pad", [R(2, 3, 4)], {"pad": [1, 0, 0, 1, 2, 0], "value": -2.0})
case("pad-constant-negative", "pad", [R(3, 5)], {"pad": [-1, 2, 1, -2]})
case("pad-constant-int", "pad", [I(2, 3)], {"pad": [1, 1], "value": 7}, floating=False)
case("gather-axis0", "gather", [R(3, 4), I(2, 4, hi=3)], {"axis": 0})
case("gather-axis-1-smaller", "gather", [R(3, 4, 5), I(2, 3, 2, hi=5)], {"axis": -1})
case("gather-int32-index", "gather", [R(3, 4), I(3, 6, hi=4, dtype=np.int32)], {"axis": 1})
case("scatter_add-axis0", "scatter_add", [R(3, 4), I(2, 4, hi=3), R(2, 4)], {"axis": 0})
case("scatter_add-axis-1-smaller", "scatter_add", [R(3, 4, 5), I(2, 3, 6, hi=5), R(2, 3, 6)], {"axis": -1})
case("index_select-axis0", "index_select", [R(4, 3), V([3, 0, 3, 1], np.int64)], {"axis": 0})
case("index_select-axis-1", "index_select", [R(2, 3, 4), I(6, hi=4, dtype=np.int32)], {"axis": -1})
case("index_select-0d", "index_select", [R(4, 3), V(2, np.int64)], {"axis": 0})
for shp in [(3, 4), (2, 3, 4), (-1, 4), (2, -1, -1)]:
    case(f"expand-{shp}", "expand", [R(3, 1)], {"shape": shp})
for name in ("tril", "triu"):
    for k in (0, 1, -2):
        case(f"{name}-k{k}", name, [R(2, 4, 5)], {"k": k})
case("one_hot", "one_hot", [I(2, 3, hi=4)], {"num_classes": 5}, floating=False)
case("one_hot-int32-f64", "one_hot", [I(4, hi=3, dtype=np.int32)], {"num_classes": 3, "dtype": "float64"},
     floating=False)
case("one_hot-int64-out", "one_hot", [I(4, hi=3)], {"num_classes": 3, "dtype": "int64"}, floating=False)
case("one_hot-bool", "one_hot", [I(4, hi=3)], {"num_classes": 3, "dtype": "bool"}, floating=False)
case("arange-stop", "arange", [], {"stop": 7}, floating=False)
case("arange-start-step", "arange", [], {"start": 2, "stop": 11, "step": 3, "dtype": "int32"}, floating=False)
case("arange-negative-step", "arange", [], {"start": 5, "stop": -4, "step": -2}, floating=False)
case("arange-float", "arange", [], {"start": 0.1, "stop": 2.3, "step": 0.3, "dtype": "float32"}, floating=False)
case("arange-f64", "arange", [], {"start": -1.0, "stop": 1.0, "step": 0.25, "dtype": "float64"}, floating=False)
for sid, attrs in [("zeros", {"shape": (2, 3), "value": 0.0}), ("ones-f64", {"shape": (4,), "value": 1, "dtype": "float64"}),
                   ("value", {"shape": (2, 2), "value": -2.5}), ("0d", {"shape": (), "value": 3.0}),
                   ("int", {"shape": (3,), "value": 7, "dtype": "int64"}),
                   ("int-trunc", {"shape": (3,), "value": 1.5, "dtype": "int32"}),
                   ("bool", {"shape": (2,), "value": True, "dtype": "bool"}),
                   ("neg-zero", {"shape": (2,), "value": -0.0}), ("inf", {"shape": (2,), "value": -INF}),
                   ("int-shape", {"shape": 3, "value": 0.5})]:
    case(f"full-{sid}", "full", [], attrs, floating=False)
case("sinusoidal_positions", "sinusoidal_positions", [], {"length": 7, "dim": 6}, floating=False)
case("sinusoidal_positions-odd-f64", "sinusoidal_positions", [], {"length": 5, "dim": 7, "dtype": "float64"},
     floating=False)

# ---------------------------------------------------------------------------
# convolution, pooling
# ---------------------------------------------------------------------------

for sid, shapes, attrs in [
    ("basic", [(2, 3, 11), (4, 3, 3), (4,)], {}),
    ("stride-pad-dil", [(2, 4, 17), (6, 4, 3), (6,)], {"stride": 2, "padding": 2, "dilation": 2}),
    ("same-even-k", [(1, 3, 10), (2, 3, 4)], {"padding": "same"}),
    ("valid-groups", [(2, 6, 9), (4, 3, 3)], {"padding": "valid", "groups": 2}),
    ("depthwise", [(2, 4, 9), (8, 1, 3), (8,)], {"groups": 4, "padding": 1}),
]:
    case(f"conv1d-{sid}", "conv1d", [N(*s) for s in shapes], attrs)
for sid, shapes, attrs in [
    ("basic", [(2, 3, 8, 7), (5, 3, 3, 3), (5,)], {}),
    ("nobias", [(1, 3, 8, 8), (4, 3, 3, 3)], {}),
    ("stride-pad", [(2, 3, 9, 10), (4, 3, 3, 3), (4,)], {"stride": 2, "padding": 1}),
    ("asym", [(1, 2, 9, 11), (3, 2, 3, 2), (3,)], {"stride": (2, 1), "padding": (1, 2), "dilation": (1, 2)}),
    ("same", [(2, 3, 7, 8), (4, 3, 4, 3), (4,)], {"padding": "same", "dilation": (1, 2)}),
    ("groups", [(2, 6, 7, 7), (9, 2, 3, 3), (9,)], {"groups": 3, "padding": 1}),
    ("depthwise", [(2, 5, 8, 8), (5, 1, 3, 3), (5,)], {"groups": 5, "padding": 1, "stride": 2}),
]:
    case(f"conv2d-{sid}", "conv2d", [N(*s) for s in shapes], attrs)
for sid, shapes, attrs in [
    ("basic", [(2, 3, 5, 4), (3, 4, 3, 3), (4,)], {}),
    ("stride-pad-outpad", [(1, 4, 5, 5), (4, 3, 3, 3), (3,)], {"stride": 2, "padding": 1, "output_padding": 1}),
    ("asym", [(2, 2, 4, 6), (2, 3, 2, 3)], {"stride": (3, 2), "padding": (0, 1), "output_padding": (2, 0)}),
    ("groups-dil", [(1, 6, 5, 5), (6, 2, 3, 3), (6,)],
     {"stride": 2, "groups": 3, "dilation": 2, "padding": 2, "output_padding": 1}),
]:
    case(f"conv_transpose2d-{sid}", "conv_transpose2d", [N(*s) for s in shapes], attrs)
case("conv3d-stride-pad-dil-groups", "conv3d", [N(1, 4, 6, 5, 7), N(6, 2, 3, 2, 3), N(6)],
     {"stride": (1, 2, 1), "padding": (1, 0, 1), "dilation": (2, 1, 1), "groups": 2})
case("conv_transpose3d-stride-outpad", "conv_transpose3d", [N(1, 4, 3, 4, 3), N(4, 3, 3, 2, 3), N(3)],
     {"stride": (2, 1, 2), "padding": 1, "output_padding": (1, 0, 1), "dilation": (1, 2, 1)})

POOL_CASES = [
    ("max_pool1d", (2, 3, 11), {"kernel_size": 3}),
    ("max_pool1d", (2, 3, 12), {"kernel_size": 3, "stride": 2, "padding": 1, "dilation": 2, "ceil_mode": True}),
    ("max_pool2d", (2, 3, 8, 8), {"kernel_size": 2}),
    ("max_pool2d", (1, 2, 9, 7), {"kernel_size": 3, "stride": 2, "padding": 1}),
    ("max_pool2d", (1, 2, 10, 9), {"kernel_size": (3, 2), "stride": (2, 2), "ceil_mode": True}),
    ("max_pool2d", (2, 2, 11, 12), {"kernel_size": 3, "stride": 2, "padding": 1, "dilation": (2, 1), "ceil_mode": True}),
    ("max_pool2d", (3, 7, 7), {"kernel_size": 2, "stride": 1}),
    ("avg_pool1d", (2, 3, 10), {"kernel_size": 3, "stride": 2}),
    ("avg_pool1d", (2, 3, 10), {"kernel_size": 3, "stride": 2, "padding": 1, "ceil_mode": True,
                                "count_include_pad": False}),
    ("avg_pool2d", (2, 3, 8, 8), {"kernel_size": 2}),
    ("avg_pool2d", (1, 2, 7, 9), {"kernel_size": 3, "stride": 2, "padding": 1}),
    ("avg_pool2d", (1, 2, 7, 9), {"kernel_size": 3, "stride": 2, "padding": 1, "count_include_pad": False}),
    ("avg_pool2d", (1, 2, 10, 11), {"kernel_size": (3, 2), "stride": (2, 3), "padding": (1, 1), "ceil_mode": True,
                                    "count_include_pad": False}),
    ("avg_pool2d", (1, 2, 6, 6), {"kernel_size": 3, "padding": 1, "divisor_override": 5}),
    *POOL_ND_CASES,
    ("adaptive_avg_pool1d", (2, 3, 13), {"output_size": 6}),
    ("adaptive_avg_pool2d", (2, 3, 13, 10), {"output_size": (6, 7)}),
    ("adaptive_avg_pool2d", (2, 3, 7, 5), {"output_size": 1}),
    ("adaptive_avg_pool2d", (1, 2, 3, 5), {"output_size": (5, None)}),
    ("adaptive_max_pool2d", (2, 3, 8, 8), {"output_size": 2}),
    ("adaptive_max_pool2d", (2, 3, 13, 11), {"output_size": (6, 4)}),
    # the backward helpers: ties (integer-valued inputs) go to the first maximum
    ("max_pool2d_indices", (2, 2, 7, 8), {"kernel_size": 2}),
    ("max_pool2d_indices", (1, 2, 9, 7), {"kernel_size": 3, "stride": 2, "padding": 1, "ceil_mode": True}),
    ("max_pool2d_indices", (1, 2, 11, 12), {"kernel_size": (3, 2), "stride": (2, 1), "dilation": (2, 1)}),
    ("max_pool3d_indices", (1, 2, 7, 6, 8), {"kernel_size": (3, 2, 2), "stride": 2, "padding": (1, 0, 1),
                                             "dilation": (1, 2, 1), "ceil_mode": True}),
    ("adaptive_max_pool2d_indices", (2, 3, 13, 11), {"output_size": (6, 4)}),
    ("adaptive_max_pool2d_indices", (1, 2, 8, 8), {"output_size": 3}),
]
for i, (op, shp, attrs) in enumerate(POOL_CASES):
    case(f"{op}-{i}", op, [RI(*shp, lo=-3, hi=4) if "indices" in op else N(*shp)], attrs)

RESAMPLE_CASES = [
    ("interpolate", (2, 3, 5, 6), {"scale_factor": 2}),
    ("interpolate", (2, 3, 7), {"scale_factor": 1.7}),
    ("interpolate", (1, 2, 5, 6), {"size": (7, 4), "mode": "nearest-exact"}),
    ("interpolate", (1, 2, 5, 6), {"size": (9, 3), "mode": "bilinear", "align_corners": True}),
    ("interpolate", (1, 2, 5, 6), {"scale_factor": (1.1, 2.5), "mode": "bilinear"}),
    ("interpolate", (1, 2, 5, 6), {"scale_factor": 1.5, "mode": "bicubic", "recompute_scale_factor": True}),
    ("interpolate", (2, 3, 7), {"size": 4, "mode": "linear"}),
    ("interpolate", (1, 2, 7, 5), {"size": (3, 2), "mode": "area"}),
    ("pixel_shuffle", (2, 8, 3, 2), {"upscale_factor": 2}),
    ("pixel_unshuffle", (2, 1, 4, 6), {"downscale_factor": 2}),
]
for i, (op, shp, attrs) in enumerate(RESAMPLE_CASES):
    case(f"{op}-{i}", op, [N(*shp)], attrs)

# ---------------------------------------------------------------------------
# normalisation, embedding, attention
# ---------------------------------------------------------------------------

for mode in ("train", "eval"):
    for shp in ((6, 4), (3, 4, 5), (2, 4, 3, 5)):
        for affine in (True, False):
            c = shp[1]
            case(f"batch_norm-{mode}-{len(shp)}d{'-affine' if affine else ''}", "batch_norm",
                 [N(*shp), N(c), POS(c, lo=0.5, hi=1.5)] + ([N(c), N(c)] if affine else []),
                 {"training": mode == "train", "momentum": 0.3, "eps": 1e-3})
case("batch_norm-train-nostats", "batch_norm", [N(4, 3, 5), None, None, N(3), N(3)], {"training": True})
case("batch_norm-eval-bias-only", "batch_norm", [N(4, 3), N(3), POS(3), None, N(3)], {})
case("layer_norm-1", "layer_norm", [N(3, 4, 7), N(7), N(7)], {"normalized_shape": 7})
case("layer_norm-2", "layer_norm", [N(3, 4, 7), N(4, 7), N(4, 7)], {"normalized_shape": (4, 7), "eps": 1e-3})
case("layer_norm-noaffine", "layer_norm", [N(5, 6)], {"normalized_shape": (6,)})
case("group_norm-4d", "group_norm", [N(2, 6, 4, 5), N(6), N(6)], {"num_groups": 3})
case("group_norm-3d-noaffine", "group_norm", [N(3, 8, 5)], {"num_groups": 2, "eps": 1e-3})
case("local_response_norm-4d", "local_response_norm", [N(2, 7, 4, 5)], {"size": 5, "alpha": 1e-2, "k": 2.0})
case("local_response_norm-3d-even", "local_response_norm", [N(2, 6, 5)], {"size": 4, "alpha": 0.1, "beta": 0.5})
case("local_response_norm-5d", "local_response_norm", [N(1, 5, 2, 3, 4)], {"size": 3})
case("embedding", "embedding", [V([[1, 3, 3], [0, 9, 1]], np.int64), N(10, 4)])
case("embedding-padding", "embedding", [V([2, 0, 2, 5, 0], np.int64), N(6, 3)], {"padding_idx": 0})
case("embedding-int32-neg-padding", "embedding", [I(2, 3, 4, hi=7, dtype=np.int32), N(7, 5)], {"padding_idx": -1})
case("scatter_add_rows", "scatter_add_rows", [V([[1, 3, 3], [0, 3, 1]], np.int64), N(2, 3, 4)], {"num_rows": 5})
case("scatter_add_rows-1d", "scatter_add_rows", [I(9, hi=4, dtype=np.int32), N(9, 2)], {"num_rows": 4})

SDPA = "scaled_dot_product_attention"
case("sdpa-basic", SDPA, [N(2, 5, 8), N(2, 5, 8), N(2, 5, 8)])
case("sdpa-L-ne-S-Ev", SDPA, [N(2, 3, 4, 8), N(2, 3, 6, 8), N(2, 3, 6, 5)])
case("sdpa-bool-mask", SDPA, [N(2, 2, 4, 8), N(2, 2, 6, 8), N(2, 2, 6, 8), MASK(2, 2, 4, 6)])
case("sdpa-bool-mask-bcast", SDPA, [N(2, 3, 4, 8), N(2, 3, 6, 8), N(2, 3, 6, 8), MASK(4, 6)])
case("sdpa-float-mask", SDPA, [N(2, 3, 5, 4), N(2, 3, 5, 4), N(2, 3, 5, 4), FMASK(2, 3, 5, 5)])
case("sdpa-fully-masked-row", SDPA, [N(1, 4, 8), N(1, 5, 8), N(1, 5, 3),
                                     V([[1, 1, 0, 0, 1], [0] * 5, [1] * 5, [0, 0, 0, 0, 1]], np.bool_)])
case("sdpa-causal", SDPA, [N(2, 2, 6, 4), N(2, 2, 6, 4), N(2, 2, 6, 4)], {"is_causal": True})
case("sdpa-causal-L-lt-S", SDPA, [N(2, 3, 8), N(2, 5, 8), N(2, 5, 8)], {"is_causal": True})
case("sdpa-scale", SDPA, [N(2, 4, 8), N(2, 6, 8), N(2, 6, 3), MASK(4, 6)], {"scale": 0.7})

# ---------------------------------------------------------------------------
# recurrent
# ---------------------------------------------------------------------------


def rnn_case(id, kind, *, T=5, Nb=3, I_=4, H=6, layers=1, bidir=False, bias=True, batch_first=False,
             with_state=True, nonlinearity=None, proj=0):
    kw = {"num_layers": layers, "bias": bias, "bidirectional": bidir, "batch_first": batch_first}
    if nonlinearity:
        kw["nonlinearity"] = nonlinearity
    if proj:
        kw["proj_size"] = proj
    D = 2 if bidir else 1
    x = N(Nb, T, I_) if batch_first else N(T, Nb, I_)
    states = [N(layers * D, Nb, proj or H) if with_state else None]
    if kind == "LSTM":
        states.append(N(layers * D, Nb, H) if with_state else None)
    case(id, kind.lower(), [x, *states, RNN_WEIGHTS(kind, I_, H, **kw)], dict(kw))


rnn_case("rnn-tanh", "RNN")
rnn_case("rnn-relu-nostate", "RNN", nonlinearity="relu", with_state=False)
rnn_case("rnn-2layer-bidir", "RNN", layers=2, bidir=True)
rnn_case("rnn-relu-2layer-bf-nobias", "RNN", layers=2, nonlinearity="relu", batch_first=True, bias=False)
rnn_case("lstm", "LSTM")
rnn_case("lstm-nostate", "LSTM", with_state=False)
rnn_case("lstm-2layer-bidir-bf", "LSTM", layers=2, bidir=True, batch_first=True)
rnn_case("lstm-nobias-nostate", "LSTM", bias=False, layers=2, with_state=False)
rnn_case("lstm-proj-bidir", "LSTM", proj=3, bidir=True, layers=2)
rnn_case("lstm-proj-nostate", "LSTM", proj=2, with_state=False)
rnn_case("gru", "GRU")
rnn_case("gru-nostate-bf", "GRU", with_state=False, batch_first=True)
rnn_case("gru-2layer-bidir", "GRU", layers=2, bidir=True)
rnn_case("gru-2layer-nobias", "GRU", layers=2, bias=False, with_state=False)

# ---------------------------------------------------------------------------
# losses
# ---------------------------------------------------------------------------

for red in ("mean", "sum", "none"):
    case(f"mse_loss-{red}", "mse_loss", [R(4, 5), R(4, 5)], {"reduction": red})
    case(f"l1_loss-{red}", "l1_loss", [R(4, 5), R(4, 5)], {"reduction": red})
    for beta in (1.0, 0.5, 0.0):
        case(f"smooth_l1_loss-beta{beta}-{red}", "smooth_l1_loss", [R(4, 5), R(4, 5)],
             {"reduction": red, "beta": beta})
    case(f"binary_cross_entropy-{red}", "binary_cross_entropy", [PROB(4, 5), PROB(4, 5)], {"reduction": red})
    case(f"binary_cross_entropy-weight-{red}", "binary_cross_entropy", [PROB(4, 5), RI(4, 5, lo=0, hi=2), POS(5)],
         {"reduction": red})
    case(f"binary_cross_entropy-clamp-{red}", "binary_cross_entropy",
         [V([0.0, 1.0, 0.0, 1.0, 1e-30, 0.5]), V([0.0, 1.0, 1.0, 0.0, 0.3, 0.5])], {"reduction": red})
    case(f"bce_with_logits-{red}", "binary_cross_entropy_with_logits", [R(4, 5), PROB(4, 5)], {"reduction": red})
    case(f"bce_with_logits-weights-{red}", "binary_cross_entropy_with_logits",
         [R(4, 5), RI(4, 5, lo=0, hi=2), POS(4, 1), POS(5)], {"reduction": red})
    case(f"bce_with_logits-posweight-{red}", "binary_cross_entropy_with_logits",
         [R(3, 5), PROB(3, 5), None, POS(5)], {"reduction": red})
    case(f"bce_with_logits-extreme-{red}", "binary_cross_entropy_with_logits",
         [EXTREME, V([0.0, 1.0, 0.5, 1.0, 0.0, 1.0, 0.0, 0.5, 1.0])], {"reduction": red})
    for sid, inputs, attrs in [
        ("basic", [R(6, 4), T(6, C=4)], {}),
        ("weight", [R(6, 4), T(6, C=4), POS(4)], {}),
        ("ignore", [R(6, 4), T(6, C=4, ignore=-100)], {}),
        ("ignore-custom", [R(6, 4), T(6, C=4, ignore=2, every=2)], {"ignore_index": 2}),
        ("smooth-weight-ignore", [R(8, 5), T(8, C=5, ignore=1, every=3), POS(5)],
         {"label_smoothing": 0.3, "ignore_index": 1}),
        ("spatial", [R(2, 4, 3, 5), T(2, 3, 5, C=4)], {}),
        ("int32-target", [R(6, 4), T(6, C=4, dtype=np.int32)], {"label_smoothing": 0.1}),
        ("unbatched", [R(5), V(3, np.int64)], {}),
        ("prob-target", [R(4, 5), DIST(4, 5, axis=1)], {}),
        ("prob-target-smooth-weight", [R(4, 5), DIST(4, 5, axis=1), POS(5)], {"label_smoothing": 0.1}),
    ]:
        case(f"cross_entropy-{sid}-{red}", "cross_entropy", inputs, dict(attrs, reduction=red))
    for sid, inputs, attrs in [
        ("basic", [R(6, 4), T(6, C=4)], {}),
        ("weight-ignore", [R(7, 4), T(7, C=4, ignore=-100), POS(4)], {}),
        ("ignore-custom", [R(6, 3), T(6, C=3, ignore=0, every=2)], {"ignore_index": 0}),
        ("spatial-int32", [R(2, 3, 4), T(2, 4, C=3, ignore=-100, every=3, dtype=np.int32), POS(3)], {}),
        ("unbatched", [R(4), V(2, np.int64)], {}),
    ]:
        case(f"nll_loss-{sid}-{red}", "nll_loss", inputs, dict(attrs, reduction=red))
for red in ("mean", "sum", "none", "batchmean"):
    case(f"kl_div-{red}", "kl_div", [R(3, 5, lo=-4, hi=0), DIST(3, 5)], {"reduction": red})
    case(f"kl_div-zeros-{red}", "kl_div", [R(2, 3, lo=-4, hi=0), V([[0.0, 0.5, 0.5], [1.0, 0.0, 0.0]])],
         {"reduction": red})
    case(f"kl_div-log_target-{red}", "kl_div", [R(3, 5, lo=-4, hi=0), R(3, 5, lo=-4, hi=0)],
         {"reduction": red, "log_target": True})
case("cross_entropy-all-ignored", "cross_entropy", [R(3, 4), V([-100, -100, -100], np.int64)])


# ---------------------------------------------------------------------------
# the runner
# ---------------------------------------------------------------------------

SEMANTIC_ONLY = {"dropout", "randn", "uniform"}   # torch's generator: tested for semantics
# lowered by funcgen; tested on graphs with bodies (fused: tests/backends/torch/test_fused_lowering.py
# and tests/compiler/passes/test_pass_fused_region.py)
WHOLE_GRAPH = {"scan", "fused"}
# the int8 ops: tested bit for bit against NumPy on whole int8 layers (tests/backends/torch/test_lowering_quant.py)
INT8_GRAPH = {"quantize_linear", "dequantize_linear", "requant_multiplier", "qconv2d", "qdense"}
# ops whose code depends on the operand types: also run with in_types withheld
UNTYPED = {"pad", "prod", "sum", "mean", "max", "logsumexp", "var", "argmax", "transpose", "one_hot",
           "cross_entropy", "nll_loss", "strided_slice", "batch_norm"}


def _params():
    for c in CASES:
        dts = (np.float32, np.float64) if c.floating else (np.float64,)
        for dt in dts:
            suffix = f"-{np.dtype(dt).name}" if c.floating else ""
            yield pytest.param(c, dt, False, id=c.id + suffix)
            if c.op in UNTYPED and dt == np.float64:
                yield pytest.param(c, dt, True, id=c.id + suffix + "-untyped")


def one_node_graph(op: str, arrays: list, attrs: dict) -> Graph:
    g = Graph(f"one_{op}")
    b = Builder(g, Span("tests/one_node.dln", 1, 1))
    vals = [None if a is None else b.input(f"in{i}", TensorType(DType.from_numpy(a.dtype), a.shape))
            for i, a in enumerate(arrays)]
    outs = b.op(op, *vals, **attrs)
    outs = outs if isinstance(outs, tuple) else (outs,)
    g.outputs = list(outs)
    g.output_names = [f"out{i}" for i in range(len(outs))]
    return g


def make_arrays(c: Case, dt):
    rng = np.random.default_rng(zlib.crc32(c.id.encode()))
    arrays = []
    for make in c.inputs:
        a = None if make is None else make(rng, dt)
        arrays += a if isinstance(a, list) else [a]
    return arrays


def to_torch(a):
    return None if a is None else torch.tensor(np.array(a))


def to_numpy(t):
    t = t.detach().cpu()
    if t.dtype == torch.bfloat16:      # the NumPy backend stores bfloat16 as rounded float32
        t = t.float()
    return t.numpy()


def assert_close(got, want, what: str, tol: float = 1.0, rtol32=1e-5, rtol64=1e-10, atol=None):
    got = to_numpy(got) if isinstance(got, torch.Tensor) else np.asarray(got)
    want = np.asarray(want)
    assert got.shape == want.shape, f"{what}: shape {got.shape} != NumPy {want.shape}"
    assert got.dtype == want.dtype, f"{what}: dtype {got.dtype} != NumPy {want.dtype}"
    if got.dtype.kind != "f":
        np.testing.assert_array_equal(got, want, err_msg=what)
        return
    finite = np.abs(want[np.isfinite(want)])
    scale = max(1.0, float(finite.max())) if finite.size else 1.0
    rtol = {np.dtype(np.float64): rtol64, np.dtype(np.float32): rtol32}.get(got.dtype, 1e-2)
    atol = rtol * 0.1 * tol * scale if atol is None else atol
    np.testing.assert_allclose(got, want, rtol=rtol * tol, atol=atol, err_msg=what)


def run_both(g: Graph, arrays: list, weights: dict | None = None, dims: dict | None = None, seed: int = 0):
    """(NumPy outputs, NumPy updates, torch outputs, torch updates, generated function)."""
    weights = weights or {}
    feed = {v.name: a for v, a in zip(g.inputs, arrays)}
    want, want_upd = Interpreter(g, seed=seed, dims=dims).run(feed, weights)
    fn = compile_function(g)
    params = {k: to_torch(v) for k, v in weights.items()}
    got, got_upd = fn(*[to_torch(a) for a in arrays], params, seed=seed)
    assert isinstance(got, tuple) and len(got) == len(g.outputs)
    return [want[n] for n in g.output_names], want_upd, list(got), got_upd, fn


@pytest.mark.parametrize("c, dt, untyped", list(_params()))
def test_op_matches_numpy(c: Case, dt, untyped, monkeypatch):
    arrays = make_arrays(c, dt)
    g = one_node_graph(c.op, arrays, c.attrs)
    if untyped:   # the rank/dtype-agnostic code a lowering writes without operand types
        orig = LOWERING[c.op]
        monkeypatch.setitem(LOWERING, c.op, lambda a, at, o, *, dims=None, in_types=None: orig(a, at, o, dims=dims))
    originals = [None if a is None else a.copy() for a in arrays]
    want, _, got, _, fn = run_both(g, [a for a in arrays if a is not None])
    for i, (w, t) in enumerate(zip(want, got)):
        assert_close(t, w, f"{c.id}[{i}]\n{fn.source}", c.tol)
    for a, o in zip(arrays, originals):
        if a is not None:
            np.testing.assert_array_equal(a, o)


def test_every_op_is_lowered_and_tested():
    # an op without a lowering is written as its decomposition (test_op_coverage
    # checks that torch covers every op the decomposition uses)
    missing = sorted(n for n in set(OPS) - set(LOWERING) if OPS[n].decompose is None)
    assert not missing, f"ops without a PyTorch lowering or a decomposition: {', '.join(missing)}"
    assert not set(LOWERING) - set(OPS), "lowerings of unknown ops"
    untested = sorted(set(OPS) - {c.op for c in CASES} - SEMANTIC_ONLY - WHOLE_GRAPH - INT8_GRAPH)
    assert not untested, f"ops without a lowering test case: {', '.join(untested)}"


def test_scan_entry_points_to_funcgen():
    with pytest.raises(ValueError, match="funcgen"):
        LOWERING["scan"](["c", "x"], {"num_carry": 1, "axis": 0, "reverse": False}, ["a", "b"])


def test_lowering_reads_like_pytorch():
    assert LOWERING["conv2d"](["x", "w", "b"], {"stride": (2, 2), "padding": (1, 1), "dilation": (1, 1),
                                                 "groups": 1}, ["y"]) == "y = F.conv2d(x, w, b, stride=(2, 2), padding=(1, 1))"
    assert LOWERING["relu"](["x"], {}, ["y"]) == "y = torch.relu(x)"
    assert LOWERING["matmul"](["a", "b"], {}, ["y"]) == "y = a @ b"
    assert LOWERING["concat"](["a", "b"], {"axis": 1}, ["y"]) == "y = torch.cat([a, b], dim=1)"
    n = Dim.symbol("N")
    assert LOWERING["reshape"](["x"], {"shape": (n, 400)}, ["y"], dims={"N": "N"}) == "y = x.reshape(N, 400)"
    assert LOWERING["scaled_dot_product_attention"](["q", "k", "v", "m"], {"is_causal": False, "scale": None},
                                                     ["y"]) == "y = F.scaled_dot_product_attention(q, k, v, attn_mask=m)"
    assert LOWERING["split"](["z"], {"sections": 4, "axis": 1}, list("ifgo")) == "i, f, g, o = torch.chunk(z, 4, dim=1)"
    assert LOWERING["cast"](["x"], {"dtype": "bfloat16"}, ["y"]) == "y = x.to(torch.bfloat16)"


# ---------------------------------------------------------------------------
# render: the only way attribute values reach the source
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("value, src", [
    (None, "None"), (True, "True"), (False, "False"), (3, "3"), (-2, "-2"), (0.5, "0.5"), (1e-5, "1e-05"),
    (INF, 'float("inf")'), (-INF, '-float("inf")'), (NAN, 'float("nan")'), ((1,), "(1,)"), ((), "()"),
    ((1, (2, None)), "(1, (2, None))"), ([1, 2.0], "[1, 2.0]"), ("same", '"same"'), (DType.bf16, "torch.bfloat16"),
    (np.int64(4), "4"), (np.float32(0.5), "0.5"), (np.bool_(True), "True"),
])
def test_render_literals(value, src):
    assert render(value) == src


def test_render_symbolic_dims():
    n, t = Dim.symbol("N"), Dim.symbol("T")
    dims = {"N": "x.shape[0]", "T": "T_"}
    assert render((n, 400), dims) == "(x.shape[0], 400)"
    assert render(n * 4 + 4, dims) == "4 * x.shape[0] + 4"
    assert render(n * t - 1, dims) == "x.shape[0] * T_ - 1"
    assert render((n + 1) // 2, dims) == "(x.shape[0] + 1) // 2"
    scope = {"x": torch.zeros(6), "T_": 3}
    assert eval(render(n * t - n + (n + 1) // 2, dims), scope) == 6 * 3 - 6 + 3
    with pytest.raises(ValueError, match="'M'"):
        render(Dim.symbol("M"), dims)


@pytest.mark.parametrize("bad", [object(), {"a": 1}, b"bytes", 1j, {1, 2}, (1, object())])
def test_render_rejects_other_values(bad):
    with pytest.raises(TypeError):
        render(bad)


@pytest.mark.parametrize("s", ["plain", "c1.weight", "it's", 'say "hi"', "back\\slash", "new\nline\r",
                               "__import__('os').system('x')", "\u202eevil\u202c", "\x00\x1b[31m", "\U0001f600",
                               "{braces} %s"])
def test_string_literal_round_trips_and_escapes(s):
    lit = string_literal(s)
    assert eval(lit) == s
    assert all(ch.isascii() and ch.isprintable() for ch in lit)
    for dangerous in ("'", "(", ")", "\n", "\\\\", "{"):
        assert dangerous not in lit[1:-1] or dangerous not in s


# ---------------------------------------------------------------------------
# random ops: semantics, not values
# ---------------------------------------------------------------------------

def _dropout_graph(shape, dt, **attrs):
    g = Graph("drop")
    b = Builder(g)
    x = b.input("x", TensorType(DType.from_numpy(np.dtype(dt)), shape))
    g.outputs = [b.op("dropout", x, **attrs)]
    g.output_names = ["y"]
    return compile_function(g)


@pytest.mark.parametrize("dt", [np.float32, np.float64])
def test_dropout_semantics(dt):
    x = torch.tensor(np.random.default_rng(0).standard_normal((64, 128)).astype(dt) + 3.0)
    assert torch.equal(_dropout_graph((64, 128), dt, p=0.5, training=False)(x, {})[0][0], x)
    assert torch.equal(_dropout_graph((64, 128), dt, p=0.0)(x, {})[0][0], x)
    y1 = _dropout_graph((64, 128), dt, p=1.0)(x, {})[0][0]
    assert y1.dtype == x.dtype and not y1.any()
    for p in (0.1, 0.5, 0.8):
        fn = _dropout_graph((64, 128), dt, p=p, seed=7)
        y = fn(x, {}, seed=3)[0][0]
        assert y.dtype == x.dtype and y.shape == x.shape
        kept = y != 0
        assert abs(kept.double().mean().item() - (1 - p)) < 0.03
        torch.testing.assert_close(y[kept], x[kept] / (1 - p), rtol=1e-6, atol=0)
        # deterministic per (run seed, op seed); another run seed draws another mask
        assert torch.equal(fn(x, {}, seed=3)[0][0], y)
        assert not torch.equal(fn(x, {}, seed=4)[0][0], y)
        assert not torch.equal(_dropout_graph((64, 128), dt, p=p, seed=8)(x, {}, seed=3)[0][0], y)


def test_dropout_backward_uses_the_forward_mask():
    """dlc's VJP of dropout is dropout of the cotangent with the same seed: the
    generated code must draw the same mask twice, i.e. agree with autograd."""
    from dlc.compiler.autodiff import grad
    g = Graph("drop_grad", mode="train")
    b = Builder(g)
    x = b.input("x", TensorType(DType.f64, (32, 16)))
    r = b.input("r", TensorType(DType.f64, (32, 16)))
    y = b.op("dropout", b.op("tanh", x), p=0.4, seed=5)
    loss = b.op("sum", b.op("mul", y, r), axis=None, keepdims=False)
    (gx,) = grad(g, loss, [x])
    g.outputs, g.output_names = [loss, gx], ["loss", "gx"]
    fn = compile_function(g)
    rng = np.random.default_rng(1)
    xt = torch.tensor(rng.standard_normal((32, 16)), requires_grad=True)
    rt = torch.tensor(rng.standard_normal((32, 16)))
    (loss_t, gx_t), _ = fn(xt, rt, {}, seed=11)
    (auto,) = torch.autograd.grad(loss_t, xt)
    torch.testing.assert_close(gx_t, auto, rtol=1e-12, atol=1e-12)
    assert (gx_t == 0).any()


def _sampler(op, **attrs):
    g = Graph(op)
    b = Builder(g)
    g.outputs = [b.op(op, **attrs)]
    g.output_names = ["y"]
    return compile_function(g)


@pytest.mark.parametrize("dtype", ["float32", "float64", "float16", "bfloat16"])
def test_random_shapes_dtypes_determinism(dtype):
    want = getattr(torch, dtype)
    fn = _sampler("randn", shape=(3, 4), seed=7, dtype=dtype)
    a = fn({}, seed=1)[0][0]
    assert a.shape == (3, 4) and a.dtype == want
    assert torch.equal(a, fn({}, seed=1)[0][0])
    assert not torch.equal(a, fn({}, seed=2)[0][0])
    assert not torch.equal(a, _sampler("randn", shape=(3, 4), seed=8, dtype=dtype)({}, seed=1)[0][0])
    u = _sampler("uniform", shape=(2, 5), low=-1.0, high=3.0, seed=3, dtype=dtype)({}, seed=1)[0][0]
    assert u.shape == (2, 5) and u.dtype == want
    assert bool((u >= -1.0).all()) and bool((u < 3.0).all())
    assert _sampler("randn", shape=(), seed=0)({})[0][0].shape == ()


def test_random_moments():
    n = _sampler("randn", shape=(200_000,), seed=11, dtype="float64")({}, seed=0)[0][0].numpy()
    assert abs(n.mean()) < 0.01 and abs(n.std() - 1) < 0.01
    assert abs(np.mean(n ** 3)) < 0.03 and abs(np.mean(n ** 4) - 3) < 0.06
    u = _sampler("uniform", shape=(200_000,), low=-2.0, high=4.0, seed=12)({}, seed=0)[0][0].numpy()
    assert abs(u.mean() - 1.0) < 0.02 and abs(u.var() - 3.0) < 0.03
    assert u.min() >= -2.0 and u.max() < 4.0


# ---------------------------------------------------------------------------
# scan: a for loop over the axis, body inlined
# ---------------------------------------------------------------------------

def _scan_graph(axis: int, reverse: bool):
    """carry' = tanh(carry @ w + x_t) * gate_t ; y_t = (carry', carry' + gate_t), over two sequences."""
    g = Graph("scan_test")
    b = Builder(g, Span("tests/scan.dln", 3, 1))
    Nd, T = Dim.symbol("N"), Dim.symbol("T")
    xs_shape = [Nd, 4]
    xs_shape.insert(axis, T)
    x = b.input("xs", TensorType(DType.f64, tuple(xs_shape)))
    gate = b.input("gates", TensorType(DType.f64, tuple(xs_shape)))
    h0 = b.input("h0", TensorType(DType.f64, (Nd, 4)))
    w = g.add_param(ParamInfo("cell.w", Init("normal")), TensorType(DType.f64, (4, 4)))
    body = Graph("scan_test.scan", parent=g)
    c_in = body.add_input("carry0", h0.type)
    x_in = body.add_input("x0", TensorType(DType.f64, (Nd, 4)))
    gt_in = body.add_input("x1", TensorType(DType.f64, (Nd, 4)))
    bb = Builder(body, Span("tests/scan.dln", 4, 1))
    h = bb.op("mul", bb.op("tanh", bb.op("add", bb.op("matmul", c_in, w), x_in)), gt_in)
    h.name = "h"
    body.outputs = [h, h, bb.op("add", h, gt_in)]
    outs = g.add_node(OPS["scan"], [h0, x, gate], {"num_carry": 1, "axis": axis, "reverse": reverse},
                      Span("tests/scan.dln", 2, 1), body=body)
    g.outputs = list(outs)
    g.output_names = ["final", "hs", "hs_plus"]
    return g


@pytest.mark.parametrize("axis", [0, 1])
@pytest.mark.parametrize("reverse", [False, True])
def test_scan_matches_numpy(axis, reverse):
    g = _scan_graph(axis, reverse)
    rng = np.random.default_rng(axis + 2 * reverse)
    shp = [3, 4]
    shp.insert(axis, 5)
    arrays = [rng.standard_normal(shp), rng.uniform(0.5, 1.5, shp), rng.standard_normal((3, 4))]
    weights = {"cell.w": rng.standard_normal((4, 4)) * 0.5}
    want, _, got, _, fn = run_both(g, arrays, weights)
    for i, (w, t) in enumerate(zip(want, got)):
        assert_close(t, w, f"scan output {i}\n{fn.source}")
    assert "for t in " + ("reversed(range(" if reverse else "range(") in fn.source
    assert "torch.stack(" in fn.source


@pytest.mark.parametrize("reverse", [False, True])
def test_scan_step_output_is_incoming_carry(reverse):
    """A body whose per-step outputs are its *incoming* carries (the recompute scan of
    a backward graph stacks h_{t-1}), listed twice, next to a carry passed through
    unchanged and a captured outer value: the step outputs must be taken before the
    loop variables are rebound to the new carries."""
    g = Graph("scan_carry_out")
    b = Builder(g, Span("tests/scan.dln", 3, 1))
    Nd, T = Dim.symbol("N"), Dim.symbol("T")
    x = b.input("xs", TensorType(DType.f64, (T, Nd, 4)))
    h0 = b.input("h0", TensorType(DType.f64, (Nd, 4)))
    k0 = b.input("k0", TensorType(DType.f64, (Nd, 4)))
    w = g.add_param(ParamInfo("cell.w", Init("normal")), TensorType(DType.f64, (4, 4)))
    outer = b.op("tanh", k0)
    body = Graph("scan_carry_out.scan", parent=g)
    h_in = body.add_input("carry0", h0.type)
    k_in = body.add_input("carry1", k0.type)
    x_in = body.add_input("x0", TensorType(DType.f64, (Nd, 4)))
    bb = Builder(body, Span("tests/scan.dln", 4, 1))
    h = bb.op("tanh", bb.op("add", bb.op("add", bb.op("matmul", h_in, w), x_in), outer))
    body.outputs = [h, k_in, h_in, h_in, bb.op("mul", h_in, k_in), outer]
    outs = g.add_node(OPS["scan"], [h0, k0, x], {"num_carry": 2, "axis": 0, "reverse": reverse},
                      Span("tests/scan.dln", 2, 1), body=body)
    g.outputs = list(outs)
    g.output_names = ["final_h", "final_k", "h_prev", "h_prev_again", "hk_prev", "outer"]
    rng = np.random.default_rng(7 + reverse)
    arrays = [rng.standard_normal((5, 3, 4)), rng.standard_normal((3, 4)), rng.standard_normal((3, 4))]
    weights = {"cell.w": rng.standard_normal((4, 4)) * 0.5}
    want, _, got, _, fn = run_both(g, arrays, weights)
    for i, (w_, t) in enumerate(zip(want, got)):
        assert_close(t, w_, f"scan output {g.output_names[i]}\n{fn.source}")


def test_scan_with_symbolic_reshape_in_body():
    """Dims used inside a body are bound once, at the top of the function."""
    g = Graph("scan_dims")
    b = Builder(g)
    Nd, T = Dim.symbol("N"), Dim.symbol("T")
    x = b.input("x", TensorType(DType.f32, (T, Nd, 2, 3)))
    body = Graph("scan_dims.scan", parent=g)
    xt = body.add_input("x0", TensorType(DType.f32, (Nd, 2, 3)))
    bb = Builder(body)
    body.outputs = [bb.op("reshape", xt, shape=(Nd, 6))]
    (ys,) = g.add_node(OPS["scan"], [x], {"num_carry": 0, "axis": 0, "reverse": False}, None, body=body)
    g.outputs, g.output_names = [ys], ["ys"]
    arr = np.random.default_rng(0).standard_normal((4, 3, 2, 3)).astype(np.float32)
    want, _, got, _, fn = run_both(g, [arr], dims={"N": 3, "T": 4})
    assert_close(got[0], want[0], fn.source)
    assert "N = x.shape[1]" in fn.source


# ---------------------------------------------------------------------------
# whole graphs
# ---------------------------------------------------------------------------

def _model(spec, mode="eval"):
    from dlc.frontend.blocks import elaborate_model
    from dlc.frontend.modules import load_module
    mod = load_module(spec)
    return elaborate_model(mod, mod.models[-1], mode)


@pytest.mark.parametrize("spec, shape", [("specs/lenet5.dln", (3, 1, 32, 32)), ("specs/lstm_cell.dln", (3, 8, 8)),
                                         ("specs/digits_cnn.dln", (5, 1, 8, 8))])
def test_model_forward_matches_numpy(spec, shape):
    from dlc.compiler.init import init_params
    g = _model(spec)
    w = init_params(g, 0)
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    want, _, got, _, fn = run_both(g, [x], w, dims={"N": shape[0], "T": shape[1]})
    assert_close(got[0], want[0], f"{spec}\n{fn.source}", rtol32=1e-5)
    if spec.endswith("lstm_cell.dln"):
        assert "for t in range(rows.shape[1]):" in fn.source
        assert "rows[:, t]" in fn.source


def _train_step(spec, optimizer="adam"):
    from dlc.compiler.training import build_train_step
    from dlc.frontend.blocks import elaborate_model
    from dlc.frontend.modules import load_module
    from dlc.frontend.train import train_settings
    mod = load_module(spec)
    s = train_settings(mod, mod.trains[0])
    s.optimizer, s.optimizer_args = optimizer, {"lr": 1e-2}
    return build_train_step(elaborate_model(mod, mod.trains[0].model, "train"), s), s


@pytest.mark.parametrize("spec", ["specs/lenet5.dln", "specs/digits_cnn.dln"])
def test_training_step_matches_numpy(spec):
    """Forward, cross-entropy, dlc's symbolic backward and the Adam update, as
    one generated function, against the NumPy interpreter (dropout is switched
    off: its masks come from different generators)."""
    from dlc.compiler.init import init_params
    from dlc.compiler.training import state_fill
    prog, s = _train_step(spec)
    g = prog.graph
    for n in g.walk():
        if n.op.name == "dropout":
            n.attrs["p"] = 0.0
    w = init_params(g, 0)
    state = {k: np.full(tuple(int(d) for d in t.shape), f, t.dtype.numpy_name)
             for k, (t, f) in state_fill(s, prog.params).items()}
    batch = 4
    x_in = g.inputs[0]
    rng = np.random.default_rng(0)
    feed = {x_in.name: rng.standard_normal((batch,) + tuple(int(d) for d in x_in.type.shape[1:])).astype(np.float32),
            "label": rng.integers(0, 10, batch), **state, "lr": np.float32(1e-2), "step": np.float32(1)}
    arrays = [feed[v.name] for v in g.inputs]
    want, _, got, _, _ = run_both(g, arrays, w, dims={"N": batch})
    names = g.output_names
    for n, wv, gv in zip(names, want, got):
        # Adam's first step moves a weight by lr * g / (|g| + eps): where |g| is near eps
        # it amplifies the gradient's rounding, so the absolute tolerance is 1e-3 of lr
        assert_close(gv, wv, f"{spec}: {n}", rtol32=1e-5, atol=1e-5)
    assert "loss" in names and any(n.startswith("param:") for n in names)


def test_batch_norm_state_updates_and_no_mutation():
    g = Graph("bn", mode="train")
    b = Builder(g, Span("bn.dln", 1, 1))
    x = b.input("x", TensorType(DType.f32, (Dim.symbol("N"), 3, 4)))
    rm = g.add_param(ParamInfo("bn.running_mean", Init("zeros"), trainable=False), TensorType(DType.f32, (3,)), buffer=True)
    rv = g.add_param(ParamInfo("bn.running_var", Init("ones"), trainable=False), TensorType(DType.f32, (3,)), buffer=True)
    wt = g.add_param(ParamInfo("bn.weight", Init("ones")), TensorType(DType.f32, (3,)))
    y, m, v = b.op("batch_norm", x, rm, rv, wt, None, training=True, momentum=0.2)
    g.outputs, g.output_names = [b.op("relu", y)], ["y"]
    g.state_updates = {"bn.running_mean": m, "bn.running_var": v}
    rng = np.random.default_rng(0)
    weights = {"bn.running_mean": rng.standard_normal(3).astype(np.float32),
               "bn.running_var": rng.uniform(0.5, 2, 3).astype(np.float32),
               "bn.weight": rng.standard_normal(3).astype(np.float32)}
    before = {k: v.copy() for k, v in weights.items()}
    arr = rng.standard_normal((5, 3, 4)).astype(np.float32)
    fn = compile_function(g)
    params = {k: to_torch(a) for k, a in weights.items()}
    (out,), upd = fn(to_torch(arr), params)
    want, want_upd = Interpreter(g).run({"x": arr}, weights)
    assert_close(out, want["y"], "y")
    assert set(upd) == {"bn.running_mean", "bn.running_var"}
    for k in upd:
        assert_close(upd[k], want_upd[k], k)
        np.testing.assert_array_equal(params[k].numpy(), before[k])    # the inputs are not modified


# ---------------------------------------------------------------------------
# names, comments and injection
# ---------------------------------------------------------------------------

HOSTILE = "__import__('os').system('touch /tmp/pwned')"


def test_hostile_names_never_become_code(monkeypatch, tmp_path):
    import os
    calls = []
    monkeypatch.setattr(os, "system", lambda *a: calls.append(a) or 0)
    nasty = [HOSTILE, f"x\n{HOSTILE}\n", f"'); {HOSTILE} #", f'"""\n{HOSTILE}\n"""', "\\", "1abc", "class",
             "print", "torch", "F", "params", "seed", "device", "_lstm", "forward_fn", "\u202e" + HOSTILE, ""]
    g = Graph(f"{HOSTILE}\n", mode="train")
    b = Builder(g, Span(f"evil\n{HOSTILE}\r.dln", 7, 1))
    sym = f"N{HOSTILE}"
    x = b.input(nasty[0], TensorType(DType.f32, (Dim.symbol(sym), 6)))
    xs = [x] + [b.input(nm, TensorType(DType.f32, (2, 6))) for nm in nasty[1:4]]
    w = g.add_param(ParamInfo(f"w.{HOSTILE}\n", Init("zeros")), TensorType(DType.f32, (6, 6)))
    h = b.op("reshape", b.op("matmul", x, w), shape=(Dim.symbol(sym), 6))
    h.name = nasty[1]
    vals = [h]
    for nm in nasty[2:]:
        v = b.op("tanh", vals[-1])
        v.name = nm
        vals.append(v)
    cat = b.op("concat", *([vals[-1]] + xs[1:]), axis=0)
    g.outputs, g.output_names = [cat, vals[-1]], [HOSTILE, "b"]
    g.state_updates = {f"buf\n{HOSTILE}": vals[3]}

    src = generate_function(g, name=HOSTILE)
    for bad in (HOSTILE, "__import__(", "system(", "'os'", "\u202e"):
        assert bad not in src, f"{bad!r} leaked into:\n{src}"
    # no name, operator or string token carries text from the model outside escaped literals
    for tok in tokenize.generate_tokens(io.StringIO(src).readline):
        if tok.type == tokenize.NAME:
            assert tok.string.isidentifier() and tok.string.isascii()
            assert tok.string not in ("__import__", "system", "os", "exec", "eval", "open")
            assert tok.string != "import"
    compile(src, "<check>", "exec")

    fn = compile_function(g, name=HOSTILE)
    rng = np.random.default_rng(0)
    arrays = [rng.standard_normal((3, 6)).astype(np.float32)] + [rng.standard_normal((2, 6)).astype(np.float32)
                                                                  for _ in range(3)]
    weights = {w.name: rng.standard_normal((6, 6)).astype(np.float32)}
    want, want_upd = Interpreter(g, dims={sym: 3}).run({v.name: a for v, a in zip(g.inputs, arrays)}, weights)
    got, got_upd = fn(*[to_torch(a) for a in arrays], {k: to_torch(a) for k, a in weights.items()})
    assert_close(got[0], want[HOSTILE], "cat")
    assert_close(got[1], want["b"], "b")
    assert list(got_upd) == [f"buf\n{HOSTILE}"]
    assert_close(got_upd[f"buf\n{HOSTILE}"], want_upd[f"buf\n{HOSTILE}"], "update")
    assert not calls and not os.path.exists("/tmp/pwned")
    assert fn.input_names == [v.name for v in g.inputs]


def test_sanitize_and_unique_names():
    assert sanitize("c1.weight") == "c1_weight"
    assert sanitize("exp_avg.c1.weight") == "exp_avg_c1_weight"
    assert sanitize("1st") == "v_1st"
    assert sanitize("__init__") == "init"
    assert sanitize(HOSTILE) == "import_os_system_touch_tmp_pwned"
    assert sanitize("") == "v" and sanitize("...", "x") == "x"
    assert sanitize("héllo wörld") == "h_llo_w_rld"
    g = Graph("names")
    b = Builder(g)
    a = b.input("x", TensorType(DType.f32, (2,)))
    v1 = b.op("relu", a)
    v1.name = "x"
    v2 = b.op("relu", v1)
    v2.name = "x"
    v3 = b.op("relu", v2)           # unnamed: named after its op
    v4 = b.op("relu", v3)
    v4.name = "list"                # a builtin
    g.outputs, g.output_names = [v4], ["y"]
    src = generate_function(g)
    assert "x_1 = torch.relu(x)" in src and "x_2 = torch.relu(x_1)" in src
    assert "relu = torch.relu(x_2)" in src and "list_1 = torch.relu(relu)" in src


def test_generated_source_is_standalone():
    g = _model("specs/lenet5.dln")
    src = generate_function(g, "lenet5")
    assert src.startswith("def lenet5(image, params, *, seed=0):")
    assert "s4 = avg_pool2d.reshape(N, 400)  # specs/lenet5.dln:10" in src
    assert "N = image.shape[0]" in src
    assert "import" not in src
    # helpers are emitted only when used, and only once
    c = next(c for c in CASES if c.id == "lstm-2layer-bidir-bf")
    gl = one_node_graph("lstm", make_arrays(c, np.float32), c.attrs)
    src = generate_function(gl)
    assert src.count("def _lstm(") == 1 and "def _gru(" not in src and "def _generator(" not in src


def test_missing_symbolic_dim_is_reported():
    g = Graph("nodim")
    b = Builder(g)
    x = b.input("x", TensorType(DType.f32, (Dim.symbol("N") * 2,)))
    g.outputs, g.output_names = [b.op("reshape", x, shape=(Dim.symbol("N"), 2))], ["y"]
    with pytest.raises(ValueError, match="'N'"):
        generate_function(g)
    fn = compile_function(g, dims={"N": 3})
    assert fn(torch.arange(6.0), {})[0][0].shape == (3, 2)
