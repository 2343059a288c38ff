"""Every ```python block in README.md and docs/ runs as written.

A block runs in a fresh namespace, in a temporary folder that holds a link to
the zoo (`specs/`), so that the paths the docs use work.  Blocks of one page
run in order and share nothing.  A page that needs a file made first says so
in an HTML comment just before the block, which the reader does not see:

    <!-- setup: dlc compile specs/mlp.dln --target cpu -o model.dlcpkg -->

The setup line is a `dlc` command line, run as `python -m dlc ...`.

A block that quotes the source rather than being an example says which file
it quotes, and the test checks that the file still holds those lines:

    <!-- excerpt: dlc/compiler/ops/activation.py -->
"""
from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
BLOCK = re.compile(r"(?:<!-- (?P<kind>setup|excerpt): (?P<setup>.*?) -->\s*\n)?```python\n(?P<code>.*?)```",
                   re.S)


def _blocks():
    for page in PAGES:
        text = page.read_text()
        for k, m in enumerate(BLOCK.finditer(text)):
            line = text.count("\n", 0, m.start("code")) + 1
            if m.group("kind") == "excerpt":
                continue
            yield pytest.param(page, line, m.group("setup"), m.group("code"),
                               id=f"{page.relative_to(ROOT)}:{line}",
                               marks=[pytest.mark.tvm] if "dlcpkg" in m.group(0) else [])


@pytest.mark.parametrize("page,line,setup,code", list(_blocks()))
def test_doc_example_runs(page, line, setup, code, tmp_path, monkeypatch):
    (tmp_path / "specs").symlink_to(ROOT / "specs")
    monkeypatch.chdir(tmp_path)
    if setup:
        if "dlcpkg" in setup:
            pytest.importorskip("tvm")
        argv = shlex.split(setup)
        assert argv[0] == "dlc", f"{page}:{line}: a setup line is a dlc command"
        subprocess.run([sys.executable, "-m", "dlc", *argv[1:]], check=True, cwd=tmp_path,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
    # compile with the page's name and line so a failure points into the doc
    exec(compile("\n" * (line - 1) + code, str(page), "exec"), {"__name__": "__doc_example__"})


def _excerpts():
    for page in PAGES:
        text = page.read_text()
        for m in BLOCK.finditer(text):
            if m.group("kind") == "excerpt":
                line = text.count("\n", 0, m.start("code")) + 1
                yield pytest.param(page, m.group("setup").strip(), m.group("code"),
                                   id=f"{page.relative_to(ROOT)}:{line}")


@pytest.mark.parametrize("page,source,code", list(_excerpts()))
def test_doc_excerpt_matches_the_source(page, source, code):
    """A quoted block is the code as it stands: each of its lines, in order, in the named file
    (a comment the page adds after two spaces is the page's annotation, not part of the quote)."""
    lines = [ln.strip() for ln in (ROOT / source).read_text().splitlines()]
    want = [ln.split("  # ")[0].strip() for ln in code.splitlines() if ln.strip()]
    pos = 0
    for w in want:
        assert w in lines[pos:], f"{page}: quoted line {w!r} is not (in order) in {source}"
        pos = lines.index(w, pos) + 1


def test_every_page_is_scanned():
    """The reader finds the blocks (a broken regex would make the test above vacuous)."""
    found = list(_blocks())
    assert len(found) >= 5
    assert any(p.values[0].name == "README.md" for p in found)
