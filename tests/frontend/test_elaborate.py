"""Elaboration: naming, blocks, imports, constants, loops, example sizes, IR validity."""
import numpy as np
import pytest

import dlc
from dlc.compiler.verify import VerifyError, verify
from dlc.errors import DlcError


def load(tmp_path, text, name="m.dln", **kw):
    p = tmp_path / name
    p.write_text(text)
    return dlc.load(p, **kw)


def names(m):
    return [p.name for p in m.parameters]


def test_parameter_names_follow_bindings_chains_and_blocks(tmp_path):
    m = load(tmp_path, """
block Basic(c: int, stride: int = 1)(x: f32[N, C, H, W]) {
    y = conv2d(x, c, kernel=3, stride=stride, padding=1, bias=false, name="conv1")
        |> batchnorm(name="bn1") |> relu
    y = conv2d(y, c, kernel=3, padding=1, bias=false, name="conv2") |> batchnorm(name="bn2")
    if stride != 1 or C != c {
        x = conv2d(x, c, kernel=1, stride=stride, bias=false) |> batchnorm
        # two layers bound to one name are numbered like nn.Sequential
    }
    return relu(x + y)
}

model Net(image: f32[N, 3, 32, 32]) {
    stem = conv2d(image, 16, kernel=3, padding=1)
    x = stem |> relu
    for i, (c, s) in enumerate([(16, 1), (32, 2)]) {
        for j in range(2) {
            x = Basic(c, stride=s if j == 0 else 1)(x, name="layer{i + 1}.{j}")
        }
    }
    head = dense(global_avgpool(x), 10)
    return head
}
""")
    n = names(m)
    assert n[:2] == ["stem.weight", "stem.bias"]
    assert "layer1.0.conv1.weight" in n and "layer1.0.bn1.weight" in n
    assert "layer2.0.x.0.weight" in n and "layer2.0.x.1.weight" in n  # the downsample branch
    assert "layer1.0.x.0.weight" not in n  # no downsample when shapes agree
    assert n[-2:] == ["head.weight", "head.bias"]
    assert "layer2.1.bn2.running_mean" in [b.name for b in m.buffers]


def test_rebinding_the_same_name_gets_unique_suffixes(tmp_path):
    m = load(tmp_path, """
model M(x: f32[N, 4]) {
    for i in range(3) { x = dense(x, 4) }
    return x
}""")
    assert names(m) == ["x.weight", "x.bias", "x_1.weight", "x_1.bias", "x_2.weight", "x_2.bias"]


def test_duplicate_explicit_names_are_errors(tmp_path):
    with pytest.raises(DlcError, match="already used"):
        load(tmp_path, """
model M(x: f32[N, 4]) {
    a = dense(x, 4, name="fc")
    b = dense(a, 4, name="fc")
    return b
}""")


def test_imports_aliases_and_constants(tmp_path):
    (tmp_path / "lib.dln").write_text("""
const width = 8
block Mlp(h: int)(x: f32[N, D]) {
    return dense(x, h) |> relu |> dense(width)
}""")
    m = load(tmp_path, """
import "lib.dln" as lib
const depth = 2
model M(x: f32[N, 5]) -> f32[N, 8] {
    example N = 3
    for i in range(depth) { x = lib.Mlp(16)(x, name="block{i}") }
    return x
}""")
    assert "block1.dense_1.weight" in names(m)  # a return has no binding: layers are named by kind
    assert m.info()["params"] == (5 * 16 + 16 + 16 * 8 + 8) + (8 * 16 + 16 + 16 * 8 + 8)
    m1 = load(tmp_path, (tmp_path / "m.dln").read_text(), name="m2.dln", bind={"depth": 1})
    assert not any(n.startswith("block1") for n in names(m1))


def test_block_tensor_types_unify_dimension_names(tmp_path):
    with pytest.raises(DlcError, match=r"declared f32\[N, 4\]"):
        load(tmp_path, """
block B()(x: f32[N, 4]) { return x }
model M(x: f32[N, 5]) { return B()(x) }""")


def test_symbolic_batch_stays_symbolic_and_example_sizes_feed_info(tmp_path):
    m = load(tmp_path, """
model M(x: f32[N, T, 16]) {
    example N = 2, T = 10
    return dense(x, 4)
}""")
    assert str(m.outputs[0].type) == "f32[N, T, 4]"
    assert m.info()["macs"] == 2 * 10 * 16 * 4
    assert m.info(bind={"T": 20})["macs"] == 2 * 20 * 16 * 4
    out = m.run({"x": np.zeros((3, 7, 16), np.float32)})
    assert out["output"].shape == (3, 7, 4)


def test_multiple_outputs_tuples_and_slicing(tmp_path):
    m = load(tmp_path, """
model M(x: f32[N, 8]) {
    example N = 2
    a, b = split(x, 2, axis=1)
    first = x[:, 0]
    tail = x[..., 4:]
    return a * b, first, tail
}""")
    x = np.arange(16, dtype=np.float32).reshape(2, 8)
    out = m.run({"x": x})
    assert list(out) == ["output0", "first", "tail"]
    np.testing.assert_array_equal(out["output0"], x[:, :4] * x[:, 4:])
    np.testing.assert_array_equal(out["first"], x[:, 0])
    np.testing.assert_array_equal(out["tail"], x[..., 4:])


@pytest.mark.parametrize("mode", ["eval", "train"])
def test_elaborated_zoo_graphs_verify(mode):
    from dlc.frontend.blocks import elaborate_model
    from dlc.frontend.modules import load_module
    for spec in ("specs/lenet5.dln", "tests/data/lstm_scan.dln"):
        mod = load_module(spec)
        verify(elaborate_model(mod, mod.models[-1], mode))


def test_verifier_reports_the_broken_node():
    from dlc.frontend.blocks import elaborate_model
    from dlc.frontend.modules import load_module
    mod = load_module("specs/lenet5.dln")
    g = elaborate_model(mod, "LeNet5")
    g.nodes[3], g.nodes[4] = g.nodes[4], g.nodes[3]  # use before definition
    with pytest.raises(VerifyError, match="used before it is defined") as e:
        verify(g)
    assert "> " in str(e.value) and "conv2d" in str(e.value)


def test_train_mode_graph_differs_only_where_it_should(tmp_path):
    m = load(tmp_path, """
model M(x: f32[N, 4]) {
    y = dense(x, 4) |> dropout(0.5)
    return batchnorm(y)
}""")
    ev, tr = m.ir("eval"), m.ir("train")
    assert "dropout" not in ev and "dropout" in tr
    assert "training=true" in tr and "update @batchnorm.running_mean" in tr
