"""`example B = 2` where B is also a file constant: NumPy and `dlc info` used
2 while torch, TVM and `dlc ir` used 8.  The ambiguity is refused, at the
example line, by every command (and by Model.run on every backend)."""
from __future__ import annotations

import pytest
from click.testing import CliRunner

import dlc
from dlc.cli import main
from dlc.errors import DlcError

SPEC = """\
const B = 8

model M(x: f32[B, 4]) -> f32[B, 4] {
    example B = 2
    y = relu(x)
    return y
}
"""


@pytest.fixture
def spec(tmp_path):
    p = tmp_path / "b.dln"
    p.write_text(SPEC)
    return p


@pytest.mark.parametrize("command", [["check"], ["info"], ["info", "--json"], ["ir"], ["run"],
                                     ["run", "--backend", "torch"]])
def test_every_command_refuses_an_example_of_a_constant(spec, command):
    r = CliRunner().invoke(main, [*command, str(spec)])
    assert r.exit_code == 1, r.output
    lines = r.output.strip().splitlines()
    assert lines[0].startswith(f"{spec}:4:13: error:"), r.output
    assert "constant" in lines[0] and "'B'" in lines[0]
    assert lines[-1].startswith("hint:") and "--bind B=" in lines[-1]
    assert "Traceback" not in r.output and "internal error" not in r.output


def test_api_refuses_it_too(spec):
    with pytest.raises(DlcError) as e:
        dlc.load(spec)
    assert e.value.span.line == 4


def test_example_of_a_symbolic_dimension_still_works(tmp_path):
    p = tmp_path / "ok.dln"
    p.write_text(SPEC.replace("const B = 8", "const W = 4").replace("f32[B, 4]", "f32[B, W]"))
    r = CliRunner().invoke(main, ["info", "--json", str(p)])
    assert r.exit_code == 0, r.output
    m = dlc.load(p)
    assert m.run()["y"].shape == (2, 4)
