"""Every zoo spec names the source of its reference MAC figure in its header
(issue 15, "Docs say what the code does"), and the figure is what `dlc info`
counts at the spec's example sizes.

    # MACs: 1.814 G, source: torchvision ResNet18_Weights.IMAGENET1K_V1.meta["_ops"]
    # MACs of Generator: 26,624, source: hand count 16*128 + 128*128 + 128*64

A hand count is an arithmetic expression, which must evaluate to the figure;
a long one continues on comment lines indented by four spaces or more."""
from __future__ import annotations

import ast
import operator
import re
from pathlib import Path

import pytest

import dlc
from dlc.frontend.modules import load_module

SPECS = Path(__file__).resolve().parents[2] / "specs"
ZOO = sorted(p.stem for p in SPECS.glob("*.dln"))
LINE = re.compile(r"^# MACs(?: of (?P<model>\w+))?: (?P<value>\d[\d,]*(?:\.\d+)?)(?: (?P<unit>[KMG]))?, "
                  r"source: (?P<source>.+)$")
TORCHVISION = re.compile(r'^torchvision (?P<enum>\w+_Weights)\.(?P<weights>\w+)\.meta\["_ops"\]$')
UNITS = {None: 1, "K": 1e3, "M": 1e6, "G": 1e9}
_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul}


def header(path: Path) -> list[str]:
    lines = []
    for ln in path.read_text().splitlines():
        if not ln.startswith("#"):
            break
        lines.append(ln)
    return lines


def mac_lines(path: Path) -> list[re.Match]:
    """The `# MACs...` lines of the header, continuation lines joined."""
    lines, out = header(path), []
    for i, ln in enumerate(lines):
        if ln.startswith(("# MACs:", "# MACs of ")):
            full = ln
            for nxt in lines[i + 1:]:
                if not nxt.startswith("#    "):
                    break
                full += " " + nxt[1:].strip()
            m = LINE.match(full)
            assert m, f"{path.name}: cannot read {full!r}"
            out.append(m)
    return out


def hand_count(expr: str) -> int:
    """An integer expression of + - * and parentheses, nothing else."""
    def ev(node):
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            return _OPS[type(node.op)](ev(node.left), ev(node.right))
        if isinstance(node, ast.Constant) and type(node.value) is int:
            return node.value
        raise ValueError(f"not a hand count: {ast.dump(node)}")
    return ev(ast.parse(expr, mode="eval"))


@pytest.mark.parametrize("spec", ZOO)
def test_spec_header_names_the_source_of_its_mac_figure(spec):
    path = SPECS / f"{spec}.dln"
    found = mac_lines(path)
    assert found, f"{path.name}: no '# MACs: ..., source: ...' line in the header comment"
    models = load_module(str(path)).models
    named = {m["model"] or models[-1] for m in found}
    assert models[-1] in named, f"{path.name}: no MAC figure for the default model {models[-1]}"
    assert named <= set(models), f"{path.name}: MAC figures for unknown models {named - set(models)}"
    for m in found:
        model = m["model"] or models[-1]
        macs = dlc.load(path, model).info()["macs"]
        text, unit = m["value"], m["unit"]
        if "." in text:     # a rounded figure: dlc's count rounds to it
            digits = len(text.split(".")[1])
            assert unit, f"{path.name}: a decimal figure needs its unit"
            assert round(macs / UNITS[unit], digits) == float(text), (spec, model, macs, text)
        else:               # an exact figure
            assert macs == int(text.replace(",", "")) * UNITS[unit], (spec, model, macs, text)
        source = m["source"]
        if source.startswith("hand count "):
            assert unit is None and hand_count(source[len("hand count "):]) == macs, (spec, source)
        else:
            tv = TORCHVISION.match(source)
            assert tv, f"{path.name}: the source must be 'hand count <expr>' or torchvision's metadata: {source!r}"
            assert unit == "G"      # torchvision's _ops is in G (its docs call it GFLOPS; it counts MACs)


def test_torchvision_figures_match_its_metadata_when_installed():
    models = pytest.importorskip("torchvision.models")
    for spec in ZOO:
        for m in mac_lines(SPECS / f"{spec}.dln"):
            tv = TORCHVISION.match(m["source"])
            if tv:
                meta = getattr(getattr(models, tv["enum"]), tv["weights"]).meta
                assert float(m["value"]) == meta["_ops"], spec


def test_the_checker_rejects_a_wrong_or_missing_figure(tmp_path):
    assert hand_count("2*(3 + 4) - 1") == 13
    with pytest.raises(ValueError):
        hand_count("__import__('os')")
    bad = tmp_path / "m.dln"
    bad.write_text("# A model.\n# MACs: 9,000, source: a blog post\n\nmodel M(x: f32[N, 4]) -> f32[N, 2] {\n"
                   "    example N = 1\n    y = dense(x, 2)\n    return y\n}\n")
    (m,) = mac_lines(bad)
    assert m["value"] == "9,000" and not TORCHVISION.match(m["source"])
    assert dlc.load(bad).info()["macs"] != 9000
