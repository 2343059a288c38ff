"""Imports from anywhere: `zoo:` names the model zoo, and a search path
(`dlc.load(include=...)`, `DLC_PATH`, `dlc --include`) is tried after the
importing file's own folder.  Files outside the project, the zoo and the search
path stay unreadable."""
from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import dlc
from dlc.cli import main
from dlc.errors import DlcError
from dlc.frontend.modules import clear_cache

SPECS = Path(__file__).resolve().parents[2] / "specs"

USES_ZOO = """
import "zoo:blocks/resnet_blocks.dln"

model Small(x: f32[N, 3, 32, 32]) {
    example N = 2
    y = ResLayer(BasicBlock, 8, 2, stride=2)(x, name="layer1")
    return y
}
"""

HEAD = """
block Head(n: int)(x: f32[N, C, H, W]) {
    return dense(global_avgpool(x), n, name="fc")
}
"""

USES_LIB = """
import "heads.dln"

model WithHead(x: f32[N, 3, 8, 8]) {
    example N = 2
    return Head(4)(x, name="head")
}
"""


@pytest.fixture(autouse=True)
def _fresh(monkeypatch):
    monkeypatch.delenv("DLC_PATH", raising=False)
    monkeypatch.delenv("DLC_ZOO", raising=False)
    clear_cache()
    yield
    clear_cache()


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def test_zoo_prefix_from_outside_the_checkout(tmp_path):
    m = dlc.load(_write(tmp_path / "proj" / "small.dln", USES_ZOO))
    names = {p.name for p in m.parameters}
    assert "layer1.0.downsample.0.weight" in names and "layer1.1.conv2.weight" in names
    out = m.run()
    assert out["y"].shape == (2, 8, 16, 16)


def test_dlc_zoo_env_moves_the_zoo(tmp_path, monkeypatch):
    _write(tmp_path / "myzoo" / "blocks" / "resnet_blocks.dln", HEAD)
    monkeypatch.setenv("DLC_ZOO", str(tmp_path / "myzoo"))
    spec = USES_LIB.replace('"heads.dln"', '"zoo:blocks/resnet_blocks.dln"')
    m = dlc.load(_write(tmp_path / "p" / "m.dln", spec))
    assert {p.name for p in m.parameters} == {"head.fc.weight", "head.fc.bias"}


def test_missing_zoo_file(tmp_path):
    with pytest.raises(DlcError) as ei:
        dlc.load(_write(tmp_path / "m.dln", USES_ZOO.replace("resnet_blocks", "no_such_blocks")))
    assert "no such file (looked in the zoo" in ei.value.message and ei.value.span.line == 1


def test_zoo_prefix_cannot_climb_out(tmp_path):
    secret = _write(tmp_path / "secret.dln", HEAD)
    rel = Path(*([".."] * 12)) / secret.relative_to("/")
    with pytest.raises(DlcError) as ei:
        dlc.load(_write(tmp_path / "p" / "m.dln", USES_ZOO.replace("blocks/resnet_blocks.dln", str(rel))))
    assert "outside the project folder" in ei.value.message


def test_include_argument(tmp_path):
    lib = _write(tmp_path / "lib" / "heads.dln", HEAD).parent
    spec = _write(tmp_path / "proj" / "m.dln", USES_LIB)
    with pytest.raises(DlcError) as ei:
        dlc.load(spec)
    assert "no such file" in ei.value.message and "DLC_PATH" in ei.value.hint
    clear_cache()
    m = dlc.load(spec, include=[str(lib)])
    assert {p.name for p in m.parameters} == {"head.fc.weight", "head.fc.bias"}
    assert m.run()["output"].shape == (2, 4)


def test_dlc_path_env_and_order(tmp_path, monkeypatch):
    first = _write(tmp_path / "one" / "heads.dln", HEAD).parent
    second = _write(tmp_path / "two" / "heads.dln", HEAD.replace('name="fc"', 'name="other"')).parent
    spec = _write(tmp_path / "proj" / "m.dln", USES_LIB)
    import os
    monkeypatch.setenv("DLC_PATH", os.pathsep.join([str(second), str(first)]))
    assert {p.name for p in dlc.load(spec).parameters} == {"head.other.weight", "head.other.bias"}
    # include comes before DLC_PATH
    clear_cache()
    assert {p.name for p in dlc.load(spec, include=[str(first)]).parameters} == {"head.fc.weight",
                                                                                 "head.fc.bias"}
    # a file next to the importer wins over the search path
    _write(tmp_path / "proj" / "heads.dln", HEAD.replace('name="fc"', 'name="local"'))
    clear_cache()
    assert {p.name for p in dlc.load(spec, include=[str(first)]).parameters} == {"head.local.weight",
                                                                                 "head.local.bias"}


def test_search_path_file_imports_its_neighbours(tmp_path):
    lib = tmp_path / "lib"
    _write(lib / "heads.dln", """
        import "inner/core.dln"
        block Head(n: int)(x: f32[N, C, H, W]) {
            return Core(n)(global_avgpool(x))
        }
    """)
    _write(lib / "inner" / "core.dln", """
        block Core(n: int)(x) { return dense(x, n, name="fc") }
    """)
    m = dlc.load(_write(tmp_path / "proj" / "m.dln", USES_LIB), include=[lib])
    assert {p.name for p in m.parameters} == {"head.Core.fc.weight", "head.Core.fc.bias"}


def test_outside_every_root_is_still_refused(tmp_path):
    lib = _write(tmp_path / "lib" / "heads.dln", HEAD).parent
    _write(tmp_path / "elsewhere" / "x.dln", HEAD)
    spec = _write(tmp_path / "proj" / "m.dln", USES_LIB.replace('"heads.dln"', '"../elsewhere/x.dln"'))
    with pytest.raises(DlcError) as ei:
        dlc.load(spec, include=[lib])
    assert "outside the project folder" in ei.value.message
    assert "--include" in ei.value.hint


def test_cli_include_option(tmp_path):
    lib = _write(tmp_path / "lib" / "heads.dln", HEAD).parent
    spec = _write(tmp_path / "proj" / "m.dln", USES_LIB)
    r = CliRunner().invoke(main, ["check", str(spec)])
    assert r.exit_code == 1 and "cannot import heads.dln" in r.output
    clear_cache()
    import os
    before = os.environ.get("DLC_PATH")
    try:
        r = CliRunner().invoke(main, ["--include", str(lib), "info", str(spec), "--json"])
        assert r.exit_code == 0, r.output
        assert "head.fc" in r.output
    finally:
        if before is None:
            os.environ.pop("DLC_PATH", None)
        else:
            os.environ["DLC_PATH"] = before
