"""The functional forms of the conv and norm layers (explicit `param`
weights, as torch.nn.functional) against torch on every backend, with
gradients and running-statistic updates; which form a call picks; and
drop_path (torchvision's stochastic depth)."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch.nn import functional as F  # noqa: E402

import dlc  # noqa: E402
from dlc.errors import DlcError  # noqa: E402

pytestmark = pytest.mark.torch


def _load(tmp_path, text: str, name="m.dln", **bind) -> dlc.Model:
    p = tmp_path / name
    p.write_text(text)
    return dlc.load(p, bind=bind or None)


FUNCTIONAL = """
model Fn(x: f32[N, 4, 9, 8], s: f32[N, 4, 10]) {
    example N = 3
    param W: f32[6, 2, 3, 3] = kaiming
    param b: f32[6] = normal
    param W1: f32[5, 4, 3] = kaiming
    param Wt: f32[4, 3, 2, 2] = kaiming
    param g: f32[6] = uniform(0.5, 1.5)
    param beta: f32[6] = normal
    buffer rm: f32[6] = normal
    buffer rv: f32[6] = uniform(0.5, 1.5)
    param lw: f32[5, 4] = uniform(0.5, 1.5)
    param lb: f32[5, 4] = normal
    c = conv2d(x, W, b, stride=2, padding=1, groups=2)
    c1 = conv1d(s, W1, none, padding=1, dilation=2)
    ct = conv_transpose2d(x, Wt, stride=2, padding=1)
    bn = batch_norm(c, rm, rv, g, beta, eps=1e-3)
    ln = layer_norm(c, (5, 4), lw, lb)
    gn = group_norm(c, 3, g, beta)
    inorm = instance_norm(c, weight=g, bias=beta)
    return c, c1, ct, bn, ln, gn, inorm
}
"""


def _torch_functional(x, s, w, training: bool):
    c = F.conv2d(x, w["W"], w["b"], stride=2, padding=1, groups=2)
    rm, rv = w["rm"].clone(), w["rv"].clone()
    out = {"c": c, "c1": F.conv1d(s, w["W1"], None, padding=1, dilation=2),
           "ct": F.conv_transpose2d(x, w["Wt"], stride=2, padding=1),
           "bn": F.batch_norm(c, rm, rv, w["g"], w["beta"], training=training, eps=1e-3),
           "ln": F.layer_norm(c, (5, 4), w["lw"], w["lb"]),
           "gn": F.group_norm(c, 3, w["g"], w["beta"]),
           "inorm": F.instance_norm(c, weight=w["g"], bias=w["beta"])}
    return out, {"rm": rm, "rv": rv}


@pytest.fixture(scope="module")
def functional(tmp_path_factory):
    model = _load(tmp_path_factory.mktemp("fn"), FUNCTIONAL)
    weights = model.init_weights(0)
    rng = np.random.default_rng(1)
    inputs = {"x": rng.standard_normal((3, 4, 9, 8)).astype(np.float32),
              "s": rng.standard_normal((3, 4, 10)).astype(np.float32)}
    return model, weights, inputs


def test_functional_forms_emit_the_ops_with_the_given_weights(functional):
    model, weights, _ = functional
    assert sorted(weights) == ["W", "W1", "Wt", "b", "beta", "g", "lb", "lw", "rm", "rv"]
    ir = model.ir()
    for line in ("conv2d(x, @W, @b) {stride=(2, 2), padding=(1, 1), dilation=(1, 1), groups=2}",
                 "conv1d(s, @W1, none) {stride=1, padding=1, dilation=2, groups=1}",
                 "batch_norm(%0, @rm, @rv, @g, @beta) {training=false, momentum=0.1, eps=0.001}",
                 "layer_norm(%0, @lw, @lb) {normalized_shape=(5, 4), eps=1e-05}",
                 "group_norm(%0, @g, @beta) {num_groups=3, eps=1e-05}",
                 "group_norm(%0, @g, @beta) {num_groups=6, eps=1e-05}"):
        assert line in ir, line


@pytest.mark.parametrize("backend", ["numpy", "torch", "tvm"])
@pytest.mark.parametrize("mode", ["eval", "train"])
def test_functional_forms_match_torch(functional, backend, mode):
    if backend == "tvm":
        pytest.importorskip("tvm")
    model, weights, inputs = functional
    got, state = model.run_with_state(inputs, weights, backend=backend, mode=mode)
    t = {k: torch.from_numpy(np.asarray(v)) for k, v in weights.items()}
    with torch.no_grad():
        want, stats = _torch_functional(torch.from_numpy(inputs["x"]), torch.from_numpy(inputs["s"]), t,
                                        mode == "train")
    for k, w in want.items():
        np.testing.assert_allclose(got[k], w.numpy(), rtol=1e-5, atol=1e-5, err_msg=k)
    if mode == "train" and backend != "torch":   # torch's run_with_state hands no buffers back (any layer)
        for k in ("rm", "rv"):      # the buffers passed to batch_norm are updated, as torch does in place
            np.testing.assert_allclose(state[k], stats[k].numpy(), rtol=1e-5, atol=1e-6, err_msg=k)
            assert not np.allclose(state[k], weights[k])


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_functional_gradients_match_torch_autograd(functional, backend, tmp_path):
    _, weights, inputs = functional
    scale = {"c": 1, "c1": 2, "ct": 3, "bn": 4, "ln": 5, "gn": 6, "inorm": 7}
    loss = " + ".join(f"{v} * sum({k} * {k})" for k, v in scale.items())
    model = _load(tmp_path, FUNCTIONAL.replace("return c, c1, ct, bn, ln, gn, inorm", f"return {loss}"))
    got = model.grad(inputs, weights, mode="train", backend=backend)
    t = {k: torch.tensor(np.asarray(v, np.float64), requires_grad=k not in ("rm", "rv")) for k, v in weights.items()}
    want, _ = _torch_functional(torch.from_numpy(inputs["x"].astype(np.float64)),
                                torch.from_numpy(inputs["s"].astype(np.float64)), t, True)
    sum(v * (want[k] * want[k]).sum() for k, v in scale.items()).backward()
    assert sorted(k for k in got if k != "loss") == sorted(k for k, v in t.items() if v.requires_grad)
    for k, v in t.items():
        if v.requires_grad:
            ref = v.grad.numpy()
            np.testing.assert_allclose(got[k], ref, rtol=1e-4, atol=1e-5 * np.abs(ref).max(), err_msg=k)


def test_a_layer_call_stays_a_layer_and_errors_name_both_forms(tmp_path):
    m = _load(tmp_path, """
model L(x: f32[N, 4, 8, 8]) {
    example N = 2
    param W: f32[4, 4, 1, 1] = kaiming
    a = conv2d(x, 4, 3, padding=1, name="conv")
    b = x |> conv2d(W)
    c = batchnorm(x, name="bn")
    d = layernorm(x, (8,))
    return a, b, c, d
}
""")
    assert {"conv.weight", "conv.bias", "bn.weight", "bn.running_mean", "W"} <= set(m.init_weights(0))
    assert "conv2d(x, @W, none)" in m.ir() and "layer_norm(x, none, none) {normalized_shape=(8,)" in m.ir()
    with pytest.raises(DlcError, match="takes no name") as e:
        _load(tmp_path, "model L(x: f32[2, 4, 8, 8]) {\n    param W: f32[4, 4, 1, 1]\n"
                        "    return conv2d(x, W, name=\"c\")\n}\n", "n.dln")
    assert e.value.span.line == 3
    with pytest.raises(DlcError) as e:
        _load(tmp_path, "model L(x: f32[2, 4, 8, 8]) {\n    return conv2d(x, 4)\n}\n", "s.dln")
    assert "conv2d(x, channels, kernel" in str(e.value) and "conv2d(x, weight, bias=none" in str(e.value)
    with pytest.raises(DlcError, match="bias must be a tensor, got"):
        _load(tmp_path, "model L(x: f32[2, 4, 8, 8]) {\n    param W: f32[4]\n"
                        "    return group_norm(x, 2, W, 3.0)\n}\n", "g.dln")


# ------------------------------------------------------------------ drop_path
DROP = """
model D(x: f32[N, 3, 4]) {
    example N = 200
    param w: f32[3, 4] = uniform(0.5, 1.5)
    y = drop_path(x * w, P)
    z = drop_path(x, 0.5, mode="batch")
    return y, z
}
"""


def _drop(tmp_path, p=0.4, n=200):
    return _load(tmp_path, f"const P = {p}\n" + DROP, f"drop_{p}_{n}.dln", N=n)


def test_drop_path_is_the_identity_in_eval_mode(tmp_path):
    m = _drop(tmp_path)
    assert "dropout" not in m.ir() and "dropout" in m.ir(mode="train")
    x = np.random.default_rng(0).standard_normal((200, 3, 4)).astype(np.float32)
    w = m.init_weights(0)
    out = m.run({"x": x}, w)
    np.testing.assert_array_equal(out["y"], x * w["w"])
    np.testing.assert_array_equal(out["z"], x)


@pytest.mark.parametrize("backend", ["numpy", "torch", "tvm"])
def test_drop_path_drops_whole_samples_scaled_as_torchvision(tmp_path, backend):
    if backend == "tvm":
        pytest.importorskip("tvm")
    m = _drop(tmp_path)
    x = (np.random.default_rng(0).uniform(0.5, 2.0, (200, 3, 4))).astype(np.float32)
    w = m.init_weights(0)
    out = m.run({"x": x}, w, backend=backend, mode="train", seed=5)
    y, ref = out["y"], x * w["w"]
    kept = np.all(np.isclose(y, ref / 0.6, rtol=1e-6), axis=(1, 2))
    dropped = np.all(y == 0, axis=(1, 2))
    assert np.all(kept ^ dropped), "every sample is either dropped whole or kept whole and scaled by 1/(1-p)"
    assert 50 < dropped.sum() < 110         # p = 0.4 of 200: 80 expected, 5 sigma is +-35
    z = out["z"]                            # batch mode: one draw for the whole batch
    assert np.array_equal(z, np.zeros_like(x)) or np.allclose(z, x / 0.5, rtol=1e-6)
    other = m.run({"x": x}, w, backend=backend, mode="train", seed=6)["y"]
    assert not np.array_equal(np.all(other == 0, axis=(1, 2)), dropped), "another run seed, another draw"


def test_drop_path_gradient_is_that_of_a_per_sample_mask(tmp_path):
    """loss = sum(drop_path(x * w)): d/dw = sum over the kept samples of
    x / (1 - p).  Solving for the mask from the gradient gives 0s and 1s; on
    NumPy it is the forward run's mask.  (The torch backend's gradient graph
    draws another stream than its forward run, for dropout too.)"""
    m = _drop(tmp_path, n=8)
    x = np.random.default_rng(1).standard_normal((8, 3, 4)).astype(np.float32)
    w = m.init_weights(0)
    for backend in ("numpy", "torch"):
        g = m.grad({"x": x}, w, mode="train", seed=3, backend=backend)
        keep, *_ = np.linalg.lstsq(x.reshape(8, 12).T.astype(np.float64), g["w"].reshape(12) * 0.6, rcond=None)
        np.testing.assert_allclose(keep, np.round(keep), atol=1e-4, err_msg=backend)
        assert set(np.round(keep)) == {0.0, 1.0}, (backend, keep)
        if backend == "numpy":
            y = m.run({"x": x}, w, mode="train", seed=3)["y"]
            np.testing.assert_array_equal(np.round(keep).astype(bool), np.any(y != 0, axis=(1, 2)))


def test_drop_path_edge_probabilities_and_errors(tmp_path):
    x = np.random.default_rng(0).standard_normal((200, 3, 4)).astype(np.float32)
    for p, check in ((1.0, lambda y, r: np.array_equal(y, np.zeros_like(r))), (0.0, np.array_equal)):
        m = _drop(tmp_path, p=p)
        w = m.init_weights(0)
        assert check(m.run({"x": x}, w, mode="train")["y"], x * w["w"]), p
    assert "dropout" not in _drop(tmp_path, p=0.0).ir(mode="train").split("z =")[0].split("%")[1]
    with pytest.raises(DlcError, match="mode must be one of 'row', 'batch'"):
        _load(tmp_path, "model D(x: f32[2, 3]) {\n    return drop_path(x, 0.1, mode=\"col\")\n}\n", "e.dln")
    with pytest.raises(DlcError, match="between 0 and 1"):
        _load(tmp_path, "model D(x: f32[2, 3]) {\n    return drop_path(x, 1.5)\n}\n", "e2.dln")


def test_every_level_agrees_with_the_float64_reference(tmp_path):
    """dlc verify on numpy and torch at -O0/-O2/-O3, forward and train-mode gradients."""
    rep = dlc.verify(_load(tmp_path, FUNCTIONAL), backends=("numpy", "torch"), levels=(0, 2, 3), train=True,
                     repro_dir=str(tmp_path / "repro"))
    assert rep.ok, rep.render()


def test_batch_norm_told_not_to_train_uses_running_stats_in_both_modes(tmp_path):
    m = _load(tmp_path, """
model B(x: f32[N, 4, 5]) {
    example N = 3
    buffer rm: f32[4] = normal
    buffer rv: f32[4] = uniform(0.5, 1.5)
    return batch_norm(x, rm, rv, training=false)
}
""")
    w = m.init_weights(0)
    x = np.random.default_rng(0).standard_normal((3, 4, 5)).astype(np.float32)
    want = F.batch_norm(torch.from_numpy(x), torch.from_numpy(w["rm"]), torch.from_numpy(w["rv"])).numpy()
    for backend in ("numpy", "torch"):
        for mode in ("eval", "train"):
            got, state = m.run_with_state({"x": x}, w, backend=backend, mode=mode)
            np.testing.assert_allclose(got["output"], want, rtol=1e-5, atol=1e-6, err_msg=f"{backend} {mode}")
            assert not state


def test_the_language_reference_example_runs_as_torch(tmp_path):
    """docs/language.md's functional example (`model Written`) checks and
    matches torch.nn.functional with the same weights."""
    from pathlib import Path
    doc = (Path(__file__).resolve().parents[2] / "docs" / "language.md").read_text()
    start = doc.index("model Written(")
    m = _load(tmp_path, doc[start:doc.index("```", start)])
    w = {k: np.asarray(v) for k, v in m.init_weights(0).items()}
    w["mean"], w["b"] = w["mean"] + 0.5, w["b"] - 0.2
    x = np.random.default_rng(0).standard_normal((2, 3, 16, 16)).astype(np.float32)
    t = {k: torch.from_numpy(v) for k, v in w.items()}
    y = F.conv2d(torch.from_numpy(x), t["W"], t["b"], stride=2, padding=1)
    want = F.relu(F.batch_norm(y, t["mean"], t["var"], t["gamma"], t["beta"])).numpy()
    np.testing.assert_allclose(m.run({"x": x}, w)["output"], want, rtol=1e-5, atol=1e-5)


def test_instance_norm_checks_its_running_statistics(tmp_path):
    with pytest.raises(DlcError, match=r"running_mean f32\[4, 4\] does not match input .*expected shape \[4\]"):
        _load(tmp_path, "model I(x: f32[2, 4, 6, 6]) {\n    param W: f32[4, 4]\n"
                        "    return instance_norm(x, W, W)\n}\n")
