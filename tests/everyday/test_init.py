"""`dlc init model.dln -o weights.safetensors [--seed S]` (issue 15, "Everyday use")."""
import os

import numpy as np
import pytest
from click.testing import CliRunner

import dlc
from dlc.cli import main
from dlc.runtime.weights import load_weights, read_metadata

SPEC = "specs/lenet5.dln"


def _init(*args):
    return CliRunner().invoke(main, ["init", *args])


def test_init_writes_the_seeded_weights_of_the_spec(tmp_path):
    out = tmp_path / "w.safetensors"
    r = _init(SPEC, "-o", str(out), "--seed", "7")
    assert r.exit_code == 0, r.output
    m = dlc.load(SPEC)
    want = m.init_weights(7)
    got = load_weights(out)
    assert set(got) == set(want) == {p.name for p in m.parameters} | {b.name for b in m.buffers}
    for k in want:
        np.testing.assert_array_equal(got[k], want[k], err_msg=k)
    assert not all(np.array_equal(got[k], v) for k, v in m.init_weights(8).items())
    n = m.info()["params"]
    assert f"{n:,} parameters" in r.output and f"{len(want)} tensors" in r.output
    meta = read_metadata(out)
    assert meta["dlc.model"] == m.name and meta["dlc.seed"] == "7"


def test_run_with_the_init_file_equals_run_with_the_seed(tmp_path):
    out = tmp_path / "w.safetensors"
    assert _init(SPEC, "-o", str(out), "--seed", "4").exit_code == 0
    m = dlc.load(SPEC)
    x = m.random_inputs(0)
    from_file = m.run(x, load_weights(out))
    from_seed = m.run(x, m.init_weights(4))
    for k in from_seed:
        np.testing.assert_array_equal(from_file[k], from_seed[k])
    r = CliRunner().invoke(main, ["run", SPEC, "--weights", str(out)])    # strict loading accepts it
    assert r.exit_code == 0, r.output


def test_init_file_loads_strictly_into_the_torch_module(tmp_path):
    torch = pytest.importorskip("torch")
    from safetensors.torch import load_file
    from dlc.backends.torch.modgen import load_module
    out = tmp_path / "w.safetensors"
    assert _init("specs/resnet18.dln", "-o", str(out)).exit_code == 0
    net = load_module(dlc.load("specs/resnet18.dln"))
    net.load_state_dict(load_file(str(out)), strict=True)
    assert isinstance(net, torch.nn.Module)


def test_init_default_name_and_no_silent_overwrite(tmp_path, monkeypatch):
    spec = os.path.abspath(SPEC)
    monkeypatch.chdir(tmp_path)
    assert _init(spec).exit_code == 0
    first = (tmp_path / "lenet5.safetensors").read_bytes()
    r = _init(spec, "--seed", "1")
    assert r.exit_code == 1 and "exists" in r.output and "--overwrite" in r.output
    assert (tmp_path / "lenet5.safetensors").read_bytes() == first
    assert _init(spec, "--seed", "1", "--overwrite").exit_code == 0
    assert (tmp_path / "lenet5.safetensors").read_bytes() != first


def test_init_bad_input_is_a_located_error(tmp_path):
    bad = tmp_path / "bad.dln"
    bad.write_text("model M(x: f32[N, 3]) {\n  y = dense(x, 4\n}\n")
    r = _init(str(bad), "-o", str(tmp_path / "w.safetensors"))
    assert r.exit_code == 1 and "bad.dln:" in r.output and "Traceback" not in r.output
    assert not (tmp_path / "w.safetensors").exists()
    r = _init(SPEC, "-o", str(tmp_path / "no" / "w.safetensors"))
    assert r.exit_code == 2 and "does not exist" in r.output
