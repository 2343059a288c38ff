"""RandomNormal(Like) / RandomUniform(Like) -> randn / uniform.

The samples are dlc's (onnxruntime's generator differs), so the checks are:
shape, dtype, distribution (moments over many samples), the stream id taken
from `seed` (dlc export writes its stream id there, so a dlc model gets its
noise back), fresh streams for nodes without a seed, and errors naming the node."""
from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper

from dlc.backends import get_backend
from dlc.errors import DlcError
from dlc.frontend.onnx import import_onnx

F, D = TensorProto.FLOAT, TensorProto.DOUBLE


def _model(nodes, inputs, outputs):
    g = helper.make_graph(nodes, "rand", inputs, outputs)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.checker.check_model(m, full_check=True)
    return m


def _run(imp, feed=None, seed=0):
    outs, _ = get_backend("numpy").run(imp.graph, feed or {}, imp.weights, seed=seed)
    return list(outs.values())


def _randoms(imp):
    return [n for n in imp.graph.nodes if n.op.name in ("randn", "uniform")]


def test_random_normal_like_takes_the_operand_shape_and_scales():
    node = helper.make_node("RandomNormalLike", ["x"], ["y"], mean=3.0, scale=0.5, seed=7.0)
    m = _model([node], [helper.make_tensor_value_info("x", F, [400, 500])],
               [helper.make_tensor_value_info("y", F, [400, 500])])
    imp = import_onnx(m)
    (r,) = _randoms(imp)
    assert r.op.name == "randn" and r.attrs["seed"] == 7 and tuple(r.attrs["shape"]) == (400, 500)
    # x is an input only for its type: the compiled model does not read it
    (y,) = _run(imp, {"x": np.zeros((400, 500), np.float32)})
    assert y.dtype == np.float32 and y.shape == (400, 500)
    assert abs(y.mean() - 3.0) < 0.01 and abs(y.std() - 0.5) < 0.01


def test_random_uniform_with_dtype_and_bounds():
    node = helper.make_node("RandomUniform", [], ["y"], shape=[300, 400], low=-2.0, high=6.0, dtype=D, seed=1.0)
    imp = import_onnx(_model([node], [], [helper.make_tensor_value_info("y", D, [300, 400])]))
    (r,) = _randoms(imp)
    assert r.op.name == "uniform" and r.attrs["low"] == -2.0 and r.attrs["high"] == 6.0
    (y,) = _run(imp)
    assert y.dtype == np.float64 and y.shape == (300, 400)
    assert y.min() >= -2.0 and y.max() < 6.0 and abs(y.mean() - 2.0) < 0.05


def test_streams_follow_the_seed_and_the_run_seed():
    nodes = [helper.make_node("RandomNormal", [], ["a"], shape=[64], seed=2.0),
             helper.make_node("RandomNormal", [], ["b"], shape=[64], seed=2.0),
             helper.make_node("RandomNormal", [], ["c"], shape=[64]),
             helper.make_node("RandomNormal", [], ["d"], shape=[64]),
             helper.make_node("RandomNormal", [], ["e"], shape=[64], seed=0.25)]
    outs = [helper.make_tensor_value_info(n, F, [64]) for n in "abcde"]
    imp = import_onnx(_model(nodes, [], outs))
    seeds = [n.attrs["seed"] for n in _randoms(imp)]
    # one seed, one stream; unseeded nodes get streams no other node uses; a fractional seed its float32 bits
    assert seeds[0] == seeds[1] == 2 and len({2, seeds[2], seeds[3], seeds[4]}) == 4
    assert seeds[4] == int(np.float32(0.25).view(np.uint32))
    a, b, c, d, _e = _run(imp, seed=0)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c) and not np.array_equal(c, d)
    a1, *_ = _run(imp, seed=1)
    assert not np.array_equal(a, a1)                       # another run seed: other noise
    np.testing.assert_array_equal(_run(imp, seed=0)[0], a)  # the same run seed: the same noise


def test_an_integer_dtype_is_refused_naming_the_node():
    node = helper.make_node("RandomUniform", [], ["y"], shape=[3], dtype=TensorProto.INT32, name="rng_node")
    g = helper.make_graph([node], "rand", [], [helper.make_tensor_value_info("y", TensorProto.INT32, [3])])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    with pytest.raises(DlcError) as e:
        import_onnx(m)
    assert "rng_node" in str(e.value) and "int32" in str(e.value)


SPEC = """
model Noisy(x: f32[N, 6]) -> (f32[N, 6], f32[N, 6]) {
    example N = 2
    a = x + randn_like(x)
    b = x * uniform(N, 6, low=-1.0, high=1.0)
    return a, b
}
"""


def test_a_dlc_export_gets_its_own_noise_back(tmp_path):
    """spec -> dlc export -> import: the same streams, so the same samples as the spec for a run seed."""
    import dlc
    from dlc.onnx_export_cli import export_spec
    (tmp_path / "noisy.dln").write_text(SPEC)
    m = dlc.load(str(tmp_path / "noisy.dln"))
    export_spec(str(tmp_path / "noisy.dln"), str(tmp_path / "noisy.onnx"), bind={"N": 2})
    imp = import_onnx(str(tmp_path / "noisy.onnx"))
    orig = sorted((n.op.name, n.attrs["seed"]) for n in m.graph.nodes if n.op.name in ("randn", "uniform"))
    assert sorted((n.op.name, n.attrs["seed"]) for n in _randoms(imp)) == orig
    x = np.random.default_rng(0).standard_normal((2, 6)).astype(np.float32)
    for seed in (0, 5):
        want = list(m.run({"x": x}, {}, bind={"N": 2}, seed=seed).values())
        got = _run(imp, {"x": x}, seed=seed)
        for w, g in zip(want, got):
            np.testing.assert_allclose(g, w, rtol=1e-6)
