"""Graphs the frontend would not build (as the ONNX importer makes them):
odd parameter names, shared weights, ops with no layer, and what no spec can say."""
from __future__ import annotations

import numpy as np
import pytest

from dlc.api import Model
from dlc.backends.numpy.interpreter import Interpreter
from dlc.compiler.builder import Builder
from dlc.compiler.dims import Dim
from dlc.compiler.ir import Graph, Init, ParamInfo
from dlc.compiler.types import DType, TensorType
from dlc.errors import DlcError
from dlc.frontend.decompile import decompile, rename_weights

F32 = DType.f32


def _param(g, name, shape, buffer=False):
    return g.add_param(ParamInfo(name, Init("zeros")), TensorType(F32, tuple(shape)), buffer=buffer)


def imported_graph() -> Graph:
    """conv (ONNX-style names) -> bn -> relu -> flatten -> a linear whose weight is shared -> where/cast/scalar ops."""
    g = Graph("torch_jit")
    N = Dim.symbol("batch")
    g.dims = {"batch": 2}
    x = g.add_input("input.1", TensorType(F32, (N, 3, 6, 6)))
    w = _param(g, "onnx::Conv_193", (4, 3, 3, 3))
    cb = _param(g, "onnx::Conv_194", (4,))
    gamma, beta = _param(g, "bn.scale", (4,)), _param(g, "bn.B", (4,))
    rm, rv = _param(g, "bn.mean", (4,), True), _param(g, "bn.var", (4,), True)
    fc = _param(g, "fc.weight", (4, 144))
    tied = _param(g, "shared", (144, 144))
    b = Builder(g)
    y = b.op("conv2d", x, w, cb, stride=(1, 1), padding=(1, 1), dilation=(1, 1), groups=1)
    y, _, _ = b.op("batch_norm", y, rm, rv, gamma, beta, training=False, momentum=0.1, eps=1e-3)
    y = b.op("relu", y)
    flat = b.op("reshape", y, shape=(N, 144))
    h = b.op("linear", flat, tied, None)
    h = b.op("linear", h, tied, None)              # the same weight twice: no layer call can own it
    h = b.op("mul", h, b.const(0.25))
    pos = b.op("gt", h, b.const(0.0))
    h = b.op("where", pos, h, b.op("neg", h))
    logits = b.op("linear", h, fc, None)
    idx = b.op("argmax", logits, axis=1, keepdims=False)
    g.outputs = [logits, b.op("cast", idx, dtype="int32")]
    g.output_names = ["logits", "class.id"]
    return g


def _weights(g, seed=0):
    rng = np.random.default_rng(seed)
    w = {p.name: rng.standard_normal(tuple(int(d) for d in p.type.shape)) * 0.3 for p in g.params}
    w["bn.var"] = np.abs(w["bn.var"]) + 0.5
    return w


def test_imported_graph_roundtrip(tmp_path):
    g = imported_graph()
    d = decompile(g, name="imported")
    path = tmp_path / "imported.dln"
    path.write_text(d.text)
    m = Model(str(path))
    # the conv and batch norm are layer calls, named from the paths their weights give
    assert 'conv2d(input_1, 4, 3, padding=1, name="onnx_Conv_193")' in d.text
    assert 'batchnorm(eps=0.001, name="bn")' in d.text
    assert d.param_names["bn.scale"] == "bn.weight" and d.param_names["bn.var"] == "bn.running_var"
    # a linear with its own conforming weight is a dense layer
    assert 'dense(4, bias=false, name="fc")' in d.text and d.param_names["fc.weight"] == "fc.weight"
    assert d.param_names["onnx::Conv_193"] == "onnx_Conv_193.weight"
    assert d.param_names["onnx::Conv_194"] == "onnx_Conv_193.bias"
    # the shared weight is declared once and used by two functional linears: the fallback
    assert d.text.count("param shared: f32[144, 144]") == 1 and d.text.count("linear(") >= 2
    assert d.stats["fallback"] >= 3
    # the odd output name becomes an identifier; the dims keep their names
    assert "example batch = 2" in d.text and "class_id" in d.text
    # same outputs on the same weights
    w = _weights(g)
    x = np.random.default_rng(1).standard_normal((2, 3, 6, 6))
    ref = Interpreter(g, dims={"batch": 2}).run({"input.1": x}, w)[0]
    names = {p.name for p in m.graph.params}
    # the buffer the batchnorm layer adds that the import lacked comes as zeros
    w2 = rename_weights(d, w, m.graph)
    assert set(w2) == names and set(w2) - {d.param_names[k] for k in w} == {"bn.num_batches_tracked"}
    # both graphs through the same interpreter, unoptimised: the same ops give the same numbers
    out = Interpreter(m.symbolic_graph(), dims={"batch": 2}).run({m.graph.inputs[0].name: x}, w2)[0]
    np.testing.assert_allclose(out["logits"], ref["logits"], rtol=1e-12)
    np.testing.assert_array_equal(out["class_id"], ref["class.id"])
    # and the spec is a fixed point
    assert decompile(m.symbolic_graph(), name="imported").text == d.text


def test_every_param_is_kept_even_unused(tmp_path):
    g = imported_graph()
    _param(g, "orphan.table", (3, 3), buffer=True)
    d = decompile(g, name="Net")
    assert d.param_names["orphan.table"] == "orphan_table"
    assert "buffer orphan_table: f32[3, 3]" in d.text
    path = tmp_path / "n.dln"
    path.write_text(d.text)
    assert "orphan_table" in {p.name for p in Model(str(path)).graph.params}


def test_pass_made_ops_are_a_located_error():
    g = Graph("q")
    x = g.add_input("x", TensorType(F32, (2, 4)))
    b = Builder(g)
    q = b.op("quantize_linear", x, b.const(0.1), b.const(0, "uint8"), dtype="uint8")
    g.outputs = [b.op("dequantize_linear", q, b.const(0.1), b.const(0, "uint8"))]
    with pytest.raises(DlcError, match="quantize_linear"):
        decompile(g)


def test_conv_with_computed_weight_is_a_clear_error():
    g = Graph("c")
    x = g.add_input("x", TensorType(F32, (1, 2, 4, 4)))
    w = _param(g, "w", (2, 2, 1, 1))
    b = Builder(g)
    g.outputs = [b.op("conv2d", x, b.op("mul", w, b.const(2.0)), None, stride=(1, 1), padding=(0, 0),
                      dilation=(1, 1), groups=1)]
    with pytest.raises(DlcError, match="conv2d"):
        decompile(g)


def test_names_from_scopes_when_params_are_opaque(tmp_path):
    """An importer's weights named `onnx::...` inside scoped nodes (torch.onnx's module paths): the layers
    take the scopes' names, so the blocks, loops and the spec's parameter names are recovered."""
    import dlc
    g = dlc.load("specs/resnet18.dln", bind={"size": 32}).symbolic_graph()
    orig = {}
    for k, p in enumerate(g.params):
        if p.name.endswith("num_batches_tracked"):
            continue
        orig[f"onnx::P_{k}"] = p.name
        p.name = p.param.name = f"onnx::P_{k}"
    g.params = [p for p in g.params if not p.name.endswith("num_batches_tracked")]
    d = decompile(g, name="ResNet18")
    assert {k: d.param_names[k] for k in orig} == orig
    assert d.stats["blocks"] >= 2 and d.stats["loops"] >= 2 and d.stats["fallback"] == 0
    path = tmp_path / "r.dln"
    path.write_text(d.text)
    m = Model(str(path))
    assert {p.name for p in m.graph.params} - set(orig.values()) == {
        p for p in (q.name for q in m.graph.params) if p.endswith("num_batches_tracked")}


def test_shared_bias_is_untied(tmp_path):
    """torch.onnx folds batch norms into convs and shares one zero bias between many: each conv stays a
    plain layer call with its own bias, `copies` says which graph weight fills the others."""
    g = Graph("folded")
    x = g.add_input("x", TensorType(F32, (2, 4, 5, 5)))
    bias = _param(g, "onnx::Conv_7", (4,))
    b = Builder(g)
    h = x
    for k in range(3):
        w1, w2 = _param(g, f"onnx::Conv_{10 + 2 * k}", (4, 4, 3, 3)), _param(g, f"onnx::Conv_{11 + 2 * k}", (4, 4, 3, 3))
        conv = dict(stride=(1, 1), padding=(1, 1), dilation=(1, 1), groups=1)
        y = Builder(g, scope=f"blocks.{k}.conv1").op("conv2d", h, w1, bias, **conv)
        y = Builder(g, scope=f"blocks.{k}").op("relu", y)
        y = Builder(g, scope=f"blocks.{k}.conv2").op("conv2d", y, w2, bias, **conv)
        h = b.op("relu", b.op("add", y, h))
    g.outputs, g.output_names = [h], ["y"]
    d = decompile(g, name="Folded")
    assert "param " not in d.text and d.stats["fallback"] == 0
    assert "for i in range(3) {" in d.text and 'name="blocks.{i}")' in d.text
    assert d.param_names["onnx::Conv_10"] == "blocks.0.conv1.weight"
    assert d.param_names["onnx::Conv_7"] == "blocks.0.conv1.bias"
    assert d.copies == {f"blocks.{k}.conv{j}.bias": "onnx::Conv_7" for k in range(3) for j in (1, 2)
                        if (k, j) != (0, 1)}
    path = tmp_path / "f.dln"
    path.write_text(d.text)
    m = Model(str(path))
    w = _weights_plain(g)
    xin = np.random.default_rng(3).standard_normal((2, 4, 5, 5))
    ref = Interpreter(g).run({"x": xin}, w)[0]["y"]
    out = Interpreter(m.symbolic_graph()).run({"x": xin}, rename_weights(d, w, m.graph))[0]["y"]
    np.testing.assert_allclose(out, ref, rtol=1e-12)


def _weights_plain(g, seed=0):
    rng = np.random.default_rng(seed)
    return {p.name: rng.standard_normal(tuple(int(d) for d in p.type.shape)) * 0.3 for p in g.params}


def test_infinite_constants_are_written(tmp_path):
    """A causal mask's -inf (as exporters write it) comes back as -inf."""
    g = Graph("mask")
    x = g.add_input("scores", TensorType(F32, (2, 3, 3)))
    b = Builder(g)
    keep = b.op("tril", b.op("full", shape=(3, 3), value=1.0, dtype="bool"), k=0)
    g.outputs, g.output_names = [b.op("where", keep, x, b.const(float("-inf")))], ["masked"]
    d = decompile(g, name="Mask")
    assert "-1e999" in d.text
    path = tmp_path / "m.dln"
    path.write_text(d.text)
    m = Model(str(path))
    xin = np.random.default_rng(0).standard_normal((2, 3, 3))
    out = Interpreter(m.symbolic_graph()).run({"scores": xin}, {})[0]["masked"]
    np.testing.assert_array_equal(out, np.where(np.tril(np.ones((3, 3), bool)), xin, -np.inf))


def test_train_mode_graph_is_refused():
    import dlc
    g = dlc.load("specs/mlp.dln")._elaborate("train")
    with pytest.raises(DlcError, match="train mode"):
        decompile(g)
