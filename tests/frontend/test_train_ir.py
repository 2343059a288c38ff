"""What the frontend hands the compiler and the backends: the train section as
a TrainSpec whose losses are IR, and the model's declared layer table."""
import dataclasses

import pytest

import dlc
from dlc.compiler.ir import Layer
from dlc.compiler.ops import OPS
from dlc.compiler.ops.registry import CLASS_INDEX_TARGET
from dlc.compiler.types import DType
from dlc.frontend.modules import load_module
from dlc.frontend.train import train_settings

SPEC = """
model M(x: f32[B, 6]) -> f32[B, 3] {
    example B = 2
    return dense(x, 3)
}
train M on digits {
    loss      = LOSS
    optimizer = sgd(lr=0.1)
    schedule  = step(step_size=2)
    batch     = 8
    augment   = [hflip(p=0.25)]
    metrics   = ["accuracy", "loss"]
}
"""


def _spec(tmp_path, loss: str):
    f = tmp_path / "m.dln"
    f.write_text(SPEC.replace("LOSS", loss))
    mod = load_module(f)
    return train_settings(mod, mod.trains[0])


@pytest.mark.parametrize("loss, label", [
    ("cross_entropy(output, label)", "i64[B]"),
    ("nll_loss(log_softmax(output, axis=1), target)", "i64[B]"),
    ("mse(output, label)", "f32[B, 3]"),
    ("bce_with_logits(output, label)", "f32[B, 3]"),
    ("mean(output * output)", None),
])
def test_the_loss_is_a_graph_over_outputs_inputs_and_label(tmp_path, loss, label):
    s = _spec(tmp_path, loss)
    for mode in ("train", "eval"):
        g = s.loss.graph(mode)
        assert g.mode == mode and g.output_names == ["loss"] and g.outputs[0].type.shape == ()
        assert [v.name for v in g.inputs][:2] == ["out:output", "x"]
    assert (str(s.loss.label) if s.loss.label is not None else None) == label
    assert s.loss.output_names == ["output"]
    assert (s.optimizer, s.optimizer_args["lr"], s.schedule, s.batch) == ("sgd", 0.1, "step", 8)
    assert s.augment == [("hflip", {"p": 0.25})] and s.metrics == ["accuracy", "loss"]


def test_class_index_labels_come_from_the_op_registry(tmp_path, monkeypatch):
    """The label is class indices because the op is in CLASS_INDEX_TARGET, not
    because of its name: take the op out of the group and the label is float."""
    assert _spec(tmp_path, "cross_entropy(output, label)").loss.label.dtype == DType.i64
    monkeypatch.setattr(OPS["cross_entropy"], "groups", OPS["cross_entropy"].groups - {CLASS_INDEX_TARGET})
    s = _spec(tmp_path, "cross_entropy(output, label)")   # probability targets shaped like the output
    assert str(s.loss.label) == "f32[B, 3]"


def test_the_graph_declares_its_layer_table():
    m = dlc.load("specs/lenet5.dln")
    g = m.graph
    assert "layers" in {f.name for f in dataclasses.fields(g)}
    assert g.layers and all(isinstance(layer, Layer) for layer in g.layers)
    c1 = next(layer for layer in g.layers if layer.name == "c1")
    assert c1.kind == "conv2d" and c1.span.file.endswith("lenet5.dln")
    assert "conv2d" in open("specs/lenet5.dln").read().splitlines()[c1.span.line - 1]
    assert [(p.name, str(p.type)) for p in g.layer_params(c1)] == [("c1.weight", "f32[6, 1, 5, 5]"),
                                                                    ("c1.bias", "f32[6]")]
    # every parameter of the model belongs to exactly one layer here, and every layer's nodes carry its scope
    owned = [p for layer in g.layers for p in layer.params]
    assert sorted(owned) == sorted(p.name for p in g.params)
    scopes = {n.scope for n in g.nodes}
    assert all(layer.name in scopes for layer in g.layers)


def test_helper_bindings_of_the_section_reach_the_loss(tmp_path):
    import numpy as np
    from dlc.backends.numpy.interpreter import Interpreter
    f = tmp_path / "m.dln"
    f.write_text(SPEC.replace("    loss      = LOSS", "    scale     = 0.25\n    loss      = scale * mse(output, label)"))
    mod = load_module(f)
    g = train_settings(mod, mod.trains[0]).loss.graph("train")
    rng = np.random.default_rng(0)
    o, y = rng.standard_normal((4, 3)).astype(np.float32), rng.standard_normal((4, 3)).astype(np.float32)
    outs, _ = Interpreter(g, dims={"B": 4}).run({"out:output": o, "x": np.zeros((4, 6), np.float32), "label": y}, {})
    np.testing.assert_allclose(outs["loss"], 0.25 * np.mean((o - y) ** 2), rtol=1e-6)
    # and the Python API's gradients use the same loss
    m = dlc.load(f)
    w = m.init_weights(0)
    x = rng.standard_normal((4, 6)).astype(np.float32)
    ref = 0.25 * np.mean((m.run({"x": x}, w)["output"] - y) ** 2)
    np.testing.assert_allclose(m.grad({"x": x}, w, label=y)["loss"], ref, rtol=1e-5)


def test_drop_last_is_a_typed_setting(tmp_path):
    """`drop_last` reaches the TrainSpec as a bool (default False, like torch's
    DataLoader), and a non-bool value is a located error."""
    assert _spec(tmp_path, "mse(output, label)").drop_last is False

    def load(name, value):
        f = tmp_path / name
        f.write_text(SPEC.replace("LOSS", "mse(output, label)")
                     .replace("    batch     = 8", f"    batch     = 8\n    drop_last = {value}"))
        return load_module(f)

    mod = load("on.dln", "true")
    assert train_settings(mod, mod.trains[0]).drop_last is True
    bad = load("bad.dln", "1")
    with pytest.raises(dlc.DlcError) as e:
        train_settings(bad, bad.trains[0])
    line = (tmp_path / "bad.dln").read_text().splitlines().index("    drop_last = 1") + 1
    assert "drop_last must be true or false" in str(e.value) and e.value.span.line == line
