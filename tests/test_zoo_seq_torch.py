"""Sequence and generative zoo specs against hand-written PyTorch twins.

For GPT-2 small (2 layers, a few tokens), the LSTM tagger and the VAE (and,
as an extra, the gate-equation LSTM of lstm_cell.dln against nn.LSTM) the
test writes the network out in torch with the spec's parameter names, loads
the weights dlc initialises *by name* with `load_state_dict(strict=True)` --
which proves the names line up one to one -- and compares the outputs of
`Model.run` on the same inputs, in float32 and in float64.

What is compared for the VAE: its noise comes from dlc's seeded generator,
which torch cannot reproduce.  The encoder outputs mu and logvar are compared
directly.  For the reconstruction, the test records the very eps that dlc's
`randn` kernel produced during the run (by wrapping the interpreter's
`call_op`), then computes z = mu + exp(logvar / 2) * eps and the decoder in
torch from torch's own mu and logvar.  So everything but the random number
generator itself is checked.

Untouched LayerNorms and attention biases are ones and zeros, so 1-D
parameters are "livened up" with random values first: every term of every
layer then shows in the outputs.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

import dlc  # noqa: E402

pytestmark = pytest.mark.torch

SPECS = Path(__file__).resolve().parents[1] / "specs"
TOL = {"float32": dict(rtol=1e-4, atol=1e-5), "float64": dict(rtol=1e-9, atol=1e-11)}
TORCH_DTYPE = {"float32": torch.float32, "float64": torch.float64}


def liven(weights: dict, seed: int = 0) -> dict:
    """Random 1-D parameters (LayerNorm scales/shifts, biases) instead of ones and zeros."""
    rng = np.random.default_rng(seed)
    out = {}
    for k, v in weights.items():
        if v.ndim == 1 and v.dtype.kind == "f":
            base = 1.0 if k.endswith("weight") else 0.0
            v = (base + 0.1 * rng.standard_normal(v.shape)).astype(v.dtype)
        out[k] = v
    return out


def load_twin(module: nn.Module, weights: dict, dtype: str) -> nn.Module:
    sd = module.state_dict()
    assert set(sd) == set(weights), (sorted(set(sd) ^ set(weights)))
    module.load_state_dict({k: torch.from_numpy(np.asarray(weights[k], dtype=dtype)) for k in sd}, strict=True)
    return module.to(TORCH_DTYPE[dtype]).eval()


def close(got, want, dtype):
    want = want.detach().numpy() if isinstance(want, torch.Tensor) else want
    assert got.dtype == np.dtype(dtype)
    np.testing.assert_allclose(got, want, **TOL[dtype])


# -------------------------------------------------------------- GPT-2 small
class Attention(nn.Module):
    """Causal multi-head self-attention with q/k/v/out projections, written out."""

    def __init__(self, d, h):
        super().__init__()
        self.h = h
        self.q_proj, self.k_proj, self.v_proj, self.out_proj = (nn.Linear(d, d) for _ in range(4))

    def forward(self, x):
        N, T, D = x.shape
        split = lambda t: t.view(N, T, self.h, D // self.h).transpose(1, 2)  # noqa: E731
        q, k, v = split(self.q_proj(x)), split(self.k_proj(x)), split(self.v_proj(x))
        s = q @ k.transpose(-2, -1) / math.sqrt(D // self.h)
        s = s.masked_fill(~torch.ones(T, T, dtype=torch.bool).tril(), float("-inf"))
        o = torch.softmax(s, dim=-1) @ v
        return self.out_proj(o.transpose(1, 2).reshape(N, T, D))


class GPT2Block(nn.Module):
    def __init__(self, d, h):
        super().__init__()
        self.ln_1 = nn.LayerNorm(d)
        self.attn = Attention(d, h)
        self.ln_2 = nn.LayerNorm(d)
        self.mlp = nn.ModuleDict({"c_fc": nn.Linear(d, 4 * d), "c_proj": nn.Linear(4 * d, d)})

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        m = self.mlp["c_proj"](nn.functional.gelu(self.mlp["c_fc"](self.ln_2(x)), approximate="tanh"))
        return x + m


class GPT2(nn.Module):
    def __init__(self, vocab=50257, positions=1024, d=768, layers=12, heads=12):
        super().__init__()
        self.wte = nn.Parameter(torch.empty(vocab, d))
        self.wpe = nn.Parameter(torch.empty(positions, d))
        self.h = nn.ModuleList(GPT2Block(d, heads) for _ in range(layers))
        self.ln_f = nn.LayerNorm(d)

    def forward(self, ids):
        T = ids.shape[1]
        x = self.wte[ids] + self.wpe[:T]
        for block in self.h:
            x = block(x)
        return self.ln_f(x) @ self.wte.T          # the tied LM head


@pytest.fixture(scope="module")
def gpt2():
    m = dlc.load(SPECS / "gpt2_small.dln", bind={"layers": 2})
    w = liven(m.init_weights(seed=3), seed=4)
    ids = np.random.default_rng(5).integers(0, 50257, size=(2, 7)).astype(np.int64)
    ids[0, 0], ids[1, -1] = 0, 50256                        # both ends of the table
    return m, w, ids


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_gpt2_small_matches_torch(gpt2, dtype):
    m, w, ids = gpt2
    got = m.run({"ids": ids}, w, dtype=dtype)["logits"]
    assert got.shape == (2, 7, 50257)
    twin = load_twin(GPT2(layers=2), w, dtype)
    with torch.no_grad():
        want = twin(torch.from_numpy(ids))
    close(got, want, dtype)


def test_gpt2_small_is_causal(gpt2):
    m, w, ids = gpt2
    other = ids.copy()
    other[:, -1] = (other[:, -1] + 1) % 50257               # change only the last token
    a = m.run({"ids": ids}, w)["logits"]
    b = m.run({"ids": other}, w)["logits"]
    np.testing.assert_array_equal(a[:, :-1], b[:, :-1])
    assert not np.allclose(a[:, -1], b[:, -1])


# -------------------------------------------------------------- LSTM tagger
class LSTMTagger(nn.Module):  # the PyTorch tutorial's, batch-first
    def __init__(self, embedding_dim=6, hidden_dim=6, vocab_size=9, tagset_size=3):
        super().__init__()
        self.word_embeddings = nn.Embedding(vocab_size, embedding_dim)
        self.lstm = nn.LSTM(embedding_dim, hidden_dim, batch_first=True)
        self.hidden2tag = nn.Linear(hidden_dim, tagset_size)

    def forward(self, sentence):
        lstm_out, _ = self.lstm(self.word_embeddings(sentence))
        return nn.functional.log_softmax(self.hidden2tag(lstm_out), dim=-1)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_lstm_tagger_matches_torch(dtype):
    m = dlc.load(SPECS / "lstm_tagger.dln")
    w = liven(m.init_weights(seed=1), seed=2)
    sentence = np.random.default_rng(0).integers(0, 9, size=(3, 11)).astype(np.int64)
    got = m.run({"sentence": sentence}, w, dtype=dtype)["tag_scores"]
    assert got.shape == (3, 11, 3)
    twin = load_twin(LSTMTagger(), w, dtype)
    with torch.no_grad():
        want = twin(torch.from_numpy(sentence))
    close(got, want, dtype)
    np.testing.assert_allclose(np.exp(got).sum(-1), 1.0, rtol=1e-5)


# -------------------------------------------------------------- VAE
class VAE(nn.Module):
    def __init__(self, features=64, hidden=128, latent=10):
        super().__init__()
        self.encoder = nn.ModuleDict({"fc1": nn.Linear(features, hidden), "fc21": nn.Linear(hidden, latent),
                                      "fc22": nn.Linear(hidden, latent)})
        self.decoder = nn.ModuleDict({"fc3": nn.Linear(latent, hidden), "fc4": nn.Linear(hidden, features)})

    def encode(self, x):
        h = torch.tanh(self.encoder["fc1"](x))
        return self.encoder["fc21"](h), self.encoder["fc22"](h)

    def decode(self, z):
        return torch.sigmoid(self.decoder["fc4"](torch.tanh(self.decoder["fc3"](z))))


def run_recording_noise(monkeypatch, m, inputs, w, **kw):
    """Run the model; return its outputs and the arrays its `randn` nodes produced."""
    from dlc.backends.numpy.interpreter import Interpreter
    drawn = []
    original = Interpreter.call_op

    def call_op(self, name, args, attrs):
        out = original(self, name, args, attrs)
        if name == "randn":
            drawn.append(np.array(out))
        return out

    monkeypatch.setattr(Interpreter, "call_op", call_op)
    outs = m.run(inputs, w, **kw)
    monkeypatch.setattr(Interpreter, "call_op", original)
    return outs, drawn


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_vae_matches_torch_with_dlc_noise(monkeypatch, dtype):
    m = dlc.load(SPECS / "vae.dln")
    w = liven(m.init_weights(seed=7), seed=8)
    x = np.random.default_rng(9).random((16, 64)).astype(np.float32)     # pixels in [0, 1]
    outs, drawn = run_recording_noise(monkeypatch, m, {"x": x}, w, dtype=dtype, seed=11)
    assert len(drawn) == 1 and drawn[0].shape == (16, 10)
    eps = drawn[0]
    twin = load_twin(VAE(), w, dtype)
    with torch.no_grad():
        mu, logvar = twin.encode(torch.from_numpy(x.astype(dtype)))
        z = mu + torch.exp(0.5 * logvar) * torch.from_numpy(eps.astype(dtype))
        recon = twin.decode(z)
    close(outs["mu"], mu, dtype)
    close(outs["logvar"], logvar, dtype)
    close(outs["recon"], recon, dtype)


def test_vae_noise_is_seeded_standard_normal(monkeypatch):
    m = dlc.load(SPECS / "vae.dln", bind={"N": 512})
    w = m.init_weights(seed=0)
    x = np.random.default_rng(1).random((512, 64)).astype(np.float32)
    a, (eps_a,) = run_recording_noise(monkeypatch, m, {"x": x}, w, seed=1)
    b, (eps_b,) = run_recording_noise(monkeypatch, m, {"x": x}, w, seed=1)
    c, (eps_c,) = run_recording_noise(monkeypatch, m, {"x": x}, w, seed=2)
    np.testing.assert_array_equal(eps_a, eps_b)              # same seed, same sample
    np.testing.assert_array_equal(a["recon"], b["recon"])
    assert not np.allclose(eps_a, eps_c)                      # another seed, another sample
    np.testing.assert_array_equal(a["mu"], c["mu"])           # the encoder is deterministic
    assert not np.allclose(a["recon"], c["recon"])
    assert abs(eps_a.mean()) < 0.05 and abs(eps_a.std() - 1.0) < 0.05


# -------------------------------------------------------------- lstm_cell.dln vs nn.LSTM
class GateLSTM(nn.Module):
    """nn.LSTM + Linear, for the scan-based LSTM of lstm_cell.dln."""

    def __init__(self, features=8, hidden=64, classes=10):
        super().__init__()
        self.lstm = nn.LSTM(features, hidden, batch_first=True)
        self.fc = nn.Linear(hidden, classes)

    def forward(self, x):
        _, (h, _) = self.lstm(x)
        return self.fc(h[0])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_lstm_cell_scan_matches_nn_lstm(dtype):
    m = dlc.load(SPECS / "lstm_cell.dln")
    w = liven(m.init_weights(seed=0), seed=1)
    rows = np.random.default_rng(2).standard_normal((3, 13, 8)).astype(np.float32)   # T = 13, not the example 8
    got = m.run({"rows": rows}, w, dtype=dtype)["output"]
    twin = GateLSTM().to(TORCH_DTYPE[dtype]).eval()
    H = 64
    W, b = w["cell.W"].astype(dtype), w["cell.b"].astype(dtype)
    with torch.no_grad():       # W = [W_ih | W_hh], b = b_ih + b_hh (split as b and 0)
        twin.lstm.weight_ih_l0.copy_(torch.from_numpy(W[:, :8]))
        twin.lstm.weight_hh_l0.copy_(torch.from_numpy(W[:, 8:]))
        twin.lstm.bias_ih_l0.copy_(torch.from_numpy(b))
        twin.lstm.bias_hh_l0.zero_()
        twin.fc.weight.copy_(torch.from_numpy(w["fc.weight"].astype(dtype)))
        twin.fc.bias.copy_(torch.from_numpy(w["fc.bias"].astype(dtype)))
        want = twin(torch.from_numpy(rows.astype(dtype)))
    assert W.shape == (4 * H, 8 + H)
    close(got, want, dtype)
