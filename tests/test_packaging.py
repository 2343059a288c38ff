"""Every Python package folder under dlc/ is listed in pyproject.toml's
`[tool.setuptools] packages`: a folder left out works in the editable
install of the tests and is missing from a wheel."""
from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_package_folder_is_listed():
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "dlc").rglob("__init__.py")}
    assert found - listed == set(), f"package folders missing from pyproject.toml: {sorted(found - listed)}"
    assert listed - found == set(), f"pyproject.toml lists packages that do not exist: {sorted(listed - found)}"
