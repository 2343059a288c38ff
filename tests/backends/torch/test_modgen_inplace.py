"""The generated module does activations and residual adds in place where
autograd allows (modgen_inplace): the code says so, and a training step gives
the same gradients and running statistics as the module written without
in-place ops."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import dlc  # noqa: E402
from dlc.backends.torch import generate_module, load_module  # noqa: E402
from dlc.backends.torch.modgen_inplace import InPlace  # noqa: E402

pytestmark = pytest.mark.torch

ROOT = Path(__file__).resolve().parents[3]


def _forward(src):
    return src[src.index("def forward"):]


def test_resnet_and_mobilenet_write_activations_and_residuals_in_place():
    fwd = _forward(generate_module(dlc.load(ROOT / "specs/resnet18.dln", bind={"size": 64})))
    # conv -> bn -> relu_, and the residual add into the second bn's result, then relu_
    assert fwd.count(".relu_()") == 17 and fwd.count(".add_(") == 8
    dels = r"[^\n]*\n(?:\s*del [^\n]*\n)*"       # the lines freeing what is dead (modgen_free)
    assert re.search(r"(\w+) = _norm_module\(self\.layer1\[0\]\.bn2, \w+\)" + dels + r"\s*(\w+) = \1\.add_\(x\)"
                     + dels + r"\s*\w+ = \2\.relu_\(\)", fwd), fwd[:2000]
    fwd = _forward(generate_module(dlc.load(ROOT / "specs/mobilenet_v2.dln", bind={"size": 64})))
    assert fwd.count("inplace=True") == 35 and "F.relu6(batch_norm, inplace=True)" in fwd


def test_a_value_read_twice_or_saved_for_backward_is_not_overwritten():
    fwd = _forward(generate_module(dlc.load(ROOT / "specs/resnet18.dln", bind={"size": 64})))
    # the block input x is read by conv1 and by the residual add: never the target
    assert "x.add_(" not in fwd and "x.relu_(" not in fwd
    # a relu's result is kept by its backward: nothing is added into it in place
    relu_results = set(re.findall(r"(\w+) = \w+\.relu_\(\)", fwd))
    assert not any(f"{r}.add_(" in fwd for r in relu_results)


def _step(m, net, x, label):
    net.train()
    torch.manual_seed(0)          # the same dropout masks for both
    loss = torch.nn.functional.cross_entropy(net(x), label)
    loss.backward()
    return loss.detach(), {k: p.grad.clone() for k, p in net.named_parameters()}, \
        {k: b.clone() for k, b in net.named_buffers()}


@pytest.mark.parametrize("spec", ["resnet18", "mobilenet_v2"])
def test_training_step_equals_the_module_without_in_place(spec, monkeypatch):
    m = dlc.load(ROOT / f"specs/{spec}.dln", bind={"size": 32})
    w = m.init_weights(0)
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.standard_normal((2, 3, 32, 32)))
    label = torch.tensor([1, 7])
    results = []
    for in_place in (True, False):
        if not in_place:
            monkeypatch.setattr(InPlace, "statement", lambda self, gen, node: None)
        src = generate_module(m)
        assert (".relu_()" in src or "inplace=True" in src) == in_place
        net = load_module(m, dtype="float64")
        net.load_state_dict({k: torch.from_numpy(v) for k, v in w.items()}, strict=True)
        results.append(_step(m, net, x, label))
    (la, ga, ba), (lb, gb, bb) = results
    torch.testing.assert_close(la, lb, rtol=1e-13, atol=0)
    for k in ga:
        torch.testing.assert_close(ga[k], gb[k], rtol=1e-12, atol=1e-14, msg=k)
    for k in ba:
        torch.testing.assert_close(ba[k], bb[k], rtol=1e-13, atol=0, msg=k)


def test_intermediates_are_freed_after_their_last_use():
    from dlc.backends.torch.modgen_free import free_dead
    src = ("def forward(self, x):\n"
           "    a = self.f(x)\n"
           "    b = a + 1\n"
           "    for t in range(3):\n"
           "        c = b * t\n"
           "    d = c + b\n"
           "    return d, a\n")
    out = free_dead(src)
    # b's last reader is `d = c + b`; a is returned; c (bound only in the loop) and t are never deleted
    assert out == ("def forward(self, x):\n"
                   "    a = self.f(x)\n"
                   "    b = a + 1\n"
                   "    for t in range(3):\n"
                   "        c = b * t\n"
                   "    d = c + b\n"
                   "    del b\n"
                   "    return d, a\n")
    fwd = _forward(generate_module(dlc.load(ROOT / "specs/resnet18.dln", bind={"size": 64})))
    assert re.search(r"conv2 = self\.layer1\[0\]\.conv2\(out\)[^\n]*\n\s*del out\n", fwd)
