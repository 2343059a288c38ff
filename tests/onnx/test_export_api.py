"""dlc export: symbolic dims, --bind, random ops, the CLI and its errors."""
from __future__ import annotations

import os

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from export_util import exported, rel_err, run_onnx

import dlc
from dlc.backends.onnx import TABLE, export_graph
from dlc.cli import main
from dlc.errors import DlcError
from dlc.onnx_export_cli import export_spec, forward_graph

SPECS = os.path.join(os.path.dirname(__file__), "..", "..", "specs")


def spec(name):
    return os.path.normpath(os.path.join(SPECS, f"{name}.dln"))


def test_one_export_runs_at_several_batch_and_sequence_sizes():
    m, w, proto = exported(spec("lstm_tagger"))
    for n, t in ((1, 3), (4, 9)):
        feed = m.random_inputs(n, {"N": n, "T": t})
        ref = m.run(feed, w, bind={"N": n, "T": t})
        got = run_onnx(proto, feed)
        for k in ref:
            assert got[k].shape == ref[k].shape
            assert rel_err(got[k], ref[k]) <= 1e-5


def test_bind_fixes_a_dim_and_leaves_the_others_named():
    proto, _ = export_spec(spec("lstm_tagger"), bind={"N": 1})
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_value == 1 and dims[1].dim_param == "T"


def test_symbolic_arithmetic_in_shapes_is_computed_from_the_inputs():
    # reshape to N*T rows and causal attention: shapes that are expressions of N and T
    m, w, proto = exported(spec("transformer_encoder_layer"))
    feed = m.random_inputs(0, {"N": 3, "T": 7})
    ref = m.run(feed, w, bind={"N": 3, "T": 7})
    got = run_onnx(proto, feed)
    assert rel_err(got[m.graph.output_names[0]], ref[m.graph.output_names[0]]) <= 1e-5


def test_random_ops_as_inputs_take_the_noise_dlc_drew():
    from dlc.backends.numpy.interpreter import Interpreter
    m = dlc.load(spec("vae"))
    w = m.init_weights(0)
    g = forward_graph(m)
    proto = export_graph(g, w, noise_inputs=True)
    onnx.checker.check_model(proto, full_check=True)
    noise_in = [i.name for i in proto.graph.input if i.name.startswith("noise.")]
    assert len(noise_in) == 1 and not any(n.op_type.startswith("Random") for n in proto.graph.node)
    drawn = []

    class Recording(Interpreter):
        def call_op(self, name, args, attrs):
            out = super().call_op(name, args, attrs)
            if name == "randn":
                drawn.append(out)
            return out
    feed = m.random_inputs(0, {"N": 3})
    ref, _ = Recording(g, seed=5, dims={"N": 3}).run(feed, w)
    got = run_onnx(proto, {**feed, noise_in[0]: drawn[0]})
    for k in ref:
        assert rel_err(got[k], ref[k]) <= 1e-5, k


def test_without_noise_inputs_random_ops_are_onnx_random_ops():
    _, _, proto = exported(spec("vae"))
    assert [n.op_type for n in proto.graph.node if n.op_type.startswith("Random")] == ["RandomNormalLike"]


def test_an_op_without_a_mapping_is_an_error_at_its_line(monkeypatch):
    m = dlc.load(spec("mlp"))
    g = forward_graph(m.optimize(level=0))
    monkeypatch.delitem(TABLE, "relu")
    with pytest.raises(DlcError) as e:
        export_graph(g, m.init_weights(0))
    assert "'relu' has no ONNX mapping" in e.value.message
    line = open(spec("mlp")).read().splitlines()[e.value.span.line - 1]
    assert "relu" in line


def test_bad_inputs_are_located_errors():
    m = dlc.load(spec("mlp"))
    g = forward_graph(m)
    w = m.init_weights(0)
    with pytest.raises(DlcError, match="opset 12"):
        export_graph(g, w, opset=12)
    with pytest.raises(DlcError, match="no weights for parameter 'hidden.weight'"):
        export_graph(g, {k: v for k, v in w.items() if k != "hidden.weight"})
    with pytest.raises(DlcError, match="has shape"):
        export_graph(g, {**w, "hidden.weight": np.zeros((2, 2), np.float32)})


def test_a_symbolic_parameter_size_asks_for_a_bind(tmp_path):
    p = tmp_path / "sym.dln"
    p.write_text("model M(x: f32[N, F]) -> f32[N, F] {\n    example N = 1\n    example F = 3\n"
                 "    param scale: f32[F] = ones\n    return x * scale\n}\n")
    with pytest.raises(DlcError) as e:
        export_spec(str(p))
    assert "--bind F=" in e.value.hint
    proto, _ = export_spec(str(p), bind={"F": 3})
    onnx.checker.check_model(proto, full_check=True)


def test_cli_writes_the_file_and_reports(tmp_path):
    out = tmp_path / "m.onnx"
    r = CliRunner().invoke(main, ["export", spec("lenet5"), "-o", str(out), "--opset", "18"])
    assert r.exit_code == 0, r.output
    assert "wrote" in r.output and "opset 18" in r.output
    proto = onnx.load(str(out))
    onnx.checker.check_model(proto, full_check=True)
    assert proto.opset_import[0].version == 18
    assert [p.name for p in tmp_path.iterdir()] == ["m.onnx"]        # no temporary left behind


@pytest.mark.parametrize("args, code, text", [
    (["--opset", "12"], 2, "17<=x<=21"),
    (["--train"], 1, "has no train section"),
    (["--bind", "N"], 2, "expected NAME=VALUE"),
])
def test_cli_errors_are_one_line_without_traceback(tmp_path, args, code, text):
    r = CliRunner().invoke(main, ["export", spec("gan"), "-o", str(tmp_path / "g.onnx"), *args])
    assert r.exit_code == code
    assert text in r.output and "Traceback" not in r.output
    assert not (tmp_path / "g.onnx").exists()


@pytest.mark.parametrize("name, level, opset", [
    ("digits_cnn", 0, 17), ("transformer_encoder_layer", 0, 21), ("lstm_cell", 3, 19),
    ("bilstm", 2, 18), ("gru_classifier", 2, 21),
    pytest.param("mobilenet_v2", 0, 20, marks=pytest.mark.slow),
])
def test_every_level_and_opset_exports_the_same_function(name, level, opset):
    from dlc.compiler.passes import PipelineOptions
    proto, _ = export_spec(spec(name), opt=PipelineOptions(level=level), opset=opset)
    onnx.checker.check_model(proto, full_check=True)
    assert proto.opset_import[0].version == opset
    m = dlc.load(spec(name))
    syms = {s for v in m.symbolic_graph().inputs for s in v.type.symbols()}
    bind = {k: v for k, v in {"N": 2, "T": 5}.items() if k in syms}
    feed = m.random_inputs(0, bind)
    ref = m.run(feed, m.init_weights(0), bind=bind)
    got = run_onnx(proto, feed)
    for k in ref:
        assert rel_err(got[k], ref[k]) <= 1e-5, k


def _one_node(op, inputs, operands=True, **attrs):
    from dlc.compiler.builder import Builder
    from dlc.compiler.ir import Graph
    from dlc.errors import Span
    g = Graph("one")
    b = Builder(g, Span("tests/one_node.dln", 1, 1))
    vals = [b.input(name, t) for name, t in inputs]
    out = b.op(op, *vals, **attrs) if operands else b.op(op, **attrs)
    g.outputs, g.output_names = [out], ["out"]
    return g, vals


def test_float_arange_to_integers_truncates_as_the_reference():
    from dlc.backends.numpy.interpreter import Interpreter
    g, _ = _one_node("arange", [], start=-2.5, stop=3.0, step=0.75, dtype="int64")
    want, _ = Interpreter(g).run({}, {})
    got = run_onnx(export_graph(g, {}), {})
    np.testing.assert_array_equal(got["out"], want["out"])


def test_positions_of_a_symbolic_length_are_computed_in_the_graph():
    from dlc.backends.numpy.interpreter import Interpreter
    from dlc.compiler.dims import Dim
    from dlc.compiler.types import DType, TensorType
    T = Dim.symbol("T")
    # the input only carries T (the graph reads its size from it)
    g, _ = _one_node("sinusoidal_positions", [("x", TensorType(DType.f32, (T, 6)))], operands=False,
                     length=T, dim=6)
    proto = export_graph(g, {})
    assert not any(n.op_type == "Constant" for n in proto.graph.node)
    for t in (3, 11):
        feed = {"x": np.zeros((t, 6), np.float32)}
        want, _ = Interpreter(g, dims={"T": t}).run(feed, {})
        got = run_onnx(proto, feed)
        assert got["out"].shape == (t, 6)
        np.testing.assert_allclose(got["out"], want["out"], rtol=1e-6, atol=1e-7)


def test_an_output_that_is_an_input_or_shares_its_name(tmp_path):
    p = tmp_path / "odd.dln"
    p.write_text("model Odd(x: f32[N, 4]) -> (f32[N, 4], f32[N, 4], i64[N]) {\n    example N = 1\n"
                 "    y = relu(x)\n    return x, y, argmax(y, axis=1)\n}\n")
    proto, _ = export_spec(str(p))
    onnx.checker.check_model(proto, full_check=True)
    x = np.array([[1.0, -2.0, 3.0, np.nan], [-1.0, -2.0, -3.0, -4.0]], np.float32)
    got = run_onnx(proto, {"x": x})
    ref = dlc.load(str(p)).run({"x": x}, {})
    assert list(got) == ["x", "y", "output2"] == list(ref)
    for k in ref:
        np.testing.assert_array_equal(got[k], ref[k])


@pytest.mark.parametrize("op, size, out", [("adaptive_avg_pool1d", 12, 3), ("adaptive_avg_pool1d", 12, 1),
                                           ("adaptive_avg_pool1d", 7, 3)])
def test_adaptive_pooling_of_a_matrix_with_a_symbolic_batch(op, size, out):
    # (N, C) as mobilenet's training step pools it: ONNX's pools want rank 3 or more
    from dlc.backends.numpy.interpreter import Interpreter
    from dlc.compiler.dims import Dim
    from dlc.compiler.types import DType, TensorType
    g, _ = _one_node(op, [("x", TensorType(DType.f32, (Dim.symbol("N"), size)))], output_size=out)
    proto = export_graph(g, {})
    onnx.checker.check_model(proto, full_check=True)
    x = np.random.default_rng(0).standard_normal((5, size)).astype(np.float32)
    want, _ = Interpreter(g, dims={"N": 5}).run({"x": x}, {})
    np.testing.assert_allclose(run_onnx(proto, {"x": x})["out"], want["out"], rtol=1e-6, atol=1e-7)
