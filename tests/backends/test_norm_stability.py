"""Normalisations and softmax on huge, tiny and nearly equal values give the
true answer on every backend.

layer_norm([1e30, 0, 0, 0, 0]) is [2, -0.5, -0.5, -0.5, -0.5]: the variance
(6.4e59) overflows float32 when it is computed from the raw values, and a
one-pass E[x^2] - E[x]^2 cancels to 0 for [1e4 + 1, 1e4 - 1].  The reference
is the same formula evaluated in float64 (no overflow, exact enough) and
rounded to float32; each backend runs in float32.  All cases share one graph
so TVM compiles once.
"""
from __future__ import annotations

import numpy as np
import pytest

from dlc.backends.numpy.interpreter import Interpreter
from dlc.compiler.builder import Builder
from dlc.compiler.ir import Graph
from dlc.compiler.types import DType, TensorType
from dlc.errors import Span

EPS = 1e-5
ROWS = np.array([[1e30, 0, 0, 0, 0],
                 [-3e38, 3e38, 1, 2, 3],
                 [1e4 + 1, 1e4 - 1, 1e4 + 1, 1e4 - 1, 1e4],
                 [1e-30, 0, 0, 0, 0],
                 [1, 2, 3, 4, 5],
                 [7, 7, 7, 7, 7]], np.float32)
LOGITS = np.array([[1e30, 0, -1e30], [3e38, -3e38, 0], [-3e38, -3e38, -3e38], [1, 2, 3]], np.float32)
GN = ROWS[:4].reshape(1, 4, 5)              # group_norm over (N=1, C=4, L=5), 2 groups of 2 channels
BN = ROWS[[0, 2, 4]].T.copy()               # batch_norm (train) over N=5, C=3 columns
GAMMA = np.array([1.5, -1, 2, 0.5, 1], np.float32)
BETA = np.array([0.25, 0, -1, 3, 0.5], np.float32)


def _normalize64(x, axes):
    x = x.astype(np.float64)
    m = x.mean(axis=axes, keepdims=True)
    v = ((x - m) ** 2).mean(axis=axes, keepdims=True)
    return (x - m) / np.sqrt(v + EPS), m, v


def _ref_layer_norm(x):
    return (_normalize64(x, (-1,))[0] * GAMMA + BETA).astype(np.float32)


def _ref_group_norm(x):
    y = _normalize64(x.reshape(1, 2, 10), (-1,))[0]
    return y.reshape(x.shape).astype(np.float32)


def _ref_batch_norm(x):
    y, m, v = _normalize64(x, (0,))
    n = x.shape[0]
    with np.errstate(over="ignore"):
        rm = (0.9 * 0 + 0.1 * m.ravel()).astype(np.float32)
        rv = (0.9 * 1 + 0.1 * v.ravel() * n / (n - 1)).astype(np.float32)
    return y.astype(np.float32), rm, rv


def _ref_softmax(x, log):
    x = x.astype(np.float64)
    z = x - x.max(axis=-1, keepdims=True)
    z = np.where(np.isnan(z), 0.0, z)      # a row of equal -inf... is not here: every row has a max
    ls = z - np.log(np.exp(z).sum(axis=-1, keepdims=True))
    return (ls if log else np.exp(ls)).astype(np.float32)


def _graph():
    g = Graph("norm_cases")
    b = Builder(g, Span("tests/norm_cases.dln", 1, 1))

    def inp(name, a):
        return b.input(name, TensorType(DType.f32, a.shape))
    rows, logits, gn, bn = inp("rows", ROWS), inp("logits", LOGITS), inp("gn", GN), inp("bn", BN)
    gamma, beta = inp("gamma", GAMMA), inp("beta", BETA)
    zeros, ones = inp("rm", np.zeros(3, np.float32)), inp("rv", np.ones(3, np.float32))
    outs = {
        "layer_norm": b.op("layer_norm", rows, gamma, beta, normalized_shape=(5,), eps=EPS),
        "group_norm": b.op("group_norm", gn, num_groups=2, eps=EPS),
        "softmax": b.op("softmax", logits, axis=-1),
        "log_softmax": b.op("log_softmax", logits, axis=-1),
    }
    y, rm, rv = b.op("batch_norm", bn, zeros, ones, training=True, momentum=0.1, eps=EPS)
    outs.update({"batch_norm": y, "batch_norm.running_mean": rm, "batch_norm.running_var": rv})
    g.outputs, g.output_names = list(outs.values()), list(outs)
    return g


FEED = {"rows": ROWS, "logits": LOGITS, "gn": GN, "bn": BN, "gamma": GAMMA, "beta": BETA,
        "rm": np.zeros(3, np.float32), "rv": np.ones(3, np.float32)}


def _want():
    y, rm, rv = _ref_batch_norm(BN)
    return {"layer_norm": _ref_layer_norm(ROWS), "group_norm": _ref_group_norm(GN),
            "softmax": _ref_softmax(LOGITS, False), "log_softmax": _ref_softmax(LOGITS, True),
            "batch_norm": y, "batch_norm.running_mean": rm, "batch_norm.running_var": rv}


def _run(backend):
    g = _graph()
    if backend == "numpy":
        return Interpreter(g).run(dict(FEED), {})[0]
    if backend == "torch":
        torch = pytest.importorskip("torch")
        from dlc.backends.torch.funcgen import compile_function
        outs, _ = compile_function(g)(*[torch.tensor(FEED[v.name]) for v in g.inputs], {}, seed=0)
        return {k: o.numpy() for k, o in zip(g.output_names, outs)}
    pytest.importorskip("tvm")
    from dlc.backends.tvm.compile import compile_graph
    return compile_graph(g, "cpu").runner().set_weights({}).run(dict(FEED), seed=0)


_RESULTS: dict = {}
CASES = ["layer_norm", "group_norm", "softmax", "log_softmax", "batch_norm", "batch_norm.running_mean",
         "batch_norm.running_var"]


@pytest.mark.parametrize("backend", ["numpy", "torch", pytest.param("tvm", marks=pytest.mark.tvm)])
@pytest.mark.parametrize("case", CASES)
def test_true_answer_on_extreme_values(case, backend):
    if backend not in _RESULTS:
        _RESULTS[backend] = _run(backend)
    got = np.asarray(_RESULTS[backend][case])
    want = _want()[case]
    assert got.shape == want.shape
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want), err_msg=f"{backend} {case}: NaN\n{got}\n{want}")
    np.testing.assert_array_equal(np.isinf(got), np.isinf(want), err_msg=f"{backend} {case}: inf\n{got}\n{want}")
    fin = np.isfinite(want)
    # relative to each value, with an absolute floor of 1e-6 (softmax's exp is a few ulp off on TVM)
    np.testing.assert_allclose(got[fin], want[fin], rtol=2e-5, atol=1e-6, err_msg=f"{backend} {case}")


def test_reference_formula_is_the_true_answer():
    """The float64 reference itself: [1e30, 0, 0, 0, 0] normalises to [2, -0.5, ...]."""
    np.testing.assert_allclose(_normalize64(ROWS[:1], (-1,))[0][0], [2, -0.5, -0.5, -0.5, -0.5], rtol=1e-12)
