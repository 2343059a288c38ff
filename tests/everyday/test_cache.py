"""`dlc cache list|clear`, and dlc's folders under the temp dir cleaned up,
including those a killed process leaves (issue 15, "dlc cache list|clear")."""
import json
import os
import subprocess
import sys
import tempfile
from types import SimpleNamespace

import numpy as np
import pytest
from click.testing import CliRunner

from dlc.cli import main
from dlc.runtime.pkgfile import scratch_dir, stale_extractions

pytestmark = pytest.mark.skipif(not hasattr(os, "getuid"), reason="POSIX owners")


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


@pytest.fixture
def dirs(tmp_path, monkeypatch):
    cache, tmp = tmp_path / "cache", tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setenv("DLC_CACHE_DIR", str(cache))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    return SimpleNamespace(cache=cache, tmp=tmp, uid=os.getuid())


def _fill(d):
    key = "ab" + "1" * 62
    e = d.cache / "tvm" / key[:2] / key
    e.mkdir(parents=True)
    (e / "lib.so").write_bytes(b"x" * 1000)
    (e / "entry.json").write_text(json.dumps({
        "key": key, "model": "ResNet18", "created": "2026-12-07T10:00:00Z",
        "target": {"kind": "llvm", "mcpu": "znver4"},
        "signature": {"inputs": [{"name": "image", "dtype": "float32", "shape": ["N", 3, 224, 224]}]}}))
    (d.cache / "tvm" / "ab" / ".ab2222.xyz").mkdir()                   # an interrupted compile
    tuning = d.cache / "tuning" / "0123456789abcdef"
    tuning.mkdir(parents=True)
    (tuning / "database_tuning_record.json").write_text("[1]\n[2]\n[3]\n")
    data = d.cache / "data"
    data.mkdir(parents=True)
    (data / "images-abc.npy").write_bytes(b"n" * 300)
    (data / "images-abc.json").write_text(json.dumps({"root": "/photos", "n": 12}))
    dead = _dead_pid()
    folders = {
        "stale_lib": d.tmp / f"dlc-lib-{d.uid}-{dead}-aa",
        "stale_ms": d.tmp / f"dlc-ms-{d.uid}-{dead}-bb",
        "stale_tvm": d.tmp / f"dlc-tvm-{d.uid}-{dead}-cc",
        "live_build": d.tmp / f"dlc-build-{d.uid}-{os.getpid()}-dd",
        "other_user": d.tmp / f"dlc-lib-{d.uid + 1}-{dead}-ee",
        "unrelated": d.tmp / "keep-me",
    }
    for p in folders.values():
        p.mkdir()
        (p / "f").write_bytes(b"y" * 10)
    return key, tuning, folders


def test_cache_list_shows_every_kind_with_its_state(dirs):
    key, tuning, folders = _fill(dirs)
    r = CliRunner().invoke(main, ["cache", "list", "--format", "json"])
    assert r.exit_code == 0, r.output
    rows = json.loads(r.output)["entries"]
    by_path = {row["path"]: row for row in rows}
    entry = by_path[str(dirs.cache / "tvm" / "ab" / key)]
    assert entry["kind"] == "compile" and entry["bytes"] >= 1000
    assert "ResNet18 (image float32[N, 3, 224, 224]) for llvm znver4" in entry["details"]
    assert "half-written" in by_path[str(dirs.cache / "tvm" / "ab" / ".ab2222.xyz")]["details"]
    assert "3 tuning records" in by_path[str(tuning)]["details"]
    assert "12 images of /photos" in by_path[str(dirs.cache / "data" / "images-abc.npy")]["details"]
    for name in ("stale_lib", "stale_ms", "stale_tvm"):
        assert by_path[str(folders[name])]["details"].startswith("stale"), name
    assert by_path[str(folders["live_build"])]["details"].startswith("in use")
    assert str(folders["other_user"]) not in by_path and str(folders["unrelated"]) not in by_path
    assert json.loads(r.output)["total_bytes"] == sum(row["bytes"] for row in rows)

    table = CliRunner().invoke(main, ["cache", "list"]).output          # piped: full paths, no "…"
    assert str(dirs.cache / "tvm" / "ab" / key) in table and "…" not in table
    assert "compile: 2 entries" in table and "temp: 4 entries" in table


def test_cache_clear_removes_stale_scratch_folders_and_with_data_the_image_caches(dirs):
    key, tuning, folders = _fill(dirs)
    r = CliRunner().invoke(main, ["cache", "clear"])
    assert r.exit_code == 0, r.output
    assert "3 package extraction folders" in r.output
    for name in ("stale_lib", "stale_ms", "stale_tvm"):
        assert not folders[name].exists(), name
    for name in ("live_build", "other_user", "unrelated"):
        assert folders[name].exists(), name
    assert tuning.is_dir() and (dirs.cache / "data" / "images-abc.npy").exists()
    r = CliRunner().invoke(main, ["cache", "clear", "--data"])
    assert r.exit_code == 0 and "removed 1 decoded image caches" in r.output
    assert not any((dirs.cache / "data").iterdir())
    r = CliRunner().invoke(main, ["cache", "list", "--format", "csv"])
    kinds = [ln.split(",")[0] for ln in r.output.splitlines()[1:]]
    assert sorted(kinds) == ["temp", "tuning"]                    # the live build folder, the database


def test_a_killed_process_scratch_folder_is_found_and_removed(dirs):
    code = ("import os, tempfile; tempfile.tempdir = %r\n"
            "from dlc.runtime.pkgfile import scratch_dir\n"
            "d = scratch_dir('tvm'); open(os.path.join(d, 'lib.so'), 'wb').write(b'x'); print(d)\n"
            "os._exit(9)\n") % str(dirs.tmp)                      # dies without cleaning up
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    left = out.stdout.strip()
    assert left and os.path.isdir(left)
    assert os.path.basename(left).startswith(f"dlc-tvm-{dirs.uid}-")
    assert left in {str(p) for p in stale_extractions()}
    mine = scratch_dir("build")                                    # this process's own: not stale
    assert str(mine) not in {str(p) for p in stale_extractions()}
    from dlc.runtime.package import remove_stale_extractions
    remove_stale_extractions(min_age_s=0)
    assert not os.path.exists(left) and mine.exists()


def test_writing_a_package_leaves_no_folder_behind(dirs, monkeypatch):
    pytest.importorskip("tvm")
    from dlc.backends.tvm import package
    lib = dirs.tmp.parent / "lib.so"
    lib.write_bytes(b"\x7fELF fake")
    compiled = SimpleNamespace(signature={"params": [{"name": "w"}]}, lib_path=lib, target={"kind": "llvm"},
                               lib_info={"file": "lib.so", "format": "so"})
    seen = []
    real = package._write_zip_atomic

    def spy(path, manifest, weights_path, lib_path, lib_name):
        seen.append(weights_path.parent)
        return real(path, manifest, weights_path, lib_path, lib_name)
    monkeypatch.setattr(package, "_write_zip_atomic", spy)
    package.write_package(dirs.tmp.parent / "m.dlcpkg", compiled, {"w": np.zeros(2, np.float32)},
                          source_hash="h", spec_path="m.dln", model_name="M")
    assert seen and seen[0].name.startswith(f"dlc-build-{dirs.uid}-{os.getpid()}-")
    assert list(dirs.tmp.iterdir()) == []

    def fail(*args):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(package, "_write_zip_atomic", fail)
    with pytest.raises(OSError):
        package.write_package(dirs.tmp.parent / "n.dlcpkg", compiled, {"w": np.zeros(2, np.float32)},
                              source_hash="h", spec_path="m.dln", model_name="M")
    assert list(dirs.tmp.iterdir()) == []


def test_the_first_scratch_folder_of_a_process_sweeps_old_stale_ones(dirs, monkeypatch):
    import dlc.runtime.pkgfile as pkgfile
    monkeypatch.setattr(pkgfile, "_swept", False)
    dead = _dead_pid()
    old, young = dirs.tmp / f"dlc-build-{dirs.uid}-{dead}-old", dirs.tmp / f"dlc-ms-{dirs.uid}-{dead}-new"
    for d in (old, young):
        d.mkdir()
    long_ago = os.stat(old).st_mtime - 3600
    os.utime(old, (long_ago, long_ago))
    made = scratch_dir("tvm")
    assert not old.exists()                      # a killed compile's folder, an hour old
    assert young.exists() and made.exists()      # under a minute old: kept (the grace period of a load)
    os.utime(young, (long_ago, long_ago))
    scratch_dir("tvm")
    assert young.exists()                        # swept once per process, not at every folder
