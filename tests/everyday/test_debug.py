"""`DLC_DEBUG=1` shows the backend's full message, as the one-line error's
hint promises (issue 15, "DLC_DEBUG")."""
import pytest
from click.testing import CliRunner

from dlc.cli import main
from dlc.debugging import underlying_report
from dlc.errors import DlcError

TVM_MESSAGE = ("Traceback (most recent call last):\n"
               "  3: tvm::relax::transform::LegalizeOps\n"
               "  2: tvm::tirx::Schedule::ComputeAt\n"
               "InternalError: Check failed: (loop_sref != nullptr) is false: the loop is gone")


def _failing_build(*args, **kwargs):
    raise RuntimeError(TVM_MESSAGE)


@pytest.fixture
def broken_tvm_build(monkeypatch):
    pytest.importorskip("tvm")
    from dlc.backends.tvm import pipeline
    monkeypatch.setattr(pipeline, "build", _failing_build)


def _compile(tmp_path, env):
    return CliRunner().invoke(main, ["compile", "specs/mlp.dln", "--target", "cpu", "--no-cache",
                                     "-o", str(tmp_path / "m.dlcpkg")], env=env)


def test_without_debug_the_error_is_one_line_and_promises_more(tmp_path, broken_tvm_build):
    r = _compile(tmp_path, {"DLC_DEBUG": None})
    assert r.exit_code == 1
    assert "the loop is gone" in r.output and "DLC_DEBUG=1" in r.output
    assert "ComputeAt" not in r.output and "Traceback" not in r.output


def test_with_debug_the_full_backend_message_follows(tmp_path, broken_tvm_build):
    r = _compile(tmp_path, {"DLC_DEBUG": "1"})
    assert r.exit_code == 1
    assert "error: TVM failed to compile" in r.output                # the located error first
    for line in TVM_MESSAGE.splitlines():                            # then every line TVM wrote
        assert line.strip() in r.output, line
    assert "underlying RuntimeError" in r.output
    assert "_failing_build" in r.output                              # and where it was raised
    assert not (tmp_path / "m.dlcpkg").exists()


def test_debug_zero_is_off(tmp_path, broken_tvm_build):
    r = _compile(tmp_path, {"DLC_DEBUG": "0"})
    assert r.exit_code == 1 and "ComputeAt" not in r.output


def test_library_export_failure_keeps_the_compiler_message(tmp_path):
    pytest.importorskip("tvm")
    from dlc.backends.tvm.package import export_library

    class Executable:
        def export_library(self, *args, **kwargs):
            raise RuntimeError("ld: cannot find -lfoo\ncollect2: error: ld returned 1 exit status")

    with pytest.raises(DlcError) as info:
        export_library(Executable(), {"kind": "llvm"}, tmp_path)
    assert "ld returned 1" in info.value.message and "cannot find -lfoo" not in info.value.message
    full = underlying_report(info.value)
    assert "cannot find -lfoo" in full and "ld returned 1" in full


def test_dlc_own_errors_have_nothing_beneath():
    assert underlying_report(DlcError("bad spec")) is None
    try:
        try:
            raise KeyError("x")
        except KeyError:
            raise DlcError("no such thing") from None
    except DlcError as e:
        assert underlying_report(e) is None
