"""The pass manager: levels, --passes/--disable-pass, errors naming the pass
and the .dln line, the verifier after every pass, and the CLI flags."""
from __future__ import annotations

import pytest
from click.testing import CliRunner

import dlc
import dlc.compiler.passes as passes_mod
from dlc.cli import main
from dlc.compiler.passes import (PASSES, PIPELINE, PassDef, PassError, PipelineOptions, run_pipeline,
                                 selected_passes)
from dlc.errors import DlcError


def test_every_registered_pass_is_in_the_pipeline_with_a_level_and_summary():
    assert PIPELINE, "no pass registered"
    for name in PIPELINE:
        p = PASSES[name]
        assert p.level in (1, 2, 3) and p.summary


def test_levels_select_nested_sets_and_O0_selects_nothing():
    sets = [{p.name for p in selected_passes(PipelineOptions(level=lv), "eval")} for lv in range(4)]
    assert sets[0] == set()
    assert sets[0] <= sets[1] <= sets[2] <= sets[3]
    # every pass but those an option turns on (quantize/lower_int8 with a QuantPlan, autocast with a precision)
    assert sets[3] == {n for n in PIPELINE if "eval" in PASSES[n].modes and PASSES[n].when is None}


def test_passes_and_disable_pass():
    one = PIPELINE[0]
    assert [p.name for p in selected_passes(PipelineOptions(passes=(one,)), "eval")] == [one]
    assert one not in [p.name for p in selected_passes(PipelineOptions(level=3, disable=(one,)), "eval")]


@pytest.mark.parametrize("field", ["passes", "disable"])
def test_unknown_pass_name_lists_the_passes(field):
    with pytest.raises(DlcError) as e:
        PipelineOptions(**{field: ("no_such_pass",)})
    assert "unknown pass 'no_such_pass'" in e.value.message
    assert all(n in e.value.hint for n in PIPELINE)


def test_unknown_level():
    with pytest.raises(DlcError, match="-O7"):
        PipelineOptions(level=7)


@pytest.fixture
def broken_pass(monkeypatch):
    """A pass that fails on the first conv2d it meets."""
    def bad(g, ctx):
        for n in g.nodes:
            ctx.node = n
            if n.op.name == "conv2d":
                raise ValueError("cannot handle this")
    monkeypatch.setitem(PASSES, "broken", PassDef("broken", bad, 1, "always fails on conv2d"))
    monkeypatch.setattr(passes_mod, "PIPELINE", list(PIPELINE) + ["broken"])
    return "broken"


def test_a_failing_pass_names_itself_and_the_dln_line(broken_pass):
    m = dlc.load("specs/lenet5.dln")
    with pytest.raises(PassError) as e:
        run_pipeline(m.symbolic_graph(), PipelineOptions(passes=(broken_pass,)))
    err = e.value
    assert "pass 'broken' failed" in err.message and "cannot handle this" in err.message
    assert err.span is not None and err.span.file.endswith("lenet5.dln")
    src = open("specs/lenet5.dln").read().splitlines()[err.span.line - 1]
    assert "conv2d" in src
    assert "--disable-pass broken" in err.hint


def test_a_pass_that_breaks_the_ir_is_caught_by_the_verifier(monkeypatch):
    def breaks(g, ctx):
        ctx.node = g.nodes[-1]
        g.nodes.reverse()          # uses before definitions
    monkeypatch.setitem(PASSES, "breaks", PassDef("breaks", breaks, 1, "reverses the graph"))
    monkeypatch.setattr(passes_mod, "PIPELINE", list(PIPELINE) + ["breaks"])
    m = dlc.load("specs/lenet5.dln")
    with pytest.raises(PassError, match="pass 'breaks' broke the IR"):
        run_pipeline(m.symbolic_graph(), PipelineOptions(passes=("breaks",)), verify=True)


def test_cli_unknown_pass_is_a_one_line_error_listing_passes():
    r = CliRunner().invoke(main, ["run", "specs/lenet5.dln", "--disable-pass", "nope"])
    assert r.exit_code == 1
    assert "error: unknown pass 'nope'" in r.output and PIPELINE[0] in r.output
    assert "Traceback" not in r.output


def test_cli_ir_after_a_pass_and_dump_all():
    r = CliRunner().invoke(main, ["ir", "specs/lenet5.dln", "--after", "dce"])
    assert r.exit_code == 0, r.output
    assert r.output.startswith("graph LeNet5")
    r = CliRunner().invoke(main, ["ir", "specs/lenet5.dln", "-O3", "--dump-ir-after", "all"])
    assert r.exit_code == 0, r.output
    ran = [p.name for p in selected_passes(PipelineOptions(level=3), "eval")]
    assert [line.split()[-2] for line in r.output.splitlines() if line.startswith("// ---- IR after")] == ran


def test_cli_ir_after_a_pass_that_does_not_run():
    r = CliRunner().invoke(main, ["ir", "specs/lenet5.dln", "-O0", "--after", "dce"])
    assert r.exit_code == 1 and "does not run at -O0" in r.output


def test_optimize_returns_a_model_with_its_own_pipeline():
    m = dlc.load("specs/lenet5.dln")
    m0 = m.optimize(level=0)
    assert m.opt.level == 2 and m0.opt.level == 0
    out = m0.run(seed=1)
    assert m0.pass_records == []
    out2 = m.run(seed=1)
    assert [r.name for r in m.pass_records] == [p.name for p in selected_passes(m.opt, "eval")]
    assert out.keys() == out2.keys()
