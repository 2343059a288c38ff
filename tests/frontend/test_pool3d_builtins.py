"""The 3-D convolution and pooling builtins (conv3d, conv_transpose3d, max_pool3d,
avg_pool3d, made from the op registry) and dilated average pooling (avgpool2d's
`dilation`, ONNX AveragePool's) in a spec, against torch on every backend, with
gradients against torch autograd."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch.nn import functional as F  # noqa: E402

import dlc  # noqa: E402
from pool_reference import avg_pool_dilated_ref  # noqa: E402

pytestmark = pytest.mark.torch

SPEC = """
model Pools3d(x: f32[N, 2, 6, 7, 8], y: f32[N, 2, 9, 8]) {
    example N = 2
    param W3: f32[4, 2, 3, 2, 3] = kaiming
    param b3: f32[4] = normal
    param Wt: f32[4, 3, 2, 2, 2] = kaiming
    c = conv3d(x, W3, b3, stride=(1, 2, 1), padding=1)
    ct = conv_transpose3d(c, Wt, stride=2, padding=1, output_padding=1)
    mp = max_pool3d(x, 2, stride=(2, 1, 2), padding=1, ceil_mode=true)
    ap = avg_pool3d(x, (3, 2, 3), stride=2, padding=1, ceil_mode=true, count_include_pad=false)
    ad = avgpool2d(y, 3, stride=2, padding=1, dilation=2, count_include_pad=false)
    return c, ct, mp, ap, ad
}
"""


def _torch(x, y, w):
    c = F.conv3d(x, w["W3"], w["b3"], stride=(1, 2, 1), padding=1)
    return {"c": c, "ct": F.conv_transpose3d(c, w["Wt"], stride=2, padding=1, output_padding=1),
            "mp": F.max_pool3d(x, 2, stride=(2, 1, 2), padding=1, ceil_mode=True),
            "ap": F.avg_pool3d(x, (3, 2, 3), stride=2, padding=1, ceil_mode=True, count_include_pad=False),
            "ad": avg_pool_dilated_ref(y, (3, 3), (2, 2), (1, 1), (2, 2), False, False)}


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    p = tmp_path_factory.mktemp("p3") / "m.dln"
    p.write_text(SPEC)
    m = dlc.load(p)
    rng = np.random.default_rng(0)
    inputs = {"x": rng.standard_normal((2, 2, 6, 7, 8)).astype(np.float32),
              "y": rng.standard_normal((2, 2, 9, 8)).astype(np.float32)}
    return m, m.init_weights(0), inputs


def test_the_builtins_emit_the_3d_ops(model):
    ir = model[0].ir()
    for op in ("conv3d(", "conv_transpose3d(", "max_pool3d(", "avg_pool3d(", "avg_pool2d("):
        assert op in ir, op
    assert "dilation=(2, 2)" in ir.split("avg_pool2d(")[1].splitlines()[0]


@pytest.mark.parametrize("backend", ["numpy", "torch", "tvm"])
def test_3d_builtins_match_torch(model, backend):
    if backend == "tvm":
        pytest.importorskip("tvm")
    m, weights, inputs = model
    got = m.run(inputs, weights, backend=backend)
    t = {k: torch.from_numpy(np.asarray(v)) for k, v in weights.items()}
    with torch.no_grad():
        want = _torch(torch.from_numpy(inputs["x"]), torch.from_numpy(inputs["y"]), t)
    for k, w in want.items():
        np.testing.assert_allclose(got[k], w.numpy(), rtol=1e-5, atol=1e-5, err_msg=k)


@pytest.mark.parametrize("backend", ["numpy", "torch", "tvm"])
def test_3d_gradients_match_torch_autograd(model, backend, tmp_path):
    if backend == "tvm":
        pytest.importorskip("tvm")
    _, weights, inputs = model
    scale = {"c": 1, "ct": 2, "mp": 3, "ap": 4, "ad": 5}
    p = tmp_path / "g.dln"
    p.write_text(SPEC.replace("return c, ct, mp, ap, ad",
                              "return " + " + ".join(f"{v} * sum({k} * {k})" for k, v in scale.items())))
    got = dlc.load(p).grad(inputs, weights, mode="train", backend=backend)
    t = {k: torch.tensor(np.asarray(v, np.float64), requires_grad=True) for k, v in weights.items()}
    want = _torch(torch.from_numpy(inputs["x"].astype(np.float64)),
                  torch.from_numpy(inputs["y"].astype(np.float64)), t)
    sum(v * (want[k] * want[k]).sum() for k, v in scale.items()).backward()
    for k, v in t.items():
        ref = v.grad.numpy()
        np.testing.assert_allclose(got[k], ref, rtol=1e-4, atol=1e-5 * np.abs(ref).max(), err_msg=k)


def test_decompiled_spec_reads_back_with_the_same_outputs(model, tmp_path):
    """The decompiler writes the 3-D ops as their registry builtins and an average pool's dilation."""
    from dlc.frontend.decompile import decompile
    m, weights, inputs = model
    text = decompile(m.symbolic_graph("eval")).text
    assert "dilation=2" in next(line for line in text.splitlines() if "avgpool2d(" in line)
    p = tmp_path / "back.dln"
    p.write_text(text)
    back = dlc.load(p).run(inputs, weights, backend="numpy")
    want = m.run(inputs, weights, backend="numpy")
    for k, w in want.items():
        np.testing.assert_array_equal(back[k], w, err_msg=k)
