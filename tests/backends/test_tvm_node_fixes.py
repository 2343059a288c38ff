"""TVM backend bugs found by the ONNX node tests, each checked on a small graph
against the NumPy interpreter (and NumPy's own semantics):

* an output computed from weights and constants alone (a buffer returned as it
  is, a constant folded at import) made `LiftTransformParams` move its binding
  out of ``main``, and codegen failed with "Var gv is not defined";
* comparisons of bools compiled to `fcmp` on i1 (invalid LLVM IR);
* float `!=` compiled to the ordered `fcmp one`, false at NaN, so isnan
  (`x != x`) was always false and a float NaN cast to bool gave False;
* a reshape to a shape with a 0-size dimension (relax reads a 0 as "keep the
  input's dimension", and a folded 0-size constant cannot be loaded back);
* max/min of bools ("Cannot decide min_value for type bool").
"""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("tvm")

from dlc.backends.numpy.interpreter import Interpreter
from dlc.backends.tvm import relaxgen
from dlc.backends.tvm.compile import compile_graph
from dlc.compiler.builder import Builder
from dlc.compiler.ir import Graph, Init, ParamInfo
from dlc.compiler.types import DType, TensorType
from dlc.errors import Span

pytestmark = pytest.mark.tvm

NAN, INF = np.nan, np.inf


def _graph(name):
    g = Graph(name)
    return g, Builder(g, Span(f"tests/{name}.dln", 1, 1))


def _input(b, name, a):
    return b.input(name, TensorType(DType.from_numpy(a.dtype), a.shape))


def _param(g, name, shape, buffer=False):
    return g.add_param(ParamInfo(name, Init("normal")), TensorType(DType.f32, tuple(shape)), buffer=buffer)


def _outputs(g, **outs):
    g.output_names = list(outs)
    g.outputs = list(outs.values())


def _tvm(g, inputs, weights=None):
    return compile_graph(g, "cpu").runner().set_weights(dict(weights or {})).run(dict(inputs), seed=0)


def _numpy(g, inputs, weights=None):
    outs, _ = Interpreter(g).run(dict(inputs), dict(weights or {}))
    return {k: np.asarray(v) for k, v in outs.items()}


def _same(got, want):
    assert set(got) == set(want)
    for k in want:
        a, b = np.asarray(got[k]), np.asarray(want[k])
        assert a.shape == b.shape and a.dtype == b.dtype, (k, a.shape, a.dtype, b.shape, b.dtype)
        np.testing.assert_allclose(a, b, rtol=1e-6, err_msg=k)


# -- outputs that depend on no input ------------------------------------------------

W = {"w": np.array([[1.5, -2.0, 0.25]], np.float32), "buf": np.array([3.0, -1.0], np.float32)}
X = {"x": np.array([[1.0, 2.0, 3.0]], np.float32)}


def _weight_only_graph():
    """One output from the input (its weight use would be lifted), and three
    from no input: a buffer as it is, a computation on a weight, a constant."""
    g, b = _graph("weight_only_outputs")
    x = _input(b, "x", X["x"])
    w = _param(g, "w", (1, 3))
    buf = _param(g, "buf", (2,), buffer=True)
    _outputs(g, y=b.op("mul", x, b.op("transpose", w, axes=(1, 0))),
             buffer=buf, relu_w=b.op("mul", b.op("relu", w), b.const(2.0)), const=b.const(7.0, shape=(2, 2)))
    return g


def test_outputs_from_weights_alone_compile_and_match_numpy():
    g = _weight_only_graph()
    assert relaxgen._input_free_outputs(g) == ["buffer", "relu_w", "const"]
    low = relaxgen.lower_model(g)
    assert not low.lifted          # the weights stay runtime inputs
    _same(_tvm(g, X, W), _numpy(g, X, W))


def test_a_graph_with_no_input_returning_its_buffer():
    # ONNX ConstantOfShape with a 0-size shape: the importer's buffer is the output
    g, b = _graph("buffer_only")
    _outputs(g, y=_param(g, "buf", (2,), buffer=True))
    _same(_tvm(g, {}, W), {"y": W["buf"]})


def test_outputs_that_all_depend_on_inputs_keep_weights_lifted():
    g, b = _graph("lifted")
    x = _input(b, "x", X["x"])
    w = _param(g, "w", (1, 3))
    _outputs(g, y=b.op("add", x, b.op("relu", w)), x_again=x)
    assert relaxgen._input_free_outputs(g) == []
    assert relaxgen.lower_model(g).lifted
    _same(_tvm(g, X, W), _numpy(g, X, W))


def test_a_host_drawn_random_tensor_counts_as_an_input():
    g, b = _graph("random_output")
    w = _param(g, "w", (1, 3))
    _outputs(g, y=b.op("add", b.op("randn", shape=(1, 3), seed=3), w))
    assert relaxgen._input_free_outputs(g) == []
    _same(_tvm(g, {}, W), _numpy(g, {}, W))


# -- comparisons ----------------------------------------------------------------------

P = np.array([[True, False, True], [False, False, True]])
Q = np.array([True, False, False])
F1 = np.array([1.0, NAN, 2.0, NAN, INF, -0.0, 0.0, -INF], np.float32)
F2 = np.array([1.0, 1.0, NAN, NAN, INF, 0.0, 5.0, 3.0], np.float32)
CMP = {"eq": np.equal, "ne": np.not_equal, "lt": np.less, "le": np.less_equal, "gt": np.greater,
       "ge": np.greater_equal}


def test_bool_comparisons_match_numpy():
    g, b = _graph("bool_compare")
    p, q = _input(b, "p", P), _input(b, "q", Q)     # broadcast, as ONNX's xor_bcast cases
    _outputs(g, **{k: b.op(k, p, q) for k in CMP})
    got = _tvm(g, {"p": P, "q": Q})
    _same(got, {k: fn(P, Q) for k, fn in CMP.items()})


def test_float_comparisons_follow_numpy_at_nan():
    g, b = _graph("float_compare")
    x, y = _input(b, "x", F1), _input(b, "y", F2)
    outs = {k: b.op(k, x, y) for k in CMP}
    outs["isnan"] = b.op("ne", x, x)             # ONNX IsNaN's import
    outs["to_bool"] = b.op("cast", x, dtype="bool")
    _outputs(g, **outs)
    want = {k: fn(F1, F2) for k, fn in CMP.items()}
    want.update(isnan=np.isnan(F1), to_bool=F1.astype(bool))
    assert want["isnan"].any() and want["ne"][1:4].all()     # the NaN cases are there
    _same(_tvm(g, {"x": F1, "y": F2}), want)


# -- reshape to a 0-size shape, bool max/min ----------------------------------------

def test_reshape_to_a_shape_with_a_zero_dimension():
    e = np.zeros((0, 3, 4), np.float32)
    g, b = _graph("reshape_zero")
    x = _input(b, "x", e)
    _outputs(g, a=b.op("reshape", x, shape=(3, 4, 0)), b=b.op("reshape", x, shape=(4, 0, 3)))
    got = _tvm(g, {"x": e})
    assert got["a"].shape == (3, 4, 0) and got["b"].shape == (4, 0, 3)
    _same(got, _numpy(g, {"x": e}))


def test_reshape_to_a_zero_dimension_through_the_backend_cache(tmp_path, monkeypatch):
    # the cached path saves and reloads the library: a 0-size constant could not be loaded
    from dlc.backends import get_backend
    monkeypatch.setenv("DLC_CACHE_DIR", str(tmp_path))
    e = np.zeros((2, 0), np.int64)
    g, b = _graph("reshape_zero_cached")
    _outputs(g, y=b.op("reshape", _input(b, "x", e), shape=(0, 5)))
    for _ in range(2):      # a miss, then a hit
        outs, _ = get_backend("tvm").run(g, {"x": e}, {})
        assert outs["y"].shape == (0, 5) and outs["y"].dtype == np.int64


@pytest.mark.parametrize("axis", [None, 0, 1])
def test_bool_max_min_are_any_all(axis):
    m = np.array([[True, False, False], [True, True, True]])
    g, b = _graph("bool_reduce")
    x = _input(b, "x", m)
    _outputs(g, max=b.op("max", x, axis=axis, keepdims=False), min=b.op("min", x, axis=axis, keepdims=True))
    got = _tvm(g, {"x": m})
    _same(got, _numpy(g, {"x": m}))
    np.testing.assert_array_equal(got["max"], m.any(axis=axis))
    np.testing.assert_array_equal(got["min"], m.all(axis=axis, keepdims=True))
