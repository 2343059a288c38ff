"""The generated nn.Module calls F.scaled_dot_product_attention for attention:
the zoo transformers (which use dlc's attention op) and attention written out
in a spec (QK^T, scale, mask, softmax, dropout, .V), which the generator
recognises in the module graph.  The module stays equal to the NumPy
reference, loads dlc's state_dict strictly, and trains."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

import dlc  # noqa: E402
from dlc.backends.torch import TorchBackend, generate_module, load_module  # noqa: E402

pytestmark = pytest.mark.torch

ROOT = Path(__file__).resolve().parents[3]
SDPA = "F.scaled_dot_product_attention("

# bert_base with its attention written out as Hugging Face's BertSelfAttention
# does it (scores / sqrt(head size), softmax, attention-probability dropout 0.1)
_BERT_SDPA = "    a = scaled_dot_product_attention(q, k, v)                 # f32[N, h, T, d/h]\n"
_BERT_WRITTEN = ("    s = q @ transpose(k, 2, 3) / sqrt(d / h)\n"
                 "    p = softmax(s, axis=-1) |> dropout(0.1)\n"
                 "    a = p @ v\n")


def bert_written(layers: int = 1, name: str = "BertClassifier") -> dlc.Model:
    text = (ROOT / "specs/bert_base.dln").read_text()
    assert _BERT_SDPA in text
    return dlc.Model("bert_written.dln", name=name, text=text.replace(_BERT_SDPA, _BERT_WRITTEN),
                     bind={"layers": layers, "vocab": 1000, "T": 16})


# the other forms: a float mask added, a bool mask through where(-inf), the
# scale as a product, a key made transposed, and weights that escape (no SDPA)
FORMS = """
model Forms(x: f32[N, T, 16], bias: f32[N, 1, T, T]) -> (f32[N, 2, T, 8], f32[N, 2, T, 8], f32[N, 2, T, 8],
                                                         f32[N, 2, T, T]) {
    example N = 2, T = 5
    q = dense(x, 16, name="q") |> reshape(N, T, 2, 8) |> permute(0, 2, 1, 3)
    k = dense(x, 16, name="k") |> reshape(N, T, 2, 8) |> permute(0, 2, 1, 3)
    kt = dense(x, 16, name="kt") |> reshape(N, T, 2, 8) |> permute(0, 2, 3, 1)
    v = dense(x, 16, name="v") |> reshape(N, T, 2, 8) |> permute(0, 2, 1, 3)
    added = softmax(q @ transpose(k, 2, 3) / sqrt(8.0) + bias, axis=-1) |> dropout(0.25)
    first = added @ v
    keep = reshape(arange(T), T, 1) >= reshape(arange(T), 1, T)
    causal = softmax(where(keep, 0.5 * (q @ kt), -1e39), axis=3) @ v     # -1e39: -inf in float32
    w = softmax(q @ transpose(k, 2, 3), axis=-1)
    shown = w @ v
    return first, causal, shown, w
}
"""


def _forms():
    return dlc.Model("forms.dln", text=FORMS)


def _inputs(m, seed=1, **sizes):
    return m.random_inputs(seed, sizes or None)


def _eval_equals_numpy(m, dtype=None, rtol=1e-4, seed=1):
    x = _inputs(m, seed)
    w = m.init_weights(0)
    ref = m.run(x, w, dtype=dtype)
    got = TorchBackend.run(m, x, w, mode="eval", dtype=dtype)
    assert set(got) == set(ref)
    for k in ref:
        err = float(np.max(np.abs(got[k].astype(np.float64) - ref[k])))
        scale = float(np.max(np.abs(ref[k])))
        assert err <= rtol * scale + (1e-6 if dtype is None else 1e-13), f"{k}: {err:.3g} at scale {scale:.3g}"


# ---------------------------------------------------------------- attention written out
def test_written_out_attention_is_one_sdpa_call():
    src = generate_module(_forms())
    fwd = src[src.index("def forward"):]
    calls = [ln for ln in fwd.splitlines() if SDPA in ln]
    assert len(calls) == 2, fwd
    first, causal = calls
    assert re.search(r"attn_mask=bias, dropout_p=0\.25 if self\.training else 0\.0, scale=0\.35355", first)
    # the key made transposed ([N, h, E, S]) is transposed back; the bool mask is kept as it is
    assert re.search(r"\(q, kt\.transpose\(-2, -1\), v, attn_mask=keep\w*, scale=0\.5\)", causal), causal
    # the weights the model returns are computed as written, and so is their product with v
    assert fwd.count("torch.softmax(") == 1 and "torch.where(" not in fwd


@pytest.mark.parametrize("dtype", [None, "float64"])
def test_written_out_attention_equals_numpy(dtype):
    _eval_equals_numpy(_forms(), dtype, rtol=1e-4 if dtype is None else 1e-12)


def test_written_out_bert_uses_sdpa_and_equals_numpy():
    m = bert_written()
    src = generate_module(m)
    assert SDPA in src and "softmax" not in src
    assert re.search(r"dropout_p=0\.1 if self\.training else 0\.0, scale=0\.125\)", src)
    _eval_equals_numpy(m)
    _eval_equals_numpy(m, "float64", rtol=1e-12)


def _train_step(m, net, batch=2, steps=1):
    """One SGD step in train mode; returns the gradients by name."""
    g = m._elaborate("train", {"N": batch})
    args = [torch.from_numpy(a) for a in (m.random_inputs(3, {"N": batch})[v.name] for v in g.inputs)]
    net.train()
    opt = torch.optim.SGD(net.parameters(), lr=1e-3)
    out = net(*args)
    out = out[0] if isinstance(out, tuple) else out
    loss = out.float().square().mean()
    opt.zero_grad()
    loss.backward()
    grads = {k: p.grad.clone() for k, p in net.named_parameters() if p.grad is not None}
    opt.step()
    return grads, args


def test_written_out_bert_loads_strictly_and_trains():
    m = bert_written()
    w = m.init_weights(0)
    net = load_module(m)
    net.load_state_dict({k: torch.from_numpy(v) for k, v in w.items()}, strict=True)
    assert set(net.state_dict()) == set(w)
    grads, args = _train_step(m, net)
    q = "bert.encoder.layer.0.attention.self.query.weight"
    assert q in grads and float(grads[q].abs().max()) > 0
    assert all(torch.isfinite(g).all() for g in grads.values())
    # train mode drops attention weights (torch's generator): two calls differ, eval calls agree
    torch.manual_seed(0)
    a = net(*args)
    b = net(*args)
    assert not torch.equal(a, b)
    net.eval()
    with torch.no_grad():
        assert torch.equal(net(*args), net(*args))


# ---------------------------------------------------------------- the zoo transformers
ZOO = [("bert_base", "BertClassifier", {"layers": 1, "vocab": 1000, "T": 16}),
       ("gpt2_small", "GPT2", {"layers": 1, "vocab": 1000, "T": 16})]


@pytest.mark.parametrize("spec, name, consts", ZOO, ids=[z[0] for z in ZOO])
def test_zoo_transformers_use_sdpa_equal_numpy_load_and_train(spec, name, consts):
    m = dlc.load(ROOT / f"specs/{spec}.dln", name, bind=consts)
    src = generate_module(m)
    assert SDPA in src and "softmax" not in src
    _eval_equals_numpy(m)
    w = m.init_weights(0)
    net = load_module(m)
    net.load_state_dict({k: torch.from_numpy(v) for k, v in w.items()}, strict=True)
    grads, _ = _train_step(m, net)
    assert grads and all(torch.isfinite(g).all() for g in grads.values())
