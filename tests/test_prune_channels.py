"""`dlc prune --structured channel`: the rewritten spec, its parameter count,
exact equivalence with the original on the kept channels, and errors."""
import numpy as np
import pytest
from click.testing import CliRunner

import dlc
from dlc.cli import main
from dlc.compiler.prune import channel_groups
from dlc.errors import DlcError
from dlc.frontend.check import check_file
from dlc.prune_channels import channel_scores, prune_channels
from dlc.prune_spec import write_spec
from dlc.runtime.weights import save_weights

TINY_RESNET = """
block Basic(planes: int, stride: int = 1)(x: f32[N, C, H, W]) {
    out = conv2d(x, planes, kernel=3, stride=stride, padding=1, bias=false, name="conv1")
        |> batchnorm(name="bn1") |> relu
    out = conv2d(out, planes, kernel=3, padding=1, bias=false, name="conv2") |> batchnorm(name="bn2")
    identity = x
    if stride != 1 or C != planes {
        identity = conv2d(x, planes, kernel=1, stride=stride, bias=false, name="down") |> batchnorm(name="dbn")
    }
    return relu(out + identity)
}

model Tiny(image: f32[N, 3, 8, 8]) -> f32[N, 5] {
    example N = 2
    x = conv2d(image, 8, kernel=3, padding=1, bias=false, name="stem") |> batchnorm(name="bn") |> relu
    x = Basic(8)(x, name="b1")
    x = Basic(12, stride=2)(x, name="b2")
    return dense(global_avgpool(x), 5, name="fc")
}
"""


def _weights(m, seed=1):
    """Initial weights with batch-norm statistics and affine parameters that are not the identity."""
    rng = np.random.default_rng(seed)
    w = m.init_weights(seed)
    for k, v in w.items():
        if k.endswith("running_var"):
            w[k] = rng.uniform(0.5, 2.0, v.shape).astype(v.dtype)
        elif k.endswith(("running_mean", "bn.weight", "bn1.weight", "bn2.weight", "dbn.weight", "bias")) \
                and v.dtype.kind == "f":
            w[k] = rng.normal(0.5, 0.3, v.shape).astype(v.dtype)
    return w


def _prune(tmp_path, spec, sparsity, name="pruned", layers=None, w=None):
    m = dlc.load(spec)
    w = _weights(m) if w is None else w
    texts, pruned, kept, report = prune_channels(m, w, sparsity, layers)
    out = tmp_path / f"{name}.dln"
    write_spec(spec, texts, out)
    return m, w, pruned, kept, report, out


def _removed(kept: np.ndarray, channels: int) -> np.ndarray:
    return np.setdiff1d(np.arange(channels), kept)


def _assert_same_on_kept_channels(m, w, zeroed, out, pruned):
    """The pruned model equals the original whose removed channels feed nothing (float64)."""
    small = dlc.load(out)
    x = m.random_inputs(5)
    want = m.run(x, zeroed, dtype="float64")
    got = small.run(x, pruned, dtype="float64")
    (name,) = want
    assert not np.allclose(m.run(x, w, dtype="float64")[name], want[name])    # the zeroing mattered
    np.testing.assert_allclose(got[name], want[name], rtol=1e-12, atol=1e-12)


def test_digits_cnn(tmp_path):
    m, w, pruned, kept, report, out = _prune(tmp_path, "specs/digits_cnn.dln", 0.3)
    check_file(str(out))
    k1, k2 = 16 - 4, 32 - 9                      # floor(0.3 * 16), floor(0.3 * 32) channels removed
    assert [len(kept["conv1"]), len(kept["conv2"])] == [k1, k2]
    expected = (k1 * 1 * 9 + k1) + (k2 * k1 * 9 + k2) + (64 * k2 * 2 * 2 + 64) + (10 * 64 + 10)
    assert dlc.load(out).info()["params"] == expected
    for layer, c in (("conv1", 16), ("conv2", 32)):       # the lowest-L1 channels went
        s = channel_scores(w[f"{layer}.weight"])
        assert s[_removed(kept[layer], c)].max() <= s[kept[layer]].min()
    zeroed = dict(w)
    zeroed["conv2.weight"] = w["conv2.weight"].copy()
    zeroed["conv2.weight"][:, _removed(kept["conv1"], 16)] = 0
    hidden = w["hidden.weight"].reshape(64, 32, 4).copy()      # flatten: channel-major blocks of 2x2
    hidden[:, _removed(kept["conv2"], 32)] = 0
    zeroed["hidden.weight"] = hidden.reshape(64, 128)
    _assert_same_on_kept_channels(m, w, zeroed, out, pruned)


def test_lenet5(tmp_path):
    m, w, pruned, kept, report, out = _prune(tmp_path, "specs/lenet5.dln", 0.5)
    check_file(str(out))
    k1, k3 = 3, 8
    expected = (k1 * 25 + k1) + (k3 * k1 * 25 + k3) + (120 * k3 * 25 + 120) + (84 * 120 + 84) + (10 * 84 + 10)
    assert dlc.load(out).info()["params"] == expected
    zeroed = dict(w)
    zeroed["c3.weight"] = w["c3.weight"].copy()
    zeroed["c3.weight"][:, _removed(kept["c1"], 6)] = 0
    f5 = w["f5.weight"].reshape(120, 16, 25).copy()
    f5[:, _removed(kept["c3"], 16)] = 0
    zeroed["f5.weight"] = f5.reshape(120, 400)
    _assert_same_on_kept_channels(m, w, zeroed, out, pruned)


def test_resnet_block_widths_become_expressions(tmp_path):
    spec = tmp_path / "tiny.dln"
    spec.write_text(TINY_RESNET)
    m, w, pruned, kept, report, out = _prune(tmp_path, str(spec), 0.3)
    # only the convs inside the blocks are free: the others meet the residual adds
    assert sorted(report.layers) == ["b1.conv1", "b2.conv1"]
    assert {"stem", "b1.conv2", "b2.conv2", "b2.down"} <= set(report.skipped)
    assert "tied to another tensor by `add`" in report.skipped["b1.conv2"]
    text = out.read_text()
    assert "conv2d(x, planes - planes * 3 // 10, kernel=3" in text      # 8 -> 6 and 12 -> 9 from one line
    check_file(str(out))
    k1, k2 = 8 - 2, 12 - 3
    assert [len(kept["b1.conv1"]), len(kept["b2.conv1"])] == [k1, k2]
    full = dlc.load(spec).info()["params"]
    bn = 2       # weight and bias per channel
    assert dlc.load(out).info()["params"] == full - (8 - k1) * (8 * 9 + bn + 8 * 9) - (12 - k2) * (8 * 9 + bn + 12 * 9)
    zeroed = dict(w)
    for blk, c in (("b1", 8), ("b2", 12)):
        zeroed[f"{blk}.conv2.weight"] = w[f"{blk}.conv2.weight"].copy()
        zeroed[f"{blk}.conv2.weight"][:, _removed(kept[f"{blk}.conv1"], c)] = 0
    _assert_same_on_kept_channels(m, w, zeroed, out, pruned)


def test_resnet18_imports_are_written_beside_the_new_spec(tmp_path):
    m = dlc.load("specs/resnet18.dln", bind={"size": 32})
    w = m.init_weights(0)
    texts, pruned, kept, report = prune_channels(m, w, 0.3)
    written = write_spec("specs/resnet18.dln", texts, tmp_path / "r18.dln")
    assert tmp_path / "r18.imports" / "blocks" / "resnet_blocks.dln" in written
    small = dlc.load(tmp_path / "r18.dln", bind={"size": 32})
    assert small.info()["params"] == report.params_before - sum(
        (c - k) * (w[f"{n}.weight"][0].size + 2 + w[f"{n[:-1]}2.weight"].shape[0] * 9)
        for n, (c, k) in report.layers.items())
    assert len(report.layers) == 8 and "conv1" in report.skipped


def test_cli_writes_spec_and_weights_and_prints_the_count(tmp_path):
    m = dlc.load("specs/digits_cnn.dln")
    save_weights(tmp_path / "w.safetensors", _weights(m))
    r = CliRunner().invoke(main, ["prune", "specs/digits_cnn.dln", "-w", str(tmp_path / "w.safetensors"),
                                  "--sparsity", "0.3", "--structured", "channel", "-o", str(tmp_path / "s.dln")])
    assert r.exit_code == 0, r.output
    assert "conv1: 16 -> 12 channels" in r.output and "parameters 13,706 -> 9,229" in r.output
    r = CliRunner().invoke(main, ["run", str(tmp_path / "s.dln"), "-w", str(tmp_path / "s.safetensors")])
    assert r.exit_code == 0, r.output


def test_a_tied_layer_named_explicitly_is_an_error(tmp_path):
    spec = tmp_path / "tiny.dln"
    spec.write_text(TINY_RESNET)
    m = dlc.load(spec)
    with pytest.raises(DlcError, match=r"cannot prune the channels of b1.conv2: .*tied .* by `add`") as e:
        prune_channels(m, _weights(m), 0.3, ["b1.conv2"])
    assert e.value.span is not None and e.value.span.line == 10          # the add, in the block
    with pytest.raises(DlcError, match=r"cannot prune b1.conv1 alone: its .dln call also makes b2.conv1"):
        prune_channels(m, _weights(m), 0.3, ["b1.conv1"])
    _, _, _, report = prune_channels(m, _weights(m), 0.3, ["b1.conv1", "b2.conv1"])
    assert sorted(report.layers) == ["b1.conv1", "b2.conv1"]
    with pytest.raises(DlcError, match="no convolution named nope"):
        prune_channels(m, _weights(m), 0.3, ["nope"])
    r = CliRunner().invoke(main, ["prune", str(spec), "-w", "x.safetensors", "--sparsity", "0.3",
                                  "--structured", "channel", "-o", str(tmp_path / "o.safetensors")])
    assert r.exit_code == 1 and "error:" in r.output


def test_grouped_conv_and_outputs_are_not_prunable(tmp_path):
    spec = tmp_path / "g.dln"
    spec.write_text("model G(x: f32[N, 4, 6, 6]) -> f32[N, 8, 6, 6] {\n    example N = 1\n"
                    "    y = conv2d(x, 8, kernel=3, padding=1) |> relu\n"
                    "    z = conv2d(y, 8, kernel=3, padding=1, groups=8)\n    return z\n}\n")
    g = dlc.load(spec)._elaborate("eval")
    why = {grp.layer: grp.blocked for grp in channel_groups(g)}
    assert "grouped" in why["y"] and "grouped" in why["z"]
    m = dlc.load(spec)
    with pytest.raises(DlcError, match="no convolution of G can lose channels"):
        prune_channels(m, m.init_weights(0), 0.5)


def test_channel_pruning_checks_sparsity_and_weights(tmp_path):
    m = dlc.load("specs/digits_cnn.dln")
    with pytest.raises(DlcError, match="out of range"):
        prune_channels(m, _weights(m), 1.0)
    with pytest.raises(DlcError, match="no entry for 'conv1.weight'"):
        prune_channels(m, dlc.load("specs/lenet5.dln").init_weights(0), 0.3)


def test_kept_counts_round_to_multiples():
    from fractions import Fraction

    from dlc.prune_channels import kept_count
    f = Fraction(3, 10)
    assert [kept_count(c, f, 16) for c in (64, 128, 256, 512)] == [48, 96, 176, 352]
    assert [kept_count(c, f) for c in (64, 128, 256, 512)] == [45, 90, 180, 359]
    assert kept_count(16, f, 16) == 16 and kept_count(32, f, 16) == 16 and kept_count(2, Fraction(9, 10)) == 1


def test_rounded_widths_in_a_block_are_rewritten_as_rounding_expressions(tmp_path):
    spec = tmp_path / "tiny.dln"
    spec.write_text(TINY_RESNET)
    m = dlc.load(spec)
    w = _weights(m)
    texts, pruned, kept, report = prune_channels(m, w, 0.3, round_to=2)
    out = tmp_path / "r.dln"
    write_spec(str(spec), texts, out)
    assert "conv2d(x, (planes - planes * 3 // 10 + 1) // 2 * 2, kernel=3" in out.read_text()
    assert report.layers == {"b1.conv1": (8, 6), "b2.conv1": (12, 10)}
    zeroed = dict(w)
    for blk, c in (("b1", 8), ("b2", 12)):
        zeroed[f"{blk}.conv2.weight"] = w[f"{blk}.conv2.weight"].copy()
        zeroed[f"{blk}.conv2.weight"][:, _removed(kept[f"{blk}.conv1"], c)] = 0
    _assert_same_on_kept_channels(m, w, zeroed, out, pruned)
    # rounded to 4, both blocks keep 8: one literal width
    texts, _, _, report = prune_channels(m, w, 0.3, round_to=4)
    assert report.layers == {"b1.conv1": (8, 8), "b2.conv1": (12, 8)}
    assert "conv2d(x, 8, kernel=3, stride=stride" in texts[str(spec)]


def test_channel_groups_record_every_axis_the_channels_size():
    g = dlc.load("specs/digits_cnn.dln")._elaborate("eval")
    axes = {grp.layer: [(a.param, a.axis, a.block) for a in grp.axes] for grp in channel_groups(g)}
    assert axes == {"conv1": [("conv1.weight", 0, 1), ("conv1.bias", 0, 1), ("conv2.weight", 1, 1)],
                    "conv2": [("conv2.weight", 0, 1), ("conv2.bias", 0, 1), ("hidden.weight", 1, 4)]}
    g = dlc.load("specs/resnet18.dln", bind={"size": 32})._elaborate("eval")
    groups = {grp.layer: grp for grp in channel_groups(g)}
    bn = {a.param for a in groups["layer2.0.conv1"].axes}
    assert bn >= {"layer2.0.bn1.weight", "layer2.0.bn1.bias", "layer2.0.bn1.running_mean",
                  "layer2.0.bn1.running_var", "layer2.0.conv2.weight"}
    assert not groups["conv1"].prunable and groups["conv1"].blocked_span.line == 18      # the BasicBlock's add
    assert sum(grp.prunable for grp in groups.values()) == 8
