"""Second order: the backward pass is IR, so it can be differentiated again."""
import numpy as np
import pytest

from dlc.backends.numpy.interpreter import Interpreter
from dlc.compiler.autodiff import grad
from dlc.compiler.builder import Builder
from dlc.compiler.types import DType, TensorType

torch = pytest.importorskip("torch")

MLP = """
model MLP(x: f64[N, 5]) {
    example N = 6
    h = dense(x, 7) |> tanh
    return dense(h, 3)
}
"""


def _mlp_graph(tmp_path):
    import dlc
    p = tmp_path / "mlp.dln"
    p.write_text(MLP)
    m = dlc.load(p, bind={"N": 6})
    g = m._elaborate("eval", {"N": 6})
    return m, g


def test_mlp_hessian_vector_product_matches_torch(tmp_path):
    m, g = _mlp_graph(tmp_path)
    b = Builder(g, g.span)
    y = b.input("y", TensorType(DType.f64, (6, 3)))
    # the MSE loss written with elementwise ops
    diff = b.op("sub", g.outputs[0], y)
    loss = b.op("mean", b.op("square", diff), axis=None, keepdims=False)
    params = g.trainable_params()
    grads = grad(g, loss, params)
    vs = [b.input(f"v.{p.name}", p.type) for p in params]
    dot = None
    for gr, v in zip(grads, vs):
        t = b.op("sum", b.op("mul", gr, v), axis=None, keepdims=False)
        dot = t if dot is None else b.op("add", dot, t)
    hv = grad(g, dot, params)
    g.outputs, g.output_names = hv, [f"hv.{p.name}" for p in params]

    rng = np.random.default_rng(0)
    w = {k: v.astype(np.float64) for k, v in m.init_weights(1).items()}
    x = rng.standard_normal((6, 5))
    target = rng.standard_normal((6, 3))
    v = {p.name: rng.standard_normal(tuple(p.type.shape)) for p in params}
    feed = {"x": x, "y": target, **{f"v.{k}": a for k, a in v.items()}}
    out, _ = Interpreter(g).run(feed, w)

    names = [p.name for p in params]

    def f(*ws):
        d = dict(zip(names, ws))
        h = torch.tanh(torch.from_numpy(x) @ d["h.weight"].T + d["h.bias"])
        o = h @ d["dense.weight"].T + d["dense.bias"]
        return ((o - torch.from_numpy(target)) ** 2).mean()

    _, ref = torch.autograd.functional.hvp(f, tuple(torch.from_numpy(w[n]) for n in names),
                                           tuple(torch.from_numpy(v[n]) for n in names))
    for n, r in zip(names, ref):
        np.testing.assert_allclose(out[f"hv.{n}"], r.numpy(), rtol=1e-10, atol=1e-12)
