"""Transfer learning in `dlc train`: strict `--weights`, `freeze` with a pruned
backward on every backend, `freeze_bn`, and their errors."""
from __future__ import annotations

import collections
import json

import numpy as np
import pytest
from click.testing import CliRunner

import dlc
from dlc.trainer import train
from dlc.cli import main
from dlc.errors import DlcError
from dlc.runtime.weights import check_state_dict, load_weights, save_weights

pytest.importorskip("sklearn")

TINY = """
model Tiny(x: f32[B, 64]) -> f32[B, 10] {{
    example B = 2
    h = dense(x, 16, name="body") |> relu
    output = dense(h, 10, name="{head}")
    return output
}}

train Tiny on digits {{
    loss      = cross_entropy(output, label)
    optimizer = sgd(lr=0.1, momentum=0.9)
    epochs    = 1
    batch     = 128
{extra}
}}
"""


def spec(tmp_path, name="m.dln", head="fc", extra=""):
    p = tmp_path / name
    p.write_text(TINY.format(head=head, extra=extra))
    return p


def cli(*args):
    r = CliRunner().invoke(main, [str(a) for a in args])
    return r


# ------------------------------------------------------------------ strict loading
def test_strict_check_lists_every_problem_with_a_hint():
    expected = {"a.weight": ((2, 3), "float32"), "a.bias": ((2,), "float32"), "fc.weight": ((4, 2), "float32"),
                "b.weight": ((3,), "float32")}
    given = {"a.weight": np.zeros((3, 2), np.float32), "a.bias": np.zeros(2, np.float64),
             "head.weight": np.zeros((5, 2), np.float32), "b.weight": np.zeros(3, np.float32)}
    with pytest.raises(DlcError) as e:
        check_state_dict(expected, given)
    msg = e.value.message
    assert "missing (1): fc.weight" in msg and "unused (1): head.weight" in msg
    assert "a.weight: float32[3, 2] in the file, the model has float32[2, 3]" in msg
    assert "a.bias: float64[2]" in msg
    assert '--allow-missing "fc.*"' in e.value.hint and '--allow-unused "head.*"' in e.value.hint
    # allowing by pattern excuses names, never a wrong shape
    given["a.weight"], given["a.bias"] = np.zeros((2, 3), np.float32), np.zeros(2, np.float32)
    loaded, missing = check_state_dict(expected, given, allow_missing=("fc.*",), allow_unused=("head.*",))
    assert loaded == ["a.weight", "a.bias", "b.weight"] and missing == ["fc.weight"]


def test_train_from_weights_loads_strictly_and_records_what_was_initialised(tmp_path):
    src = spec(tmp_path, "src.dln")
    pre = dlc.load(src).init_weights(seed=7)
    pre = {k: v + 0.5 for k, v in pre.items()}        # distinguishable from any seed's init
    save_weights(tmp_path / "pre.safetensors", pre)
    new = spec(tmp_path, "new.dln", head="head")       # a new head: names the file lacks
    r = cli("train", new, "--weights", tmp_path / "pre.safetensors", "--out", tmp_path / "r")
    assert r.exit_code != 0
    assert "missing (2): head.weight, head.bias" in r.output and "unused (2): fc.bias, fc.weight" in r.output
    assert '--allow-missing "head.*"' in r.output
    r = cli("train", new, "--weights", tmp_path / "pre.safetensors", "--allow-missing", "head.*",
            "--allow-unused", "fc.*", "--out", tmp_path / "r", "--no-progress", "--freeze", "body.*")
    assert r.exit_code == 0, r.output
    rec = json.loads((tmp_path / "r" / "transfer.json").read_text())
    assert rec["loaded"] == ["body.weight", "body.bias"]
    assert rec["initialised"] == ["head.weight", "head.bias"] and rec["unused"] == ["fc.bias", "fc.weight"]
    assert rec["frozen"] == ["body.bias", "body.weight"]
    w = load_weights(tmp_path / "r" / "best.safetensors")
    np.testing.assert_array_equal(w["body.weight"], pre["body.weight"])    # loaded, frozen: bitwise
    init = dlc.load(new).init_weights(seed=0)
    assert not np.array_equal(w["head.weight"], init["head.weight"])        # trained from the spec's init


def test_weights_in_the_train_section_are_relative_to_the_spec(tmp_path):
    src = spec(tmp_path, "src.dln")
    pre = {k: v * 2 for k, v in dlc.load(src).init_weights(seed=3).items()}
    (tmp_path / "w").mkdir()
    save_weights(tmp_path / "w" / "pre.safetensors", pre)
    p = spec(tmp_path, extra='    weights = "w/pre.safetensors"\n    freeze = ["body.*", "fc.bias"]')
    r = cli("train", p, "--out", tmp_path / "r", "--no-progress")
    assert r.exit_code == 0, r.output
    w = load_weights(tmp_path / "r" / "best.safetensors")
    for k in ("body.weight", "body.bias", "fc.bias"):
        np.testing.assert_array_equal(w[k], pre[k])
    assert not np.array_equal(w["fc.weight"], pre["fc.weight"])


def test_run_weights_is_strict_about_unused_entries(tmp_path):
    p = spec(tmp_path)
    w = dlc.load(p).init_weights(seed=1)
    save_weights(tmp_path / "w.safetensors", {**w, "extra.weight": np.zeros(3, np.float32)})
    r = cli("run", p, "--weights", tmp_path / "w.safetensors")
    assert r.exit_code != 0 and "unused (1): extra.weight" in r.output
    assert cli("run", p, "--weights", tmp_path / "w.safetensors", "--allow-unused", "extra.*").exit_code == 0
    save_weights(tmp_path / "w2.safetensors", {k: v for k, v in w.items() if k != "fc.bias"})
    r = cli("run", p, "--weights", tmp_path / "w2.safetensors")
    assert r.exit_code != 0 and "missing (1): fc.bias" in r.output
    assert cli("run", p, "--weights", tmp_path / "w2.safetensors", "--allow-missing", "fc.bias").exit_code == 0


# ------------------------------------------------------------------ freezing
FREEZE_RUNS = [("numpy", None), ("torch", "autograd"), ("torch", "symbolic"),
               pytest.param("tvm", None, marks=pytest.mark.slow)]


@pytest.mark.parametrize("backend,grad", FREEZE_RUNS)
def test_frozen_parameters_are_bitwise_unchanged(tmp_path, backend, grad):
    pytest.importorskip("torch" if backend == "torch" else "numpy")
    if backend == "tvm":
        pytest.importorskip("tvm")
    p = spec(tmp_path, extra='    freeze = ["body.weight"]')
    res = train(p, backend=backend, grad=grad, out=str(tmp_path / "r"), progress=False,
                            freeze=("fc.bias",))
    init = dlc.load(p).init_weights(seed=0)
    for k in ("body.weight", "fc.bias"):
        np.testing.assert_array_equal(res.weights[k], init[k])
    for k in ("body.bias", "fc.weight"):
        assert not np.array_equal(res.weights[k], init[k]), k


def _step_graph(path, freeze):
    from dlc.compiler.param_select import resolve
    from dlc.compiler.training import build_train_step
    from dlc.frontend.blocks import elaborate_model
    from dlc.frontend.modules import load_module
    from dlc.frontend.train import train_settings
    mod = load_module(path)
    s = train_settings(mod, mod.trains[0], {})
    g = elaborate_model(mod, s.model, "train", {})
    s.freeze = list(freeze)
    resolve(s, [p.name for p in g.trainable_params()])
    return build_train_step(g, s)


def test_freezing_the_convolutions_prunes_their_backward():
    from dlc.compiler.verify import verify
    full = _step_graph("specs/digits_cnn.dln", [])
    frozen = _step_graph("specs/digits_cnn.dln", ["conv1.*", "conv2.*"])
    verify(frozen.graph)
    ops = collections.Counter(n.op.name for n in frozen.graph.nodes)
    ops_full = collections.Counter(n.op.name for n in full.graph.nodes)
    # no weight gradient (conv2d of input and cotangent), no gradient through the pools (their
    # indices) nor the data gradient of conv2 (conv_transpose2d): only the forward convolutions remain
    assert ops_full["conv2d"] == 4 and ops["conv2d"] == 2
    assert ops_full["conv_transpose2d"] == 1 and ops["conv_transpose2d"] == 0
    assert ops_full["max_pool2d_indices"] == 2 and ops["max_pool2d_indices"] == 0
    assert len(frozen.graph.nodes) < 0.6 * len(full.graph.nodes)
    assert not any(n.startswith("param:conv") for n in frozen.outputs)
    assert {p.name for p in frozen.params} == {"hidden.weight", "hidden.bias", "output.weight", "output.bias"}


def test_autograd_computes_no_gradient_for_frozen_parameters(tmp_path):
    pytest.importorskip("torch")
    from dlc.backends.torch.training import AutogradStep
    from dlc.trainer import _setup
    p = spec(tmp_path, extra='    freeze = ["body.*"]')
    job = dict(path=str(p), model=None, data=None, data_path=None, epochs=None, batch=None, seed=None, out=None,
               resume=False, bind={}, progress=False, lr=None, max_steps=None, backend="torch", grad="autograd",
               overwrite=False, drop_last=None, opt=None, weights=None, allow_missing=(), allow_unused=(),
               freeze=())
    run, step, _, _ = _setup(job, 0)
    assert isinstance(step, AutogradStep)
    xb, yb = run.ds.train[0][:8], run.ds.train[1][:8]
    step.run(run.feed(xb, yb), 0.1, 1, 0)
    assert not step.params["body.weight"].requires_grad and step.params["body.weight"].grad is None
    assert step.params["fc.weight"].grad is not None
    opt_params = {id(q) for g in step.opt.param_groups for q in g["params"]}
    assert id(step.params["body.weight"]) not in opt_params


@pytest.mark.parametrize("pattern,what", [('freeze = ["conv*"]', 'freeze pattern "conv*" matches no parameter'),
                                          ('param_groups = [{match = "x*", lr = 0.1}]', '"x*" matches no parameter'),
                                          ('param_groups = [{match = "fc.*", lr = 0.1}, {match = "*.bias"}]',
                                           "'fc.bias' is matched by \"fc.*\" and by \"*.bias\""),
                                          ('param_groups = [{match = "fc.*", betas = (0.9, 0.99)}]',
                                           "sgd has no argument 'betas'"),
                                          ('param_groups = [{lr = 0.1}]', "needs `match"),
                                          ('freeze = [3]', "freeze lists parameter-name patterns")])
def test_bad_selections_are_located_errors(tmp_path, pattern, what):
    p = spec(tmp_path, extra="    " + pattern)
    r = cli("train", p, "--out", tmp_path / "r", "--no-progress")
    assert r.exit_code != 0
    assert what in r.output and "Traceback" not in r.output
    assert "m.dln:" in r.output


BN = """
model Net(x: f32[B, 1, 8, 8]) -> f32[B, 10] {
    example B = 2
    f = conv2d(x, 4, kernel=3, padding=1, name="features.conv") |> batchnorm(name="features.bn") |> relu
    f = flatten(maxpool2d(f, 2))
    output = dense(f, 10, name="fc")
    return output
}

train Net on digits_images {
    loss      = cross_entropy(output, label)
    optimizer = sgd(lr=0.05)
    freeze    = ["features.*"]
    epochs    = 1
    batch     = 128
    FREEZE_BN
}
"""


@pytest.mark.parametrize("backend,grad", [("numpy", None), ("torch", "autograd"), ("torch", "symbolic")])
def test_freeze_bn_keeps_running_statistics(tmp_path, backend, grad):
    pytest.importorskip("torch" if backend == "torch" else "numpy")
    out = {}
    for flag in (False, True):
        p = tmp_path / f"bn{flag}.dln"
        p.write_text(BN.replace("FREEZE_BN", f"freeze_bn = {'true' if flag else 'false'}"))
        out[flag] = train(p, backend=backend, grad=grad, progress=False, max_steps=3).weights
    init = dlc.load(tmp_path / "bnTrue.dln").init_weights(seed=0)
    for k in ("features.bn.running_mean", "features.bn.running_var", "features.bn.num_batches_tracked"):
        np.testing.assert_array_equal(out[True][k], init[k])
        assert not np.array_equal(out[False][k], init[k]), k      # without freeze_bn they move
    np.testing.assert_array_equal(out[True]["features.bn.weight"], init["features.bn.weight"])
    # different normalisation (running vs batch statistics) -> a different head
    assert not np.allclose(out[True]["fc.weight"], out[False]["fc.weight"])


def test_a_record_outside_param_groups_is_a_located_error(tmp_path):
    p = tmp_path / "r.dln"
    p.write_text("model M(x: f32[N, 4]) {\n    y = {a = 1}\n    return dense(x, 2)\n}\n")
    r = cli("check", p)
    assert r.exit_code != 0 and "r.dln:2:9" in r.output
    assert "record is only a train section's param group" in r.output and "Traceback" not in r.output


def test_alternating_steps_refuse_transfer_settings(tmp_path):
    from pathlib import Path
    gan = Path(__file__).resolve().parents[1] / "specs" / "gan.dln"
    r = cli("train", gan, "--freeze", "Generator.*", "--out", tmp_path / "r", "--no-progress")
    assert r.exit_code != 0 and "not to alternating steps" in r.output and "gan.dln:" in r.output
    assert not (tmp_path / "r").exists()
