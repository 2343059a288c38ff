"""Files dlc writes for the user honour the umask, as `open(path, "w")` does;
caches stay private (issue 15, "File modes")."""
import os
import stat
import zipfile

import numpy as np
import pytest
from click.testing import CliRunner

from dlc.cli import main
from dlc.runtime.atomic import atomic_write, current_umask
from dlc.runtime.weights import save_weights

pytestmark = pytest.mark.skipif(not hasattr(os, "fchmod"), reason="POSIX modes")


@pytest.fixture(params=[0o022, 0o027, 0o002])
def umask(request):
    old = os.umask(request.param)
    yield request.param
    os.umask(old)


def _mode(p) -> int:
    return stat.S_IMODE(os.stat(p).st_mode)


def test_current_umask_is_the_process_umask(umask):
    assert current_umask() == umask


def test_weights_and_atomic_writes_follow_the_umask(tmp_path, umask):
    save_weights(tmp_path / "w.safetensors", {"a": np.zeros(3, np.float32)})
    atomic_write(tmp_path / "x.bin", b"x")
    assert _mode(tmp_path / "w.safetensors") == 0o666 & ~umask
    assert _mode(tmp_path / "x.bin") == 0o666 & ~umask


def test_private_writes_stay_0600(tmp_path, umask):
    atomic_write(tmp_path / "cache.json", b"{}", private=True)
    assert _mode(tmp_path / "cache.json") == 0o600


def test_cli_outputs_follow_the_umask(tmp_path, umask):
    r = CliRunner().invoke(main, ["run", "specs/mlp.dln", "-o", str(tmp_path / "out.npz")])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(main, ["compile", "specs/mlp.dln", "--target", "torch", "-o", str(tmp_path / "m.py")])
    assert r.exit_code == 0, r.output
    for name in ("out.npz", "m.py"):
        assert _mode(tmp_path / name) == 0o666 & ~umask, name


def test_package_zip_follows_the_umask(tmp_path, umask):
    from dlc.backends.tvm.package import _write_zip_atomic
    (tmp_path / "w.safetensors").write_bytes(b"w")
    (tmp_path / "lib.so").write_bytes(b"l")
    _write_zip_atomic(tmp_path / "m.dlcpkg", {"format": "dlcpkg"}, tmp_path / "w.safetensors",
                      tmp_path / "lib.so", "lib.so")
    assert zipfile.is_zipfile(tmp_path / "m.dlcpkg")
    assert _mode(tmp_path / "m.dlcpkg") == 0o666 & ~umask
