"""ONNX import of run-time-looking shapes (demand-driven folding, unrolled loops), Mod's edge
cases, integer CumSum, ConvTranspose's output window, training-mode BatchNormalization/Dropout,
LSTM peepholes and blocked quantization, each checked against ONNX's reference evaluator on
inputs the node tests do not use."""
from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper
from onnx.reference import ReferenceEvaluator

from dlc.errors import DlcError
from dlc.frontend.onnx import import_onnx
from dlc.onnx_import import run_imported

F, I64, I32, U8, B = TensorProto.FLOAT, TensorProto.INT64, TensorProto.INT32, TensorProto.UINT8, TensorProto.BOOL


def _model(nodes, inputs, outputs, opset=21):
    g = helper.make_graph(nodes, "t", [helper.make_tensor_value_info(n, t, s) for n, t, s in inputs],
                          [helper.make_tensor_value_info(n, t, s) for n, t, s in outputs])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])


def _run(model, feed, frozen=(), backend="numpy"):
    imp = import_onnx(model, input_values={k: feed[k] for k in frozen})
    names = {v.name for v in imp.graph.inputs}
    out = run_imported(imp, {k: v for k, v in feed.items() if k in names}, backend)
    return imp, [out[n] for n in imp.graph.output_names]


def _check(model, feed, frozen=(), rtol=1e-5, atol=1e-6):
    imp, got = _run(model, feed, frozen)
    want = ReferenceEvaluator(model).run(None, feed)
    for g, w in zip(got, want):
        assert g.shape == w.shape
        if w.dtype.kind in "fc":
            np.testing.assert_allclose(g.astype(np.float64), w.astype(np.float64), rtol=rtol, atol=atol)
        else:
            np.testing.assert_array_equal(g, w)
    return imp, got


# -- demand-driven folding -----------------------------------------------------------------------

def test_reshape_shape_computed_through_floats_from_a_given_input():
    # n -> Cast(float) -> Mul 2 -> Ceil -> Cast(int64) -> Concat: the Reshape target, and x stays an input
    nodes = [helper.make_node("Cast", ["n"], ["nf"], to=F),
             helper.make_node("Constant", [], ["two"], value=helper.make_tensor("two", F, [], [2.0])),
             helper.make_node("Div", ["nf", "two"], ["half"]),
             helper.make_node("Ceil", ["half"], ["c"]),
             helper.make_node("Cast", ["c"], ["ci"], to=I64),
             helper.make_node("Constant", [], ["m1"], value=helper.make_tensor("m1", I64, [1], [-1])),
             helper.make_node("Reshape", ["ci", "m1"], ["c1"]),
             helper.make_node("Concat", ["c1", "m1"], ["shape"], axis=0),
             helper.make_node("Reshape", ["x", "shape"], ["y"]),
             helper.make_node("Mul", ["y", "y"], ["z"])]
    m = _model(nodes, [("x", F, [6, 4]), ("n", I64, [])], [("z", F, None)])
    feed = {"x": np.random.default_rng(0).standard_normal((6, 4)).astype(np.float32), "n": np.array(5)}
    imp, (z,) = _check(m, feed, frozen=("n",))
    assert z.shape == (3, 8)
    assert [v.name for v in imp.graph.inputs] == ["x"]      # n only fed the shape: no longer an input
    assert not any(n.op.name in ("ceil", "cast") for n in imp.graph.nodes)   # the chain was folded


def test_split_of_a_given_input_and_if_on_its_size():
    # Split(size) and an If on Size(size): the If's branch output is a shape, folded through the branch
    then = helper.make_graph([helper.make_node("Identity", ["s"], ["t_out"])], "then", [],
                             [helper.make_tensor_value_info("t_out", I64, None)])
    other = helper.make_graph([helper.make_node("Concat", ["a", "b"], ["e_out"], axis=0)], "else", [],
                              [helper.make_tensor_value_info("e_out", I64, None)])
    nodes = [helper.make_node("Split", ["size"], ["a", "b"], axis=0, num_outputs=2),
             helper.make_node("Concat", ["b", "a"], ["s"], axis=0),
             helper.make_node("Size", ["size"], ["k"]),
             helper.make_node("Constant", [], ["two"], value=helper.make_tensor("two", I64, [], [2])),
             helper.make_node("Equal", ["k", "two"], ["cond"]),
             helper.make_node("If", ["cond"], ["shape"], then_branch=then, else_branch=other),
             helper.make_node("Expand", ["x", "shape"], ["y"])]
    m = _model(nodes, [("x", F, [1, 3]), ("size", I64, [2])], [("y", F, None)])
    feed = {"x": np.arange(3, dtype=np.float32).reshape(1, 3), "size": np.array([3, 4])}
    _, (y,) = _check(m, feed, frozen=("size",))
    assert y.shape == (4, 3)


def test_a_shape_from_a_run_time_input_is_still_an_error():
    nodes = [helper.make_node("Cast", ["n"], ["nf"], to=F), helper.make_node("Cast", ["nf"], ["ni"], to=I64),
             helper.make_node("Reshape", ["x", "ni"], ["y"])]
    m = _model(nodes, [("x", F, [6]), ("n", I64, [2])], [("y", F, None)])
    with pytest.raises(DlcError, match="Reshape's target shape .* must be known when the model is imported"):
        import_onnx(m)


def test_loop_slicing_by_its_iteration_number_is_unrolled():
    body = helper.make_graph(
        [helper.make_node("Identity", ["cond_in"], ["cond_out"]),
         helper.make_node("Constant", [], ["one"], value=helper.make_tensor("one", I64, [], [1])),
         helper.make_node("Add", ["it", "one"], ["end"]),
         helper.make_node("Unsqueeze", ["it", "ax"], ["b"]), helper.make_node("Unsqueeze", ["end", "ax"], ["e"]),
         helper.make_node("Slice", ["xs", "b", "e"], ["row"]),
         helper.make_node("Constant", [], ["k"], value=helper.make_tensor("k", F, [3], [0.5, 2.0, -1.0])),
         helper.make_node("Mul", ["row", "k"], ["krow"]),
         helper.make_node("Mul", ["acc_in", "krow"], ["acc_out"]),
         helper.make_node("Squeeze", ["acc_out", "ax"], ["scan_out"])],   # per step [3]: stacked [4, 3]
        "body", [helper.make_tensor_value_info("it", I64, []), helper.make_tensor_value_info("cond_in", B, []),
                 helper.make_tensor_value_info("acc_in", F, [1, 3])],
        [helper.make_tensor_value_info("cond_out", B, []), helper.make_tensor_value_info("acc_out", F, [1, 3]),
         helper.make_tensor_value_info("scan_out", F, [3])],
        [helper.make_tensor("ax", I64, [1], [0])])
    nodes = [helper.make_node("Constant", [], ["T"], value=helper.make_tensor("T", I64, [], [4])),
             helper.make_node("Constant", [], ["c"], value=helper.make_tensor("c", B, [], [True])),
             helper.make_node("Loop", ["T", "c", "acc0"], ["acc", "steps"], body=body)]
    m = _model(nodes, [("xs", F, [4, 3]), ("acc0", F, [1, 3])], [("acc", F, None), ("steps", F, None)], opset=17)
    rng = np.random.default_rng(1)
    feed = {"xs": rng.standard_normal((4, 3)).astype(np.float32), "acc0": np.ones((1, 3), np.float32)}
    imp, (_, steps) = _check(m, feed)
    assert steps.shape == (4, 3)
    assert not any(n.op.name == "scan" for n in imp.graph.nodes)
    # the body's constant once: what the failed scan attempt materialized was taken back
    assert [p.name for p in imp.graph.params] == list(imp.weights) == ["k"]


# -- elementwise numerics --------------------------------------------------------------------------

@pytest.mark.parametrize("fmod", [0, 1])
def test_mod_edge_cases_match_numpy(fmod):
    a = np.array([5.5, -5.5, 5.5, -5.5, 0.0, -0.0, 7.0, -7.0, np.inf, 1.0, 3.0, -2.0], np.float32)
    b = np.array([2.0, 2.0, -2.0, -2.0, 3.0, -3.0, np.inf, np.inf, 3.0, 0.0, -np.inf, np.inf], np.float32)
    m = _model([helper.make_node("Mod", ["a", "b"], ["r"], fmod=fmod)], [("a", F, [12]), ("b", F, [12])],
               [("r", F, [12])])
    _, (r,) = _run(m, {"a": a, "b": b})
    want = (np.fmod if fmod else np.mod)(a, b)
    np.testing.assert_array_equal(r, want)
    np.testing.assert_array_equal(np.signbit(r[~np.isnan(r)]), np.signbit(want[~np.isnan(want)]))


@pytest.mark.parametrize("reverse,exclusive", [(0, 0), (0, 1), (1, 0), (1, 1)])
def test_integer_cumsum_is_exact(reverse, exclusive):
    x = np.array([[2 ** 30, 3, -7, 2 ** 30 + 1, 5, 9, -1]] * 2, np.int64) * np.array([[1], [-1]])
    m = _model([helper.make_node("Constant", [], ["ax"], value=helper.make_tensor("ax", I64, [], [1])),
                helper.make_node("CumSum", ["x", "ax"], ["y"], reverse=reverse, exclusive=exclusive)],
               [("x", I64, [2, 7])], [("y", I64, [2, 7])])
    _check(m, {"x": x})


def test_lp_normalization_of_zeros_is_zero():
    x = np.array([[0.0, 0.0], [3.0, 4.0]], np.float32)
    m = _model([helper.make_node("LpNormalization", ["x"], ["y"], axis=1, p=2)], [("x", F, [2, 2])],
               [("y", F, [2, 2])])
    _, (y,) = _check(m, {"x": x})
    assert not np.isnan(y).any()


# -- ConvTranspose ----------------------------------------------------------------------------------

@pytest.mark.parametrize("attrs", [
    {"strides": [2], "pads": [1, 0]},                                 # 1-D, asymmetric
    {"strides": [3, 2], "pads": [0, 2, 1, 0], "dilations": [1, 2]},   # 2-D, asymmetric
    {"strides": [2, 2], "auto_pad": "SAME_LOWER"},
    {"strides": [2, 3], "output_shape": [11, 12]},                    # longer than the full output
    {"strides": [2, 1], "output_padding": [1, 0]},
])
def test_conv_transpose_output_window(attrs):
    nd = len(attrs["strides"])
    rng = np.random.default_rng(2)
    xs, ws = (1, 4) + (5, 4)[:nd], (4, 3) + (3, 2)[:nd]
    x, w, b = (rng.standard_normal(s).astype(np.float32) for s in (xs, ws, (3 * attrs.get("group", 1),)))
    if attrs.get("group", 1) == 2:
        w = w.reshape(ws)
    m = _model([helper.make_node("ConvTranspose", ["x", "w", "b"], ["y"], **attrs)],
               [("x", F, list(xs)), ("w", F, list(ws)), ("b", F, [b.size])], [("y", F, None)])
    _check(m, {"x": x, "w": w, "b": b})


# -- training mode ----------------------------------------------------------------------------------

def test_batch_norm_training_mode_against_the_reference():
    rng = np.random.default_rng(3)
    feed = {"x": rng.standard_normal((4, 3, 5)).astype(np.float32),
            "s": rng.standard_normal(3).astype(np.float32), "b": rng.standard_normal(3).astype(np.float32),
            "mean": rng.standard_normal(3).astype(np.float32), "var": rng.random(3).astype(np.float32)}
    m = _model([helper.make_node("BatchNormalization", ["x", "s", "b", "mean", "var"], ["y", "rm", "rv"],
                                 training_mode=1, momentum=0.7, epsilon=1e-3)],
               [(k, F, list(v.shape)) for k, v in feed.items()], [("y", F, None), ("rm", F, None), ("rv", F, None)],
               opset=15)
    _check(m, feed)


def test_training_dropout_keeps_the_right_fraction_scaled():
    x = np.ones((200, 100), np.float32)
    m = _model([helper.make_node("Dropout", ["x", "r", "t"], ["y", "mask"], seed=3)],
               [("x", F, [200, 100]), ("r", F, []), ("t", B, [])], [("y", F, None), ("mask", B, None)], opset=13)
    _, (y, mask) = _run(m, {"x": x, "r": np.array(0.25, np.float32), "t": np.array(True)}, frozen=("r", "t"))
    assert abs(mask.mean() - 0.75) < 0.02
    np.testing.assert_allclose(y[mask], 1 / 0.75, rtol=1e-6)
    assert (y[~mask] == 0).all()
    _, (y0, mask0) = _run(m, {"x": x, "r": np.array(0.25, np.float32), "t": np.array(False)}, frozen=("r", "t"))
    assert mask0.all() and (y0 == x).all()


# -- LSTM peepholes, blocked quantization ------------------------------------------------------------

@pytest.mark.parametrize("direction,layout", [("forward", 0), ("bidirectional", 1), ("reverse", 0)])
def test_lstm_peepholes_against_the_reference(direction, layout):
    rng = np.random.default_rng(4)
    T, N, I, H = 5, 2, 3, 4
    D = 2 if direction == "bidirectional" else 1
    W, R = (rng.standard_normal((D, 4 * H, k)).astype(np.float32) * 0.5 for k in (I, H))
    Bv, P = rng.standard_normal((D, 8 * H)).astype(np.float32), rng.standard_normal((D, 3 * H)).astype(np.float32)
    xs = (N, T, I) if layout else (T, N, I)
    hs = (N, D, H) if layout else (D, N, H)
    feed = {"x": rng.standard_normal(xs).astype(np.float32), "h0": rng.standard_normal(hs).astype(np.float32),
            "c0": rng.standard_normal(hs).astype(np.float32)}
    inits = [helper.make_tensor(n, F, list(a.shape), a.reshape(-1).tolist()) for n, a in
             (("W", W), ("R", R), ("B", Bv), ("P", P))]
    g = helper.make_graph([helper.make_node("LSTM", ["x", "W", "R", "B", "", "h0", "c0", "P"], ["y", "yh", "yc"],
                                            hidden_size=H, direction=direction, layout=layout)], "t",
                          [helper.make_tensor_value_info(k, F, list(v.shape)) for k, v in feed.items()],
                          [helper.make_tensor_value_info(n, F, None) for n in ("y", "yh", "yc")], inits)
    _check(helper.make_model(g, opset_imports=[helper.make_opsetid("", 14)]), feed, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("op", ["QuantizeLinear", "DequantizeLinear"])
def test_blocked_quantization_with_a_partial_block(op):
    rng = np.random.default_rng(5)
    x = (rng.standard_normal((2, 7)) * 40).astype(np.float32) if op == "QuantizeLinear" else \
        rng.integers(0, 255, (2, 7)).astype(np.uint8)
    feed = {"x": x, "s": (rng.random((2, 3)) + 0.1).astype(np.float32),
            "zp": rng.integers(100, 150, (2, 3)).astype(np.uint8)}
    m = _model([helper.make_node(op, ["x", "s", "zp"], ["y"], axis=1, block_size=3)],
               [("x", F if op == "QuantizeLinear" else U8, [2, 7]), ("s", F, [2, 3]), ("zp", U8, [2, 3])],
               [("y", U8 if op == "QuantizeLinear" else F, None)])
    _check(m, feed)


# -- old opsets, DynamicQuantizeLinear, a clip of a scalar -------------------------------------------

def test_not_at_opset_1_and_quantize_linear_at_opset_10():
    m = _model([helper.make_node("Not", ["b"], ["nb"])], [("b", B, [3])], [("nb", B, [3])], opset=1)
    _check(m, {"b": np.array([True, False, True])})
    m = _model([helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"])],
               [("x", F, [4]), ("s", F, []), ("z", U8, [])], [("q", U8, [4])], opset=10)
    _check(m, {"x": np.array([-1.0, 0.5, 2.5, 300.0], np.float32), "s": np.array(0.5, np.float32),
               "z": np.array(3, np.uint8)})


def test_dynamic_quantize_linear_against_the_reference():
    m = _model([helper.make_node("DynamicQuantizeLinear", ["x"], ["y", "s", "z"])], [("x", F, [2, 5])],
               [("y", U8, None), ("s", F, None), ("z", U8, None)], opset=11)
    x = np.random.default_rng(6).standard_normal((2, 5)).astype(np.float32) * 3 + 1
    _check(m, {"x": x})


def test_clip_of_a_scalar_runs_on_numpy():
    m = _model([helper.make_node("Constant", [], ["lo"], value=helper.make_tensor("lo", F, [], [0.0])),
                helper.make_node("Constant", [], ["hi"], value=helper.make_tensor("hi", F, [], [1.0])),
                helper.make_node("Clip", ["x", "lo", "hi"], ["y"])], [("x", F, [])], [("y", F, [])], opset=13)
    for v in (-2.0, 0.25, 7.0):
        _check(m, {"x": np.array(v, np.float32)})


def test_a_scalar_input_stays_a_scalar_on_torch():
    pytest.importorskip("torch")
    m = _model([helper.make_node("Add", ["a", "b"], ["c"])], [("a", F, []), ("b", F, [])], [("c", F, [])])
    _, (c,) = _run(m, {"a": np.array(1.5, np.float32), "b": np.array(2.0, np.float32)}, backend="torch")
    assert c.shape == () and c == 3.5


def test_training_dropout_with_a_run_time_training_flag():
    x = np.arange(1, 401, dtype=np.float32).reshape(20, 20)
    m = _model([helper.make_node("Dropout", ["x", "r", "t"], ["y"], seed=1)],
               [("x", F, [20, 20]), ("r", F, []), ("t", B, [])], [("y", F, None)], opset=13)
    imp = import_onnx(m, input_values={"r": np.array(0.5, np.float32)})
    assert [v.name for v in imp.graph.inputs] == ["x", "t"]
    on = run_imported(imp, {"x": x, "t": np.array(True)}, "numpy")["y"]
    off = run_imported(imp, {"x": x, "t": np.array(False)}, "numpy")["y"]
    assert (off == x).all()
    kept = on != 0
    assert 0.35 < kept.mean() < 0.65 and np.allclose(on[kept], 2 * x[kept])
