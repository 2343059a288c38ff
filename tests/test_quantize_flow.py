"""Acceptance of the int8 flow (issue 12): mlp and digits_cnn trained on digits,
quantized, evaluated, with the budget, the artifact and the CLI."""
import shutil

import numpy as np
import pytest
from click.testing import CliRunner

import dlc
from dlc.cli import main
from dlc.errors import DlcError
from dlc.quant_artifact import load_artifact, save_artifact, with_plan
from dlc.quant_budget import BudgetError
from dlc.quant_data import load_split
from dlc.runtime.weights import save_weights

# few epochs, larger batches and a higher learning rate: 97% on digits in seconds
TRAINING = {"mlp": dict(epochs=10, batch=64, lr=5e-3), "digits_cnn": dict(epochs=8, batch=64, lr=5e-3)}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """specs/<name>.dln trained on digits with the torch backend (one thread: the tests share the cores),
    and "dim:<name>", a calibration file of training images at a tenth of their brightness."""
    import torch
    d = tmp_path_factory.mktemp("trained")
    out, threads = {}, torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for name, kw in TRAINING.items():
            r = dlc.train(f"specs/{name}.dln", backend="torch", progress=False, **kw)
            assert r.history[-1]["val_accuracy"] > 0.94
            save_weights(d / f"{name}.safetensors", r.weights)
            out[name] = str(d / f"{name}.safetensors")
    finally:
        torch.set_num_threads(threads)
    g = dlc.load("specs/mlp.dln").symbolic_graph()
    np.savez(d / "dim.npz", x=load_split("train", g, "digits").x[:200] * 0.1)
    out["dim"] = str(d / "dim.npz")
    return out


def _ops(model) -> set:
    g = model.optimized(model.symbolic_graph("eval"), "numpy")
    return {n.op.name for n in g.walk()}


@pytest.mark.parametrize("name", ["mlp", "digits_cnn"])
def test_static_int8_per_channel_stays_within_half_a_point(trained, name):
    res = dlc.quantize(f"specs/{name}.dln", trained[name], calib="train", method="minmax", progress=False)
    assert res.fp32_accuracy > 0.9
    assert res.fp32_accuracy - res.int8_accuracy <= 0.005
    assert res.plan.per_channel and res.plan.float_layers == set()
    layers = [r.layer for r in res.rows]
    assert set(res.plan.ranges) == {f"{n}:{end}" for n in layers for end in ("in", "out")}
    assert all(r.precision == "int8" for r in res.rows)
    # the int8 model really runs integer ops, and its outputs differ from fp32 only by rounding
    m = dlc.load(f"specs/{name}.dln")
    q = with_plan(m, res.plan)
    assert {"qdense"} <= _ops(q) and "qdense" not in _ops(m)
    g = m.symbolic_graph()
    x = {g.inputs[0].name: load_split("val", g, "digits_images" if name == "digits_cnn" else "digits").x[:64]}
    f32, i8 = m.run(x, res.weights)["output"], q.run(x, res.weights)["output"]
    assert not np.array_equal(f32, i8)
    np.testing.assert_allclose(i8, f32, atol=0.05 * np.abs(f32).max())
    assert (i8.argmax(1) == f32.argmax(1)).mean() >= 0.95


@pytest.mark.parametrize("method", ["percentile", "entropy"])
def test_other_calibration_methods_run_end_to_end(trained, method):
    res = dlc.quantize("specs/digits_cnn.dln", trained["digits_cnn"], method=method, progress=False)
    assert res.plan.method == method
    minmax = dlc.quantize("specs/digits_cnn.dln", trained["digits_cnn"], evaluate=False, progress=False)
    # a clipping method never widens a range beyond the observed extremes
    for k, (lo, hi) in res.plan.ranges.items():
        assert minmax.plan.ranges[k][0] - 1e-6 <= lo <= hi <= minmax.plan.ranges[k][1] + 1e-6
    assert res.fp32_accuracy - res.int8_accuracy <= 2.0


def test_a_budget_tighter_than_the_int8_loss_returns_layers_to_fp32(trained):
    """Calibrating on images too dim (x0.1) clips the activations: int8 loses accuracy, and the
    budget must win it back by returning layers to fp32."""
    spec, w = "specs/digits_cnn.dln", trained["digits_cnn"]
    plain = dlc.quantize(spec, w, calib=trained["dim"], progress=False)
    loss = (plain.fp32_accuracy - plain.int8_accuracy) * 100
    assert loss > 1.0, "the dim calibration should lose accuracy"
    budget = loss / 2
    try:
        res = dlc.quantize(spec, w, calib=trained["dim"], budget=budget, progress=False)
    except BudgetError as e:
        assert "best reachable loss" in e.message and len(e.result.steps) > 2
        return
    b = res.budget
    assert b.int8 == plain.int8_accuracy and b.fp32 == plain.fp32_accuracy
    assert len(b.float_layers) >= 1 and b.final.loss_pp <= budget
    assert res.plan.float_layers == set(b.float_layers)
    assert {r.layer for r in res.rows if r.precision == "fp32"} == set(b.float_layers)
    assert set(b.sensitivity) == {r.layer for r in res.rows}
    # layers went back in order of sensitivity, each step evaluated
    sens = [b.sensitivity[n] for n in b.float_layers]
    assert sens == sorted(sens, reverse=True) and sens[0] == max(b.sensitivity.values())
    assert [s.what for s in b.steps] == ["fp32", "int8"] + [f"{n} -> fp32" for n in b.float_layers]
    # the artifact keeps those layers in fp32: its int8 graph has one integer op fewer per layer
    ops = [n.op.name for n in with_plan(dlc.load(spec), res.plan).optimized(
        dlc.load(spec).symbolic_graph(), "numpy").walk()]
    assert ops.count("qconv2d") + ops.count("qdense") == 4 - len(b.float_layers)


def test_cli_quantize_then_run_the_artifact(trained, tmp_path):
    out = tmp_path / "mlp.int8.safetensors"
    r = CliRunner().invoke(main, ["quantize", "specs/mlp.dln", "--weights", trained["mlp"], "--calib", "train",
                                  "--method", "minmax", "--budget", "0.5%", "-o", str(out), "--no-progress"])
    assert r.exit_code == 0, r.output
    for word in ("layers:", "hidden", "output", "int8", "held-out accuracy: fp32", str(out)):
        assert word in r.output
    weights, plan = load_artifact(out, "specs/mlp.dln", dlc.load("specs/mlp.dln").symbolic_graph())
    assert plan is not None and plan.method == "minmax"
    x = np.abs(np.random.default_rng(0).standard_normal((8, 64))).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    r = CliRunner().invoke(main, ["run", "specs/mlp.dln", "--weights", str(out), "--input", f"x={tmp_path / 'x.npy'}",
                                  "-o", str(tmp_path / "y.npz")])
    assert r.exit_code == 0, r.output
    got = np.load(tmp_path / "y.npz")["output"]
    m = dlc.load("specs/mlp.dln")
    np.testing.assert_array_equal(got, with_plan(m, plan).run({"x": x}, weights)["output"])
    assert not np.array_equal(got, m.run({"x": x}, weights)["output"])
    # torch runs the int8 graph too (not the float module), bit for bit with the NumPy reference
    r = CliRunner().invoke(main, ["run", "specs/mlp.dln", "--backend", "torch", "--weights", str(out),
                                  "--input", f"x={tmp_path / 'x.npy'}", "-o", str(tmp_path / "t.npz")])
    assert r.exit_code == 0, r.output
    np.testing.assert_array_equal(np.load(tmp_path / "t.npz")["output"], got)
    r = CliRunner().invoke(main, ["bench", "specs/mlp.dln", "--backend", "numpy", "--weights", str(out),
                                  "--repeat", "2", "--warmup", "0"])
    assert r.exit_code == 0 and "[numpy int8]" in r.output, r.output
    r = CliRunner().invoke(main, ["compile", "specs/mlp.dln", "--target", "torch", "--weights", str(out),
                                  "-o", str(tmp_path / "mlp_int8.py")])
    assert r.exit_code == 0, r.output
    assert "_int_mm" in (tmp_path / "mlp_int8.py").read_text()


def _fails_cleanly(r, *words):
    assert r.exit_code == 1, r.output
    assert "Traceback" not in r.output and "internal error" not in r.output
    for w in words:
        assert w in r.output, r.output


def test_cli_bad_inputs_are_located_errors(trained, tmp_path):
    cli = CliRunner()
    np.savez(tmp_path / "bad.npz", x=np.zeros((4, 3, 5, 5), np.float32))
    r = cli.invoke(main, ["quantize", "specs/digits_cnn.dln", "--weights", trained["digits_cnn"],
                          "--calib", str(tmp_path / "bad.npz"), "-o", str(tmp_path / "a.safetensors")])
    _fails_cleanly(r, "specs/digits_cnn.dln:", "(3, 5, 5)")
    assert not (tmp_path / "a.safetensors").exists()
    r = cli.invoke(main, ["quantize", "specs/digits_cnn.dln", "--weights", trained["digits_cnn"], "--calib",
                          trained["dim"], "--budget", "0%", "--max-float-layers", "1", "--no-progress",
                          "-o", str(tmp_path / "b.safetensors")])
    _fails_cleanly(r, "cannot meet the accuracy budget of 0 points", "best reachable loss", "budget steps",
                   "-> fp32")
    assert not (tmp_path / "b.safetensors").exists()
    r = cli.invoke(main, ["quantize", "specs/mlp.dln", "--weights", trained["digits_cnn"],
                          "-o", str(tmp_path / "c.safetensors")])
    _fails_cleanly(r, "does not hold MLP's parameters")
    r = cli.invoke(main, ["quantize", "specs/mlp.dln", "--weights", trained["mlp"], "--budget", "half"])
    _fails_cleanly(r, "--budget 'half' is not a number")


def test_an_artifact_for_another_spec_is_refused(trained, tmp_path):
    art = tmp_path / "mlp.int8.safetensors"
    dlc.quantize("specs/mlp.dln", trained["mlp"], evaluate=False, progress=False).save(art)
    edited = tmp_path / "mlp.dln"
    shutil.copy("specs/mlp.dln", edited)
    edited.write_text(edited.read_text().replace("128", "64"))
    for cmd in (["run", str(edited), "--weights", str(art)],
                ["bench", str(edited), "--backend", "numpy", "--weights", str(art), "--repeat", "1"],
                ["compile", str(edited), "--target", "torch", "--weights", str(art)]):
        r = CliRunner().invoke(main, cmd)
        _fails_cleanly(r, "quantized for another spec", f"{edited}:")
    # the same spec hash but other parameters (a file put together by hand)
    plan = load_artifact(art, "specs/mlp.dln", dlc.load("specs/mlp.dln").symbolic_graph())[1]
    from dlc.run_folder import spec_hash
    w = dict(load_artifact(art, "specs/mlp.dln", dlc.load("specs/mlp.dln").symbolic_graph())[0])
    w["hidden.weight"] = w["hidden.weight"][:, :32]
    save_artifact(tmp_path / "odd.safetensors", w, plan, spec_sha256=spec_hash("specs/mlp.dln"), model="MLP")
    with pytest.raises(DlcError, match=r"hidden.weight is \(128, 32\), the model's \(128, 64\)"):
        load_artifact(tmp_path / "odd.safetensors", "specs/mlp.dln", dlc.load("specs/mlp.dln").symbolic_graph())
