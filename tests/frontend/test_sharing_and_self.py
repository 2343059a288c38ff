"""Parameters at the block's own name (`name=self`, PyTorch's subclass pattern)
and explicit weight sharing between call sites (`share="enc"`: Siamese
networks, tied layers): names, every backend and gradients against PyTorch
twins, train-mode buffers of a shared batch norm, and the errors."""
from __future__ import annotations

import textwrap

import numpy as np
import pytest

import dlc
from dlc.errors import DlcError
from dlc.frontend.modules import clear_cache

torch = pytest.importorskip("torch")
nn = torch.nn

BACKENDS = ["numpy", "torch", pytest.param("tvm", marks=pytest.mark.tvm)]


def _load(tmp_path, text, name="m.dln"):
    clear_cache()
    p = tmp_path / name
    p.write_text(textwrap.dedent(text).lstrip("\n"))
    return dlc.load(p)


def _error(tmp_path, text) -> DlcError:
    with pytest.raises(DlcError) as ei:
        _load(tmp_path, text)
    return ei.value


def _run(model, inputs, weights, backend):
    if backend == "tvm":
        pytest.importorskip("tvm")
    return model.run(inputs, weights, backend=backend)


def _torch_weights(weights):
    return {k: torch.from_numpy(np.array(v)) for k, v in weights.items()}


# ------------------------------------------------------------------ name=self
CONVNEXT_STEM = """
    block LayerNorm2d(eps: float = 1e-6)(x: f32[N, C, H, W]) {
        return x |> permute(0, 2, 3, 1) |> layernorm(eps=eps, name=self) |> permute(0, 3, 1, 2)
    }
    block Stem(w: int)(x) {
        s = conv2d(x, w, kernel=4, stride=4, name="0")
        return LayerNorm2d()(s, name="1")
    }
    model Net(image: f32[N, 3, 16, 16]) {
        example N = 2
        f = Stem(8)(image, name="features.0")
        return f
    }
"""


class LayerNorm2d(nn.LayerNorm):  # torchvision.models.convnext.LayerNorm2d
    def forward(self, x):
        x = x.permute(0, 2, 3, 1)
        x = nn.functional.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


class StemTwin(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Sequential(nn.Conv2d(3, 8, 4, 4), LayerNorm2d(8, eps=1e-6)))

    def forward(self, x):
        return self.features(x)


def test_name_self_gives_the_subclass_names(tmp_path):
    m = _load(tmp_path, CONVNEXT_STEM)
    names = [p.name for p in m.parameters]
    assert names == ["features.0.0.weight", "features.0.0.bias", "features.0.1.weight", "features.0.1.bias"]
    assert set(names) == set(StemTwin().state_dict())


@pytest.mark.parametrize("backend", BACKENDS)
def test_name_self_matches_the_twin(tmp_path, backend):
    m = _load(tmp_path, CONVNEXT_STEM)
    rng = np.random.default_rng(0)
    w = {k: (v + rng.normal(0, 0.3, v.shape)).astype(np.float32) for k, v in m.init_weights(1).items()}
    net = StemTwin()
    net.load_state_dict(_torch_weights(w), strict=True)
    x = rng.standard_normal((2, 3, 16, 16)).astype(np.float32)
    got = _run(m, {"image": x}, w, backend)["f"]
    with torch.no_grad():
        want = net(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_name_self_in_a_model_and_in_a_block_application(tmp_path):
    m = _load(tmp_path, """
        block Inner()(x) { return dense(x, 3, name="fc") }
        block Wrapper()(x) { return Inner()(x, name=self) }
        model Top(x: f32[N, 4]) {
            a = dense(x, 4, name=self)
            return Wrapper()(a, name="wrap")
        }
    """)
    assert [p.name for p in m.parameters] == ["weight", "bias", "wrap.fc.weight", "wrap.fc.bias"]


def test_name_self_twice_is_an_error(tmp_path):
    e = _error(tmp_path, """
        block B()(x) {
            y = dense(x, 4, name=self)
            return dense(y, 4, name=self)
        }
        model M(x: f32[N, 4]) { return B()(x, name="b") }
    """)
    assert "name=self is already used in this block" in e.message and e.span.line == 3


def test_empty_name_points_to_name_self(tmp_path):
    e = _error(tmp_path, 'model M(x: f32[N, 4]) {\n    return dense(x, 2, name="")\n}\n')
    assert "cannot be empty" in e.message and "name=self" in e.hint


# ------------------------------------------------------------------ sharing
SIAMESE = """
    block Encoder(w: int)(x: f32[N, C, H, W]) {
        y = conv2d(x, w, kernel=3, padding=1) |> batchnorm |> relu
        return dense(flatten(y), 6, name="fc")
    }
    model Siamese(left: f32[N, 3, 8, 8], right: f32[N, 3, 8, 8]) {
        example N = 3
        a = Encoder(4)(left, name="enc")
        b = Encoder(4)(right, share="enc")
        d = a - b
        return d
    }
"""


class EncoderTwin(nn.Module):
    def __init__(self):
        super().__init__()
        self.y = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4))
        self.fc = nn.Linear(256, 6)

    def forward(self, x):
        return self.fc(torch.relu(self.y(x)).flatten(1))


class SiameseTwin(nn.Module):
    def __init__(self):
        super().__init__()
        self.enc = EncoderTwin()

    def forward(self, left, right):
        return self.enc(left) - self.enc(right)


def _siamese_weights(m, seed=3):
    rng = np.random.default_rng(seed)
    w = {}
    for k, v in m.init_weights(seed).items():
        if k.endswith("running_var"):
            v = rng.uniform(0.5, 1.5, v.shape)
        elif v.dtype.kind == "f":
            v = v + rng.normal(0, 0.2, v.shape)
        w[k] = np.asarray(v).astype(v.dtype if v.dtype.kind != "f" else np.float32)
    return w


def test_siamese_has_one_set_of_weights(tmp_path):
    m = _load(tmp_path, SIAMESE)
    names = [p.name for p in m.parameters] + [b.name for b in m.buffers]
    assert sorted(names) == sorted(SiameseTwin().state_dict())
    out = m.run()   # the same input twice gives exactly zero: one encoder
    x = np.random.default_rng(1).standard_normal((3, 3, 8, 8)).astype(np.float32)
    assert not np.any(m.run({"left": x, "right": x})["d"])
    assert np.any(out["d"])
    # one layer table row per shared layer
    rows = [r["name"] for r in m.info()["layers"]]
    assert rows.count("enc.fc") == 1


@pytest.mark.parametrize("backend", BACKENDS)
def test_siamese_matches_the_twin(tmp_path, backend):
    m = _load(tmp_path, SIAMESE)
    w = _siamese_weights(m)
    net = SiameseTwin().eval()
    net.load_state_dict(_torch_weights(w), strict=True)
    rng = np.random.default_rng(2)
    left, right = (rng.standard_normal((3, 3, 8, 8)).astype(np.float32) for _ in range(2))
    got = _run(m, {"left": left, "right": right}, w, backend)["d"]
    with torch.no_grad():
        want = net(torch.from_numpy(left), torch.from_numpy(right)).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_shared_gradients_sum_both_uses(tmp_path):
    m = _load(tmp_path, SIAMESE)
    w = {k: v.astype(np.float64) if v.dtype.kind == "f" else v for k, v in _siamese_weights(m).items()}
    rng = np.random.default_rng(4)
    left, right = rng.standard_normal((3, 3, 8, 8)), rng.standard_normal((3, 3, 8, 8))
    got = m.grad({"left": left, "right": right}, w, mode="eval")
    net = SiameseTwin().double().eval()
    net.load_state_dict(_torch_weights(w), strict=True)
    net(torch.from_numpy(left), torch.from_numpy(right)).sum().backward()
    for name, p in net.named_parameters():
        np.testing.assert_allclose(got[name], p.grad.numpy(), rtol=1e-9, atol=1e-12, err_msg=name)
    assert np.abs(got["enc.fc.weight"]).max() > 0


def test_shared_batchnorm_updates_its_buffers_once_per_use(tmp_path):
    """Train mode: the second application reads the running statistics the first one wrote."""
    m = _load(tmp_path, SIAMESE)
    w = _siamese_weights(m)
    rng = np.random.default_rng(5)
    left, right = rng.standard_normal((3, 3, 8, 8)).astype(np.float32), \
        (2 * rng.standard_normal((3, 3, 8, 8)) + 1).astype(np.float32)
    out, state = m.run_with_state({"left": left, "right": right}, w, mode="train")
    net = SiameseTwin().train()
    net.load_state_dict(_torch_weights(w), strict=True)
    with torch.no_grad():
        want = net(torch.from_numpy(left), torch.from_numpy(right)).numpy()
    np.testing.assert_allclose(out["d"], want, rtol=1e-4, atol=1e-4)
    sd = net.state_dict()
    assert int(state["enc.y.1.num_batches_tracked"]) == int(sd["enc.y.1.num_batches_tracked"]) == \
        int(w["enc.y.1.num_batches_tracked"]) + 2
    for k in ("running_mean", "running_var"):
        np.testing.assert_allclose(state[f"enc.y.1.{k}"], sd[f"enc.y.1.{k}"].numpy(), rtol=1e-5, atol=1e-6)


TIED = """
    model Tied(x: f32[N, 8]) {
        example N = 4
        h = dense(x, 8) |> tanh
        for i in range(2) {
            h = dense(h, 8, share="h") |> tanh
        }
        out = dense(h, 3)
        return out
    }
"""


@pytest.mark.parametrize("backend", BACKENDS)
def test_tied_layer_applied_three_times(tmp_path, backend):
    m = _load(tmp_path, TIED)
    assert [p.name for p in m.parameters] == ["h.weight", "h.bias", "out.weight", "out.bias"]
    w = m.init_weights(0)
    x = np.random.default_rng(6).standard_normal((4, 8)).astype(np.float32)
    W, b = w["h.weight"], w["h.bias"]
    h = x
    for _ in range(3):
        h = np.tanh(h @ W.T + b)
    want = h @ w["out.weight"].T + w["out.bias"]
    np.testing.assert_allclose(_run(m, {"x": x}, w, backend)["out"], want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("body, message", [
    ('a = dense(x, 4)\n    b = dense(x, 4, share="nope")', "no instance 'nope' with parameters"),
    ('a = dense(x, 4)\n    b = dense(a, 4, share="a", name="b")', "give either name= or share="),
    ('a = dense(x, 4)\n    b = dense(x, 4, share="a", bias=false)', "does not use a.bias"),
    ('a = dense(x, 4)\n    b = dense(a, 2, share="a")', "a.weight is f32[4, 4], but this application needs f32[2, 4]"),
    ('a = dense(x, 4)\n    b = relu(x, share="a")', "relu is not a layer and takes no share"),
    ('a = dense(x, 4)\n    b = dense(x, 4, share="")', "share= must name an instance"),
])
def test_sharing_errors(tmp_path, body, message):
    e = _error(tmp_path, f"model M(x: f32[N, 4]) {{\n    {body}\n    return b\n}}\n")
    assert message in e.message, e.message
    assert e.span.line == 3


def test_the_language_reference_examples_check(tmp_path):
    """docs/language.md's name=self and share= examples elaborate, with the names they state."""
    import re
    from pathlib import Path
    text = (Path(__file__).resolve().parents[2] / "docs" / "language.md").read_text()
    blocks = [b for b in re.findall(r"```dln\n(.*?)```", text, re.S) if "name=self" in b or "share=" in b]
    assert len(blocks) == 2
    names = set()
    for i, b in enumerate(blocks):
        p = tmp_path / f"doc{i}.dln"
        p.write_text(b)
        clear_cache()
        from dlc.frontend.check import check_file
        check_file(str(p))
        mod_models = [ln.split()[1].split("(")[0] for ln in b.splitlines() if ln.startswith("model ")]
        for model in mod_models:
            names |= {q.name for q in dlc.load(p, name=model).parameters}
    assert {"features.0.1.weight", "features.0.1.bias", "enc.fc.weight", "h.weight"} <= names
    assert not any(n.startswith("b.") for n in names)


@pytest.mark.parametrize("spec, shapes", [
    (SIAMESE, {"left": (3, 3, 8, 8), "right": (3, 3, 8, 8)}),
    (CONVNEXT_STEM, {"image": (2, 3, 16, 16)}),
    (TIED, {"x": (4, 8)}),
])
def test_generated_torch_module(tmp_path, spec, shapes):
    """`dlc compile --target torch`: the nn.Module loads dlc's weights strictly and matches NumPy."""
    from dlc.backends.torch.modgen import load_module
    m = _load(tmp_path, spec)
    w = _siamese_weights(m, seed=8)
    net = load_module(m)
    net.load_state_dict(_torch_weights(w), strict=True)
    net.eval()
    rng = np.random.default_rng(9)
    xs = {k: rng.standard_normal(s).astype(np.float32) for k, s in shapes.items()}
    with torch.no_grad():
        out = net(*[torch.from_numpy(xs[k]) for k in shapes])
    out = out if isinstance(out, tuple) else (out,)
    ref = m.run(xs, w)
    assert len(out) == len(ref)
    for o, (k, v) in zip(out, ref.items()):
        np.testing.assert_allclose(o.numpy(), v, rtol=1e-4, atol=1e-5, err_msg=k)


def test_layer_table_counts_a_self_named_layer_once(tmp_path):
    m = _load(tmp_path, """
        block B()(x) {
            a = dense(x, 4, name=self)
            return dense(a, 3, name="fc")
        }
        model M(x: f32[N, 8]) {
            example N = 2
            return B()(x, name="b")
        }
    """)
    info = m.info()
    rows = {r["name"]: r for r in info["layers"]}
    assert rows["b"]["macs"] == 2 * 8 * 4 and rows["b.fc"]["macs"] == 2 * 4 * 3
    assert sum(r["macs"] for r in info["layers"]) == info["macs"]
