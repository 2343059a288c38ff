"""`dlc.runtime.load(pkg).run(...)` takes every array the CLI accepts: read-only
(np.load with mmap_mode, frombuffer of bytes), strided, Fortran-ordered,
unaligned, byte-swapped, broadcast and other-dtype arrays give the same
outputs as a plain C-contiguous float32 array, never a raw DLPack error.
An empty batch (N = 0) runs as in PyTorch.  One tiny package, compiled once."""
from __future__ import annotations

import re

import numpy as np
import pytest

pytest.importorskip("tvm")
torch = pytest.importorskip("torch")

import dlc
import dlc.runtime as rt

pytestmark = pytest.mark.tvm

SPEC = """\
model Tiny(x: f32[N, 16]) -> f32[N, 3] {
    example N = 2
    y = dense(x, 3) |> relu
    return y
}
"""


@pytest.fixture(scope="module")
def package(tmp_path_factory):
    d = tmp_path_factory.mktemp("pkg")
    spec = d / "tiny.dln"
    spec.write_text(SPEC)
    from click.testing import CliRunner

    from dlc.cli import main
    r = CliRunner().invoke(main, ["compile", str(spec), "--target", "cpu", "-o", str(d / "tiny.dlcpkg")])
    assert r.exit_code == 0, r.output
    return d / "tiny.dlcpkg", dlc.load(spec)


def _aligned_copy(a, offset=0, writeable=True):
    buf = np.empty(a.nbytes + 128, np.uint8)
    o = (-buf.ctypes.data) % 64 + offset
    out = buf[o:o + a.nbytes].view(a.dtype).reshape(a.shape)
    out[...] = a
    out.setflags(write=writeable)
    return out


def _variants(x, tmp_path):
    wide = np.repeat(x, 2, axis=1)
    np.save(tmp_path / "x.npy", x)
    return {
        "read-only, 64-byte aligned": _aligned_copy(x, writeable=False),
        "np.load(mmap_mode='r')": np.load(tmp_path / "x.npy", mmap_mode="r"),
        "frombuffer(bytes)": np.frombuffer(x.tobytes(), np.float32).reshape(x.shape),
        "strided": wide[:, ::2],
        "fortran": np.asfortranarray(x),
        "4-byte offset": _aligned_copy(x, 4),
        "big-endian": x.astype(">f4"),
        "float64": x.astype(np.float64),
        "broadcast": np.broadcast_to(x[:1], x.shape),
    }


def test_every_array_layout_runs(package, tmp_path):
    path, _ = package
    p = rt.load(path)
    x = np.random.default_rng(0).standard_normal((4, 16)).astype(np.float32)
    for what, a in _variants(x, tmp_path).items():
        want = p.run({"x": np.ascontiguousarray(np.asarray(a, np.float32))})["y"]
        got = p.run({"x": a})["y"]
        np.testing.assert_array_equal(got, want, err_msg=what)


def test_aligned_arrays_with_odd_strides_on_trivial_axes(package):
    """NumPy calls these C-contiguous, but their strides are not the compact ones
    TVM checks for (a size-1 axis with a long stride; an empty array's (0, 0));
    64-byte aligned, so they would take the zero-copy path."""
    from numpy.lib.stride_tricks import as_strided
    path, _ = package
    p = rt.load(path)
    row = np.random.default_rng(1).standard_normal((1, 16)).astype(np.float32)
    one = as_strided(_aligned_copy(row), shape=(1, 16), strides=(512, 4))
    empty = as_strided(_aligned_copy(row), shape=(0, 16), strides=(0, 0))
    assert one.flags.c_contiguous and empty.flags.c_contiguous
    np.testing.assert_array_equal(p.run({"x": one})["y"], p.run({"x": row.copy()})["y"])
    assert p.run({"x": empty})["y"].shape == (0, 3)


def test_empty_batch_runs_as_in_pytorch(package):
    path, model = package
    p = rt.load(path)
    w = model.init_weights(0)
    p.set_weights(w)
    got = p.run({"x": np.zeros((0, 16), np.float32)})["y"]
    lin = torch.nn.functional.linear(torch.zeros(0, 16), torch.tensor(w["y.weight"]), torch.tensor(w["y.bias"]))
    want = torch.relu(lin).numpy()
    assert got.shape == want.shape == (0, 3) and got.dtype == want.dtype


def test_cli_summary_of_an_empty_output_shows_no_made_up_numbers(package, tmp_path):
    """`dlc run pkg` on an empty batch: the output table must not claim mean 0, min 0, max 0."""
    from click.testing import CliRunner

    from dlc.cli import main
    path, _ = package
    x = tmp_path / "x0.npy"
    np.save(x, np.zeros((0, 16), np.float32))
    r = CliRunner().invoke(main, ["run", str(path), "--input", f"x={x}"])
    assert r.exit_code == 0, r.output
    row = next(line for line in r.output.splitlines() if "(0, 3)" in line)
    cells = re.split(r"\s*│\s*|\s{2,}", row.strip("│ \n"))     # a rich row, or plain columns when piped
    assert cells[3:7] == ["-"] * 4, row      # mean, std, min, max of nothing
