"""Acceptance: a ResNeXt built from the zoo's `ResLayer` (imported with `zoo:`)
checks, has torchvision's parameter count and names, runs on every backend and
matches a torchvision-style PyTorch twin loaded by name (strict=True).

The twin is written out here with torchvision's attribute names (torchvision
is not a dependency).  Weights are "livened up" (He-normal convs, random batch
norm statistics) so that every layer shows in the logits.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import dlc
from dlc.frontend.check import check_file

SPEC = Path(__file__).resolve().parent / "specs" / "resnext.dln"
SMALL = {"depths": [1, 1, 1, 1], "size": 32, "classes": 10}


def test_checks_and_counts_as_torchvision():
    check_file(str(SPEC))
    info = dlc.load(SPEC).info()
    assert info["params"] == 25_028_904                       # torchvision resnext50_32x4d
    assert abs(info["macs"] / 1e9 - 4.23) / 4.23 < 1e-3       # its metadata: 4.23 GFLOPS (MACs)
    wide = dlc.load(SPEC, bind={"groups": 1, "width_per_group": 128}).info()
    assert wide["params"] == 68_883_240                       # torchvision wide_resnet50_2
    assert abs(wide["macs"] / 1e9 - 11.40) / 11.40 < 1e-3


def test_resnet_zoo_counts_unchanged():
    """ResLayer's new arguments leave the zoo's ResNets exactly as they were."""
    specs = SPEC.parents[3] / "specs"
    assert dlc.load(specs / "resnet18.dln").info()["params"] == 11_689_512
    assert dlc.load(specs / "resnet50.dln").info()["params"] == 25_557_032


def test_basic_block_refuses_groups(tmp_path):
    """torchvision raises for a grouped BasicBlock; dlc says the unit takes no groups."""
    from dlc.errors import DlcError
    from dlc.frontend.modules import clear_cache
    clear_cache()
    p = tmp_path / "m.dln"
    p.write_text('import "zoo:blocks/resnet_blocks.dln"\n'
                 "model M(x: f32[N, 64, 8, 8]) {\n"
                 "    return ResLayer(BasicBlock, 64, 1, groups=32)(x, name=\"layer1\")\n}\n")
    with pytest.raises(DlcError) as ei:
        dlc.load(p)
    assert "BasicBlock has no parameter 'groups'" in ei.value.message


torch = pytest.importorskip("torch")
nn = torch.nn


class Bottleneck(nn.Module):  # torchvision.models.resnet.Bottleneck
    expansion = 4

    def __init__(self, inplanes, planes, stride=1, groups=1, base_width=64):
        super().__init__()
        width = int(planes * (base_width / 64.0)) * groups
        self.conv1 = nn.Conv2d(inplanes, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, groups=groups, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU()
        self.downsample = None
        if stride != 1 or inplanes != planes * 4:
            self.downsample = nn.Sequential(nn.Conv2d(inplanes, planes * 4, 1, stride, bias=False),
                                            nn.BatchNorm2d(planes * 4))

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(out + identity)


class ResNeXt(nn.Module):  # torchvision.models.ResNet(Bottleneck, layers, groups=, width_per_group=)
    def __init__(self, layers=(3, 4, 6, 3), groups=32, width_per_group=4, num_classes=1000):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        inplanes = 64
        for i, (planes, n) in enumerate(zip((64, 128, 256, 512), layers)):
            blocks = []
            for j in range(n):
                blocks.append(Bottleneck(inplanes, planes, (1 if i == 0 else 2) if j == 0 else 1,
                                         groups, width_per_group))
                inplanes = planes * 4
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(2048, num_classes)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def _liven(weights: dict, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    out = dict(weights)
    for k, v in weights.items():
        if v.dtype.kind != "f":
            continue
        if k.endswith(".weight") and v.ndim == 4:
            out[k] = (rng.standard_normal(v.shape) * np.sqrt(2.0 / np.prod(v.shape[1:]))).astype(v.dtype)
        elif k.endswith(".running_mean"):
            out[k] = rng.normal(0.0, 0.1, v.shape).astype(v.dtype)
        elif k.endswith(".running_var") or (k.endswith(".weight") and v.ndim == 1):
            out[k] = rng.uniform(0.5, 1.5, v.shape).astype(v.dtype)
        elif k.endswith(".bias") and k.replace(".bias", ".running_var") in weights:
            out[k] = rng.normal(0.0, 0.1, v.shape).astype(v.dtype)
    return out


def _pair(bind, twin_kwargs, seed=0):
    model = dlc.load(SPEC, bind=bind)
    weights = _liven(model.init_weights(seed=seed), seed + 1)
    net = ResNeXt(**twin_kwargs)
    net.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in weights.items()}, strict=True)
    return model, weights, net.eval()


def _compare(model, weights, net, shape, backend, rtol):
    x = np.random.default_rng(5).standard_normal(shape).astype(np.float32)
    got = model.run({"image": x}, weights, backend=backend)["logits"]
    with torch.no_grad():
        want = net(torch.from_numpy(x)).numpy()
    scale = float(np.abs(want).max())
    assert np.std(want) > 1e-3 * scale          # the livened weights carry the input through
    np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol * scale)


@pytest.mark.torch
@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_resnext50_matches_the_twin(backend):
    model, weights, net = _pair({"size": 64}, {})
    assert set(weights) == set(net.state_dict())
    _compare(model, weights, net, (2, 3, 64, 64), backend, 1e-4)


@pytest.mark.torch
def test_resnext50_float64():
    model, weights, net = _pair({"size": 64}, {})
    x = np.random.default_rng(6).standard_normal((1, 3, 64, 64))
    got = model.run({"image": x}, weights, dtype="float64")["logits"]
    with torch.no_grad():
        want = net.double()(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-10 * float(np.abs(want).max()))


@pytest.mark.tvm
@pytest.mark.torch
def test_small_resnext_on_tvm_matches_the_twin():
    pytest.importorskip("tvm")
    model, weights, net = _pair(SMALL, {"layers": (1, 1, 1, 1), "num_classes": 10})
    _compare(model, weights, net, (2, 3, 32, 32), "tvm", 1e-4)
