"""attention: the written-out pattern becomes one scaled_dot_product_attention
node, with the scale, mask and causality the pattern had; the numbers do
not change (float64), and what the op would compute differently is left."""
from __future__ import annotations

import numpy as np
import pytest
from fusion_checks import check_grads, optimized_graph
from harness import check_pass

import dlc

# the zoo's attention blocks (bert/vit self-attention, gpt2 causal, the
# transformer's cross-attention) with the attention written out
HEADS = """
const d = 16
const h = 2

block Split()(x: f32[N, T, d]) -> f32[N, h, T, d / h] {
    return reshape(x, N, T, h, d / h) |> permute(0, 2, 1, 3)
}

model %s(x: f32[N, T, d], mem: f32[N, S, d]) -> f32[N, T, d] {
    example N = 2, T = 5, S = 7
    q = Split()(dense(x, d, name="query"))
    k = Split()(dense(%s, d, name="key"))
    v = Split()(dense(%s, d, name="value"))
    s = %s
    a = %s
    return permute(a, 0, 2, 1, 3) |> reshape(N, T, d) |> dense(d, name="out")
}
"""

FORMS = {
    # bert_base / vit_b16: scores / sqrt(d_head), no mask
    "bert": ("x", "x", "q @ transpose(k, -2, -1) / sqrt(8.0)", "softmax(s, axis=-1) @ v"),
    # gpt2: causal, scale as a multiplication on the left
    "gpt2": ("x", "x", "0.35355339059327373 * (q @ transpose(k, -2, -1))",
             "softmax(where(causal_mask(T), s, -1e999), axis=-1) @ v"),
    # transformer_base decoder: cross-attention over the memory, a float mask
    "cross": ("mem", "mem", "q @ transpose(k, -2, -1) * 0.25", "softmax(s + reshape(mem[:, :, :1] - 1.0, N, 1, 1, S), axis=-1) @ v"),
    # masked_fill form: filled where the mask is true
    "masked_fill": ("x", "x", "q @ transpose(k, -2, -1) / 2.0",
                    "softmax(where(triu(ones(T, T, dtype=bool), k=1), -1e999, s), axis=-1) @ v"),
    # no scale at all (scale 1)
    "unscaled": ("x", "x", "q @ transpose(k, -2, -1)", "softmax(s, axis=-1) @ v"),
}


@pytest.fixture
def write(tmp_path):
    def w(name, text):
        p = tmp_path / f"{name}.dln"
        p.write_text(text)
        return str(p)
    return w


def _form(write, name):
    k, v, s, p = FORMS[name]
    return write(name, HEADS % (name.capitalize().replace("_", ""), k, v, s, p))


def _sdpa(g):
    return [n for n in g.nodes if n.op.name == "scaled_dot_product_attention"]


@pytest.mark.parametrize("name,scale,causal,masked", [
    # the scale as the f32 program holds it: the constant rounded to f32 (1/c for a division)
    ("bert", 1 / float(np.float32(8.0 ** 0.5)), False, False), ("gpt2", float(np.float32(0.35355339059327373)), True, False),
    ("cross", 0.25, False, True), ("masked_fill", 0.5, False, True), ("unscaled", 1.0, False, False)])
def test_each_zoo_form_becomes_one_attention_node(write, name, scale, causal, masked):
    p = _form(write, name)
    before, after = check_pass(p, ["attention"])
    assert "softmax" in before and "scaled_dot_product_attention" not in before
    g = optimized_graph(p, ["attention"])
    (node,) = _sdpa(g)
    assert node.attrs["scale"] == scale
    assert node.attrs["is_causal"] is causal
    assert (node.inputs[3] is not None) is masked
    assert not any(n.op.name in ("softmax", "matmul") for n in g.nodes)
    # the span is the user's line of `@ v`
    assert node.span is not None and node.span.line == 15
    # the forward of a training graph without dropout folds too, and trains the same
    check_pass(p, ["attention"], mode="train")
    check_grads(p, ["attention"])


def test_the_fold_matches_the_op_written_directly(write):
    folded = _form(write, "bert")
    # the op as the user would call it, with the scale the f32 program holds
    scale = repr(1 / float(np.float32(8.0 ** 0.5)))
    direct = write("direct", HEADS % ("Direct", "x", "x", "q", f"scaled_dot_product_attention(q, k, v, scale={scale})"))
    a, b = dlc.load(folded), dlc.load(direct)
    w = {k: v.astype("float64") for k, v in a.init_weights(0).items()}
    x = {k: v.astype("float64") for k, v in a.random_inputs(0).items()}
    ya = a.optimize(passes=["attention"]).run(x, w, dtype="float64")
    yb = b.optimize(level=0).run(x, w, dtype="float64")
    np.testing.assert_allclose(ya["output"], yb["output"], rtol=1e-13, atol=1e-15)


def test_dropout_that_draws_is_not_folded(write):
    k, v, s, p = FORMS["bert"]
    path = write("drop", HEADS % ("Drop", k, v, s, "dropout(softmax(s, axis=-1), 0.1) @ v"))
    assert len(_sdpa(optimized_graph(path, ["attention"], mode="eval"))) == 1    # eval: identity
    assert not _sdpa(optimized_graph(path, ["attention"], mode="train"))
    check_pass(path, ["attention"], mode="train")


@pytest.mark.parametrize("scores,weights", [
    ("q @ transpose(k, -2, -1) / sqrt(8.0)", "softmax(where(causal_mask(T), s, -1e9), axis=-1) @ v"),  # finite fill
    ("q @ transpose(k, -2, -1) * q[:, :, :, :1]", "softmax(s, axis=-1) @ v"),   # scale is not a constant
    ("q @ transpose(k, -2, -1) / sqrt(8.0)", "softmax(s, axis=-2) @ v"),       # not over the keys
    ("q @ transpose(k, -2, -1) / sqrt(8.0) - 1.0", "softmax(s, axis=-1) @ v"),  # a shift is not a mask
], ids=["finite_fill", "tensor_scale", "axis", "shift"])
def test_what_the_op_would_compute_differently_is_left(write, scores, weights):
    path = write("near", HEADS % ("Near", "x", "x", scores, weights))
    assert not _sdpa(optimized_graph(path, ["attention"]))
    check_pass(path, ["attention"])


def test_scores_read_elsewhere_keep_the_pattern(write):
    # the backward of a training graph reads the attention weights: nothing folds there
    g = optimized_graph(_form(write, "bert"), ["attention"], grad=True)
    assert not _sdpa(g)


def test_key_given_transposed_gets_a_transpose(write):
    text = """
model KT(q: f32[N, T, E], kt: f32[N, E, T], v: f32[N, T, E]) -> f32[N, T, E] {
    example N = 2, T = 5, E = 4
    return softmax(q @ kt * 0.5, axis=-1) @ v
}
"""
    p = write("kt", text)
    check_pass(p, ["attention"])
    g = optimized_graph(p, ["attention"])
    (node,) = _sdpa(g)
    assert node.inputs[1].producer.op.name == "transpose"
