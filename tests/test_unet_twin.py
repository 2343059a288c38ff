"""Acceptance: a U-Net whose decoder upsamples with `interpolate`
(tests/data/unet.dln) checks, runs on every backend, and matches a PyTorch twin
built as milesial/Pytorch-UNet builds it (bilinear=True), weights loaded by
name with `load_state_dict(strict=True)`: forward in eval mode on NumPy,
PyTorch and TVM, float64 on NumPy, and the train-mode gradient of every
parameter."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402
from torch.nn import functional as F  # noqa: E402

import dlc  # noqa: E402

pytestmark = pytest.mark.torch

SPEC = Path(__file__).resolve().parent / "data" / "unet.dln"
BASE, SIZE = 8, 32


class DoubleConv(nn.Module):
    def __init__(self, cin, cout, mid=None):
        super().__init__()
        mid = mid or cout
        self.double_conv = nn.Sequential(nn.Conv2d(cin, mid, 3, padding=1, bias=False), nn.BatchNorm2d(mid),
                                         nn.ReLU(inplace=True), nn.Conv2d(mid, cout, 3, padding=1, bias=False),
                                         nn.BatchNorm2d(cout), nn.ReLU(inplace=True))

    def forward(self, x):
        return self.double_conv(x)


class Down(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.maxpool_conv = nn.Sequential(nn.MaxPool2d(2), DoubleConv(cin, cout))

    def forward(self, x):
        return self.maxpool_conv(x)


class Up(nn.Module):
    """Pytorch-UNet's Up(bilinear=True); `size` resizes to the skip's side instead of x2."""

    def __init__(self, cin, cout, size=None):
        super().__init__()
        self.size = size
        self.up = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True)
        self.conv = DoubleConv(cin, cout, cin // 2)

    def forward(self, x1, x2):
        x1 = F.interpolate(x1, size=self.size, mode="bilinear", align_corners=True) if self.size else self.up(x1)
        return self.conv(torch.cat([x2, x1], dim=1))


class UNet(nn.Module):
    def __init__(self, n_channels=3, n_classes=2, base=BASE, size=SIZE):
        super().__init__()
        b = base
        self.inc = DoubleConv(n_channels, b)
        self.down1, self.down2, self.down3 = Down(b, 2 * b), Down(2 * b, 4 * b), Down(4 * b, 8 * b)
        self.down4 = Down(8 * b, 16 * b // 2)
        self.up1, self.up2 = Up(16 * b, 8 * b // 2), Up(8 * b, 4 * b // 2)
        self.up3, self.up4 = Up(4 * b, 2 * b // 2), Up(2 * b, b, size=(size, size))
        self.outc = nn.Module()
        self.outc.conv = nn.Conv2d(b, n_classes, 1)

    def forward(self, x):
        x1 = self.inc(x)
        x2 = self.down1(x1)
        x3 = self.down2(x2)
        x4 = self.down3(x3)
        x5 = self.down4(x4)
        y = self.up4(self.up3(self.up2(self.up1(x5, x4), x3), x2), x1)
        return self.outc.conv(y)


def _liven(weights: dict, seed: int) -> dict:
    """He-normal convs and random batch-norm statistics, so every layer shapes the output."""
    rng = np.random.default_rng(seed)
    out = dict(weights)
    for k, v in weights.items():
        if v.dtype.kind != "f":       # num_batches_tracked
            continue
        if k.endswith(".weight") and v.ndim == 4:
            out[k] = (rng.standard_normal(v.shape) * np.sqrt(2.0 / np.prod(v.shape[1:]))).astype(v.dtype)
        elif k.endswith(".running_mean") or (k.endswith(".bias") and v.ndim == 1):
            out[k] = rng.normal(0.0, 0.1, v.shape).astype(v.dtype)
        elif k.endswith(".running_var") or (k.endswith(".weight") and v.ndim == 1):
            out[k] = rng.uniform(0.5, 1.5, v.shape).astype(v.dtype)
    return out


@pytest.fixture(scope="module")
def pair():
    model = dlc.load(SPEC)
    weights = _liven(model.init_weights(seed=0), seed=1)
    net = UNet()
    net.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in weights.items()}, strict=True)
    x = np.random.default_rng(2).standard_normal((2, 3, SIZE, SIZE)).astype(np.float32)
    return model, weights, net.eval(), x


def test_spec_checks_and_names_are_the_twins(pair):
    model, weights, net, _ = pair
    assert set(weights) == set(net.state_dict())
    for k, v in net.state_dict().items():
        assert tuple(v.shape) == np.shape(weights[k]), k
    ups = [n for n in model.graph.nodes if n.op.name == "interpolate"]
    assert [n.attrs["scale_factor"] for n in ups] == [2, 2, 2, None]
    assert [n.attrs["size"] for n in ups] == [None, None, None, (SIZE, SIZE)]


@pytest.mark.parametrize("backend", ["numpy", "torch", pytest.param("tvm", marks=pytest.mark.tvm)])
def test_forward_matches_the_twin(pair, backend):
    if backend == "tvm":
        pytest.importorskip("tvm")
    model, weights, net, x = pair
    (got,) = model.run({"image": x}, weights, backend=backend).values()
    with torch.no_grad():
        want = net(torch.from_numpy(x)).numpy()
    assert got.shape == want.shape == (2, 2, SIZE, SIZE)
    scale = float(np.abs(want).max())
    assert np.std(want) > 1e-2 * scale      # the livened weights carry the input through
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * scale, err_msg=backend)


def test_float64_matches_the_twin(pair):
    model, weights, net, x = pair
    (got,) = model.run({"image": x}, weights, dtype="float64").values()
    net64 = UNet().double()
    net64.load_state_dict(net.state_dict())
    with torch.no_grad():
        want = net64.eval()(torch.from_numpy(x.astype(np.float64))).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-10 * float(np.abs(want).max()))


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_train_gradients_match_the_twin(pair, backend):
    """sum(logits) in train mode (batch statistics): dlc's gradient of every
    parameter, through the decoder's interpolates, against torch.autograd."""
    model, weights, net, x = pair
    res = model.grad({"image": x}, weights, backend=backend)
    twin = UNet()
    twin.load_state_dict(net.state_dict())
    twin.train()
    out = twin(torch.from_numpy(x))
    out.sum().backward()
    np.testing.assert_allclose(res["loss"], out.sum().item(), rtol=1e-4, atol=1e-3)
    named = dict(twin.named_parameters())
    assert set(named) <= set(res)
    for k, p in named.items():
        want = p.grad.numpy()
        scale = max(float(np.abs(want).max()), 1e-6)
        np.testing.assert_allclose(res[k], want, rtol=1e-3, atol=2e-3 * scale, err_msg=f"{backend}: {k}")
