"""Norm layers against torch.nn: layernorm over a chosen axis (torchvision's
LayerNorm2d), instancenorm (nn.InstanceNorm1d/2d, with and without running
statistics), groupnorm (nn.GroupNorm): parameter names, outputs on every
backend, buffer updates and gradients."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402
from torch.nn import functional as F  # noqa: E402

import dlc  # noqa: E402
from dlc.errors import DlcError  # noqa: E402

pytestmark = pytest.mark.torch

BACKENDS = ["numpy", "torch", "tvm"]


def _load(tmp_path, text: str, name="m.dln", **bind) -> dlc.Model:
    p = tmp_path / name
    p.write_text(text)
    return dlc.load(p, bind=bind or None)


def _random_affine(weights: dict, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    out = {}
    for k, v in weights.items():
        if k.endswith(".weight") or k.endswith(".running_var"):
            out[k] = rng.uniform(0.5, 1.5, v.shape).astype(v.dtype)
        elif k.endswith(".bias") or k.endswith(".running_mean"):
            out[k] = rng.normal(0.0, 0.5, v.shape).astype(v.dtype)
        else:
            out[k] = v
    return out


def _load_torch(module: nn.Module, weights: dict, prefix: str) -> None:
    sd = {k[len(prefix) + 1:]: torch.from_numpy(np.asarray(v)) for k, v in weights.items() if k.startswith(prefix + ".")}
    module.load_state_dict(sd, strict=True)


class LayerNorm2d(nn.LayerNorm):  # torchvision.models.convnext.LayerNorm2d
    def forward(self, x):
        x = x.permute(0, 2, 3, 1)
        return F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps).permute(0, 3, 1, 2)


LAYERS = """
model Norms(x: f32[N, 6, 5, 4], s: f32[N, 6, 7]) {
    example N = 3
    ln2d = layernorm2d(x, eps=1e-6, name="ln2d")
    lnax = layernorm(x, axis=1, name="lnax")
    lnch = layernorm(x, axis=1, dims=2, name="lnch")
    inorm = instancenorm(x, affine=true, name="inorm")
    inorm1 = instancenorm1d(s, name="inorm1")
    gnorm = groupnorm(x, 3, name="gnorm")
    return ln2d, lnax, lnch, inorm, inorm1, gnorm
}
"""


def _torch_layers():
    return {"ln2d": LayerNorm2d(6, eps=1e-6), "lnax": LayerNorm2d(6), "lnch": nn.LayerNorm((6, 5)),
            "inorm": nn.InstanceNorm2d(6, affine=True), "inorm1": nn.InstanceNorm1d(6), "gnorm": nn.GroupNorm(3, 6)}


def _torch_forward(mods, x, s):
    out = {k: mods[k](x) for k in ("ln2d", "lnax", "inorm", "gnorm")}
    out["lnch"] = mods["lnch"](x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)   # axes 1, 2 moved last and back
    out["inorm1"] = mods["inorm1"](s)
    return out


@pytest.fixture(scope="module")
def layers(tmp_path_factory):
    model = _load(tmp_path_factory.mktemp("norms"), LAYERS)
    weights = _random_affine(model.init_weights(0), 1)
    mods = _torch_layers()
    for k, m in mods.items():
        _load_torch(m, weights, k)
    rng = np.random.default_rng(2)
    inputs = {"x": (rng.standard_normal((3, 6, 5, 4)) * 3 + 1).astype(np.float32),
              "s": rng.standard_normal((3, 6, 7)).astype(np.float32)}
    return model, weights, mods, inputs


def test_layer_parameter_names_are_torchs(layers):
    model, weights, mods, _ = layers
    want = {f"{k}.{n}": tuple(v.shape) for k, m in mods.items() for n, v in m.state_dict().items()}
    assert {k: np.shape(v) for k, v in weights.items()} == want
    # LayerNorm2d's parameters are [C] at the layer's own name
    assert want["ln2d.weight"] == (6,) and want["lnch.weight"] == (6, 5)


@pytest.mark.parametrize("backend", BACKENDS)
def test_layers_match_torch_on_every_backend(layers, backend):
    if backend == "tvm":
        pytest.importorskip("tvm")
    model, weights, mods, inputs = layers
    got = model.run(inputs, weights, backend=backend)
    with torch.no_grad():
        want = _torch_forward(mods, *(torch.from_numpy(inputs[k]) for k in ("x", "s")))
    assert set(got) == set(want)
    for k, w in want.items():
        np.testing.assert_allclose(got[k], w.numpy(), rtol=1e-5, atol=1e-5, err_msg=k)


LOSS_WEIGHTS = {"ln2d": 1, "lnax": 2, "lnch": 3, "inorm": 4, "inorm1": 5, "gnorm": 6}


def test_layers_float64_and_gradients_match_torch(layers, tmp_path):
    model, weights, _, inputs = layers
    mods64 = {k: m.double() for k, m in _torch_layers().items()}
    for k, m in mods64.items():
        if list(m.state_dict()):
            m.load_state_dict({n[len(k) + 1:]: torch.from_numpy(np.asarray(v, np.float64))
                               for n, v in weights.items() if n.startswith(k + ".")})
    t_in = {k: torch.from_numpy(v.astype(np.float64)) for k, v in inputs.items()}
    want = _torch_forward(mods64, t_in["x"], t_in["s"])
    got = model.run(inputs, weights, dtype="float64")
    for k, w in want.items():
        np.testing.assert_allclose(got[k], w.detach().numpy(), rtol=1e-10, atol=1e-12, err_msg=k)
    # the gradient of a loss that weighs every output differently reaches every layer's parameters
    sum(c * want[k].sum() for k, c in LOSS_WEIGHTS.items()).backward()
    loss = " + ".join(f"{c} * sum({k})" for k, c in LOSS_WEIGHTS.items())
    m2 = _load(tmp_path, LAYERS.replace("return ln2d, lnax, lnch, inorm, inorm1, gnorm", f"return {loss}"))
    g = m2.grad(inputs, weights, mode="eval")
    names = [f"{k}.{n}" for k, m in mods64.items() for n, _ in m.named_parameters()]
    assert sorted(names) == sorted(k for k in g if k != "loss")
    for k, m in mods64.items():
        for n, p in m.named_parameters():
            ref = p.grad.numpy()
            np.testing.assert_allclose(g[f"{k}.{n}"], ref, rtol=1e-4, atol=1e-5 * max(np.abs(ref).max(), 1.0),
                                       err_msg=f"{k}.{n}")


def test_channel_layernorm_permutes_only_when_the_axes_are_inner(tmp_path):
    m = _load(tmp_path, """
model L(x: f32[N, 6, 5]) {
    example N = 2
    a = layernorm(x, axis=1, name="a")
    b = layernorm(x, axis=-1, name="b")
    c = layernorm(x, axis=1, dims=2, name="c")
    return a, b, c
}
""")
    ir = m.ir()
    assert ir.count("transpose(") == 2 and ir.count("layer_norm(") == 3
    assert "normalized_shape=(6, 5)" in ir      # axis=1, dims=2 on rank 3 is the trailing pair: no permute
    with pytest.raises(DlcError, match="run past the last axis"):
        _load(tmp_path, "model L(x: f32[2, 6, 5]) {\n    return layernorm(x, axis=2, dims=2)\n}\n", "bad.dln")
    with pytest.raises(DlcError, match=r"layernorm2d expects \[N, C, H, W\]"):
        _load(tmp_path, "model L(x: f32[2, 6, 5]) {\n    return layernorm2d(x)\n}\n", "bad2.dln")


TRACKED = """
model T(x: f32[N, 4, 5, 3]) {
    example N = 3
    return instancenorm(x, affine=true, track_running_stats=true, momentum=0.3, name="inorm")
}
"""


@pytest.mark.parametrize("backend", ["numpy", "tvm"])
def test_instancenorm_running_stats_as_torch(tmp_path, backend):
    """Train mode: normalise each instance, update the buffers with the batch
    mean of the instance means and unbiased variances (torch's instance_norm);
    eval mode: normalise with the buffers.  (The torch backend's
    run_with_state does not hand buffer updates back, for any layer.)"""
    if backend == "tvm":
        pytest.importorskip("tvm")
    model = _load(tmp_path, TRACKED)
    weights = _random_affine(model.init_weights(0), 3)
    net = nn.InstanceNorm2d(4, affine=True, track_running_stats=True, momentum=0.3)
    _load_torch(net, weights, "inorm")
    x = (np.random.default_rng(4).standard_normal((3, 4, 5, 3)) * 2 + 0.5).astype(np.float32)
    outs, state = model.run_with_state({"x": x}, weights, backend=backend, mode="train")
    net.train()
    with torch.no_grad():
        want = net(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(next(iter(outs.values())), want, rtol=1e-5, atol=1e-5)
    for k in ("running_mean", "running_var"):
        np.testing.assert_allclose(state[f"inorm.{k}"], getattr(net, k).numpy(), rtol=1e-5, atol=1e-6, err_msg=k)
        assert not np.allclose(state[f"inorm.{k}"], weights[f"inorm.{k}"])
    assert "inorm.num_batches_tracked" not in state    # F.instance_norm never counts batches
    net.eval()
    with torch.no_grad():
        want = net(torch.from_numpy(x)).numpy()
    got = model.run({"x": x}, {**weights, **state}, backend=backend)
    np.testing.assert_allclose(next(iter(got.values())), want, rtol=1e-5, atol=1e-5)


def test_instancenorm_needs_more_than_one_spatial_value(tmp_path):
    with pytest.raises(DlcError, match="more than 1 spatial element"):
        _load(tmp_path, "model I(x: f32[2, 4, 1, 1]) {\n    return instancenorm(x)\n}\n")


@pytest.mark.parametrize("spec", ["layers", "tracked"])
def test_every_level_agrees_with_the_float64_reference(tmp_path, spec):
    """dlc verify on numpy and torch at -O0/-O2/-O3, forward and train-mode
    gradients: the passes keep the norms' semantics."""
    model = _load(tmp_path, {"layers": LAYERS, "tracked": TRACKED}[spec])
    rep = dlc.verify(model, backends=("numpy", "torch"), levels=(0, 2, 3), train=True,
                     repro_dir=str(tmp_path / "repro"))
    assert rep.ok, rep.render()


def test_torch_module_writes_instancenorm_as_nn_instancenorm(tmp_path):
    """The torch backend's module is built from the training graph; a tracked
    instance norm must still normalise with its buffers in eval, so it is
    written as nn.InstanceNorm2d (and matches NumPy in both modes)."""
    from dlc.backends.torch.modgen import generate_module
    model = _load(tmp_path, TRACKED)
    src = generate_module(model.module_graph())
    src = src if isinstance(src, str) else src.source
    assert "nn.InstanceNorm2d(4, momentum=0.3, affine=True, track_running_stats=True)" in src
    weights = _random_affine(model.init_weights(0), 5)
    x = {"x": np.random.default_rng(6).standard_normal((3, 4, 5, 3)).astype(np.float32)}
    for mode in ("eval", "train"):
        want = next(iter(model.run(x, weights, mode=mode).values()))
        got = next(iter(model.run(x, weights, backend="torch", mode=mode).values()))
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5, err_msg=mode)
