"""The torch code generator's fused regions: each known kind becomes PyTorch's
fused call, elementwise chains go in place where autograd allows, and every
one of them still computes what the body computes (the NumPy reference).

The regions are made with `outline` on real specs (the fusion pass is not
needed to test the lowering), and on a small spec that writes layer norm,
softmax and GELU out by hand, as a user would.
"""
from __future__ import annotations

import re

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import dlc  # noqa: E402
from dlc.backends.numpy.interpreter import Interpreter  # noqa: E402
from dlc.backends.torch.funcgen import compile_function  # noqa: E402
from dlc.compiler.decompose import decomposition  # noqa: E402
from dlc.compiler.passes.regions import outline  # noqa: E402

pytestmark = pytest.mark.torch

# float32: the tolerance the per-op torch tests use; float64: tight
TOL = {"float32": (2e-5, 2e-6), "float64": (1e-10, 1e-12)}

WRITTEN_OUT = """
model Written(x: f32[N, T, 16], y: f32[N, 16]) -> (f32[N, T, 16], f32[N, T, 16], f32[N, T, 16],
                                                  f32[N, T, 16], f32[N, T, 16], f32[N, 32]) {
    example N = 2, T = 5
    param gamma: f32[16] = normal(std=1)
    param beta: f32[16] = normal(std=1)
    param w: f32[16, 32] = normal(std=0.3)
    param b: f32[32] = normal(std=1)
    m = mean(x, axis=-1, keepdims=true)
    d = x - m
    v = mean(d * d, axis=-1, keepdims=true)
    ln = d / sqrt(v + 1e-5) * gamma + beta
    e = exp(x - max(x, axis=-1, keepdims=true))
    sm = e / sum(e, axis=-1, keepdims=true)
    c = x - max(x, axis=2, keepdims=true)
    lsm = c - log(sum(exp(c), axis=2, keepdims=true))
    ge = 0.5 * x * (1 + erf(x / sqrt(2.0)))
    gt = x * (1 + tanh(0.7978845608028654 * (x + 0.044715 * x * x * x))) * 0.5
    h = relu(y @ w + b)
    return ln, sm, lsm, ge, gt, h
}
"""


def _graph(spec, bind=None, mode="eval"):
    m = dlc.load(spec, bind=bind)
    return m, m.optimize(level=0)._elaborate(mode, bind)


def _upstream(v, stop):
    """Producers of `v` back to (not including) values in `stop`."""
    out, todo = [], [v]
    while todo:
        u = todo.pop()
        p = u.producer
        if u.kind != "node" or p is None or u.id in stop or p in out:
            continue
        out.append(p)
        todo += [w for w in p.inputs if w is not None]
    return out


def _outline_output(g, index, kind, stop_at):
    """Outline everything computing output `index` back to the values of `stop_at` (op names
    whose results are the region's operands)."""
    out = g.outputs[index]
    stop = {n.outputs[0].id for n in g.nodes if n.op.name in stop_at}
    group = _upstream(out, stop)
    node = outline(g, group, kind)
    assert node is not None and node.attrs["kind"] == kind
    return node


def _compare(m, g, dtype, seed=0):
    """Run `g` on the NumPy interpreter and as a generated torch function."""
    rng = np.random.default_rng(seed)
    weights = {k: v.astype(dtype) for k, v in m.init_weights(seed).items() if k in {p.name for p in g.params}}
    for k in weights:
        if weights[k].ndim == 1 and weights[k].dtype.kind == "f":   # make every bias/shift term show
            r = rng.standard_normal(weights[k].shape)
            weights[k] = (np.abs(r) + 0.5 if k.endswith("running_var") else r).astype(dtype)
    feed = {v.name: (rng.standard_normal([int(d) for d in v.type.shape]).astype(dtype) if v.type.dtype.is_float
                     else rng.integers(0, 2, [int(d) for d in v.type.shape])) for v in g.inputs}
    want, _ = Interpreter(g).run(feed, weights)
    fn = compile_function(g)
    t = {k: torch.from_numpy(v.copy()) for k, v in weights.items()}
    got, _ = fn(*[torch.from_numpy(feed[v.name].copy()) for v in g.inputs], t)
    rtol, atol = TOL[dtype]
    for name, b in zip(g.output_names, got):
        a = want[name]
        np.testing.assert_allclose(b.numpy(), a, rtol=rtol, atol=atol * max(1.0, float(np.abs(a).max())),
                                   err_msg=name)
    return fn.source


# ---------------------------------------------------------------- conv epilogue, in place
def _resnet_block_graph():
    m, g = _graph("specs/resnet18.dln", bind={"N": 1})
    # the first residual block's tail: conv2d, batch_norm, add (residual), relu
    i = next(i for i, n in enumerate(g.nodes) if n.op.name == "add" and g.nodes[i + 1].op.name == "relu")
    group = [g.nodes[i - 2], g.nodes[i - 1], g.nodes[i], g.nodes[i + 1]]
    assert [n.op.name for n in group] == ["conv2d", "batch_norm", "add", "relu"]
    node = outline(g, group, "conv_epilogue", anchor=group[0])
    assert node is not None
    return m, g


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_conv_epilogue_adds_and_relus_in_place(dtype):
    m, g = _resnet_block_graph()
    src = _compare(m, g, dtype)
    # the residual add goes into the batch norm's fresh result, then relu in place on it
    assert re.search(r"(\w+) = (\w+)\.add_\(\w+\)\n\s*(\w+) = \1\.relu_\(\)", src), src


def test_in_place_epilogue_trains_under_autograd():
    """The in-place ops keep autograd's saved tensors intact: gradients through the
    fused region equal those of the same graph without it."""
    m, fused = _resnet_block_graph()
    _, plain = _graph("specs/resnet18.dln", bind={"N": 1})
    w = m.init_weights(0)
    x = np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype("float32")
    grads = []
    for g in (fused, plain):
        params = {p.name: torch.tensor(w[p.name], requires_grad=p.kind == "param") for p in g.params}
        xt = torch.tensor(x, requires_grad=True)
        (out,), _ = compile_function(g)(xt, params)
        out.square().sum().backward()
        grads.append([xt.grad] + [params[k].grad for k in sorted(params) if params[k].grad is not None])
    assert len(grads[0]) == len(grads[1]) > 10
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


# ---------------------------------------------------------------- the written-out patterns
def _written(kind_of_output: dict, dtype="float32"):
    # a float64 model: its written-out constants (sqrt 2, sqrt(2/pi)) are float64 too,
    # so the fused call and the body agree to float64 rounding
    m = dlc.Model("written.dln", text=WRITTEN_OUT.replace("f32", "f64" if dtype == "float64" else "f32"))
    g = m.optimize(level=0)._elaborate("eval", None)
    for index, (kind, stop) in kind_of_output.items():
        _outline_output(g, index, kind, stop)
    return m, g


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_written_out_kinds_become_fused_calls(dtype):
    m, g = _written({0: ("layernorm", ()), 1: ("softmax", ()), 2: ("softmax", ()), 3: ("gelu", ()),
                     4: ("gelu", ()), 5: ("matmul_epilogue", ())}, dtype)
    assert [n.op.name for n in g.nodes] == ["fused"] * 6
    src = _compare(m, g, dtype)
    assert "F.layer_norm(x, x.shape[-1:], gamma, beta, 1e-05)" in src
    assert "torch.softmax(x, dim=2)" in src and "torch.log_softmax(x, dim=2)" in src
    assert re.search(r"F\.gelu\(x\)", src) and 'F.gelu(x, approximate="tanh")' in src
    assert "torch.addmm(b, y, w)" in src and ".relu_()" in src
    # nothing of the bodies is left: no reductions, no erf/tanh/exp
    for op in ("torch.mean", "torch.erf", "torch.tanh", "torch.exp", "torch.amax", "torch.sqrt"):
        assert op not in src, op


def test_a_body_that_is_not_the_pattern_runs_as_written():
    """A softmax region whose body lacks the max subtraction is not torch.softmax
    (it overflows where softmax does not): it stays the body."""
    text = WRITTEN_OUT.replace("e = exp(x - max(x, axis=-1, keepdims=true))", "e = exp(x)")
    m = dlc.Model("written.dln", text=text)
    g = m.optimize(level=0)._elaborate("eval", None)
    _outline_output(g, 1, "softmax", ())
    src = _compare(m, g, "float64")
    assert "torch.softmax" not in src and "torch.exp(x)" in src


# ---------------------------------------------------------------- regions of the ops themselves
def test_bert_layernorm_gelu_and_linear_regions(dtype="float32"):
    """bert_base (2 layers, T=8): a layer_norm region, a linear+gelu epilogue, and the
    gelu op replaced by its own decomposition (the erf form written out).  float32
    only: the decomposition's constants (sqrt(1/2)) are float32 numbers in this
    float32 model, so a float64 run of the body differs from the exact F.gelu at
    1e-7; the float64 check is the float64 model above."""
    m, g = _graph("specs/bert_base.dln", bind={"N": 1, "T": 8, "layers": 2})
    ln = next(n for n in g.nodes if n.op.name == "layer_norm")
    outline(g, [ln], "layernorm")
    gelus = [n for n in g.nodes if n.op.name == "gelu"]
    lin = gelus[0].inputs[0].producer
    assert lin.op.name == "linear"
    outline(g, [lin, gelus[0]], "matmul_epilogue")
    node = outline(g, [gelus[1]], "gelu")
    node.body = decomposition(gelus[1])       # the erf form, as dlc writes it out
    node.body.name = "gelu"
    src = _compare(m, g, dtype)
    assert src.count("F.gelu(") == 2 and "torch.erf" not in src   # both layers: the two regions
    assert "F.layer_norm(" in src and re.search(r"F\.linear\(\w+, \w+, \w+\)", src)


def test_gpt2_tanh_gelu_decomposition_is_recognised():
    m, g = _graph("specs/gpt2_small.dln", bind={"N": 1, "T": 4, "layers": 1})
    ge = next(n for n in g.nodes if n.op.name == "gelu")
    assert ge.attrs["approximate"] == "tanh"
    node = outline(g, [ge], "gelu")
    node.body = decomposition(ge)
    src = _compare(m, g, "float32")
    assert 'F.gelu(' in src and 'approximate="tanh"' in src and "torch.tanh" not in src


# ---------------------------------------------------------------- where in place is refused
CHAIN = """
model Chain(x: f32[N, 8], img: f32[N, 3, 6, 6]) -> (f32[N, 8], f32[N, 3, 6, 6]) {
    example N = 2
    y = tanh(x * 2.0 + 1.0) * 3.0 + x
    c = relu(conv2d(img, 3, kernel=3, padding=1, name="conv")) + img
    return y, c
}
"""


def _chain(fused: bool):
    m = dlc.Model("chain.dln", text=CHAIN)
    g = m.optimize(level=0)._elaborate("eval", None)
    if fused:
        _outline_output(g, 0, "elementwise", ())
        _outline_output(g, 1, "conv_epilogue", ())
    return m, g


def test_in_place_only_where_no_saved_tensor_is_overwritten():
    m, g = _chain(True)
    src = _compare(m, g, "float64")
    body = [ln.split("#")[0].strip() for ln in src.splitlines() if "=" in ln]
    # x * 2 reads an input: a new tensor; + 1 and tanh go into it; tanh keeps its result for
    # its backward, so * 3 is a new tensor, and + x goes into that one
    want = [r"(\w+) = x \* \w+", r"(\w+) = {0}\.add_\(\w+\)", r"(\w+) = {1}\.tanh_\(\)",
            r"(\w+) = {2} \* \w+", r"(\w+) = {3}\.add_\(x\)"]
    names: list[str] = []
    it = iter(body)
    for pat in want:
        line = next(ln for ln in it if re.fullmatch(pat.format(*names), ln))
        names.append(re.fullmatch(pat.format(*names), line).group(1))
    # relu goes into the conv's result, but keeps its result: the residual add after it is not in place
    relu_line = next(ln for ln in body if "relu" in ln)
    assert relu_line.endswith(".relu_()"), relu_line
    out = relu_line.split(" = ")[0]
    assert any(re.fullmatch(rf"\w+ = {out} \+ img", ln) for ln in body), body


def test_refused_in_place_keeps_autograd_working():
    m, fused = _chain(True)
    _, plain = _chain(False)
    rng = np.random.default_rng(0)
    w = m.init_weights(0)
    x = rng.standard_normal((2, 8))
    img = rng.standard_normal((2, 3, 6, 6))
    grads = []
    for g in (fused, plain):
        params = {p.name: torch.tensor(w[p.name], dtype=torch.float64, requires_grad=True) for p in g.params}
        xt, it = torch.tensor(x, requires_grad=True), torch.tensor(img, requires_grad=True)
        (y, c), _ = compile_function(g)(xt, it, params)
        (y.square().sum() + c.square().sum()).backward()
        grads.append([xt.grad, it.grad] + [params[k].grad for k in sorted(params)])
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
