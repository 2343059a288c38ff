"""The TVM lowering table (backends/tvm/lowering*.py) against the NumPy kernels.

Every case is a one-op graph on small float32 tensors.  Compiling is the
expensive part (a TVM build per module), so the cases of one family are put
side by side in ONE graph (independent inputs and outputs) and compiled once;
each case is still its own test, comparing its outputs with the NumPy
interpreter's.  When a family's graph does not build, each of its cases is
compiled on its own, so the failure names the op.

Then: symbolic-batch compiles (one package, two batch sizes), `scan` graphs
(carries, reversal, captured outer values), the pooling argmax helpers with
ties and NaNs, random ops fed from the host, and unsupported attribute values.
"""
from __future__ import annotations

import math
import zlib
from dataclasses import dataclass, field

import numpy as np
import pytest

pytest.importorskip("tvm")

from dlc.backends.numpy.interpreter import Interpreter
from dlc.backends.tvm.compile import compile_graph
from dlc.backends.tvm.lowering import LOWERING, UNSUPPORTED
from dlc.compiler.builder import Builder
from dlc.compiler.dims import Dim
from dlc.compiler.ir import Graph, Init, ParamInfo
from dlc.compiler.ops import OPS
from dlc.compiler.types import DType, TensorType
from dlc.errors import Span

pytestmark = pytest.mark.tvm

INF, NAN = math.inf, math.nan
RTOL32 = 1e-4

# input constructors (rng, dtype) -> array, shared with the torch tests; the
# cases here run in float32
from op_inputs import OP_ROWS, B, DIST, I, MASK, N, POS, PROB, R, RI, T, V  # noqa: E402
from pool_reference import POOL_ND_CASES


def RNN_WEIGHTS(kind, input_size, hidden, num_layers=1, bias=True, bidirectional=False, proj_size=0, **_):
    """torch's _flat_weights layout, uniform(-1/sqrt(H), 1/sqrt(H)) as torch initialises."""
    G = {"RNN": 1, "LSTM": 4, "GRU": 3}[kind]
    P = proj_size or hidden
    D = 2 if bidirectional else 1

    def make(rng, dt=np.float32):
        k = 1 / math.sqrt(hidden)
        u = lambda *s: rng.uniform(-k, k, size=s).astype(np.float32)  # noqa: E731
        out = []
        for layer in range(num_layers):
            i_l = input_size if layer == 0 else P * D
            for _ in range(D):
                out += [u(G * hidden, i_l), u(G * hidden, P)]
                if bias:
                    out += [u(G * hidden), u(G * hidden)]
                if proj_size:
                    out.append(u(proj_size, hidden))
        return out
    return make


EXTREME = V([-100.0, -50.0, -20.0, -1.0, 0.0, 1.0, 20.0, 50.0, 100.0])


@dataclass
class Case:
    id: str
    op: str
    inputs: list
    attrs: dict = field(default_factory=dict)
    family: str = ""
    tol: float = 1.0


CASES: list[Case] = []
_FAMILY = ["elementwise"]


def case(id, op, inputs, attrs=None, family=None, **kw):
    CASES.append(Case(id, op, inputs, attrs or {}, family=family or _FAMILY[0], **kw))


# ---------------------------------------------------------------------------
# elementwise
# ---------------------------------------------------------------------------

for name, inp in [
    ("neg", R(3, 4)), ("abs", R(3, 4)), ("exp", R(3, 4, lo=-10, hi=10)),
    ("log", POS(3, 4, lo=1e-3, hi=100)), ("log1p", R(3, 4, lo=-0.9, hi=5)), ("sqrt", POS(3, 4)),
    ("rsqrt", POS(3, 4)), ("reciprocal", V([-4.0, -0.5, 0.25, 3.0, 1e-3])), ("square", R(3, 4)),
    ("sin", R(3, 4, lo=-7, hi=7)), ("cos", R(3, 4, lo=-7, hi=7)), ("tanh", R(3, 4, lo=-5, hi=5)),
    ("sigmoid", R(3, 4, lo=-10, hi=10)), ("erf", R(5, 7, lo=-5, hi=5)), ("floor", R(3, 4)),
    ("ceil", R(3, 4)), ("sign", V([-2.5, -0.0, 0.0, 3.0, -INF])), ("relu", R(3, 4)),
    ("selu", R(3, 4)), ("elu", R(3, 4)),
]:
    case(name, name, [inp])
for row in OP_ROWS:   # the per-op table every backend test shares
    case(row.id, row.op, row.inputs, row.attrs)
for name in ("sigmoid", "tanh", "silu", "softplus", "elu", "gelu"):
    case(f"{name}-extreme", name, [EXTREME])
case("softplus-beta-threshold", "softplus", [R(3, 4, lo=-6, hi=6)], {"beta": 2.0, "threshold": 5.0})
case("leaky_relu-slope", "leaky_relu", [R(3, 4)], {"negative_slope": 0.2})
case("elu-alpha", "elu", [R(3, 4)], {"alpha": 0.5})
case("hardtanh-bounds", "hardtanh", [R(3, 4)], {"min_val": -2.0, "max_val": 0.5})
case("gelu-tanh", "gelu", [R(3, 4, lo=-6, hi=6)], {"approximate": "tanh"})
case("abs-int", "abs", [I(2, 3, lo=-3, hi=4, dtype=np.int32)])
case("logical_not", "logical_not", [B(3, 4)])
case("prelu-channels", "prelu", [R(2, 3, 4), R(3, lo=0, hi=0.5)])
case("prelu-single", "prelu", [R(2, 3, 4), V([0.25])])
for dst, inp in [("int32", R(3, 4, lo=-5, hi=5)), ("bool", V([0.0, -0.0, 1.5, -2.0])),
                 ("float64", R(3, 4)), ("bfloat16", R(5, 6, lo=-100, hi=100))]:
    case(f"cast-{dst}", "cast", [inp], {"dtype": dst})
case("cast-int-float32", "cast", [I(3, 4, lo=-9, hi=9)], {"dtype": "float32"})
for name in ("add", "sub", "mul", "div", "maximum", "minimum"):
    case(f"{name}-bcast", name, [R(2, 3, 4), POS(3, 1, lo=0.5, hi=3) if name == "div" else R(3, 1)])
case("add-0d", "add", [R(2, 3), V(1.5)], family="zero_d")
case("pow-bcast", "pow", [POS(2, 3, 4), R(4)])
case("add-int64-int32", "add", [I(3, 4), I(4, dtype=np.int32)])
for name in ("eq", "ne", "lt", "le", "gt", "ge"):
    case(f"{name}-bcast", name, [RI(2, 3, 4), RI(3, 1)])
for name in ("logical_and", "logical_or"):
    case(f"{name}-bcast", name, [B(2, 3, 4), B(3, 1)])
case("where-bcast", "where", [B(3, 1), R(2, 3, 4), R(4)])
for ax in (-1, 0):
    case(f"softmax-axis{ax}", "softmax", [R(2, 3, 4)], {"axis": ax})
    case(f"log_softmax-axis{ax}", "log_softmax", [R(2, 3, 4)], {"axis": ax})

# ---------------------------------------------------------------------------
# matmul, linear, reductions
# ---------------------------------------------------------------------------
_FAMILY[0] = "linalg"
for sid, sa, sb in [("1d-2d", (3,), (3, 4)), ("2d-2d", (2, 3), (3, 4)), ("batched-2d", (5, 2, 3), (3, 4)),
                    ("batch-bcast", (2, 1, 2, 3), (3, 3, 2))]:
    case(f"matmul-{sid}", "matmul", [R(*sa), R(*sb)])
case("linear-bias", "linear", [R(2, 5, 3), R(4, 3), R(4)])
case("linear-nobias", "linear", [R(6, 3), R(4, 3)])
for name in ("sum", "mean", "max", "min", "prod", "logsumexp", "var", "std"):
    for axis, keep in ((None, False), (1, True), ((0, -1), False)):
        inp = R(2, 3, 4, lo=0.5, hi=1.5) if name == "prod" else R(2, 3, 4)
        case(f"{name}-axis{axis}-keep{int(keep)}", name, [inp], {"axis": axis, "keepdims": keep})
case("var-correction0", "var", [R(3, 5)], {"axis": 1, "correction": 0})
case("std-correction2", "std", [R(3, 5)], {"axis": 0, "correction": 2})
case("logsumexp-extreme", "logsumexp", [V([[-INF, -INF, -INF], [1000.0, 1000.0, -5.0]])], {"axis": 1})
for name in ("argmax", "argmin"):
    for axis, keep in ((None, False), (-1, True), (0, False)):
        case(f"{name}-axis{axis}-keep{int(keep)}", name, [RI(3, 4, 5)], {"axis": axis, "keepdims": keep})

# ---------------------------------------------------------------------------
# shape ops and constants
# ---------------------------------------------------------------------------
_FAMILY[0] = "shape"
for shp in [(6, -1), (24,)]:
    case(f"reshape-{shp}", "reshape", [R(2, 3, 4)], {"shape": shp})
case("transpose", "transpose", [R(2, 3, 4)], {"axes": (2, 0, 1)})
case("concat-axis-1", "concat", [R(2, 3, 1), R(2, 3, 4), R(2, 3, 2)], {"axis": -1})
case("split-count", "split", [R(2, 6, 4)], {"sections": 3, "axis": 1})
case("split-sizes", "split", [R(2, 6, 4)], {"sections": [1, 2, 3], "axis": 1})
for sid, b, e, s in [
    ("basic", [0, 1, 1], [2, 3, 4], [1, 1, 2]),
    ("negative-idx", [-2, -3, 0], [None, -1, -1], [1, 1, 1]),
    ("negative-step", [None, None, None], [None, None, None], [1, -1, -2]),
    ("clamped", [-100, 1, 0], [100, 100, 100], [2, 5, 3]),
]:
    case(f"strided_slice-{sid}", "strided_slice", [R(3, 4, 5)], {"begin": b, "end": e, "strides": s})
for mode in ("constant", "reflect", "replicate", "circular"):
    case(f"pad-{mode}-2dims", "pad", [R(2, 3, 5)], {"pad": [1, 2, 2, 1], "mode": mode})
case("pad-constant-negative", "pad", [R(3, 5)], {"pad": [-1, 2, 1, -2], "value": 1.5})
case("gather-axis-1", "gather", [R(3, 4, 5), I(2, 3, 2, hi=5)], {"axis": -1})
case("scatter_add-axis0", "scatter_add", [R(3, 4), I(2, 4, hi=3), R(2, 4)], {"axis": 0})
case("index_select-axis-1", "index_select", [R(2, 3, 4), I(6, hi=4, dtype=np.int32)], {"axis": -1})
case("expand", "expand", [R(3, 1)], {"shape": (2, -1, 4)})
case("tril", "tril", [R(2, 4, 5)], {"k": 1})
case("triu", "triu", [R(2, 4, 5)], {"k": -2})
case("one_hot", "one_hot", [I(2, 3, hi=4)], {"num_classes": 5})
case("arange", "arange", [], {"start": 2, "stop": 11, "step": 3, "dtype": "int32"})
case("full", "full", [], {"shape": (2, 3), "value": -2.5})
case("sinusoidal_positions", "sinusoidal_positions", [], {"length": 7, "dim": 6})
case("embedding", "embedding", [V([[1, 3, 3], [0, 9, 1]], np.int64), N(10, 4)])
case("scatter_add_rows", "scatter_add_rows", [V([[1, 3, 3], [0, 3, 1]], np.int64), N(2, 3, 4)], {"num_rows": 5})
case("dropout-eval", "dropout", [R(3, 4)], {"p": 0.5, "training": False})

# ---------------------------------------------------------------------------
# convolution, pooling, normalisation, attention
# ---------------------------------------------------------------------------
_FAMILY[0] = "nn"
case("conv1d", "conv1d", [N(2, 4, 17), N(6, 4, 3), N(6)], {"stride": 2, "padding": 2, "dilation": 2})
case("conv2d-stride-pad", "conv2d", [N(2, 3, 9, 10), N(4, 3, 3, 3), N(4)], {"stride": 2, "padding": 1})
case("conv2d-same-groups", "conv2d", [N(2, 6, 7, 7), N(9, 2, 3, 3), N(9)], {"groups": 3, "padding": "same"})
case("conv2d-depthwise", "conv2d", [N(2, 5, 8, 8), N(5, 1, 3, 3)], {"groups": 5, "padding": 1, "stride": 2})
case("conv_transpose2d", "conv_transpose2d", [N(1, 4, 5, 5), N(4, 3, 3, 3), N(3)],
     {"stride": 2, "padding": 1, "output_padding": 1})
POOL_CASES = [
    ("max_pool1d", (2, 3, 12), {"kernel_size": 3, "stride": 2, "padding": 1, "ceil_mode": True}),
    ("max_pool2d", (1, 2, 9, 7), {"kernel_size": 3, "stride": 2, "padding": 1}),
    ("max_pool2d", (3, 7, 7), {"kernel_size": 2, "stride": 1}),
    ("avg_pool1d", (2, 3, 10), {"kernel_size": 3, "stride": 2}),
    ("avg_pool2d", (1, 2, 7, 9), {"kernel_size": 3, "stride": 2, "padding": 1, "count_include_pad": False}),
    ("avg_pool2d", (1, 2, 6, 6), {"kernel_size": 3, "padding": 1, "divisor_override": 5}),
    ("adaptive_avg_pool1d", (2, 3, 13), {"output_size": 6}),
    ("adaptive_avg_pool2d", (2, 3, 13, 10), {"output_size": (6, 7)}),
    ("adaptive_max_pool2d", (2, 3, 13, 11), {"output_size": (6, 4)}),
    ("max_pool2d_indices", (2, 2, 7, 8), {"kernel_size": 2}),
    ("max_pool2d_indices", (1, 2, 9, 7), {"kernel_size": 3, "stride": 2, "padding": 1, "ceil_mode": True}),
    ("max_pool2d_indices", (1, 2, 11, 12), {"kernel_size": (3, 2), "stride": (2, 1), "dilation": (2, 1)}),
    ("max_pool2d_indices", (2, 5, 6), {"kernel_size": 3, "stride": 2, "padding": 1}),
    ("adaptive_max_pool2d_indices", (2, 3, 13, 11), {"output_size": (6, 4)}),
    ("adaptive_max_pool2d_indices", (1, 2, 8, 8), {"output_size": 3}),
]
for i, (op, shp, attrs) in enumerate(POOL_CASES):
    case(f"{op}-{i}", op, [RI(*shp, lo=-3, hi=4) if "indices" in op else N(*shp)], attrs)
# 3-D convolution and pooling, dilated average pooling (their own module: one small build)
_FAMILY[0] = "nn3d"
case("conv3d", "conv3d", [N(1, 4, 6, 5, 7), N(6, 2, 3, 2, 3), N(6)],
     {"stride": (1, 2, 1), "padding": (1, 0, 1), "dilation": (2, 1, 1), "groups": 2})
case("conv_transpose3d", "conv_transpose3d", [N(1, 4, 3, 4, 3), N(4, 3, 3, 2, 3), N(3)],
     {"stride": (2, 1, 2), "padding": 1, "output_padding": (1, 0, 1), "dilation": (1, 2, 1)})
POOL3D_CASES = [
    *POOL_ND_CASES,
    ("max_pool3d_indices", (1, 2, 7, 6, 8), {"kernel_size": (3, 2, 2), "stride": 2, "padding": (1, 0, 1),
                                             "dilation": (1, 2, 1), "ceil_mode": True}),
]
for i, (op, shp, attrs) in enumerate(POOL3D_CASES):
    case(f"{op}-3d-{i}", op, [RI(*shp, lo=-3, hi=4) if "indices" in op else N(*shp)], attrs)
_FAMILY[0] = "nn"
# resampling: resize2d where its in/out step is torch's, the decomposition elsewhere
# (1-D modes, area, a scale_factor torch steps by, align_corners to one sample)
RESAMPLE_CASES = [
    ("interpolate", (2, 3, 5, 6), {"scale_factor": 2}),
    ("interpolate", (1, 2, 5, 6), {"size": (7, 4), "mode": "nearest-exact"}),
    ("interpolate", (1, 2, 5, 6), {"size": (9, 3), "mode": "bilinear"}),
    ("interpolate", (1, 2, 5, 6), {"scale_factor": 1.5, "mode": "bicubic", "align_corners": True}),
    ("interpolate", (1, 2, 5, 6), {"scale_factor": 1.1, "mode": "bicubic"}),
    ("interpolate", (1, 2, 5, 6), {"size": (1, 3), "mode": "bilinear", "align_corners": True}),
    ("interpolate", (2, 3, 7), {"scale_factor": 1.7, "mode": "linear"}),
    ("interpolate", (1, 2, 7, 5), {"size": (3, 2), "mode": "area"}),
    ("pixel_shuffle", (2, 8, 3, 2), {"upscale_factor": 2}),
    ("pixel_unshuffle", (2, 1, 4, 6), {"downscale_factor": 2}),
]
for i, (op, shp, attrs) in enumerate(RESAMPLE_CASES):
    case(f"{op}-{i}", op, [N(*shp)], attrs, family="resample")
for mode in ("train", "eval"):
    case(f"batch_norm-{mode}-4d", "batch_norm", [N(2, 4, 3, 5), N(4), POS(4, lo=0.5, hi=1.5), N(4), N(4)],
         {"training": mode == "train", "momentum": 0.3, "eps": 1e-3})
case("batch_norm-train-2d-noaffine", "batch_norm", [N(6, 4), N(4), POS(4, lo=0.5, hi=1.5)], {"training": True})
case("layer_norm-2", "layer_norm", [N(3, 4, 7), N(4, 7), N(4, 7)], {"normalized_shape": (4, 7), "eps": 1e-3})
case("layer_norm-noaffine", "layer_norm", [N(5, 6)], {"normalized_shape": (6,)})
case("group_norm", "group_norm", [N(2, 6, 4, 5), N(6), N(6)], {"num_groups": 3})
case("local_response_norm", "local_response_norm", [N(2, 7, 4, 5)], {"size": 5, "alpha": 1e-2, "k": 2.0})
SDPA = "scaled_dot_product_attention"
case("sdpa-basic", SDPA, [N(2, 5, 8), N(2, 5, 8), N(2, 5, 8)])
case("sdpa-bool-mask", SDPA, [N(2, 2, 4, 8), N(2, 2, 6, 8), N(2, 2, 6, 8), MASK(2, 2, 4, 6)])
case("sdpa-causal", SDPA, [N(2, 2, 6, 4), N(2, 2, 6, 4), N(2, 2, 6, 4)], {"is_causal": True})
case("sdpa-fully-masked-row", SDPA, [N(1, 4, 8), N(1, 5, 8), N(1, 5, 3),
                                     V([[1, 1, 0, 0, 1], [0] * 5, [1] * 5, [0, 0, 0, 0, 1]], np.bool_)])

# ---------------------------------------------------------------------------
# recurrent
# ---------------------------------------------------------------------------
_FAMILY[0] = "recurrent"


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
    case(id, kind.lower(), [x, *states, RNN_WEIGHTS(kind, I_, H, **{**kw, "proj_size": proj})], dict(kw))


rnn_case("rnn-tanh", "RNN")
rnn_case("rnn-relu-2layer-bf-nobias-nostate", "RNN", layers=2, nonlinearity="relu", batch_first=True,
         bias=False, with_state=False)
rnn_case("rnn-bidir", "RNN", bidir=True, T=3)
rnn_case("lstm", "LSTM")
rnn_case("lstm-nostate", "LSTM", with_state=False, T=1)
rnn_case("lstm-2layer-bidir-bf", "LSTM", layers=2, bidir=True, batch_first=True, T=4)
rnn_case("lstm-proj-bidir", "LSTM", proj=3, bidir=True, layers=2, T=3)
rnn_case("gru", "GRU")
rnn_case("gru-2layer-bidir-nostate-bf", "GRU", layers=2, bidir=True, with_state=False, batch_first=True, T=3)
rnn_case("gru-nobias", "GRU", bias=False)

# ---------------------------------------------------------------------------
# losses
# ---------------------------------------------------------------------------
_FAMILY[0] = "loss"
for red in ("mean", "sum", "none"):
    case(f"mse_loss-{red}", "mse_loss", [R(4, 5), R(4, 5)], {"reduction": red})
    case(f"l1_loss-{red}", "l1_loss", [R(4, 5), R(4, 5)], {"reduction": red})
    for beta in (1.0, 0.0):
        case(f"smooth_l1_loss-beta{beta}-{red}", "smooth_l1_loss", [R(4, 5), R(4, 5)],
             {"reduction": red, "beta": beta})
    case(f"binary_cross_entropy-weight-{red}", "binary_cross_entropy", [PROB(4, 5), RI(4, 5, lo=0, hi=2), POS(5)],
         {"reduction": red})
    case(f"binary_cross_entropy-clamp-{red}", "binary_cross_entropy",
         [V([0.0, 1.0, 0.0, 1.0, 1e-30, 0.5]), V([0.0, 1.0, 1.0, 0.0, 0.3, 0.5])], {"reduction": red})
    case(f"bce_with_logits-weights-{red}", "binary_cross_entropy_with_logits",
         [R(4, 5), RI(4, 5, lo=0, hi=2), POS(4, 1), POS(5)], {"reduction": red})
    case(f"bce_with_logits-posweight-{red}", "binary_cross_entropy_with_logits",
         [R(3, 5), PROB(3, 5), None, POS(5)], {"reduction": red})
    case(f"bce_with_logits-extreme-{red}", "binary_cross_entropy_with_logits",
         [EXTREME, V([0.0, 1.0, 0.5, 1.0, 0.0, 1.0, 0.0, 0.5, 1.0])], {"reduction": red})
    for sid, inputs, attrs in [
        ("basic", [R(6, 4), T(6, C=4)], {}),
        ("weight", [R(6, 4), T(6, C=4), POS(4)], {}),
        ("ignore-custom", [R(6, 4), T(6, C=4, ignore=2, every=2)], {"ignore_index": 2}),
        ("smooth-weight-ignore", [R(8, 5), T(8, C=5, ignore=1, every=3), POS(5)],
         {"label_smoothing": 0.3, "ignore_index": 1}),
        ("spatial", [R(2, 4, 3, 5), T(2, 3, 5, C=4, ignore=-100)], {"label_smoothing": 0.1}),
        ("int32-target", [R(6, 4), T(6, C=4, dtype=np.int32)], {"label_smoothing": 0.1}),
        ("unbatched", [R(5), V(3, np.int64)], {}),
        ("prob-target", [R(4, 5), DIST(4, 5, axis=1)], {}),
        ("prob-target-smooth-weight", [R(2, 5, 3), DIST(2, 5, 3, axis=1), POS(5)], {"label_smoothing": 0.1}),
    ]:
        case(f"cross_entropy-{sid}-{red}", "cross_entropy", inputs, dict(attrs, reduction=red),
             family="zero_d" if sid == "unbatched" else None)
    for sid, inputs, attrs in [
        ("basic", [R(6, 4), T(6, C=4)], {}),
        ("weight-ignore", [R(7, 4), T(7, C=4, ignore=-100), POS(4)], {}),
        ("spatial-int32", [R(2, 3, 4), T(2, 4, C=3, ignore=-100, every=3, dtype=np.int32), POS(3)], {}),
        ("unbatched", [R(4), V(2, np.int64)], {}),
    ]:
        case(f"nll_loss-{sid}-{red}", "nll_loss", inputs, dict(attrs, reduction=red),
             family="zero_d" if sid == "unbatched" else None)
for red in ("mean", "sum", "none", "batchmean"):
    case(f"kl_div-{red}", "kl_div", [R(3, 5, lo=-4, hi=0), DIST(3, 5)], {"reduction": red})
    case(f"kl_div-zeros-{red}", "kl_div", [R(2, 3, lo=-4, hi=0), V([[0.0, 0.5, 0.5], [1.0, 0.0, 0.0]])],
         {"reduction": red})
    case(f"kl_div-log_target-{red}", "kl_div", [R(3, 5, lo=-4, hi=0), R(3, 5, lo=-4, hi=0)],
         {"reduction": red, "log_target": True})
case("cross_entropy-all-ignored", "cross_entropy", [R(3, 4), V([-100, -100, -100], np.int64)])

FAMILIES = sorted({c.family for c in CASES})

# ---------------------------------------------------------------------------
# building, compiling, comparing
# ---------------------------------------------------------------------------


def make_arrays(c: Case):
    rng = np.random.default_rng(zlib.crc32(c.id.encode()))
    arrays = []
    for make in c.inputs:
        a = None if make is None else make(rng, np.float32)
        arrays += a if isinstance(a, list) else [a]
    return arrays


def add_case(b: Builder, c: Case, arrays, k: int):
    vals = [None if a is None else b.input(f"c{k}_in{i}", TensorType(DType.from_numpy(a.dtype), a.shape))
            for i, a in enumerate(arrays)]
    outs = b.op(c.op, *vals, **c.attrs)
    return list(outs) if isinstance(outs, tuple) else [outs]


def cases_graph(cases: list[Case]):
    """One graph holding every case side by side: (graph, feed, {case id: output names})."""
    g = Graph("cases")
    b = Builder(g, Span("tests/cases.dln", 1, 1))
    feed, names, outs, onames = {}, {}, [], []
    for k, c in enumerate(cases):
        arrays = make_arrays(c)
        res = add_case(b, c, arrays, k)
        for i, a in enumerate(arrays):
            if a is not None:
                feed[f"c{k}_in{i}"] = a
        names[c.id] = []
        for j, v in enumerate(res):
            if v is None:
                continue
            outs.append(v)
            onames.append(f"c{k}_out{j}")
            names[c.id].append(f"c{k}_out{j}")
    g.outputs, g.output_names = outs, onames
    return g, feed, names


def run_tvm(g: Graph, feed: dict, weights: dict | None = None, bind: dict | None = None, seed: int = 0):
    compiled = compile_graph(g, "cpu", bind=bind)
    return compiled.runner().set_weights(weights or {}).run(feed, seed=seed), compiled


def run_numpy(g: Graph, feed: dict, weights: dict | None = None, dims: dict | None = None, seed: int = 0):
    outs, upd = Interpreter(g, seed=seed, dims=dims).run(feed, weights or {})
    return outs, upd


def assert_close(got, want, what: str, tol: float = 1.0):
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape, f"{what}: shape {got.shape} != NumPy {want.shape}"
    if want.dtype.kind != "f":
        assert got.dtype == want.dtype or (got.dtype.kind == want.dtype.kind), \
            f"{what}: dtype {got.dtype} != NumPy {want.dtype}"
        np.testing.assert_array_equal(got, want, err_msg=what)
        return
    assert got.dtype.kind == "f", f"{what}: dtype {got.dtype} != NumPy {want.dtype}"
    finite = np.abs(want[np.isfinite(want)])
    scale = max(1.0, float(finite.max())) if finite.size else 1.0
    rtol = RTOL32 if want.dtype == np.float32 else 1e-9
    np.testing.assert_allclose(got, want.astype(got.dtype), rtol=rtol * tol, atol=rtol * 0.1 * tol * scale,
                               err_msg=what)


_COMPILED: dict = {}


def family_results(family: str):
    """{case id: (outputs, NumPy outputs)} or {case id: exception} for every case of a family."""
    if family in _COMPILED:
        return _COMPILED[family]
    cases = [c for c in CASES if c.family == family]
    res = {}
    try:
        g, feed, names = cases_graph(cases)
        got, _ = run_tvm(g, feed)
        want, _ = run_numpy(g, feed)
        for c in cases:
            res[c.id] = ([got[n] for n in names[c.id]], [want[n] for n in names[c.id]])
    except Exception:  # noqa: BLE001 - fall back to one compile per case to name the culprit
        for c in cases:
            try:
                g, feed, names = cases_graph([c])
                got, _ = run_tvm(g, feed)
                want, _ = run_numpy(g, feed)
                res[c.id] = ([got[n] for n in names[c.id]], [want[n] for n in names[c.id]])
            except Exception as e:  # noqa: BLE001
                res[c.id] = e
    _COMPILED[family] = res
    return res


@pytest.mark.parametrize("c", CASES, ids=[c.id for c in CASES])
def test_op_matches_numpy(c: Case):
    r = family_results(c.family)[c.id]
    if isinstance(r, Exception):
        raise r
    got, want = r
    assert len(got) == len(want)
    for i, (t, w) in enumerate(zip(got, want)):
        assert_close(t, w, f"{c.id}[{i}]", c.tol)


SEMANTIC_ONLY = {"randn", "uniform"}      # drawn on the host: tested below
# fused: tests/backends/tvm/test_fused_lowering_tvm.py; the int8 ops (made by the quantize passes, with
# calibrated constants) bit for bit against NumPy: tests/backends/tvm/test_int8_graph.py
WHOLE_GRAPH = {"scan", "fused", "quantize_linear", "dequantize_linear", "requant_multiplier", "qconv2d", "qdense"}


def test_every_lowered_op_has_a_case():
    untested = sorted(set(LOWERING) - {c.op for c in CASES} - SEMANTIC_ONLY - WHOLE_GRAPH)
    assert not untested, f"TVM lowerings without a test case: {', '.join(untested)}"
    assert not set(LOWERING) & set(UNSUPPORTED), "ops both lowered and listed as unsupported"
    assert not set(LOWERING) - set(OPS), "lowerings of unknown ops"


# ---------------------------------------------------------------------------
# symbolic batch: one package, two batch sizes
# ---------------------------------------------------------------------------

def _symbolic_net():
    """conv -> bn(eval) -> relu -> maxpool -> flatten -> linear -> log_softmax and a
    cross_entropy / kl_div(batchmean) / nll over the symbolic batch."""
    g = Graph("sym")
    b = Builder(g, Span("tests/sym.dln", 1, 1))
    n = Dim.symbol("N")
    x = b.input("x", TensorType(DType.f32, (n, 3, 8, 8)))
    label = b.input("label", TensorType(DType.i64, (n,)))
    target = b.input("target", TensorType(DType.f32, (n, 5)))
    p = {}
    for name, shape in [("conv.w", (4, 3, 3, 3)), ("conv.b", (4,)), ("bn.mean", (4,)), ("bn.var", (4,)),
                        ("bn.w", (4,)), ("bn.b", (4,)), ("fc.w", (5, 64)), ("fc.b", (5,))]:
        p[name] = g.add_param(ParamInfo(name, Init("normal")), TensorType(DType.f32, shape))
    y = b.op("conv2d", x, p["conv.w"], p["conv.b"], padding=1)
    y = b.op("batch_norm", y, p["bn.mean"], p["bn.var"], p["bn.w"], p["bn.b"], training=False)
    y = y[0] if isinstance(y, tuple) else y
    y = b.op("max_pool2d", b.op("relu", y), kernel_size=2)
    y = b.op("reshape", y, shape=(n, 64))
    logits = b.op("linear", y, p["fc.w"], p["fc.b"])
    logp = b.op("log_softmax", logits, axis=-1)
    ce = b.op("cross_entropy", logits, label, label_smoothing=0.1)
    kl = b.op("kl_div", logp, b.op("softmax", target, axis=-1), reduction="batchmean")
    nll = b.op("nll_loss", logp, label, reduction="sum")
    mse = b.op("mse_loss", logits, target)
    g.outputs = [logp, ce, kl, nll, mse]
    g.output_names = ["logp", "ce", "kl", "nll", "mse"]
    return g


def test_symbolic_batch_one_package_two_sizes():
    g = _symbolic_net()
    compiled = compile_graph(g, "cpu")
    assert compiled.lowered.symbolic == ["N"]
    rng = np.random.default_rng(0)
    weights = {p.name: (rng.standard_normal(tuple(p.type.shape)) * 0.3).astype(np.float32) for p in g.params}
    weights["bn.var"] = np.abs(weights["bn.var"]) + 0.5
    runner = compiled.runner().set_weights(weights)
    for nb in (1, 3):
        feed = {"x": rng.standard_normal((nb, 3, 8, 8)).astype(np.float32),
                "label": rng.integers(0, 5, nb).astype(np.int64),
                "target": rng.standard_normal((nb, 5)).astype(np.float32)}
        got = runner.run(feed)
        want, _ = run_numpy(g, feed, weights, dims={"N": nb})
        for k in g.output_names:
            assert_close(got[k], want[k], f"N={nb}: {k}")


def test_symbolic_batch_recurrent():
    """An LSTM with a symbolic batch and a fixed number of steps stays batch-generic."""
    g = Graph("sym_lstm")
    b = Builder(g, Span("tests/sym.dln", 1, 1))
    n = Dim.symbol("N")
    x = b.input("x", TensorType(DType.f32, (n, 4, 3)))
    ws = [g.add_param(ParamInfo(f"w{i}", Init("normal")), TensorType(DType.f32, s))
          for i, s in enumerate([(20, 3), (20, 5), (20,), (20,)])]
    y, h, c = b.op("lstm", x, None, None, *ws, batch_first=True)
    g.outputs, g.output_names = [y, h, c], ["y", "h", "c"]
    compiled = compile_graph(g, "cpu")
    assert compiled.lowered.symbolic == ["N"]
    rng = np.random.default_rng(1)
    weights = {p.name: (rng.standard_normal(tuple(p.type.shape)) * 0.4).astype(np.float32) for p in g.params}
    runner = compiled.runner().set_weights(weights)
    for nb in (2, 5):
        feed = {"x": rng.standard_normal((nb, 4, 3)).astype(np.float32)}
        got = runner.run(feed)
        want, _ = run_numpy(g, feed, weights, dims={"N": nb})
        for k in g.output_names:
            assert_close(got[k], want[k], f"N={nb}: {k}")


def test_symbolic_steps_are_bound_to_the_example():
    """A recurrence over a symbolic length is unrolled at the example length."""
    g = Graph("sym_T")
    g.dims = {"T": 3, "N": 2}
    b = Builder(g, Span("tests/sym.dln", 1, 1))
    T_, n = Dim.symbol("T"), Dim.symbol("N")
    x = b.input("x", TensorType(DType.f32, (T_, n, 3)))
    ws = [g.add_param(ParamInfo(f"w{i}", Init("normal")), TensorType(DType.f32, s))
          for i, s in enumerate([(4, 3), (4, 4), (4,), (4,)])]
    y, h = b.op("rnn", x, None, *ws)
    g.outputs, g.output_names = [y, h], ["y", "h"]
    compiled = compile_graph(g, "cpu")
    assert compiled.lowered.fixed == {"T": 3}
    assert compiled.lowered.symbolic == ["N"]


# ---------------------------------------------------------------------------
# scan
# ---------------------------------------------------------------------------

def _scan_graph(axis: int, reverse: bool, batch=None):
    """carry' = tanh(carry @ w + x_t + outer) * gate_t ; y_t = (carry', carry' + gate_t, carry_in)."""
    g = Graph("scan_test")
    b = Builder(g, Span("tests/scan.dln", 3, 1))
    Nd = Dim.symbol("N") if batch is None else batch
    Td = 5
    xs_shape = [Nd, 4]
    xs_shape.insert(axis, Td)
    x = b.input("xs", TensorType(DType.f32, tuple(xs_shape)))
    gate = b.input("gates", TensorType(DType.f32, tuple(xs_shape)))
    h0 = b.input("h0", TensorType(DType.f32, (Nd, 4)))
    w = g.add_param(ParamInfo("cell.w", Init("normal")), TensorType(DType.f32, (4, 4)))
    outer = b.op("tanh", h0)
    body = Graph("scan_test.scan", parent=g)
    c_in = body.add_input("carry0", h0.type)
    x_in = body.add_input("x0", TensorType(DType.f32, (Nd, 4)))
    gt_in = body.add_input("x1", TensorType(DType.f32, (Nd, 4)))
    bb = Builder(body, Span("tests/scan.dln", 4, 1))
    pre = bb.op("add", bb.op("add", bb.op("matmul", c_in, w), x_in), outer)
    h = bb.op("mul", bb.op("tanh", pre), gt_in)
    body.outputs = [h, h, bb.op("add", h, gt_in), c_in]
    outs = g.add_node(OPS["scan"], [h0, x, gate], {"num_carry": 1, "axis": axis, "reverse": reverse},
                      Span("tests/scan.dln", 2, 1), body=body)
    g.outputs = list(outs)
    g.output_names = ["final", "hs", "hs_plus", "h_prev"]
    return g


@pytest.mark.parametrize("axis, reverse", [(0, False), (1, True)])
def test_scan_matches_numpy(axis, reverse):
    g = _scan_graph(axis, reverse)
    rng = np.random.default_rng(axis + 2 * reverse)
    compiled = compile_graph(g, "cpu")
    weights = {"cell.w": (rng.standard_normal((4, 4)) * 0.5).astype(np.float32)}
    runner = compiled.runner().set_weights(weights)
    for nb in (3, 1):
        shp = [nb, 4]
        shp.insert(axis, 5)
        feed = {"xs": rng.standard_normal(shp).astype(np.float32),
                "gates": rng.uniform(0.5, 1.5, shp).astype(np.float32),
                "h0": rng.standard_normal((nb, 4)).astype(np.float32)}
        got = runner.run(feed)
        want, _ = run_numpy(g, feed, weights, dims={"N": nb})
        for k in g.output_names:
            assert_close(got[k], want[k], f"scan axis={axis} reverse={reverse} N={nb}: {k}")


def test_scan_body_is_one_function():
    """Every step calls one private Relax function holding the body."""
    from dlc.backends.tvm.relaxgen import lower_model
    names = [gv.name_hint for gv, _ in lower_model(_scan_graph(0, False), {}).mod.functions_items()]
    assert sum(n.startswith("scan_body") for n in names) == 1, names


def test_scan_with_dropout_in_body_is_inlined():
    """A body with a random op reads main's host-drawn tensor: lowered inline
    per step (the same noise every step, as the reference's seed)."""
    g = Graph("scan_drop")
    b = Builder(g, Span("tests/scan.dln", 3, 1))
    x = b.input("xs", TensorType(DType.f32, (4, 2, 8)))
    h0 = b.input("h0", TensorType(DType.f32, (2, 8)))
    body = Graph("scan_drop.scan", parent=g)
    c_in = body.add_input("carry0", h0.type)
    x_in = body.add_input("x0", TensorType(DType.f32, (2, 8)))
    bb = Builder(body, Span("tests/scan.dln", 4, 1))
    h = bb.op("tanh", bb.op("add", bb.op("dropout", c_in, p=0.5, seed=3, training=True), x_in))
    body.outputs = [h, h]
    outs = g.add_node(OPS["scan"], [h0, x], {"num_carry": 1, "axis": 0, "reverse": False},
                      Span("tests/scan.dln", 2, 1), body=body)
    g.outputs, g.output_names = list(outs), ["final", "hs"]
    rng = np.random.default_rng(5)
    feed = {"xs": rng.standard_normal((4, 2, 8)).astype(np.float32),
            "h0": rng.standard_normal((2, 8)).astype(np.float32)}
    got, compiled = run_tvm(g, feed, seed=2)
    assert not any(gv.name_hint.startswith("scan_body") for gv, _ in compiled.lowered.mod.functions_items())
    want, _ = run_numpy(g, feed, seed=2)
    for k in g.output_names:
        assert_close(got[k], want[k], k)


# ---------------------------------------------------------------------------
# pooling argmax: ties, NaN, -inf windows
# ---------------------------------------------------------------------------

def test_pool_indices_ties_nan_and_inf():
    x = np.array([[[[1, 1, 0, 2], [NAN, 1, 2, 2], [-INF, -INF, 3, NAN], [-INF, -INF, NAN, 3]]]], np.float32)
    for op, attrs in [("max_pool2d_indices", {"kernel_size": 2}),
                      ("max_pool2d_indices", {"kernel_size": 3, "stride": 1, "padding": 1}),
                      ("adaptive_max_pool2d_indices", {"output_size": 3})]:
        g = Graph("idx")
        b = Builder(g, Span("tests/idx.dln", 1, 1))
        v = b.input("x", TensorType(DType.f32, x.shape))
        g.outputs, g.output_names = [b.op(op, v, **attrs)], ["y"]
        got, _ = run_tvm(g, {"x": x})
        want, _ = run_numpy(g, {"x": x})
        assert got["y"].dtype == np.int64
        np.testing.assert_array_equal(got["y"], want["y"], err_msg=f"{op} {attrs}")


# ---------------------------------------------------------------------------
# random ops drawn on the host match the reference bit for bit
# ---------------------------------------------------------------------------

def test_random_ops_match_the_reference():
    g = Graph("rand")
    b = Builder(g, Span("tests/rand.dln", 1, 1))
    n = Dim.symbol("N")
    x = b.input("x", TensorType(DType.f32, (n, 16)))
    d = b.op("dropout", x, p=0.3, seed=4, training=True)
    r = b.op("randn", shape=(3, 4), seed=2)
    u = b.op("uniform", shape=(5,), low=-1.0, high=2.0, seed=9)
    g.outputs, g.output_names = [d, r, u], ["d", "r", "u"]
    compiled = compile_graph(g, "cpu")
    runner = compiled.runner().set_weights({})
    for seed, nb in ((0, 2), (5, 3)):
        feed = {"x": np.random.default_rng(seed).standard_normal((nb, 16)).astype(np.float32)}
        got = runner.run(feed, seed=seed)
        want, _ = run_numpy(g, feed, dims={"N": nb}, seed=seed)
        for k in g.output_names:
            np.testing.assert_allclose(got[k], want[k], rtol=1e-6, atol=1e-6, err_msg=k)
