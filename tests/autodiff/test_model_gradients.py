"""Whole-model gradients against torch.autograd on functional torch twins.

Each case is a small instance of a zoo family written in .dln with a train
section; the twin recomputes the same loss in torch from the same weights
(by name), and every parameter's gradient must agree within 1e-4 relative
(float32).  Batch norm runs in training mode (batch statistics).
"""
import numpy as np
import pytest

import dlc

torch = pytest.importorskip("torch")
F = torch.nn.functional

CASES = {}


def case(name, spec, inputs, label):
    def deco(fn):
        CASES[name] = (spec, inputs, label, fn)
        return fn
    return deco


rng = np.random.default_rng(0)


@case("mlp", """
model MLP(x: f32[N, 12]) {
    hidden = dense(x, 16) |> relu
    return dense(hidden, 5)
}
train MLP on digits { loss = cross_entropy(output, label, label_smoothing=0.1) }
""", {"x": rng.standard_normal((6, 12))}, rng.integers(0, 5, 6))
def _(w, x, label):
    h = F.relu(F.linear(x["x"], w["hidden.weight"], w["hidden.bias"]))
    return F.cross_entropy(F.linear(h, w["dense.weight"], w["dense.bias"]), label, label_smoothing=0.1)


@case("lenet", """
model LeNet(image: f32[N, 1, 16, 16]) {
    c1 = conv2d(image, 4, kernel=5) |> tanh
    s2 = avgpool2d(c1, 2)
    c3 = conv2d(s2, 6, kernel=3, padding=1) |> tanh
    s4 = maxpool2d(c3, 2) |> flatten
    return dense(s4, 10)
}
train LeNet on digits { loss = cross_entropy(output, label) }
""", {"image": rng.standard_normal((3, 1, 16, 16))}, rng.integers(0, 10, 3))
def _(w, x, label):
    y = torch.tanh(F.conv2d(x["image"], w["c1.weight"], w["c1.bias"]))
    y = F.avg_pool2d(y, 2)
    y = torch.tanh(F.conv2d(y, w["c3.weight"], w["c3.bias"], padding=1))
    y = F.max_pool2d(y, 2).flatten(1)
    return F.cross_entropy(F.linear(y, w["dense.weight"], w["dense.bias"]), label)


def bn(x, w, name):
    return F.batch_norm(x, None, None, w[f"{name}.weight"], w[f"{name}.bias"], training=True)


@case("resnet_block", """
block Basic(c: int, stride: int)(x: f32[N, C, H, W]) {
    y = conv2d(x, c, kernel=3, stride=stride, padding=1, bias=false, name="conv1") |> batchnorm(name="bn1") |> relu
    y = conv2d(y, c, kernel=3, padding=1, bias=false, name="conv2") |> batchnorm(name="bn2")
    short = conv2d(x, c, kernel=1, stride=stride, bias=false, name="down") |> batchnorm(name="downbn")
    return relu(y + short)
}
model Net(x: f32[N, 3, 8, 8]) {
    y = Basic(6, 2)(x, name="block")
    return dense(global_avgpool(y), 4, name="fc")
}
train Net on digits { loss = cross_entropy(output, label) }
""", {"x": rng.standard_normal((4, 3, 8, 8))}, rng.integers(0, 4, 4))
def _(w, x, label):
    x = x["x"]
    y = F.relu(bn(F.conv2d(x, w["block.conv1.weight"], stride=2, padding=1), w, "block.bn1"))
    y = bn(F.conv2d(y, w["block.conv2.weight"], padding=1), w, "block.bn2")
    s = bn(F.conv2d(x, w["block.down.weight"], stride=2), w, "block.downbn")
    y = F.relu(y + s).mean(dim=(2, 3))
    return F.cross_entropy(F.linear(y, w["fc.weight"], w["fc.bias"]), label)


@case("mobilenet_inverted_residual", """
model IR(x: f32[N, 4, 6, 6]) {
    e = conv2d(x, 12, kernel=1, bias=false, name="expand") |> batchnorm(name="bn0") |> relu6
    d = conv2d(e, 12, kernel=3, padding=1, groups=12, bias=false, name="dw") |> batchnorm(name="bn1") |> relu6
    p = conv2d(d, 4, kernel=1, bias=false, name="project") |> batchnorm(name="bn2")
    return x + p
}
train IR on digits { loss = mse(output, label) }
""", {"x": rng.standard_normal((3, 4, 6, 6))}, rng.standard_normal((3, 4, 6, 6)))
def _(w, x, label):
    x = x["x"]
    e = F.relu6(bn(F.conv2d(x, w["expand.weight"]), w, "bn0"))
    d = F.relu6(bn(F.conv2d(e, w["dw.weight"], padding=1, groups=12), w, "bn1"))
    p = bn(F.conv2d(d, w["project.weight"]), w, "bn2")
    return F.mse_loss(x + p, label)


@case("lstm", """
model Tagger(x: f32[N, T, 5]) {
    example T = 4
    ys, state = lstm(x, 6, batch_first=true, name="lstm")
    return dense(ys[:, -1], 3, name="fc")
}
train Tagger on digits { loss = cross_entropy(output, label) }
""", {"x": rng.standard_normal((2, 4, 5))}, rng.integers(0, 3, 2))
def _(w, x, label):
    m = torch.nn.LSTM(5, 6, batch_first=True).double()
    ys, _ = torch.func.functional_call(m, {k: w[f"lstm.{k}"] for k in dict(m.named_parameters())}, (x["x"],))
    return F.cross_entropy(F.linear(ys[:, -1], w["fc.weight"], w["fc.bias"]), label)


@case("gru_bidirectional", """
model Cls(x: f32[N, T, 5]) {
    example T = 3
    ys, h = gru(x, 4, layers=2, bidirectional=true, batch_first=true, name="gru")
    return dense(mean(ys, axis=1), 3, name="fc")
}
train Cls on digits { loss = cross_entropy(output, label) }
""", {"x": rng.standard_normal((2, 3, 5))}, rng.integers(0, 3, 2))
def _(w, x, label):
    m = torch.nn.GRU(5, 4, num_layers=2, bidirectional=True, batch_first=True).double()
    ys, _ = torch.func.functional_call(m, {k: w[f"gru.{k}"] for k in dict(m.named_parameters())}, (x["x"],))
    return F.cross_entropy(F.linear(ys.mean(1), w["fc.weight"], w["fc.bias"]), label)


@case("transformer_causal", """
model Layer(x: f32[N, T, 8]) {
    example T = 5
    a = multihead_attention(x, heads=2, causal=true, name="attn")
    h = layernorm(x + a, name="ln1")
    f = dense(h, 16, name="ff1") |> gelu |> dense(8, name="ff2")
    return layernorm(h + f, name="ln2")
}
train Layer on digits { loss = mse(output, label) }
""", {"x": rng.standard_normal((2, 5, 8))}, rng.standard_normal((2, 5, 8)))
def _(w, x, label):
    x = x["x"]
    N, T, E = x.shape

    def proj(t, n):
        return F.linear(t, w[f"attn.{n}.weight"], w[f"attn.{n}.bias"]).reshape(N, T, 2, 4).transpose(1, 2)
    o = F.scaled_dot_product_attention(proj(x, "q_proj"), proj(x, "k_proj"), proj(x, "v_proj"), is_causal=True)
    a = F.linear(o.transpose(1, 2).reshape(N, T, E), w["attn.out_proj.weight"], w["attn.out_proj.bias"])
    h = F.layer_norm(x + a, (8,), w["ln1.weight"], w["ln1.bias"])
    f = F.linear(F.gelu(F.linear(h, w["ff1.weight"], w["ff1.bias"])), w["ff2.weight"], w["ff2.bias"])
    return F.mse_loss(F.layer_norm(h + f, (8,), w["ln2.weight"], w["ln2.bias"]), label)


@case("vae_fixed_noise", """
model VAE(x: f32[N, 10], eps: f32[N, 3]) {
    h = dense(x, 8, name="enc") |> tanh
    mu = dense(h, 3, name="mu")
    logvar = dense(h, 3, name="logvar")
    z = mu + exp(0.5 * logvar) * eps
    recon = dense(z, 8, name="dec") |> tanh |> dense(10, name="out") |> sigmoid
    return recon, mu, logvar
}
train VAE on digits {
    loss = bce(recon, input, reduction="sum") - 0.5 * sum(1 + logvar - mu ** 2 - exp(logvar))
}
""", {"x": rng.uniform(0, 1, (4, 10)), "eps": rng.standard_normal((4, 3))}, None)
def _(w, x, label):
    h = torch.tanh(F.linear(x["x"], w["enc.weight"], w["enc.bias"]))
    mu = F.linear(h, w["mu.weight"], w["mu.bias"])
    logvar = F.linear(h, w["logvar.weight"], w["logvar.bias"])
    z = mu + torch.exp(0.5 * logvar) * x["eps"]
    r = torch.sigmoid(F.linear(torch.tanh(F.linear(z, w["dec.weight"], w["dec.bias"])), w["out.weight"], w["out.bias"]))
    return F.binary_cross_entropy(r, x["x"], reduction="sum") - 0.5 * torch.sum(1 + logvar - mu ** 2 - logvar.exp())


@case("gan_discriminator_loss", """
model D(x: f32[N, 6]) {
    return dense(x, 5, name="h") |> leaky_relu(0.2) |> dense(1, name="out")
}
model G(z: f32[N, 3]) -> f32[N, 6] {
    return dense(z, 5, name="h") |> relu |> dense(6, name="out") |> tanh
}
model Pair(real: f32[N, 6], z: f32[N, 3]) {
    fake = G(z, name="G")
    dr = D(real, name="Dr")
    df = D(fake, name="Df")
    return dr, df
}
train Pair on digits {
    loss = bce_with_logits(dr, ones_like(dr)) + bce_with_logits(df, zeros_like(df))
}
""", {"real": rng.standard_normal((4, 6)), "z": rng.standard_normal((4, 3))}, None)
def _(w, x, label):
    def D(t, p):
        return F.linear(F.leaky_relu(F.linear(t, w[f"{p}.h.weight"], w[f"{p}.h.bias"]), 0.2), w[f"{p}.out.weight"],
                        w[f"{p}.out.bias"])
    fake = torch.tanh(F.linear(F.relu(F.linear(x["z"], w["G.h.weight"], w["G.h.bias"])), w["G.out.weight"],
                               w["G.out.bias"]))
    dr, df = D(x["real"], "Dr"), D(fake, "Df")
    return (F.binary_cross_entropy_with_logits(dr, torch.ones_like(dr))
            + F.binary_cross_entropy_with_logits(df, torch.zeros_like(df)))


@case("gan_generator_loss", """
model D(x: f32[N, 6]) {
    return dense(x, 5, name="h") |> leaky_relu(0.2) |> dense(1, name="out")
}
model Gen(z: f32[N, 3]) {
    fake = dense(z, 5, name="gh") |> relu |> dense(6, name="gout") |> tanh
    return D(fake, name="D")
}
train Gen on digits { loss = bce_with_logits(output, ones_like(output)) }
""", {"z": rng.standard_normal((4, 3))}, None)
def _(w, x, label):
    fake = torch.tanh(F.linear(F.relu(F.linear(x["z"], w["gh.weight"], w["gh.bias"])), w["gout.weight"], w["gout.bias"]))
    d = F.linear(F.leaky_relu(F.linear(fake, w["D.h.weight"], w["D.h.bias"]), 0.2), w["D.out.weight"], w["D.out.bias"])
    return F.binary_cross_entropy_with_logits(d, torch.ones_like(d))


def _randomise_norms(w, rng):
    for k in w:
        if k.endswith((".bias",)) or (k.endswith(".weight") and w[k].ndim == 1):
            w[k] = (w[k] + rng.standard_normal(w[k].shape) * 0.3).astype(w[k].dtype)
    return w


@pytest.mark.parametrize("name", list(CASES))
def test_model_gradient_matches_torch_autograd(tmp_path, name):
    spec, inputs, label, twin = CASES[name]
    p = tmp_path / f"{name}.dln"
    p.write_text(spec)
    m = dlc.load(p)
    n = next(iter(inputs.values())).shape[0]
    extra = {"T": next(iter(inputs.values())).shape[1]} if "T" in spec.split("train")[0] else {}
    w = _randomise_norms(m.init_weights(seed=2), np.random.default_rng(1))
    ins32 = {k: v.astype(np.float32) for k, v in inputs.items()}
    lab = None if label is None else (label.astype(np.float32) if label.dtype.kind == "f" else label)
    ours = m.grad(ins32, w, label=lab, bind={"N": n, **extra})
    tw = {k: torch.from_numpy(v.astype(np.float64)).requires_grad_(True) for k, v in w.items()
          if v.dtype.kind == "f"}
    tx = {k: torch.from_numpy(v.astype(np.float64)) for k, v in inputs.items()}
    tl = None if label is None else torch.from_numpy(label)
    loss = twin(tw, tx, tl)
    loss.backward()
    assert abs(ours["loss"] - loss.item()) <= 1e-4 * max(1.0, abs(loss.item()))
    checked = 0
    for k, t in tw.items():
        if k not in ours:
            assert t.grad is None or float(t.grad.abs().max()) == 0.0, f"{k}: dlc has no gradient"
            continue
        ref = t.grad.numpy()
        scale = max(1e-3, float(np.abs(ref).max()))
        err = float(np.abs(ours[k] - ref).max()) / scale
        assert err <= 1e-4, f"{name}: gradient of {k} differs from torch by {err:.2e} (relative)"
        checked += 1
    assert checked >= 2
