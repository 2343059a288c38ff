"""Gradients across backends for every zoo spec (small instances): dlc's
symbolic backward on the NumPy interpreter, the same backward lowered to
torch code, and torch autograd through the generated module must agree.

The loss is sum(output * R) for a fixed random R over the first output that
does not depend on random sampling; eval mode (running batch-norm stats).
"""
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from test_modgen import _cases, _liven, _model, _random_outputs, _sizes  # noqa: E402

from dlc.backends.numpy.interpreter import Interpreter  # noqa: E402
from dlc.backends.torch.funcgen import compile_function  # noqa: E402
from dlc.compiler.autodiff import grad  # noqa: E402
from dlc.compiler.builder import Builder  # noqa: E402


def _rel(a, b, floor=1e-6):
    """Max error relative to the reference's scale; `floor` keeps gradients that are
    mathematically zero (a key bias under softmax) from comparing rounding noise."""
    scale = max(floor, float(np.max(np.abs(b)))) if b.size else 1.0
    return float(np.max(np.abs(a.astype(np.float64) - b))) / scale if b.size else 0.0


@pytest.mark.parametrize("spec, name", _cases())
def test_symbolic_gradients_equal_torch_autograd(spec, name):
    m = _model(spec, name)
    sizes = _sizes(m)
    x = m.random_inputs(1, sizes)
    w = _liven(m, m.init_weights(0))
    g = m._elaborate("eval", sizes)
    random = _random_outputs(m)
    k = next((i for i, n in enumerate(g.output_names) if n not in random and g.outputs[i].type.dtype.is_float), None)
    if k is None:
        pytest.skip("every output depends on random sampling")
    b = Builder(g, g.span)
    out = g.outputs[k]
    r = b.input("R", out.type)
    loss = b.op("sum", b.op("mul", out, r), axis=None, keepdims=False)
    params = g.trainable_params()
    grads = grad(g, loss, params)
    pairs = [(p, gr) for p, gr in zip(params, grads) if gr is not None]
    g.outputs = [loss] + [gr for _, gr in pairs]
    g.output_names = ["loss"] + [f"grad:{p.name}" for p, _ in pairs]
    R = np.random.default_rng(3).standard_normal(tuple(int(d) for d in out.type.shape)).astype(np.float32)
    feed = {**x, "R": R}
    ours, _ = Interpreter(g).run(feed, w)
    # the same symbolic backward, lowered to torch
    fn = compile_function(g)
    with torch.no_grad():
        touts, _ = fn(*[torch.from_numpy(np.ascontiguousarray(feed[v.name])) for v in g.inputs],
                      {kk: torch.from_numpy(np.ascontiguousarray(v)) for kk, v in w.items()})
    sym_torch = {n: t.numpy() for n, t in zip(g.output_names, touts)}
    # torch autograd through the generated module
    from dlc.backends.torch.modgen import load_module
    module = load_module(m)
    module.load_state_dict({kk: torch.from_numpy(np.ascontiguousarray(v)) for kk, v in w.items()}, strict=True)
    module.eval()
    targs = [torch.from_numpy(np.ascontiguousarray(x[v.name])) for v in m.graph.inputs]
    res = module(*targs)
    res = res if isinstance(res, (tuple, list)) else (res,)
    (res[k] * torch.from_numpy(R)).sum().backward()
    named = dict(module.named_parameters())
    floor = 1e-4 * max(float(np.max(np.abs(v))) for n, v in ours.items() if n.startswith("grad:") and v.size)
    assert _rel(np.asarray(sym_torch["loss"]), np.asarray(ours["loss"])) < 1e-4
    for p, _ in pairs:
        n = f"grad:{p.name}"
        ref = named[p.name].grad
        ref = np.zeros(p.type.shape, np.float32) if ref is None else ref.numpy()
        assert _rel(ours[n], ref, floor) < 1e-3, f"{spec}: numpy symbolic vs torch autograd differ for {p.name}"
        assert _rel(sym_torch[n], ours[n], floor) < 1e-3, f"{spec}: torch-lowered symbolic differs for {p.name}"
