"""Sequence / attention / generative zoo specs: published parameter and MAC
counts at full size (from `info()`, which elaborates without running), the
figures derived in each spec's header, `bind` overrides, and a small forward
pass of every spec on the NumPy interpreter."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import dlc
from dlc.frontend.check import check_file

SPECS = Path(__file__).resolve().parents[1] / "specs"

# spec, model (None: the file's last), params, MACs at the example sizes (None: not asserted), relative MAC tolerance
PUBLISHED = [
    ("gpt2_small", None, 124_439_808, 145.8e9, 1e-3),      # at T = 1024
    ("bert_base", "BertBase", 109_482_240, 11.17e9, 1e-3),  # at T = 128
    ("vit_b16", None, 86_567_656, 17.56e9, 1e-3),          # 224 x 224
    ("transformer_base", None, 63_084_544, None, None),
    ("seq2seq", None, 384_144_000, None, None),            # "384M" (Sutskever et al.)
]
# counts derived in the spec headers (exact)
DERIVED = [
    ("rnn_lm", None, 4_090_400, 35 * (80_000 + 2_000_000)),
    ("lstm_tagger", None, 411, None),
    ("gru_classifier", None, 14_858, 8 * 192 * (8 + 64) + 640),
    ("bilstm", None, 3_131_298, 64 * 2 * 512 * ((100 + 128) + (256 + 128)) + 512),
    ("lstm_cell", None, 19_338, 8 * 256 * 72 + 640),
    ("seq2seq", None, 384_144_000, 30 * 8 * 4_000 * 2_000 + 30 * 1_000 * 80_000),
    ("vae", None, 20_564, None),
    ("gan", "Generator", 26_944, None),
    ("gan", "Discriminator", 24_961, None),
    ("transformer_base", None, 63_084_544, None),
]
ALL = sorted({s for s, *_ in PUBLISHED + DERIVED})


@pytest.mark.parametrize("spec", ALL)
def test_spec_checks(spec):
    check_file(str(SPECS / f"{spec}.dln"))      # every model, eval and train mode, and the train section


@pytest.mark.parametrize("spec,model,params,macs,tol", PUBLISHED, ids=[p[0] for p in PUBLISHED])
def test_published_figures(spec, model, params, macs, tol):
    info = dlc.load(SPECS / f"{spec}.dln", model).info()
    assert info["params"] == params
    if macs is not None:
        assert abs(info["macs"] - macs) <= tol * macs, info["macs"]


@pytest.mark.parametrize("spec,model,params,macs", DERIVED, ids=[f"{d[0]}-{d[1]}" for d in DERIVED])
def test_header_figures(spec, model, params, macs):
    info = dlc.load(SPECS / f"{spec}.dln", model).info()
    assert info["params"] == params
    if macs is not None:
        assert info["macs"] == macs


def test_transformer_base_without_embedding():
    m = dlc.load(SPECS / "transformer_base.dln")
    (emb,) = [p for p in m.parameters if p.name == "embedding"]
    assert emb.shape == (37000, 512)                          # one table: source, target and output
    assert m.info()["params"] - 37000 * 512 == 44_140_544
    assert not any("bias" in p.name and p.shape == (37000,) for p in m.parameters)   # no output bias


def test_layer_count_binds():
    per_layer = 7_087_872                                      # GPT-2, BERT and ViT share it
    assert dlc.load(SPECS / "gpt2_small.dln", bind={"layers": 2}).info()["params"] == 124_439_808 - 10 * per_layer
    assert dlc.load(SPECS / "bert_base.dln", "BertBase", bind={"layers": 1}).info()["params"] == \
        109_482_240 - 11 * per_layer
    assert dlc.load(SPECS / "vit_b16.dln", bind={"layers": 3}).info()["params"] == 86_567_656 - 9 * per_layer
    enc, dec = 3_152_384, 4_204_032
    assert dlc.load(SPECS / "transformer_base.dln", bind={"layers": 2}).info()["params"] == \
        63_084_544 - 4 * (enc + dec)


def test_symbolic_lengths_scale_macs():
    m = dlc.load(SPECS / "lstm_cell.dln")                     # scan over a symbolic T
    assert m.info(bind={"T": 100})["macs"] == 100 * 256 * 72 + 640
    g = dlc.load(SPECS / "gpt2_small.dln")
    assert g.info(bind={"T": 128})["params"] == 124_439_808    # positions are a table, not a function of T
    d = 768
    per_layer = 128 * 12 * d * d + 2 * 128 * 128 * d
    assert g.info(bind={"T": 128})["macs"] == 12 * per_layer + 128 * d * 50257


# small forward passes -----------------------------------------------------------
SMALL = {
    "rnn_lm": ({"vocab": 50, "N": 2, "T": 5}, {"logits": (2, 5, 50)}),
    "lstm_tagger": ({"N": 2, "T": 4}, {"tag_scores": (2, 4, 3)}),
    "gru_classifier": ({"N": 2}, {"output": (2, 10)}),
    "bilstm": ({"vocab": 100, "N": 2, "T": 6}, {"logits": (2, 2)}),
    "lstm_cell": ({"N": 2, "T": 5}, {"output": (2, 10)}),
    "seq2seq": ({"src_vocab": 60, "tgt_vocab": 40, "embed": 16, "hidden": 24, "layers": 2, "N": 2, "S": 5,
                 "T": 4}, {"logits": (2, 4, 40)}),
    "transformer_base": ({"layers": 1, "vocab": 100, "N": 2, "S": 5, "T": 4}, {"logits": (2, 4, 100)}),
    "bert_base": ({"layers": 1, "N": 2, "T": 8}, {"hidden": (2, 8, 768), "pooled": (2, 768)}),
    "gpt2_small": ({"layers": 1, "vocab": 1000, "N": 1, "T": 8}, {"logits": (1, 8, 1000)}),
    "vit_b16": ({"layers": 1, "N": 1}, {"logits": (1, 1000)}),
    "vae": ({"N": 2}, {"recon": (2, 64), "mu": (2, 10), "logvar": (2, 10)}),
    "gan": ({"N": 2}, {"fake": (2, 64)}),
}


@pytest.mark.parametrize("spec", sorted(SMALL))
def test_small_forward_is_finite(spec):
    bind, shapes = SMALL[spec]
    outs = dlc.load(SPECS / f"{spec}.dln", bind=bind).run(seed=1)
    assert {k: v.shape for k, v in outs.items()} == shapes
    for v in outs.values():
        assert np.isfinite(v).all()


def test_gan_both_models_run():
    gen = dlc.load(SPECS / "gan.dln", "Generator", bind={"N": 3})
    disc = dlc.load(SPECS / "gan.dln", "Discriminator", bind={"N": 3})
    fake = gen.run(seed=0)["fake"]
    assert ((fake > 0) & (fake < 1)).all()                      # sigmoid pixels
    logit = disc.run({"x": fake}, seed=0)["logit"]
    assert logit.shape == (3, 1) and np.isfinite(logit).all()


def test_seq2seq_decoder_starts_from_the_encoder_state():
    m = dlc.load(SPECS / "seq2seq.dln", bind={"src_vocab": 30, "tgt_vocab": 20, "embed": 8, "hidden": 12,
                                              "layers": 2})
    w = m.init_weights(0)
    rng = np.random.default_rng(0)
    src = rng.integers(0, 30, size=(2, 6))
    tgt = rng.integers(0, 20, size=(2, 3))
    a = m.run({"src": src, "tgt_in": tgt}, w)["logits"]
    b = m.run({"src": (src + 1) % 30, "tgt_in": tgt}, w)["logits"]
    assert a.shape == (2, 3, 20)
    assert not np.allclose(a, b)                               # the source reaches the decoder
    names = {p.name for p in m.parameters}
    assert {"encoder.lstm.weight_ih_l1", "decoder.lstm.weight_hh_l1", "decoder.out.weight"} <= names


def test_bert_classifier_wraps_bert_base():
    m = dlc.load(SPECS / "bert_base.dln", "BertClassifier", bind={"layers": 1})
    names = {p.name for p in m.parameters}
    assert "bert.embeddings.word_embeddings.weight" in names and "classifier.weight" in names
    assert m.info()["params"] == 109_482_240 - 11 * 7_087_872 + 768 * 2 + 2
