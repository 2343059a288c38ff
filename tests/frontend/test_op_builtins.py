"""`.dln` builtins made from the op registry (frontend/builtins_ops.py)."""
import numpy as np
import pytest

import dlc
from dlc.backends.numpy.interpreter import Interpreter
from dlc.compiler.autodiff import grad
from dlc.compiler.builder import Builder
from dlc.compiler.ir import Graph
from dlc.compiler.ops import OPS
from dlc.compiler.ops.registry import ACTIVATION, ELEMENTWISE, UNARY, OpDef
from dlc.compiler.ops.vjp_util import scalar
from dlc.compiler.types import DType, TensorType
from dlc.errors import DlcError
from dlc.frontend import builtins
from dlc.frontend.builtins_ops import missing_builtins, op_builtin, register_op_builtins


def run(tmp_path, body, x):
    p = tmp_path / f"m{len(list(tmp_path.iterdir()))}.dln"   # a fresh file: no stale cache
    p.write_text(f"model M(x: f32[2, 3]) {{\n    return {body}\n}}\n")
    outs = dlc.load(p).run({"x": x})
    return next(iter(outs.values()))


X = np.array([[-3.0, -0.5, 0.0], [0.25, 2.0, 40.0]], dtype=np.float32)


def test_defaults_come_from_the_op_definition(tmp_path, monkeypatch):
    torch = pytest.importorskip("torch")
    sp = torch.nn.functional.softplus
    t = torch.from_numpy(X)
    np.testing.assert_allclose(run(tmp_path, "softplus(x)", X), sp(t).numpy(), rtol=1e-6)
    np.testing.assert_allclose(run(tmp_path, "softplus(x, 2.0)", X), sp(t, 2.0).numpy(), rtol=1e-6)
    np.testing.assert_allclose(run(tmp_path, "softplus(x, threshold=1.0)", X), sp(t, threshold=1.0).numpy(),
                               rtol=1e-6)
    # the builtin reads the registry: a changed default changes the language
    monkeypatch.setitem(OPS["softplus"].attrs, "threshold", 1.0)
    monkeypatch.setitem(builtins.BUILTINS, "softplus", op_builtin(OPS["softplus"]))
    np.testing.assert_allclose(run(tmp_path, "softplus(x)", X), sp(t, threshold=1.0).numpy(), rtol=1e-6)


@pytest.mark.parametrize("body, message", [
    ("softplus(x, beta=\"big\")", "beta must be a number"),
    ("softplus(x, gamma=1.0)", "has no argument 'gamma'"),
    ("leaky_relu(x, 0.1, 0.2)", "too many positional arguments"),
    ("gelu(x, approximate=\"exact\")", "approximate must be 'none' or 'tanh'"),
    ("hardtanh()", "needs the argument 'x'"),
    ("silu(3)", "must be a tensor"),
])
def test_bad_calls_are_located_errors(tmp_path, body, message):
    with pytest.raises(DlcError, match=message) as e:
        run(tmp_path, body, X)
    assert e.value.span is not None and e.value.span.line == 2


def test_unary_math_of_a_number_is_folded_at_compile_time(tmp_path):
    np.testing.assert_allclose(run(tmp_path, "x * exp(1.0)", X), X * np.float32(np.e), rtol=1e-6)


def test_a_new_op_is_one_definition(tmp_path, monkeypatch):
    """An op added with only a defop and a decomposition is a builtin, runs,
    and differentiates, with no frontend or backend code."""
    def infer(ts, attrs):
        return ts[0]

    def softsign(b, ins, a):    # x / (1 + |x|) * scale
        (x,) = ins
        y = b.op("div", x, b.op("add", scalar(b, 1.0, x), b.op("abs", x)))
        return b.op("mul", y, scalar(b, a["scale"], x))

    op = OpDef("test_softsign", ("x",), infer, {"scale": 1.0}, groups=frozenset({ELEMENTWISE, UNARY, ACTIVATION}))
    op.decompose = softsign
    monkeypatch.setitem(OPS, op.name, op)
    assert missing_builtins(builtins.BUILTINS) == ["test_softsign"]
    table = dict(builtins.BUILTINS)
    register_op_builtins(table)
    monkeypatch.setitem(builtins.BUILTINS, op.name, table[op.name])
    assert missing_builtins(builtins.BUILTINS) == []
    got = run(tmp_path, "test_softsign(x, scale=2.0)", X)
    np.testing.assert_allclose(got, 2 * X / (1 + np.abs(X)), rtol=1e-6)
    # no VJP rule: autodiff differentiates the decomposition
    g = Graph("g")
    x = g.add_input("x", TensorType(DType.f64, (2, 3)))
    b = Builder(g)
    loss = b.op("sum", b.op("test_softsign", x, scale=2.0), axis=None, keepdims=False)
    (dx,) = grad(g, loss, [x])
    g.outputs, g.output_names = [dx], ["dx"]
    x64 = X.astype(np.float64)
    got = Interpreter(g).run({"x": x64}, {})[0]["dx"]
    np.testing.assert_allclose(got, 2 / (1 + np.abs(x64)) ** 2, rtol=1e-12)
