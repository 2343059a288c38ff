"""Ops by decomposition (compiler/decompose.py): the graph a decomposition
builds, autodiff through it, and lowering through it on the torch backend."""
import numpy as np
import pytest

from op_inputs import OP_ROWS
from vjp_harness import Arr, check_fd, check_torch

from dlc.backends.numpy.interpreter import Interpreter
from dlc.compiler.autodiff import NoVJPRule, grad
from dlc.compiler.builder import Builder
from dlc.compiler.decompose import decomposition
from dlc.compiler.ir import Graph
from dlc.compiler.ops import OPS
from dlc.compiler.types import DType, TensorType

ROWS = [r for r in OP_ROWS if OPS[r.op].decompose is not None]


def _one_node(op, attrs, shape=(3, 4)):
    g = Graph("one")
    x = g.add_input("x", TensorType(DType.f64, shape))
    y = Builder(g).op(op, x, **attrs)
    g.outputs, g.output_names = [y], ["y"]
    return g, x, y


@pytest.mark.parametrize("row", ROWS, ids=[r.id for r in ROWS])
def test_decomposition_has_the_op_types_and_uses_other_ops(row):
    g, x, y = _one_node(row.op, row.attrs)
    sub = decomposition(y.producer)
    assert [v.type for v in sub.outputs] == [y.type]
    assert [v.type for v in sub.inputs] == [x.type]
    assert row.op not in {n.op.name for n in sub.nodes}
    assert all(n.span == y.producer.span for n in sub.nodes)


@pytest.mark.parametrize("row", ROWS, ids=[r.id for r in ROWS])
def test_gradient_through_the_decomposition_matches_torch(row, monkeypatch):
    """With the op's own VJP rule taken away, autodiff differentiates its decomposition."""
    pytest.importorskip("torch")
    monkeypatch.setattr(OPS[row.op], "vjp", None)
    rng = np.random.default_rng(11)
    xs = [Arr(make(rng, np.float64), True) for make in row.inputs]
    check_torch(row.op, xs, row.attrs, row.ref)
    check_fd(row.op, xs, row.attrs)


def test_an_op_with_neither_rule_nor_decomposition_is_refused(monkeypatch):
    monkeypatch.setattr(OPS["silu"], "vjp", None)
    monkeypatch.setattr(OPS["silu"], "decompose", None)
    g, x, y = _one_node("silu", {})
    loss = Builder(g).op("sum", y, axis=None, keepdims=False)
    with pytest.raises(NoVJPRule, match="silu"):
        grad(g, loss, [x])


def test_interpreter_runs_the_decomposition_of_an_op_without_a_kernel(monkeypatch):
    import dlc.backends.numpy.interpreter as interp
    from dlc.backends.numpy.kernels import elementwise
    x = np.linspace(-5, 5, 12).reshape(3, 4)
    g, _, _ = _one_node("hardsigmoid", {})
    want = elementwise.hardsigmoid(x)
    monkeypatch.delitem(interp.KERNELS, "hardsigmoid")
    got = Interpreter(g).run({"x": x}, {})[0]["y"]
    np.testing.assert_allclose(got, want, rtol=1e-15)


def test_torch_codegen_inlines_the_decomposition_of_an_op_without_a_lowering(monkeypatch):
    torch = pytest.importorskip("torch")
    from dlc.backends.torch import lowering
    from dlc.backends.torch.funcgen import compile_function
    g, _, _ = _one_node("leaky_relu", {"negative_slope": 0.2})
    monkeypatch.delitem(lowering.LOWERING, "leaky_relu")
    fn = compile_function(g)
    assert "torch.where" in fn.source and "F.leaky_relu" not in fn.source
    x = np.linspace(-3, 3, 12).reshape(3, 4)
    (y,), _ = fn(torch.from_numpy(x), {})
    np.testing.assert_allclose(y.numpy(), torch.nn.functional.leaky_relu(torch.from_numpy(x), 0.2).numpy())


@pytest.mark.parametrize("row", ROWS, ids=[r.id for r in ROWS])
def test_second_derivative_through_the_decomposition_matches_torch(row, monkeypatch):
    """The backward of a decomposition is IR too: differentiate it again."""
    torch = pytest.importorskip("torch")
    monkeypatch.setattr(OPS[row.op], "vjp", None)
    rng = np.random.default_rng(12)
    xv = row.inputs[0](rng, np.float64)
    r, s = rng.standard_normal(xv.shape), rng.standard_normal(xv.shape)
    g, x, y = _one_node(row.op, row.attrs, xv.shape)
    b = Builder(g)
    rv, sv = b.input("r", x.type), b.input("s", x.type)
    (dx,) = grad(g, b.op("sum", b.op("mul", y, rv), axis=None, keepdims=False), [x])
    (ddx,) = grad(g, b.op("sum", b.op("mul", dx, sv), axis=None, keepdims=False), [x])
    if ddx is None:   # piecewise linear: no path, the second derivative is 0
        got = np.zeros_like(xv)
    else:
        g.outputs, g.output_names = [ddx], ["ddx"]
        got = Interpreter(g).run({"x": xv, "r": r, "s": s}, {})[0]["ddx"]

    xt = torch.tensor(xv, requires_grad=True)
    (gt,) = torch.autograd.grad((row.ref(xt) * torch.tensor(r)).sum(), xt, create_graph=True)
    try:
        (want,) = torch.autograd.grad((gt * torch.tensor(s)).sum(), xt, allow_unused=True)
    except RuntimeError:   # torch has no double backward for hardsigmoid: piecewise linear, 0
        assert ddx is None
        return
    want = np.zeros_like(xv) if want is None else want.numpy()
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)
