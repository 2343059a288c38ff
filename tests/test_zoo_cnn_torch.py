"""Zoo CNNs against hand-written PyTorch twins in torchvision's layout.

For LeNet-5, ResNet-18 and MobileNetV2 the test builds the same network in
torch (torchvision itself is not a dependency, so the modules are written out
here with torchvision's attribute names), loads the weights dlc initialises
*by name* with `load_state_dict(strict=True)` -- which proves the spec's
parameter and buffer names are torchvision's -- and compares eval-mode
outputs on the same random batch, in float32 and in float64.

PyTorch's default initialisation makes the activations of a deep plain stack
shrink layer after layer, so the logits of an untouched ResNet are almost
just the classifier bias.  To make the comparison exercise every layer, the
weights are "livened up" first: convs get He-normal weights and batch norms
random affine parameters and running statistics.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn

import dlc

pytestmark = pytest.mark.torch

SPECS = Path(__file__).resolve().parents[1] / "specs"


# ---------------------------------------------------------------- torch twins
class LeNet5(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(1, 6, 5)
        self.c3 = nn.Conv2d(6, 16, 5)
        self.f5 = nn.Linear(400, 120)
        self.f6 = nn.Linear(120, 84)
        self.output = nn.Linear(84, 10)

    def forward(self, x):
        x = nn.functional.avg_pool2d(torch.tanh(self.c1(x)), 2)
        x = nn.functional.avg_pool2d(torch.tanh(self.c3(x)), 2).flatten(1)
        return self.output(torch.tanh(self.f6(torch.tanh(self.f5(x)))))


class BasicBlock(nn.Module):  # torchvision.models.resnet.BasicBlock
    def __init__(self, inplanes, planes, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = None
        if stride != 1 or inplanes != planes:
            self.downsample = nn.Sequential(nn.Conv2d(inplanes, planes, 1, stride, bias=False),
                                            nn.BatchNorm2d(planes))

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(out + identity)


class ResNet18(nn.Module):  # torchvision.models.resnet18
    def __init__(self, num_classes=1000):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        inplanes = 64
        for i, planes in enumerate((64, 128, 256, 512)):
            stride = 1 if i == 0 else 2
            layer = nn.Sequential(BasicBlock(inplanes, planes, stride), BasicBlock(planes, planes))
            setattr(self, f"layer{i + 1}", layer)
            inplanes = planes
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(512, num_classes)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def _make_divisible(v, divisor=8, min_value=None):
    min_value = min_value or divisor
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    return new_v + divisor if new_v < 0.9 * v else new_v


def _conv_bn_relu6(inp, oup, kernel=3, stride=1, groups=1):  # Conv2dNormActivation
    return nn.Sequential(nn.Conv2d(inp, oup, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
                         nn.BatchNorm2d(oup), nn.ReLU6())


class InvertedResidual(nn.Module):  # torchvision.models.mobilenetv2.InvertedResidual
    def __init__(self, inp, oup, stride, expand_ratio):
        super().__init__()
        hidden = round(inp * expand_ratio)
        self.use_res_connect = stride == 1 and inp == oup
        layers = [] if expand_ratio == 1 else [_conv_bn_relu6(inp, hidden, 1)]
        layers += [_conv_bn_relu6(hidden, hidden, 3, stride, groups=hidden),
                   nn.Conv2d(hidden, oup, 1, bias=False), nn.BatchNorm2d(oup)]
        self.conv = nn.Sequential(*layers)

    def forward(self, x):
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


class MobileNetV2(nn.Module):  # torchvision.models.mobilenet_v2
    def __init__(self, num_classes=1000, width_mult=1.0):
        super().__init__()
        settings = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
                    (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]
        inp = _make_divisible(32 * width_mult)
        last = _make_divisible(1280 * max(1.0, width_mult))
        features = [_conv_bn_relu6(3, inp, stride=2)]
        for t, c, n, s in settings:
            oup = _make_divisible(c * width_mult)
            for j in range(n):
                features.append(InvertedResidual(inp, oup, s if j == 0 else 1, t))
                inp = oup
        features.append(_conv_bn_relu6(inp, last, 1))
        self.features = nn.Sequential(*features)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(last, num_classes))

    def forward(self, x):
        x = nn.functional.adaptive_avg_pool2d(self.features(x), 1)
        return self.classifier(torch.flatten(x, 1))


# ---------------------------------------------------------------- the cases
# case -> (spec, torch module, dlc.load bind, input shape at batch 2); the
# ImageNet specs are run small through their `const size`, and ResNet-18 also
# at its published 224x224 (fast enough on NumPy).
CASES = {
    "lenet5": ("lenet5", LeNet5, {}, (2, 1, 32, 32)),
    "resnet18": ("resnet18", ResNet18, {"size": 64}, (2, 3, 64, 64)),
    "resnet18_224": ("resnet18", ResNet18, {}, (2, 3, 224, 224)),
    "mobilenet_v2": ("mobilenet_v2", MobileNetV2, {"size": 64}, (2, 3, 64, 64)),
}


def _liven(weights: dict, seed: int) -> dict:
    """He-normal conv weights and random batch-norm statistics, so that the
    signal survives to the logits (see the module docstring)."""
    rng = np.random.default_rng(seed)
    out = dict(weights)
    for k, v in weights.items():
        if v.dtype.kind != "f":
            continue
        if k.endswith(".weight") and v.ndim == 4:
            fan_in = int(np.prod(v.shape[1:]))
            out[k] = (rng.standard_normal(v.shape) * np.sqrt(2.0 / fan_in)).astype(v.dtype)
        elif k.endswith(".running_mean"):
            out[k] = rng.normal(0.0, 0.1, v.shape).astype(v.dtype)
        elif k.endswith(".running_var") or (k.endswith(".weight") and v.ndim == 1
                                              and k.replace(".weight", ".running_var") in weights):
            out[k] = rng.uniform(0.5, 1.5, v.shape).astype(v.dtype)
        elif k.endswith(".bias") and k.replace(".bias", ".running_var") in weights:
            out[k] = rng.normal(0.0, 0.1, v.shape).astype(v.dtype)
    return out


@pytest.fixture(scope="module", params=list(CASES))
def pair(request):
    name = request.param
    spec, make, bind, shape = CASES[name]
    model = dlc.load(SPECS / f"{spec}.dln", bind=bind)
    weights = _liven(model.init_weights(seed=0), seed=1)
    net = make()
    net.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in weights.items()}, strict=True)
    net.eval()
    x = np.random.default_rng(2).standard_normal(shape).astype(np.float32)
    return name, model, weights, net, x


def _only_output(outs: dict) -> np.ndarray:
    assert len(outs) == 1, list(outs)
    return next(iter(outs.values()))


def test_names_are_torchvision(pair):
    name, _model, weights, net, _ = pair
    assert set(weights) == set(net.state_dict()), name
    for k, v in net.state_dict().items():
        assert tuple(v.shape) == np.shape(weights[k]), k


def test_float32_matches_torch(pair):
    name, model, weights, net, x = pair
    got = _only_output(model.run({"image": x}, weights))
    with torch.no_grad():
        want = net(torch.from_numpy(x)).numpy()
    assert got.dtype == np.float32 and got.shape == want.shape
    scale = float(np.abs(want).max())
    # the livened weights must carry the input through: logits far from the bias alone
    assert np.std(want) > 1e-3 * max(scale, 1e-30), name
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * scale, err_msg=name)


def test_float64_matches_torch(pair):
    name, model, weights, net, x = pair
    got = _only_output(model.run({"image": x}, weights, dtype="float64"))
    net64 = net.double()
    try:
        with torch.no_grad():
            want = net64(torch.from_numpy(x.astype(np.float64))).numpy()
    finally:
        net.float()
    assert got.dtype == np.float64
    scale = float(np.abs(want).max())
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-10 * scale, err_msg=name)
