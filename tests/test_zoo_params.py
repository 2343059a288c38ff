"""The zoo specs reproduce their published sizes and run.

Parameter counts must match the reference exactly; MACs (convolutions and
matrix products only, torchvision's convention) within 0.1% of the published
GMACs at batch 1.  One spec goes through the `dlc info --json` command line,
the rest through the API to keep the suite fast.  Every spec also runs a
forward pass on NumPy at batch 1, at a small input size where its `const size`
allows; full-size VGG / AlexNet runs are marked slow (pytest --runslow).
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import dlc

SPECS = Path(__file__).resolve().parents[1] / "specs"

# spec -> (parameters, MACs at batch 1); an int MAC count must match exactly
# (small models, counted by hand), a float one is GMACs within 0.1%
REFERENCE = {
    "mlp": (9_610, 9_472),                   # 64*128 + 128*10
    "perceptron": (31, 30),
    "alexnet": (61_100_840, 0.714),
    "vgg16": (138_357_544, 15.47),
    "vgg16_bn": (138_365_992, 15.47),
    "resnet18": (11_689_512, 1.814),
    "resnet50": (25_557_032, 4.089),
    "googlenet": (6_624_904, 1.498),
    "mobilenet_v2": (3_504_872, 0.301),
    "efficientnet_b0": (5_288_548, 0.386),
}
VIA_CLI = "resnet18"

# small input sides for the quick forward runs (None: the spec has no size to bind)
SMALL = {"mlp": None, "perceptron": None, "alexnet": 64, "vgg16": 32, "vgg16_bn": 32, "resnet18": 64,
         "resnet50": 64, "googlenet": 64, "mobilenet_v2": 64, "efficientnet_b0": 64}


def _check_counts(spec: str, params: int, macs: int) -> None:
    want_params, want_macs = REFERENCE[spec]
    assert params == want_params, f"{spec}: {params:,} parameters, the reference has {want_params:,}"
    if isinstance(want_macs, int):
        assert macs == want_macs, f"{spec}: {macs:,} MACs, expected {want_macs:,}"
    else:
        rel = abs(macs / 1e9 - want_macs) / want_macs
        assert rel <= 1e-3, f"{spec}: {macs / 1e9:.4f} GMACs, the reference is {want_macs} ({rel:.2%} off)"


def test_counts_via_cli():
    out = subprocess.run([sys.executable, "-m", "dlc.cli", "info", str(SPECS / f"{VIA_CLI}.dln"),
                          "--bind", "N=1", "--json"],
                         capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    _check_counts(VIA_CLI, data["params"], data["macs"])


@pytest.mark.parametrize("spec", [s for s in REFERENCE if s != VIA_CLI])
def test_counts_via_api(spec):
    info = dlc.load(SPECS / f"{spec}.dln", bind={"N": 1}).info()
    _check_counts(spec, info["params"], info["macs"])


def _forward(spec: str, size):
    bind = {"size": size} if size else {}
    model = dlc.load(SPECS / f"{spec}.dln", bind=bind)
    outs = model.run(bind={"N": 1}, seed=0)
    assert outs, spec
    for name, arr in outs.items():
        assert arr.shape[0] == 1, (spec, name, arr.shape)
        assert np.all(np.isfinite(arr)), (spec, name)
    return outs


@pytest.mark.parametrize("spec", list(REFERENCE))
def test_forward_small(spec):
    _forward(spec, SMALL[spec])


@pytest.mark.slow
@pytest.mark.parametrize("spec", ["alexnet", "vgg16", "vgg16_bn"])
def test_forward_full_size(spec):
    outs = _forward(spec, None)
    assert next(iter(outs.values())).shape == (1, 1000)
