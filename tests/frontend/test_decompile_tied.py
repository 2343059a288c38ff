"""A weight a layer and a functional use share (an LM head tied to the token table) stays ONE
parameter in the decompiled spec: declared with `param`, looked up by `index_select`, multiplied by
`linear`; and the decompiler writes no dead statement."""
from __future__ import annotations

import numpy as np

import dlc
from dlc.frontend.decompile import decompile

TIED = """
model Lm(ids: i64[N, T]) -> f32[N, T, 50] {
    example N = 2, T = 5
    param wte: f32[50, 8] = normal(std=0.02)
    h = index_select(wte, 0, reshape(ids, N * T)) |> reshape(N, T, 8)
    h = layernorm(h, name="ln_f")
    return h @ wte.T
}
"""


def _load(tmp_path, text, name="m.dln"):
    p = tmp_path / name
    p.write_text(text)
    return dlc.load(str(p))


def _through_onnx(tmp_path, m, w, name):
    """m exported, imported (embedding + linear on one table) and decompiled: (spec, its weights)."""
    import onnx

    from dlc.backends.onnx import export_graph
    from dlc.frontend.onnx import import_onnx
    from dlc.onnx_export_cli import forward_graph
    from dlc.onnx_import_cli import write_spec
    proto = export_graph(forward_graph(m), w)
    imp = import_onnx(onnx.load_from_string(proto.SerializeToString()), bind={"N": 2, "T": 5})
    assert {"embedding", "linear"} <= {n.op.name for n in imp.graph.nodes}
    weights = write_spec(imp.graph, imp.weights, str(tmp_path / name))
    return dlc.load(str(tmp_path / name)), weights


def test_a_tied_table_stays_one_parameter(tmp_path):
    m = _load(tmp_path, TIED)
    w = m.init_weights(0)
    back, wb = _through_onnx(tmp_path, m, w, "lm.dln")
    text = (tmp_path / "lm.dln").read_text()
    assert "param wte: f32[50, 8]" in text
    assert "index_select(wte, 0," in text and "linear(wte)" in text
    assert "embedding(" not in text             # no layer owns (and so unties) the shared table
    assert [p.name for p in back.graph.params if p.kind == "param"].count("wte") == 1
    ids = np.random.default_rng(0).integers(0, 50, (2, 5))
    want = next(iter(m.run({"ids": ids}, w).values()))
    got = next(iter(back.run({"ids": ids}, wb, bind={"N": 2, "T": 5}).values()))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)
    (tmp_path / "again").mkdir()
    _through_onnx(tmp_path / "again", back, wb, "lm.dln")
    assert (tmp_path / "again" / "lm.dln").read_text() == text       # a fixed point


def test_dead_statements_are_not_written(tmp_path):
    m = _load(tmp_path, "model D(x: f32[2, 3]) {\n    y = relu(x)\n    z = exp(x)\n    return y\n}\n")
    assert any(n.op.name == "exp" for n in m.graph.nodes)   # the frontend keeps it; -O0 is as written
    text = decompile(m.graph, name="D").text
    assert "exp" not in text and "relu" in text


def test_a_tied_table_looked_up_by_a_matrix_of_ids(tmp_path):
    """Gather(W, ids[2, 5]) and MatMul(h, W^T) on one initializer: the lookup flattens the ids."""
    from onnx import TensorProto, helper, numpy_helper

    from dlc.frontend.onnx import import_onnx
    from dlc.onnx_import_cli import write_spec
    w = np.random.default_rng(1).standard_normal((7, 3)).astype(np.float32)
    nodes = [helper.make_node("Gather", ["W", "ids"], ["h"]), helper.make_node("Transpose", ["W"], ["wt"]),
             helper.make_node("MatMul", ["h", "wt"], ["y"])]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("ids", TensorProto.INT64, [2, 5])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 5, 7])],
                          [numpy_helper.from_array(w, "W")])
    imp = import_onnx(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]))
    weights = write_spec(imp.graph, imp.weights, str(tmp_path / "t.dln"))
    text = (tmp_path / "t.dln").read_text()
    assert "param W: f32[7, 3]" in text and "index_select(W, 0, reshape(" in text and "linear(" in text
    ids = np.array([[0, 1, 2, 3, 4], [6, 5, -1, 0, 2]])
    out = next(iter(dlc.load(str(tmp_path / "t.dln")).run({"ids": ids}, weights).values()))
    np.testing.assert_allclose(out, w[ids] @ w.T, rtol=1e-5)
