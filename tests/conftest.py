import os
import sys
from pathlib import Path

import pytest

# helpers shared by test modules in several directories (op_inputs.py)
sys.path.insert(0, str(Path(__file__).resolve().parent))

ROOT = Path(__file__).resolve().parents[1]

# the IR verifier runs after every optimisation pass in the tests
os.environ.setdefault("DLC_VERIFY_PASSES", "1")
SPECS = ROOT / "specs"


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", default=False,
                     help="also run tests marked slow (full-size zoo forward passes)")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--runslow"):
        return
    skip = pytest.mark.skip(reason="slow: run with --runslow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _chdir_root(monkeypatch):
    # specs and docs are referenced relative to the repository root
    monkeypatch.chdir(ROOT)
