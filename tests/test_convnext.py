"""Acceptance: a ConvNeXt written with layernorm2d / layernorm(axis=1),
channels-last layernorm, layer scale and drop_path (tests/data/convnext_mini.dln)
against a PyTorch twin in torchvision's layout.

The twin is torchvision.models.convnext's code written out (torchvision is
not a dependency): LayerNorm2d, Permute, CNBlock, StochasticDepth("row").
Loading dlc's initial weights into it with `load_state_dict(strict=True)`
proves the parameter names are torchvision's.  Eval mode matches on every
backend, in float32 and float64, and so do the gradients; in train mode each
sample's output is the twin's with that sample's blocks either dropped or
kept and scaled by 1/(1-p), and both happen.
"""
from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402
from torch.nn import functional as F  # noqa: E402

import dlc  # noqa: E402

pytestmark = pytest.mark.torch

SPEC = Path(__file__).resolve().parent / "data" / "convnext_mini.dln"
DIMS, DEPTHS, CLASSES, SIZE = (16, 32), (2, 1), 10, 32


# ------------------------------------------------------------ the torch twin
class LayerNorm2d(nn.LayerNorm):  # torchvision.models.convnext.LayerNorm2d
    def forward(self, x):
        x = x.permute(0, 2, 3, 1)
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


class Permute(nn.Module):
    def __init__(self, dims):
        super().__init__()
        self.dims = dims

    def forward(self, x):
        return torch.permute(x, self.dims)


class StochasticDepth(nn.Module):
    """torchvision.ops.StochasticDepth(p, "row"); `keep` (a bool per sample)
    replaces the Bernoulli draw when set, so a test can pick the outcome."""

    def __init__(self, p):
        super().__init__()
        self.p, self.keep = p, None

    def forward(self, x):
        if not self.training or self.p == 0.0:
            return x
        survival = 1.0 - self.p
        noise = self.keep.to(x.dtype).reshape(-1, 1, 1, 1)
        return x * (noise / survival if survival > 0.0 else noise)


class CNBlock(nn.Module):
    def __init__(self, dim, layer_scale, sd_prob):
        super().__init__()
        self.block = nn.Sequential(
            nn.Conv2d(dim, dim, kernel_size=7, padding=3, groups=dim, bias=True), Permute([0, 2, 3, 1]),
            nn.LayerNorm(dim, eps=1e-6), nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim),
            Permute([0, 3, 1, 2]))
        self.layer_scale = nn.Parameter(torch.ones(dim, 1, 1) * layer_scale)
        self.stochastic_depth = StochasticDepth(sd_prob)

    def forward(self, x):
        return self.stochastic_depth(self.layer_scale * self.block(x)) + x


class ConvNeXtMini(nn.Module):
    def __init__(self, sd_prob=0.1, layer_scale=1e-6):
        super().__init__()
        layers = [nn.Sequential(nn.Conv2d(3, DIMS[0], 4, 4), LayerNorm2d(DIMS[0], eps=1e-6))]
        total, k = sum(DEPTHS), 0
        for stage, (dim, depth) in enumerate(zip(DIMS, DEPTHS)):
            if stage > 0:
                layers.append(nn.Sequential(LayerNorm2d(DIMS[stage - 1], eps=1e-6),
                                            nn.Conv2d(DIMS[stage - 1], dim, 2, 2)))
            blocks = []
            for _ in range(depth):
                blocks.append(CNBlock(dim, layer_scale, sd_prob * k / (total - 1.0)))
                k += 1
            layers.append(nn.Sequential(*blocks))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(LayerNorm2d(DIMS[-1], eps=1e-6), nn.Flatten(1), nn.Linear(DIMS[-1], CLASSES))

    def forward(self, x):
        return self.classifier(self.avgpool(self.features(x)))

    def drop_paths(self):
        return [m for m in self.modules() if isinstance(m, StochasticDepth)]


# ------------------------------------------------------------------ fixtures
def _liven(weights: dict, seed: int) -> dict:
    """Layer scales of order one and random norm affines, so that every block
    and every norm's weight and bias moves the output (1e-6 layer scales
    would leave the blocks out of the comparison)."""
    rng = np.random.default_rng(seed)
    out = dict(weights)
    for k, v in weights.items():
        if k.endswith("layer_scale") or (v.ndim == 1 and k.endswith(".weight")):
            out[k] = rng.uniform(0.5, 1.5, v.shape).astype(v.dtype)
        elif v.ndim == 1 and k.endswith(".bias"):
            out[k] = rng.normal(0.0, 0.3, v.shape).astype(v.dtype)
    return out


def _pair(sd_prob: float = 0.1, batch: int = 2):
    model = dlc.load(SPEC, bind={"sd_prob": sd_prob, "N": batch})
    weights = _liven(model.init_weights(seed=0), seed=1)
    net = ConvNeXtMini(sd_prob)
    net.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in weights.items()}, strict=True)
    x = np.random.default_rng(2).standard_normal((batch, 3, SIZE, SIZE)).astype(np.float32)
    return model, weights, net, x


@pytest.fixture(scope="module")
def pair():
    return _pair()


def _out(outs: dict) -> np.ndarray:
    (v,) = outs.values()
    return v


# --------------------------------------------------------------------- tests
def test_parameter_names_are_torchvisions(pair):
    model, weights, net, _ = pair
    sd = net.state_dict()
    assert set(weights) == set(sd)
    for k, v in sd.items():
        assert tuple(v.shape) == np.shape(weights[k]), k
    # the channel layernorms are [C] parameters at the layer's own name, no permute wrapper in the name
    assert weights["features.0.1.weight"].shape == (16,) and weights["features.2.0.bias"].shape == (16,)
    assert weights["features.1.1.layer_scale"].shape == (16, 1, 1)


@pytest.mark.parametrize("backend", ["numpy", "torch", "tvm"])
def test_eval_float32_matches_torch_on_every_backend(pair, backend):
    if backend == "tvm":
        pytest.importorskip("tvm")
    model, weights, net, x = pair
    net.eval()
    with torch.no_grad():
        want = net(torch.from_numpy(x)).numpy()
    got = _out(model.run({"image": x}, weights, backend=backend))
    assert got.shape == want.shape == (2, CLASSES) and got.dtype == np.float32
    scale = float(np.abs(want).max())
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * scale)
    # the blocks matter: the same net without its residual branches gives another answer
    for m in net.modules():
        if isinstance(m, CNBlock):
            m.layer_scale.data.mul_(0.0)
    try:
        with torch.no_grad():
            bare = net(torch.from_numpy(x)).numpy()
    finally:
        net.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in weights.items()})
    assert np.abs(bare - want).max() > 1e-2 * scale


def test_eval_float64_matches_torch(pair):
    model, weights, net, x = pair
    net64 = ConvNeXtMini().double().eval()
    net64.load_state_dict({k: torch.from_numpy(np.asarray(v, np.float64)) for k, v in weights.items()})
    with torch.no_grad():
        want = net64(torch.from_numpy(x.astype(np.float64))).numpy()
    got = _out(model.run({"image": x}, weights, dtype="float64"))
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-11 * float(np.abs(want).max()))


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_eval_gradients_match_torch_autograd(pair, backend):
    """Against float64 autograd; dlc differentiates the float32 graph."""
    model, weights, net, x = pair
    net64 = ConvNeXtMini().double().eval()
    net64.load_state_dict({k: torch.from_numpy(np.asarray(v, np.float64)) for k, v in weights.items()})
    net64(torch.from_numpy(x.astype(np.float64))).sum().backward()
    got = model.grad({"image": x}, weights, mode="eval", backend=backend)   # float32, as the spec
    for k, p in net64.named_parameters():
        want = p.grad.numpy()
        np.testing.assert_allclose(got[k], want, rtol=1e-4, atol=1e-5 * max(float(np.abs(want).max()), 1e-30),
                                   err_msg=k)


@pytest.mark.parametrize("backend", ["numpy", "torch", "tvm"])
def test_train_mode_drops_whole_samples_as_torchvision(backend):
    """Every sample's output is the twin's under one choice of dropped/kept
    blocks (kept ones scaled by 1/(1-p)); over the batch both choices occur."""
    if backend == "tvm":
        pytest.importorskip("tvm")
    model, weights, net, x = _pair(sd_prob=0.6, batch=8)
    got = _out(model.run({"image": x}, weights, backend=backend, mode="train"))
    net.train()
    paths = [m for m in net.drop_paths() if m.p > 0]
    assert [m.p for m in paths] == [0.3, 0.6]
    outcomes = {}
    for keeps in itertools.product((False, True), repeat=len(paths)):
        for m, keep in zip(paths, keeps):
            m.keep = torch.full((8,), keep)
        with torch.no_grad():
            outcomes[keeps] = net(torch.from_numpy(x)).numpy()
    chosen = []
    for n in range(8):
        close = [k for k, want in outcomes.items()
                 if np.allclose(got[n], want[n], rtol=1e-4, atol=1e-4 * float(np.abs(want[n]).max()))]
        assert len(close) == 1, f"sample {n} matches {close} of the drop/keep outcomes"
        chosen.append(close[0])
    per_block = list(zip(*chosen))
    assert any(any(b) and not all(b) for b in per_block), f"no block was both dropped and kept: {chosen}"


def test_every_level_and_backend_agrees_with_the_float64_reference(tmp_path):
    """dlc verify: numpy and torch at -O0/-O2/-O3, forward and train-mode
    gradients, against the float64 -O0 reference (stochastic depth off, so
    train mode is deterministic; TVM is checked above and in `dlc verify`)."""
    model = dlc.load(SPEC, bind={"sd_prob": 0.0})
    rep = dlc.verify(model, backends=("numpy", "torch"), levels=(0, 2, 3), train=True,
                     repro_dir=str(tmp_path / "repro"))
    assert rep.ok, rep.render()
