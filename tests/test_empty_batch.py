"""An empty batch (N = 0) given to a `.dln` model is refused with a message
about the input, never one blaming a `--bind N=0` the user did not give (the
.dlcpkg runtime runs it as PyTorch does: tests/runtime/test_runner_inputs.py)."""
from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

import dlc
from dlc.cli import main
from dlc.errors import DlcError


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_run_with_an_empty_input_names_the_input(tmp_path, backend):
    x = tmp_path / "x0.npy"
    np.save(x, np.zeros((0, 64), np.float32))
    r = CliRunner().invoke(main, ["run", "specs/mlp.dln", "--input", f"x={x}", "--backend", backend])
    assert r.exit_code == 1, r.output
    assert "--bind" not in r.output and "internal error" not in r.output, r.output
    assert "input 'x'" in r.output and "empty" in r.output and "(0, 64)" in r.output, r.output


def test_api_names_the_input():
    m = dlc.load("specs/mlp.dln")
    with pytest.raises(DlcError) as e:
        m.run({"x": np.zeros((0, 64), np.float32)})
    assert "--bind" not in e.value.render() and "input 'x'" in str(e.value)


def test_an_explicit_bind_of_zero_still_names_the_bind():
    r = CliRunner().invoke(main, ["run", "specs/mlp.dln", "--bind", "N=0"])
    assert r.exit_code == 1 and "--bind N=0" in r.output, r.output
