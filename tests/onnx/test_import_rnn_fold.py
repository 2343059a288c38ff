"""LSTM/GRU/RNN whose W, R, B are computed in the graph (not initializers).

An exporter that keeps torch's layout (dlc export) builds ONNX's gate order in
the graph: Split the parameter into gate blocks, Concat them in ONNX's order,
Unsqueeze the direction axis.  The importer's own reordering folds against it
(dlc/frontend/onnx/fold.py): the recurrent op reads the parameters themselves.
Weights computed any other way import too (the op reads the computed values),
and every model here is checked against onnxruntime.
"""
from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper

from dlc.frontend.onnx import import_onnx
from dlc.onnx_import import run_imported

T, N, I, H = 5, 2, 3, 4
GATES = {"LSTM": (4, [0, 3, 1, 2]), "GRU": (3, [1, 0, 2]), "RNN": (1, [0])}   # torch order -> ONNX order


def _torch_params(kind: str, dirs: int, rng) -> dict:
    g = GATES[kind][0]
    out = {}
    for d in range(dirs):
        sfx = "_l0" + ("_reverse" if d else "")
        out[f"rec.weight_ih{sfx}"] = rng.standard_normal((g * H, I)).astype(np.float32)
        out[f"rec.weight_hh{sfx}"] = rng.standard_normal((g * H, H)).astype(np.float32)
        out[f"rec.bias_ih{sfx}"] = rng.standard_normal(g * H).astype(np.float32)
        out[f"rec.bias_hh{sfx}"] = rng.standard_normal(g * H).astype(np.float32)
    return out


class _Graph:
    def __init__(self):
        self.nodes, self.inits, self.n = [], [], 0

    def node(self, op, ins, n_out=1, **attrs):
        outs = [f"{op.lower()}{self.n}_{k}" for k in range(n_out)]
        self.n += 1
        self.nodes.append(helper.make_node(op, ins, outs, **attrs))
        return outs if n_out > 1 else outs[0]

    def const(self, name, arr):
        self.inits.append(numpy_helper.from_array(np.asarray(arr), name))
        return name


def _reordered(gb: _Graph, name: str, kind: str, order=None):
    """ONNX gate order built in the graph from torch's: Split + Concat (as dlc export writes it)."""
    g, onnx_order = GATES[kind]
    order = onnx_order if order is None else order
    if g == 1:
        return name
    parts = gb.node("Split", [name], n_out=g, axis=0, num_outputs=g)
    return gb.node("Concat", [parts[i] for i in order], axis=0)


def _stack(gb: _Graph, names):
    axes = gb.const(f"axes{gb.n}", np.array([0], np.int64))
    u = [gb.node("Unsqueeze", [n, axes]) for n in names]
    return u[0] if len(u) == 1 else gb.node("Concat", u, axis=0)


def _model(kind: str, dirs: int, params: dict, order=None, scale_w: bool = False, reset_before: bool = False):
    gb = _Graph()
    for k, v in params.items():
        gb.const(k, v)
    sfx = [("_l0" + ("_reverse" if d else "")) for d in range(dirs)]
    W = _stack(gb, [_reordered(gb, f"rec.weight_ih{s}", kind, order) for s in sfx])
    if scale_w:     # a weight computed by arithmetic: no parameter to fold back to
        W = gb.node("Mul", [W, gb.const("two", np.array(2.0, np.float32))])
    R = _stack(gb, [_reordered(gb, f"rec.weight_hh{s}", kind, order) for s in sfx])
    B = _stack(gb, [gb.node("Concat", [_reordered(gb, f"rec.bias_ih{s}", kind, order),
                                       _reordered(gb, f"rec.bias_hh{s}", kind, order)], axis=0) for s in sfx])
    extra = {"linear_before_reset": 0 if reset_before else 1} if kind == "GRU" else {}
    outs = ["y", "y_h"] + (["y_c"] if kind == "LSTM" else [])
    gb.nodes.append(helper.make_node(kind, ["x", W, R, B], outs, hidden_size=H,
                                     direction="bidirectional" if dirs == 2 else "forward", **extra))
    g = helper.make_graph(gb.nodes, "rec", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [T, N, I])],
                          [helper.make_tensor_value_info(o, TensorProto.FLOAT, [T, dirs, N, H] if o == "y" else [dirs, N, H])
                           for o in outs], gb.inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    return m


def _check_against_ort(m, backend="numpy"):
    x = np.random.default_rng(1).standard_normal((T, N, I)).astype(np.float32)
    ref = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})
    imp = import_onnx(m)
    got = run_imported(imp, {"x": x}, backend)
    for r, g in zip(ref, got.values()):
        np.testing.assert_allclose(g, r, rtol=1e-5, atol=1e-5)
    return imp


def _recurrent_node(imp):
    return next(n for n in imp.graph.nodes if n.op.name in ("lstm", "gru", "rnn"))


@pytest.mark.parametrize("kind", ["LSTM", "GRU", "RNN"])
@pytest.mark.parametrize("dirs", [1, 2])
def test_exporter_reordering_folds_back_to_the_parameters(kind, dirs):
    params = _torch_params(kind, dirs, np.random.default_rng(0))
    imp = _check_against_ort(_model(kind, dirs, params))
    node = _recurrent_node(imp)
    weights = node.inputs[(3 if kind == "LSTM" else 2):]
    # the layer reads torch's parameters themselves, in torch's order: nothing re-laid-out
    assert [w.kind for w in weights] == ["param"] * len(weights)
    assert [w.name for w in weights] == list(params)
    # and the exporter's Split/Concat/Unsqueeze are gone (folded, then pruned)
    ops = {n.op.name for n in imp.graph.nodes}
    assert not ops & {"split", "concat", "strided_slice"}, ops
    # the import records it as a layer over those parameters (what the decompiler writes as `lstm(...)`)
    assert any(la.kind == kind.lower() and la.params == list(params) for la in imp.graph.layers)
    for k, v in params.items():
        np.testing.assert_array_equal(imp.weights[k], v)


@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
def test_a_reordering_that_does_not_cancel_imports_correctly(kind):
    """Gate blocks in an order other than the exporter's: no parameter is the importer's weight, so
    the op reads the blocks joined in the graph; the numbers still equal onnxruntime's."""
    params = _torch_params(kind, 1, np.random.default_rng(2))
    order = list(range(GATES[kind][0]))       # torch's order left as is: read as ONNX's, it is another model
    imp = _check_against_ort(_model(kind, 1, params, order=order))
    node = _recurrent_node(imp)
    assert node.inputs[(3 if kind == "LSTM" else 2)].kind == "node"     # a joined value, not a parameter
    assert not any(la.kind == kind.lower() for la in imp.graph.layers)


def test_arithmetic_on_a_weight_imports_as_the_computed_value():
    params = _torch_params("LSTM", 2, np.random.default_rng(3))
    imp = _check_against_ort(_model("LSTM", 2, params, scale_w=True))
    node = _recurrent_node(imp)
    wi, wh = node.inputs[3], node.inputs[4]
    assert wi.kind == "node" and wh.kind == "param" and wh.name == "rec.weight_hh_l0"


def test_folded_import_runs_on_torch():
    params = _torch_params("LSTM", 2, np.random.default_rng(4))
    _check_against_ort(_model("LSTM", 2, params), backend="torch")


def test_fold_rows_and_join_directly():
    """fold.rows looks through concat / split / strided_slice; join merges adjacent ranges."""
    from dlc.compiler.ir import Graph
    from dlc.compiler.types import DType, TensorType
    from dlc.frontend.onnx import fold
    from dlc.frontend.onnx.context import Ctx
    g = Graph("t")
    cx = Ctx(g, None, {"": 18}, "<t>")
    x = g.add_input("x", TensorType(DType.f32, (12, 3)))
    a, b, c = cx.op("split", x, sections=[4, 4, 4], axis=0)
    cat = cx.op("concat", c, a, b, axis=0)                      # rows of x: 8:12, 0:4, 4:8
    assert fold.rows(cat, 4, 8) == fold.Rows(x, 0, 4)
    assert fold.rows(cat, 2, 4) == fold.Rows(x, 10, 12)
    assert fold.rows(cat, 2, 6) == fold.Rows(cat, 2, 6)        # across two operands: not one range of x
    s = cx.op("strided_slice", x, begin=[2, None], end=[10, None])
    assert fold.rows(s, 1, 3) == fold.Rows(x, 3, 5)
    whole = fold.join(cx, [fold.rows(cat, 4, 8), fold.rows(cat, 8, 12), fold.rows(cat, 0, 4)])
    assert whole is x
    part = fold.join(cx, [fold.rows(cat, 4, 8), fold.rows(cat, 0, 4)])   # x[0:4], x[8:12]: a real concat
    assert part.producer.op.name == "concat" and part.type.shape == (8, 3)


@pytest.mark.parametrize("dirs", [1, 2])
def test_onnx_default_gru_with_computed_weights(dirs):
    """linear_before_reset=0 (a scan of the written-out cell) reads computed W/R/B too."""
    params = _torch_params("GRU", dirs, np.random.default_rng(5))
    imp = _check_against_ort(_model("GRU", dirs, params, scale_w=True, reset_before=True))
    assert any(n.op.name == "scan" for n in imp.graph.nodes)
    assert not any(k.endswith(("W_l0", "R_l0")) for k in imp.weights)    # no re-laid-out copies
