"""Import-time patterns (dlc/frontend/onnx/patterns.py): the chains an exporter writes for gelu,
a NaN-propagating max, scaled-dot-product attention and a Gather's index wrap become the ops again,
computing what the chain computed; a chain that differs in one constant stays as it is."""
from __future__ import annotations

import math

import numpy as np
import pytest
from onnx import TensorProto, helper

ort = pytest.importorskip("onnxruntime")

import dlc
from dlc.backends.onnx import export_graph
from dlc.frontend.onnx import import_onnx
from dlc.onnx_export_cli import forward_graph
from dlc.onnx_import import run_imported


def _export(tmp_path, sig: str, body: str):
    p = tmp_path / "p.dln"
    p.write_text(f"model P({sig}) {{\n{body}\n}}\n")
    m = dlc.load(str(p))
    w = m.init_weights(0)
    return m, w, export_graph(forward_graph(m), w)


def _check(proto, feed, ops_in=(), ops_out=()):
    """Import `proto`; its graph has `ops_in` and none of `ops_out`, and equals onnxruntime on numpy."""
    ref = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feed)
    imp = import_onnx(proto)
    ops = [n.op.name for n in imp.graph.nodes]
    for op in ops_in:
        assert op in ops, (op, ops)
    for op in ops_out:
        assert op not in ops, (op, ops)
    got = run_imported(imp, feed, "numpy")
    for a, b in zip(ref, got.values()):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6)
    return imp


@pytest.mark.parametrize("approx", ["none", "tanh"])
def test_exported_gelu_imports_as_gelu(tmp_path, approx):
    _, _, proto = _export(tmp_path, "x: f32[2, 8]", f'    return gelu(x, approximate="{approx}")')
    assert "Erf" in {n.op_type for n in proto.graph.node} or "Tanh" in {n.op_type for n in proto.graph.node}
    x = np.random.default_rng(0).standard_normal((2, 8)).astype(np.float32) * 3
    imp = _check(proto, {"x": x}, ["gelu"], ["erf", "tanh", "mul"])
    (g,) = [n for n in imp.graph.nodes if n.op.name == "gelu"]
    assert g.attrs["approximate"] == approx


def _gelu_model(half: float):
    """torch.onnx's gelu: x / sqrt(2) -> Erf -> + 1 -> * x -> * half."""
    c = lambda n, v: helper.make_tensor(n, TensorProto.FLOAT, [], [v])
    nodes = [helper.make_node("Div", ["x", "sqrt2"], ["a"]), helper.make_node("Erf", ["a"], ["b"]),
             helper.make_node("Add", ["b", "one"], ["c"]), helper.make_node("Mul", ["x", "c"], ["d"]),
             helper.make_node("Mul", ["d", "half"], ["y"])]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3, 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3, 4])],
                          [c("sqrt2", math.sqrt(2.0)), c("one", 1.0), c("half", half)])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def test_torch_style_gelu_imports_as_gelu_and_a_wrong_constant_stays_a_chain():
    x = np.random.default_rng(1).standard_normal((3, 4)).astype(np.float32)
    _check(_gelu_model(0.5), {"x": x}, ["gelu"], ["erf"])
    _check(_gelu_model(0.6), {"x": x}, ["erf"], ["gelu"])     # not gelu: computed as written


def test_nan_propagating_max_imports_as_one_max(tmp_path):
    _, _, proto = _export(tmp_path, "x: f32[3, 5]", "    return max(x, axis=1)")
    assert "IsNaN" in {n.op_type for n in proto.graph.node}
    x = np.random.default_rng(2).standard_normal((3, 5)).astype(np.float32)
    x[1, 2] = np.nan
    imp = _check(proto, {"x": x}, ["max"], ["ne", "where"])
    assert [n.op.name for n in imp.graph.nodes] == ["max"]


ATTN = [("causal=true", True, None, False), ("", False, None, False), ("scale=0.3", False, 0.3, False),
        ("mask=m", False, None, True), ("mask=m, causal=false", False, None, True)]


@pytest.mark.parametrize("kw,causal,scale,masked", ATTN, ids=[a[0] or "plain" for a in ATTN])
def test_exported_attention_imports_as_sdpa(tmp_path, kw, causal, scale, masked):
    sig = "q: f32[2, 3, 5, 4], k: f32[2, 3, 6, 4], v: f32[2, 3, 6, 4]" + (", m: bool[5, 6]" if masked else "")
    args = "q, k, v" + (", " + kw if kw else "")
    if causal:
        sig = sig.replace("6", "5")
    _, _, proto = _export(tmp_path, sig, f"    return scaled_dot_product_attention({args})")
    rng = np.random.default_rng(3)
    feed = {i.name: rng.standard_normal([d.dim_value for d in i.type.tensor_type.shape.dim]).astype(np.float32)
            for i in proto.graph.input if i.name != "m"}
    if masked:
        m = rng.random((5, 6)) > 0.4
        m[0] = False        # a fully masked row: zeros, as dlc's attention gives
        feed["m"] = m
    imp = _check(proto, feed, ["scaled_dot_product_attention"], ["exp", "softmax", "matmul"])
    (n,) = [n for n in imp.graph.nodes if n.op.name == "scaled_dot_product_attention"]
    assert n.attrs["is_causal"] == causal and n.attrs["scale"] == scale
    assert (n.inputs[3] is not None) == masked


def test_a_wrapped_index_is_not_wrapped_again(tmp_path):
    body = "    i = where(ids < 0, ids + 10, ids)\n    return embedding(i, 10, 4, name=\"emb\")"
    _, _, proto = _export(tmp_path, "ids: i64[2, 3]", body)
    ids = np.array([[1, -2, 3], [0, 9, -10]])
    ref = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"ids": ids})
    imp = import_onnx(proto)
    assert [n.op.name for n in imp.graph.nodes].count("where") == 1
    np.testing.assert_allclose(next(iter(run_imported(imp, {"ids": ids}).values())), ref[0], rtol=1e-6)


def test_exported_sinusoidal_positions_import_as_the_op(tmp_path):
    p = tmp_path / "s.dln"
    p.write_text("model S(x: f32[N, T, 16]) {\n    example N = 2, T = 6\n"
                 "    return x + sinusoidal_positions(T, 16)\n}\n")
    m = dlc.load(str(p))
    proto = export_graph(forward_graph(m), {})
    assert "Sin" in {n.op_type for n in proto.graph.node}
    x = np.random.default_rng(4).standard_normal((2, 6, 16)).astype(np.float32)
    ref = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})
    imp = import_onnx(proto, bind={"N": 2, "T": 6})
    ops = [n.op.name for n in imp.graph.nodes]
    assert "sinusoidal_positions" in ops and "sin" not in ops
    assert not imp.graph.params and not imp.weights         # the exporter's tables are gone
    np.testing.assert_allclose(next(iter(run_imported(imp, {"x": x}).values())), ref[0], rtol=1e-6, atol=1e-7)


def test_equal_position_tables_are_one(tmp_path):
    p = tmp_path / "s2.dln"
    p.write_text("model S(x: f32[N, S, 16], y: f32[N, T, 16]) {\n    example N = 2, S = 6, T = 5\n"
                 "    return x + sinusoidal_positions(S, 16), y + sinusoidal_positions(T, 16)\n}\n")
    proto = export_graph(forward_graph(dlc.load(str(p))), {})
    imp = import_onnx(proto, bind={"N": 2, "S": 6, "T": 6})       # both lengths 6: one table
    assert [n.op.name for n in imp.graph.nodes].count("sinusoidal_positions") == 1
    imp = import_onnx(proto, bind={"N": 2, "S": 6, "T": 5})
    assert [n.op.name for n in imp.graph.nodes].count("sinusoidal_positions") == 2
