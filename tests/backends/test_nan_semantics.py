"""NaN, +-inf and all -inf rows mean the same thing on every backend: what PyTorch does.

Each case is one op over inputs holding NaN, +inf, -inf, a row of -inf only and
ties.  The reference is the PyTorch function itself (not dlc's torch
backend), and each backend is compared with it: the NumPy interpreter, the
generated PyTorch function and TVM.  All cases sit side by side in one graph,
so TVM compiles once.

The rules (docs/language.md, "NaN and infinities"):
* elementwise ops and clamps (relu, relu6, hardtanh, elu, maximum, minimum, ...)
  propagate NaN;
* max/min reductions and max pooling propagate NaN; a row of -inf has max -inf;
* argmax/argmin treat NaN as the extreme value and return the first index
  on ties, so a row of -inf gives 0.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

from dlc.backends.numpy.interpreter import Interpreter
from dlc.backends.torch.funcgen import compile_function
from dlc.compiler.builder import Builder
from dlc.compiler.ir import Graph
from dlc.compiler.types import DType, TensorType
from dlc.errors import Span

NAN, INF = math.nan, math.inf

# rows: NaN first / NaN last / +-inf / all -inf / ties / all NaN
X = np.array([[NAN, 1, -2, 3, 7],
              [1, 2, 5, 5, NAN],
              [INF, -INF, 0, 2, -0.5],
              [-INF, -INF, -INF, -INF, -INF],
              [4, -1, 4, 8, 8],
              [NAN, NAN, NAN, NAN, NAN]], np.float32)
Y = np.array([[0, NAN, 5, -1, INF],
              [NAN, INF, -INF, 3, 1],
              [-INF, 2, 0, NAN, -INF],
              [NAN, 0, 1, -INF, INF],
              [4, -1, 9, 8, -8],
              [1, 2, 3, 4, 5]], np.float32)
# gelu: torch's CPU kernel gives NaN at +inf (erf's vectorised path), which is
# no rule anyone should rely on; every other value is kept
X_FINITE_INF = np.where(np.isposinf(X), NAN, X).astype(np.float32)
IMAGE = X.reshape(1, 1, 6, 5)
W_PRELU = np.array([0.25], np.float32)

t = torch.tensor


@dataclass
class Case:
    id: str
    op: str
    inputs: list            # names of arrays in ARRAYS
    reference: object       # torch tensors -> torch tensor
    attrs: dict = field(default_factory=dict)
    rtol: float = 1e-5      # TVM's vectorised exp/tanh/erf are a few ulp off


ARRAYS = {"x": X, "y": Y, "xg": X_FINITE_INF, "image": IMAGE, "w": W_PRELU}

CASES = [
    Case("relu", "relu", ["x"], torch.relu),
    Case("relu6", "relu6", ["x"], F.relu6),
    Case("hardtanh", "hardtanh", ["x"], lambda x: F.hardtanh(x, -2.0, 2.5), {"min_val": -2.0, "max_val": 2.5}),
    Case("elu", "elu", ["x"], F.elu),
    Case("selu", "selu", ["x"], F.selu),
    Case("leaky_relu", "leaky_relu", ["x"], F.leaky_relu),
    Case("prelu", "prelu", ["x", "w"], F.prelu),
    Case("hardsigmoid", "hardsigmoid", ["x"], F.hardsigmoid),
    Case("hardswish", "hardswish", ["x"], F.hardswish),
    Case("sigmoid", "sigmoid", ["x"], torch.sigmoid, rtol=1e-4),
    Case("tanh", "tanh", ["x"], torch.tanh, rtol=1e-4),
    Case("silu", "silu", ["x"], F.silu, rtol=1e-4),
    Case("gelu", "gelu", ["xg"], F.gelu, rtol=1e-4),
    Case("softplus", "softplus", ["x"], F.softplus, rtol=1e-4),
    Case("maximum", "maximum", ["x", "y"], torch.maximum),
    Case("minimum", "minimum", ["x", "y"], torch.minimum),
    Case("max-rows", "max", ["x"], lambda x: torch.amax(x, 1), {"axis": 1}),
    Case("min-rows", "min", ["x"], lambda x: torch.amin(x, 1), {"axis": 1}),
    Case("max-cols-keepdims", "max", ["x"], lambda x: torch.amax(x, 0, keepdim=True),
         {"axis": 0, "keepdims": True}),
    Case("min-cols", "min", ["y"], lambda y: torch.amin(y, 0), {"axis": 0}),
    Case("max-all", "max", ["y"], torch.amax),
    Case("argmax-rows", "argmax", ["x"], lambda x: torch.argmax(x, 1), {"axis": 1}),
    Case("argmin-rows", "argmin", ["x"], lambda x: torch.argmin(x, 1), {"axis": 1}),
    Case("argmax-cols", "argmax", ["y"], lambda y: torch.argmax(y, 0), {"axis": 0}),
    Case("argmin-cols-keepdims", "argmin", ["y"], lambda y: torch.argmin(y, 0, keepdim=True),
         {"axis": 0, "keepdims": True}),
    Case("argmax-all", "argmax", ["x"], torch.argmax),
    Case("softmax", "softmax", ["x"], lambda x: torch.softmax(x, 1), {"axis": 1}, rtol=1e-4),
    Case("log_softmax", "log_softmax", ["x"], lambda x: torch.log_softmax(x, 1), {"axis": 1}, rtol=1e-4),
    Case("logsumexp", "logsumexp", ["x"], lambda x: torch.logsumexp(x, 1), {"axis": 1}, rtol=1e-4),
    Case("max_pool2d", "max_pool2d", ["image"], lambda i: F.max_pool2d(i, 2), {"kernel_size": 2}),
    Case("max_pool2d-padded", "max_pool2d", ["image"], lambda i: F.max_pool2d(i, 3, 1, 1),
         {"kernel_size": 3, "stride": 1, "padding": 1}),
    Case("adaptive_max_pool2d", "adaptive_max_pool2d", ["image"], lambda i: F.adaptive_max_pool2d(i, (2, 3)),
         {"output_size": (2, 3)}),
]


def _graph():
    g = Graph("nan_cases")
    b = Builder(g, Span("tests/nan_cases.dln", 1, 1))
    vals = {k: b.input(k, TensorType(DType.from_numpy(a.dtype), a.shape)) for k, a in ARRAYS.items()}
    g.outputs = [b.op(c.op, *[vals[n] for n in c.inputs], **c.attrs) for c in CASES]
    g.output_names = [c.id for c in CASES]
    return g


def _run_numpy(g):
    outs, _ = Interpreter(g).run(dict(ARRAYS), {})
    return {k: np.asarray(v) for k, v in outs.items()}


def _run_torch(g):
    fn = compile_function(g)
    outs, _ = fn(*[t(ARRAYS[v.name]) for v in g.inputs], {}, seed=0)
    return {k: o.numpy() for k, o in zip(g.output_names, outs)}


def _run_tvm(g):
    pytest.importorskip("tvm")
    from dlc.backends.tvm.compile import compile_graph
    return compile_graph(g, "cpu").runner().set_weights({}).run(dict(ARRAYS), seed=0)


RUNNERS = {"numpy": _run_numpy, "torch": _run_torch, "tvm": _run_tvm}
_RESULTS: dict = {}


def results(backend):
    if backend not in _RESULTS:
        _RESULTS[backend] = RUNNERS[backend](_graph())
    return _RESULTS[backend]


def assert_same_as_torch(got, want, what, rtol):
    got = np.asarray(got)
    assert got.shape == want.shape, f"{what}: shape {got.shape} != torch {want.shape}"
    if want.dtype.kind != "f":
        np.testing.assert_array_equal(got, want, err_msg=f"{what}: indices differ from torch")
        return
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want), err_msg=f"{what}: NaN where torch has none, "
                                  f"or a number where torch has NaN\n got {got}\n torch {want}")
    np.testing.assert_array_equal(np.isinf(got) & (got > 0), np.isposinf(want), err_msg=f"{what}: +inf differs")
    np.testing.assert_array_equal(np.isinf(got) & (got < 0), np.isneginf(want), err_msg=f"{what}: -inf differs")
    fin = np.isfinite(want)
    np.testing.assert_allclose(got[fin], want[fin], rtol=rtol, atol=rtol, err_msg=what)


@pytest.mark.parametrize("backend", ["numpy", "torch", pytest.param("tvm", marks=pytest.mark.tvm)])
@pytest.mark.parametrize("c", CASES, ids=[c.id for c in CASES])
def test_nan_and_inf_as_torch(c: Case, backend):
    want = c.reference(*[t(ARRAYS[n]) for n in c.inputs]).numpy()
    assert_same_as_torch(results(backend)[c.id], want, f"{backend} {c.id}", c.rtol)


@pytest.mark.tvm
def test_conv_relu_epilogue_propagates_nan():
    """relu fused into a convolution's register-tiled epilogue keeps NaN too."""
    pytest.importorskip("tvm")
    from dlc.backends.tvm.compile import compile_graph
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 3, 6, 6)).astype(np.float32)
    x[0, 1, 2, 3] = NAN
    w = rng.standard_normal((8, 3, 3, 3)).astype(np.float32)
    g = Graph("conv_relu")
    b = Builder(g, Span("tests/conv_relu.dln", 1, 1))
    xv = b.input("x", TensorType(DType.f32, x.shape))
    wv = b.input("w", TensorType(DType.f32, w.shape))
    g.outputs, g.output_names = [b.op("relu", b.op("conv2d", xv, wv))], ["y"]
    got = compile_graph(g, "cpu").runner().set_weights({}).run({"x": x, "w": w}, seed=0)["y"]
    want = torch.relu(F.conv2d(t(x), t(w))).numpy()
    assert_same_as_torch(got, want, "conv2d+relu", 1e-4)
