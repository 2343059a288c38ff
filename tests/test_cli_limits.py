"""Bad option values, unwritable outputs, lying input files and runs too big
for memory: each is a short error with a non-zero exit status, reported before
any work starts, never a traceback, an `internal error`, or a silent exit 0."""
from __future__ import annotations

import errno
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from dlc.cli import main

LENET = "specs/lenet5.dln"
GPT2 = "specs/gpt2_small.dln"


def invoke(*args):
    res = CliRunner().invoke(main, [str(a) for a in args])
    out = res.output if res.stderr_bytes is None else res.stderr
    return res, out


def assert_clean_error(res, out, *needles, code=None):
    assert res.exit_code != 0, out
    if code is not None:
        assert res.exit_code == code, (res.exit_code, out)
    assert res.exit_code != 3 and "internal error" not in out and "Traceback" not in out, out
    assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
    for n in needles:
        assert n in out, out


# ------------------------------------------------------------------ option values
@pytest.mark.parametrize("args,needle", [
    (("run", LENET, "--seed", "-1"), "--seed"),
    (("compile", LENET, "--target", "torch", "--seed", "-5"), "--seed"),
    (("train", LENET, "--seed", "-1"), "--seed"),
    (("train", LENET, "--batch", "0"), "--batch"),
    (("train", LENET, "--lr", "nan"), "--lr"),
    (("train", LENET, "--lr", "inf"), "--lr"),
    (("train", LENET, "--lr", "-1"), "--lr"),
    (("train", LENET, "--lr", "0"), "--lr"),
    (("train", LENET, "--epochs", "0"), "--epochs"),
    (("train", LENET, "--epochs", "-1"), "--epochs"),
    (("train", LENET, "--nproc", "0"), "--nproc"),
    (("bench", LENET, "--backend", "numpy", "--repeat", "0"), "--repeat"),
    (("bench", LENET, "--backend", "numpy", "--warmup", "-1"), "--warmup"),
], ids=lambda v: " ".join(v) if isinstance(v, tuple) else None)
def test_bad_option_values_are_usage_errors(tmp_path, args, needle):
    res, out = invoke(*args, *(("--out", tmp_path / "run") if args[0] == "train" else ()))
    assert_clean_error(res, out, needle, code=2)
    assert not (tmp_path / "run").exists()   # refused before anything was written


def test_epochs_zero_used_to_exit_0_silently(tmp_path):
    res, out = invoke("train", LENET, "--epochs", "0", "--out", tmp_path / "run")
    assert res.exit_code == 2 and "Invalid value for '--epochs'" in out


@pytest.mark.parametrize("cmd", [("info",), ("ir",), ("run",), ("compile", "--target", "torch")])
def test_bind_of_an_unknown_name_is_an_error(cmd):
    res, out = invoke(cmd[0], LENET, *cmd[1:], "--bind", "Q=3")
    assert_clean_error(res, out, "--bind Q", "no dimension or constant named 'Q'", "hint: dimensions: N", code=1)


def test_bind_of_a_dimension_or_constant_still_works():
    res, out = invoke("info", "specs/resnet18.dln", "--bind", "N=2", "--bind", "size=64", "--json")
    assert res.exit_code == 0, out


def test_train_bind_of_an_unknown_name(tmp_path):
    res, out = invoke("train", LENET, "--bind", "Q=3", "--out", tmp_path / "run")
    assert_clean_error(res, out, "--bind Q", code=1)


@pytest.mark.tvm
def test_package_bind_of_an_unknown_name(tmp_path):
    pytest.importorskip("tvm")
    pkg = tmp_path / "mlp.dlcpkg"
    res, out = invoke("compile", "specs/mlp.dln", "--target", "cpu", "-o", pkg)
    assert res.exit_code == 0, out
    res, out = invoke("run", pkg, "--bind", "Q=2")
    assert_clean_error(res, out, "--bind Q: the package has no dimension named 'Q'", "dimensions: N", code=1)
    res, out = invoke("run", pkg, "--bind", "N=2")
    assert res.exit_code == 0, out


@pytest.mark.parametrize("arch", ["sm_1000", "sm_12", "sm_80a", "sm_", "compute_90"])
def test_unknown_cuda_arch(arch, tmp_path):
    pytest.importorskip("tvm")
    res, out = invoke("compile", LENET, "--target", "cuda", "--arch", arch, "-o", tmp_path / "m.dlcpkg")
    assert_clean_error(res, out, "unknown CUDA architecture", "sm_90", code=1)
    assert not (tmp_path / "m.dlcpkg").exists()


def test_known_cuda_arch_is_accepted():
    pytest.importorskip("tvm")
    from dlc.backends.tvm.target import resolve_target
    for arch in ("sm_80", "sm_90", "sm_90a", "sm_100f", "sm_120"):
        assert resolve_target("cuda", arch)["arch"] == arch


# ------------------------------------------------------------------ output paths
def test_output_in_a_missing_folder(tmp_path):
    res, out = invoke("run", LENET, "-o", tmp_path / "nope" / "out.npz")
    assert_clean_error(res, out, "does not exist", code=2)


def test_output_under_a_file(tmp_path):
    (tmp_path / "f").write_text("x")
    res, out = invoke("compile", LENET, "--target", "torch", "-o", tmp_path / "f" / "m.py")
    assert_clean_error(res, out, "does not exist", code=2)


def test_train_out_in_a_missing_folder(tmp_path):
    res, out = invoke("train", LENET, "--out", tmp_path / "a" / "b" / "run")
    assert_clean_error(res, out, "does not exist", code=2)


def test_output_in_a_read_only_folder(tmp_path, monkeypatch):
    import os
    real_access = os.access
    # root ignores mode bits, so stand in for a read-only mount at the access() check
    monkeypatch.setattr(os, "access", lambda p, m, **k: False if str(p) == str(tmp_path) else real_access(p, m, **k))
    res, out = invoke("run", LENET, "-o", tmp_path / "out.npz")
    assert_clean_error(res, out, "not writable", code=2)


@pytest.mark.parametrize("err", [errno.ENOSPC, errno.EROFS, errno.EACCES])
def test_a_failing_write_is_one_line(tmp_path, monkeypatch, err):
    """A disk that fills up (or a mount that turns read-only) after the checks."""
    import dlc.runtime.atomic as atomic

    def fail(*a, **k):
        raise OSError(err, os_strerror(err), str(tmp_path / "out.npz"))
    monkeypatch.setattr(atomic, "atomic_write", fail)
    res, out = invoke("run", LENET, "-o", tmp_path / "out.npz")
    assert_clean_error(res, out, f"error: {tmp_path / 'out.npz'}: {os_strerror(err)}", code=1)


def os_strerror(err: int) -> str:
    import os
    return os.strerror(err)


# ------------------------------------------------------------------ .npy inputs
def _npy_with_header(path: Path, shape, dtype="<f4", data: bytes = b"") -> None:
    """A .npy file whose header claims `shape` and `dtype`, followed by `data`."""
    import io
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": dtype, "fortran_order": False, "shape": shape})
    path.write_bytes(header.getvalue() + data)


@pytest.mark.parametrize("make,needle", [
    (lambda p: p.write_bytes(b""), "the file is empty"),
    (lambda p: p.write_bytes(b"not numpy at all"), "not a .npy file"),
    (lambda p: _npy_with_header(p, (10**6, 10**6)), "the header says float32 (1000000, 1000000)"),
    (lambda p: _npy_with_header(p, (3, 1, 32, 32), data=b"\0" * 100), "holds 100 bytes"),
    (lambda p: _npy_with_header(p, (3,), dtype="|O", data=b"\0" * 24), "Python objects"),
], ids=["empty", "garbage", "lying-huge", "truncated", "objects"])
def test_bad_npy_inputs(tmp_path, make, needle):
    p = tmp_path / "x.npy"
    make(p)
    tracemalloc.start()
    try:
        res, out = invoke("run", LENET, "--input", f"image={p}")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert_clean_error(res, out, f"cannot read input image from {p}", needle, code=1)
    assert peak < 200 << 20   # nothing near the claimed size was allocated


def test_good_npy_input_still_runs(tmp_path):
    x = np.random.default_rng(0).standard_normal((2, 1, 32, 32)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    res, out = invoke("run", LENET, "--input", f"image={tmp_path / 'x.npy'}", "-o", tmp_path / "o.npz")
    assert res.exit_code == 0, out
    assert np.load(tmp_path / "o.npz")["output"].shape == (2, 10)


# ------------------------------------------------------------------ memory
BIG = """model Big(x: f32[N, 4096]) -> f32[N, 4096] {
    example N = 4096
    return relu(x) * 2.0
}
"""


def test_a_run_too_big_for_memory_is_refused_before_allocating(tmp_path, monkeypatch):
    import dlc.runtime.memory as memory
    monkeypatch.setattr(memory, "available_bytes", lambda: 64 << 20)
    p = tmp_path / "big.dln"
    p.write_text(BIG)
    tracemalloc.start()
    try:
        res, out = invoke("run", p)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # input 64 MiB, relu 64 MiB, the constant, the product 64 MiB: ~192 MiB against 64 MiB
    assert_clean_error(res, out, "needs about 192.0 MiB", "inputs 64.0 MiB", "activations 128.0 MiB",
                       "only 64.0 MiB of memory is available", code=1)
    assert out.startswith(f"{p}:1:1: error: running Big"), out
    assert peak < 32 << 20, peak


def test_the_memory_check_counts_weights_and_their_float64_draw(tmp_path, monkeypatch):
    import dlc.runtime.memory as memory
    monkeypatch.setattr(memory, "available_bytes", lambda: 64 << 20)
    p = tmp_path / "wide.dln"
    p.write_text("model W(x: f32[N, 4096]) {\n    example N = 1\n    return dense(x, 4096, bias=false)\n}\n")
    res, out = invoke("run", p)
    assert_clean_error(res, out, "weights 64.0 MiB", "weight initialisation 128.0 MiB", code=1)


def test_a_run_that_fits_is_not_refused(monkeypatch):
    import dlc.runtime.memory as memory
    monkeypatch.setattr(memory, "available_bytes", lambda: 256 << 20)
    res, out = invoke("run", LENET)
    assert res.exit_code == 0, out


def test_available_memory_is_positive_and_below_physical():
    from dlc.runtime.memory import available_bytes
    import os
    avail = available_bytes()
    assert avail is not None and 0 < avail <= os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def test_random_float32_inputs_are_drawn_without_a_float64_copy(tmp_path):
    import dlc
    p = tmp_path / "in.dln"
    p.write_text("model I(x: f32[N, 1024]) -> f32[N, 1024] {\n    example N = 1024\n    return x\n}\n")
    m = dlc.load(p)
    tracemalloc.start()
    try:
        x = m.random_inputs(0)["x"]
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert x.dtype == np.float32 and x.shape == (1024, 1024)
    assert peak < 1.25 * x.nbytes, f"peak {peak} for {x.nbytes} bytes"
    # the same values as a whole float64 draw rounded to float32 (the reference's inputs do not
    # change with the bound on memory): standard normal statistics, reproducible
    assert abs(float(x.mean())) < 0.01 and abs(float(x.std()) - 1) < 0.01
    np.testing.assert_array_equal(x, m.random_inputs(0)["x"])
    np.testing.assert_array_equal(x, np.random.default_rng(0).standard_normal((1024, 1024)).astype(np.float32))


def test_package_example_inputs_draw_as_the_model_does():
    """The package runtime draws inputs exactly as Model.random_inputs (no TVM needed)."""
    import dlc
    from dlc.runtime.package import example_inputs
    m = dlc.load(LENET)   # conftest runs every test from the repository root
    manifest = {"example_inputs": [{"name": "image", "kind": "float", "dtype": "float32", "shape": [1, 1, 32, 32]}],
                "signature": {"inputs": [{"name": "image", "shape": ["N", 1, 32, 32]}]}}
    np.testing.assert_array_equal(example_inputs(manifest, 7)["image"], m.random_inputs(7)["image"])
