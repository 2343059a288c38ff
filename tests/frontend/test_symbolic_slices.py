"""Slices with symbolic bounds (`x[:, :T - 1]`) and strides (`x[:, ::2]`) on
symbolic axes: types, every backend against NumPy's own slicing at two sizes,
and gradients (the symbolic adjoint equals the concrete one)."""
from __future__ import annotations

import textwrap

import numpy as np
import pytest

import dlc
from dlc.compiler.dims import Dim
from dlc.errors import DlcError
from dlc.frontend.modules import clear_cache

SPEC = """
model Slices(x: f32[N, T, 3]) {
    example N = 2, T = 7
    a = x[:, :T - 1]
    b = x[:, 1:]
    c = x[:, ::2]
    d = x[:, ::-1]
    e = x[:, T - 2::-2]
    f = x[:, :-1]
    g = x[:, T - 1]
    h = x[:, 1:T - 1:3]
    k = x[:, T // 2:]
    return a, b, c, d, e, f, g, h, k
}
"""

# the same slices in NumPy, for a concrete T
EXPECT = {
    "a": lambda x, T: x[:, :T - 1], "b": lambda x, T: x[:, 1:], "c": lambda x, T: x[:, ::2],
    "d": lambda x, T: x[:, ::-1], "e": lambda x, T: x[:, T - 2::-2], "f": lambda x, T: x[:, :-1],
    "g": lambda x, T: x[:, T - 1], "h": lambda x, T: x[:, 1:T - 1:3], "k": lambda x, T: x[:, T // 2:],
}
TYPES = {"a": "T - 1", "b": "T - 1", "c": "(T + 1)//2", "d": "T", "e": "(T)//2", "f": "T - 1",
         "h": "(T)//3", "k": "-(T)//2 + T"}


@pytest.fixture(scope="module")
def model():
    import tempfile
    from pathlib import Path
    clear_cache()
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "slices.dln"
        p.write_text(textwrap.dedent(SPEC).lstrip("\n"))
        yield dlc.load(p)


def test_types_stay_symbolic(model):
    out = dict(zip(model.graph.output_names, model.graph.outputs))
    for name, want in TYPES.items():
        got = out[name].type.shape[1]
        assert isinstance(got, Dim) and str(got) == want, (name, str(got))
    assert out["g"].type.shape == (Dim.symbol("N"), 3)


@pytest.mark.parametrize("T", [7, 6, 4])
def test_numpy_matches_slicing(model, T):
    x = np.random.default_rng(T).standard_normal((2, T, 3)).astype(np.float32)
    outs = model.run({"x": x})
    for name, fn in EXPECT.items():
        np.testing.assert_array_equal(outs[name], fn(x, T), err_msg=name)


@pytest.mark.torch
@pytest.mark.parametrize("T", [7, 6])
def test_torch_matches_slicing(model, T):
    pytest.importorskip("torch")
    x = np.random.default_rng(T).standard_normal((2, T, 3)).astype(np.float32)
    outs = model.run({"x": x}, backend="torch")
    for name, fn in EXPECT.items():
        np.testing.assert_array_equal(outs[name], fn(x, T), err_msg=name)


@pytest.mark.tvm
def test_tvm_matches_slicing(model):
    pytest.importorskip("tvm")
    T = 7
    x = np.random.default_rng(T).standard_normal((2, T, 3)).astype(np.float32)
    outs = model.run({"x": x}, backend="tvm")
    for name, fn in EXPECT.items():
        np.testing.assert_array_equal(outs[name], fn(x, T), err_msg=name)


# gradients: the adjoint built with symbolic sizes equals the concrete one --------
def _grad_graph(n, begin, end, strides):
    from dlc.compiler.autodiff import grad
    from dlc.compiler.builder import Builder
    from dlc.compiler.ir import Graph, check_types
    from dlc.compiler.types import DType, TensorType
    g = Graph("g")
    b = Builder(g)
    x = b.input("x", TensorType(DType.f64, (2, n, 3)))
    out = b.op("strided_slice", x, begin=begin, end=end, strides=strides)
    r = b.input("r", out.type)
    loss = b.op("sum", b.op("mul", out, r), axis=None, keepdims=False)
    (gx,) = grad(g, loss, [x])
    for node in g.nodes:
        check_types(node)
    g.outputs, g.output_names = [gx], ["gx"]
    return g


def _sym(expr, n):
    """A bound written over the symbol T, evaluated for the concrete graph."""
    if expr is None or isinstance(expr, int):
        return expr
    return expr(n)


GRAD_CASES = [
    (None, lambda t: t - 1, 1),
    (1, None, 2),
    (None, None, 3),
    (None, None, -1),
    (lambda t: t - 2, None, -2),
    (1, lambda t: t - 1, 3),
    (-3, None, 2),
    (lambda t: t // 2, None, 1),
]


@pytest.mark.parametrize("T", [7, 6])
@pytest.mark.parametrize("case", GRAD_CASES, ids=[str(i) for i in range(len(GRAD_CASES))])
def test_symbolic_adjoint_equals_concrete(case, T):
    from dlc.backends.numpy.interpreter import Interpreter
    from dlc.compiler.dims import floordiv
    b, e, s = case
    sym_t = Dim.symbol("T")

    def at(v, n):
        if v is None or isinstance(v, int):
            return v
        return v(n) if isinstance(n, int) else (floordiv(n, 2) if v(8) == 4 else v(n))
    gs = _grad_graph(sym_t, (None, at(b, sym_t), None), (None, at(e, sym_t), None), (None, s, None))
    gc = _grad_graph(T, (None, at(b, T), None), (None, at(e, T), None), (None, s, None))
    out_shape = gc.inputs[1].type.shape
    rng = np.random.default_rng(3)
    feed = {"x": rng.standard_normal((2, T, 3)), "r": rng.standard_normal(out_shape)}
    got = Interpreter(gs, dims={"T": T}).run(feed, {})[0]["gx"]
    want = Interpreter(gc).run(feed, {})[0]["gx"]
    np.testing.assert_allclose(got, want, rtol=0, atol=0)
    # and the concrete adjoint is the scatter of r into zeros
    ref = np.zeros((2, T, 3))
    idx = [slice(None), slice(at(b, T), at(e, T), s), slice(None)]
    ref[tuple(idx)] = feed["r"]
    np.testing.assert_array_equal(want, ref)


def test_model_gradient_through_symbolic_slices(tmp_path):
    """A model whose loss reads shifted sequences (a language-model style x[:, :T - 1] / x[:, 1:])."""
    clear_cache()
    p = tmp_path / "lm.dln"
    p.write_text(textwrap.dedent("""
        model Shift(x: f32[N, T, 4]) {
            example N = 2, T = 6
            h = dense(x, 4, name="proj")
            return h[:, :T - 1] * x[:, 1:] + h[:, ::2][:, :1]
        }
    """).lstrip("\n"))
    m = dlc.load(p)
    assert str(m.graph.outputs[0].type.shape[1]) == "T - 1"
    x = np.random.default_rng(0).standard_normal((2, 6, 4)).astype(np.float64)
    w = {k: v.astype(np.float64) for k, v in m.init_weights(1).items()}
    h = x @ w["proj.weight"].T + w["proj.bias"]
    want = h[:, :5] * x[:, 1:] + h[:, ::2][:, :1]
    np.testing.assert_allclose(m.run({"x": x}, w, dtype="float64")["output"], want, rtol=1e-12)


@pytest.mark.parametrize("expr, message", [
    ("x[:, ::T]", "a slice step must be a known int"),
    ("x[:, 3:1]", "is empty"),
    ("x[:T, :]", "has the known size 2 but the bounds [:T] are symbolic"),
])
def test_bad_symbolic_slices(tmp_path, expr, message):
    clear_cache()
    p = tmp_path / "bad.dln"
    p.write_text(f"model B(x: f32[2, T, 3]) {{\n    return {expr}\n}}\n")
    with pytest.raises(DlcError) as ei:
        dlc.load(p)
    assert message in ei.value.message and ei.value.span.line == 2
