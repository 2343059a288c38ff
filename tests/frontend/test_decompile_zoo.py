"""Every zoo spec: elaborate -> decompile -> elaborate the text -> the same
outputs on the same weights (renamed by `param_names`), and decompiling the
result again gives the same text (a fixed point)."""
from __future__ import annotations

import glob

import numpy as np
import pytest

import dlc
from dlc.api import Model
from dlc.frontend.decompile import decompile

ZOO = sorted(glob.glob("specs/*.dln"))
# small sizes keep the float64 forward passes short; the structure is the full model's
CONSTS = {n: {"size": 64} for n in ("alexnet", "efficientnet_b0", "googlenet", "mobilenet_v2", "resnet18",
                                      "resnet50", "vgg16", "vgg16_bn")}
CONSTS.update({"vit_b16": {"size": 32, "width": 96, "mlp": 192},
               "gpt2_small": {"vocab": 1000, "width": 96}, "bert_base": {"vocab": 1000, "width": 96, "ffn": 192},
               "transformer_base": {"vocab": 1000, "d_model": 64, "d_ff": 128},
               "seq2seq": {"src_vocab": 500, "tgt_vocab": 500, "embed": 32, "hidden": 32}})
DIMS = {"bert_base": {"T": 16}, "gpt2_small": {"T": 16}, "transformer_base": {"S": 12, "T": 16},
        "transformer_encoder_layer": {"T": 16}, "bilstm": {"T": 8}, "rnn_lm": {"T": 8}, "seq2seq": {"S": 6, "T": 8}}
# what the readable spec of each must contain (the readability bar)
READABLE = ["resnet18", "mobilenet_v2", "bert_base", "resnet50", "efficientnet_b0", "googlenet"]


def _stem(path: str) -> str:
    return path.rsplit("/", 1)[-1][:-4]


def quick_weights(g, seed: int = 0) -> dict:
    """Weights of every parameter, scaled so deep nets stay finite (faster than the initialisers)."""
    rng = np.random.default_rng(seed)
    out = {}
    for p in g.params:
        shape = tuple(int(d) for d in p.type.shape)
        if not p.type.dtype.is_float:
            out[p.name] = np.zeros(shape, p.type.dtype.numpy_name)
            continue
        fan = int(np.prod(shape[1:])) if len(shape) > 1 else 1
        w = rng.standard_normal(shape) / np.sqrt(max(fan, 1))
        if p.name.endswith("running_var"):
            w = np.abs(w) + 0.5
        out[p.name] = w.astype(p.type.dtype.numpy_name)
    return out


def roundtrip(path: str, tmp_path):
    stem = _stem(path)
    m = dlc.load(path, bind=CONSTS.get(stem))
    d = decompile(m.symbolic_graph(), name=m.name)
    out = tmp_path / f"{stem}.dln"
    out.write_text(d.text)
    m2 = Model(str(out))
    return m, d, m2


@pytest.mark.parametrize("path", ZOO, ids=_stem)
def test_zoo_roundtrip(path, tmp_path):
    m, d, m2 = roundtrip(path, tmp_path)
    # every parameter of the original has a name in the spec, and the spec has no others
    assert set(d.param_names) == {p.name for p in m.graph.params}
    assert sorted(d.param_names.values()) == sorted(p.name for p in m2.graph.params)
    # types of the renamed parameters agree
    spec_types = {p.name: p.type for p in m2.graph.params}
    for p in m.graph.params:
        assert spec_types[d.param_names[p.name]] == p.type, p.name
    # the same outputs (names and values) on the same weights
    bind = DIMS.get(_stem(path))
    w = quick_weights(m._elaborate("eval", bind))
    inputs = m.random_inputs(0, bind)
    inputs2 = {b.name: inputs[a.name] for a, b in zip(m.graph.inputs, m2.graph.inputs)}
    o1 = m.run(inputs, w, bind=bind, dtype="float64")
    o2 = m2.run(inputs2, {d.param_names[k]: v for k, v in w.items()}, bind=bind, dtype="float64")
    assert list(o1) == list(o2)
    for k in o1:
        assert o1[k].shape == o2[k].shape
        np.testing.assert_allclose(o2[k], o1[k], rtol=1e-12, atol=0)
    # a fixed point: the decompiled spec decompiles to itself
    assert decompile(m2.symbolic_graph(), name=m.name).text == d.text


@pytest.mark.parametrize("stem", READABLE)
def test_readable(stem, tmp_path):
    """No fallback statements, layer calls for the layers, blocks applied in for loops, the graph's names."""
    m, d, _ = roundtrip(f"specs/{stem}.dln", tmp_path)
    assert d.stats["fallback"] == 0
    assert "param " not in d.text and "buffer " not in d.text
    assert d.stats["blocks"] >= 1 and "\nblock " in d.text
    if stem != "googlenet":         # its inception blocks differ in channels but never repeat back to back
        assert d.stats["loops"] >= 1 and "    for " in d.text
    assert all(k == v for k, v in d.param_names.items())
    # every weighted op became a layer call: one name= per layer instance of the spec
    n_layers = sum(1 for ln in d.text.splitlines() for _ in range(ln.count('name="')))
    assert d.stats["layer_calls"] > 0 and n_layers >= d.stats["layer_calls"]
    # each statement carries the type of what it binds (a |> chain on its last line)
    joined = d.text.replace("\n        |> ", " |> ").replace("\n            |> ", " |> ")
    for ln in joined.splitlines():
        s = ln.strip()
        if " = " in s and not s.startswith(("#", "example", "for ")) and not s.endswith("{"):
            assert "# " in ln and "[" in ln.split("# ", 1)[1], ln


def test_resnet18_structure(tmp_path):
    """The stages are one block applied in a loop over their widths; the residual units another."""
    _, d, _ = roundtrip("specs/resnet18.dln", tmp_path)
    text = d.text
    assert "enumerate([128, 256, 512], start=2)" in text
    assert 'name="layer{i}")' in text and 'name="layer1.{i}")' in text
    assert 'conv2d(image, 64, 7, stride=2, padding=3, bias=false, name="conv1")' in text
    assert "global_avgpool(" in text and 'dense(1000, name="fc")' in text


def test_bert_layers_loop(tmp_path):
    _, d, _ = roundtrip("specs/bert_base.dln", tmp_path)
    assert "for i in range(12) {" in d.text
    assert 'name="encoder.layer.{i}")' in d.text
    assert "scaled_dot_product_attention(" in d.text


@pytest.mark.parametrize("stem", ["lenet5", "lstm_cell", "resnet18", "transformer_encoder_layer", "gru_classifier",
                                  "mobilenet_v2"])
def test_opaque_names_fall_back_and_still_match(stem, tmp_path):
    """Weights named `onnx::W_k` and no scopes (an importer that knows nothing of modules): no names to
    recover, so the fallback declares them; the spec still computes the same outputs."""
    from dlc.backends.numpy.interpreter import Interpreter
    from dlc.frontend.decompile import rename_weights
    m = dlc.load(f"specs/{stem}.dln", bind=CONSTS.get(stem))
    g = m._elaborate("eval", DIMS.get(stem))
    w = quick_weights(g)
    inputs = m.random_inputs(0, DIMS.get(stem))
    ref = Interpreter(g).run(inputs, w)[0]
    for k, p in enumerate(g.params):
        w[f"onnx::W_{k}"] = w.pop(p.name)
        p.name = p.param.name = f"onnx::W_{k}"
    for n in g.walk():
        n.scope = ""
    d = decompile(g, name="Opaque")
    path = tmp_path / "o.dln"
    path.write_text(d.text)
    g2 = Model(str(path))._elaborate("eval", DIMS.get(stem))
    out = Interpreter(g2).run({b.name: inputs[a.name] for a, b in zip(g.inputs, g2.inputs)},
                              rename_weights(d, w, g2))[0]
    for k, k2 in zip(ref, out):
        np.testing.assert_allclose(out[k2], ref[k], rtol=1e-12, atol=0)
