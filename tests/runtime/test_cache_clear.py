"""`dlc cache clear`: the compile cache and stale package extraction folders
(issue 10, "Packages")."""
import os
import subprocess
import sys
import tempfile

import pytest
from click.testing import CliRunner

from dlc.cli import main


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


@pytest.mark.skipif(not hasattr(os, "getuid"), reason="POSIX owners")
def test_cache_clear_removes_entries_and_stale_extractions(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setenv("DLC_CACHE_DIR", str(cache))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    uid = os.getuid()
    for key in ("ab" + "1" * 62, "ab" + "2" * 62, "cd" + "3" * 62):
        d = cache / "tvm" / key[:2] / key
        d.mkdir(parents=True)
        (d / "lib.so").write_bytes(b"x" * 1000)
        (d / "entry.json").write_text("{}")
    tuning = cache / "tuning" / "abc"
    tuning.mkdir(parents=True)
    (tuning / "database_tuning_record.json").write_text("[]")
    stale = tmp / f"dlc-lib-{uid}-{_dead_pid()}-xyz"
    stale.mkdir()
    (stale / "lib.so").write_bytes(b"y" * 500)
    live = tmp / f"dlc-lib-{uid}-{os.getpid()}-abc"
    live.mkdir()
    legacy = tmp / f"dlc-pkg-{uid}" / ("f" * 32)
    legacy.mkdir(parents=True)
    (legacy / "lib.so").write_bytes(b"z")
    other_user = tmp / f"dlc-lib-{uid + 1}-{_dead_pid()}-abc"
    other_user.mkdir()
    unrelated = tmp / "keep-me"
    unrelated.mkdir()

    r = CliRunner().invoke(main, ["cache", "clear"])
    assert r.exit_code == 0, r.output
    assert "3 compile cache entries" in r.output and str(cache / "tvm") in r.output
    assert "2 package extraction folders" in r.output
    assert not (cache / "tvm" / "ab").exists() and not (cache / "tvm" / "cd").exists()
    assert tuning.is_dir()                                   # tuning records are not a cache
    assert not stale.exists() and not legacy.parent.exists()
    assert live.exists() and other_user.exists() and unrelated.exists()

    r = CliRunner().invoke(main, ["cache", "clear"])
    assert r.exit_code == 0 and "0 compile cache entries" in r.output
