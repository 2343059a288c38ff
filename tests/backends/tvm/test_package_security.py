"""Packages are a trust boundary (issue 10, "Packages"): zip slip, planted
libraries, pinned hashes, exact weights, damaged packages, cache entries.

One small package (specs/mlp.dln) is compiled per module; every test tampers
with a copy of it."""
import hashlib
import json
import os
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tvm")
pytestmark = pytest.mark.tvm

import dlc  # noqa: E402
import dlc.runtime  # noqa: E402
from dlc.errors import DlcError  # noqa: E402
from pkg_tamper import (build_package, del_in, flip_compressed_byte, manifest, members, rewrite,  # noqa: E402
                        set_in, sha256, write_members)


@pytest.fixture(scope="module")
def pkg(tmp_path_factory):
    """(path, model, weights) of a real package, compiled into a private cache."""
    cache = tmp_path_factory.mktemp("dlc-cache")
    old = os.environ.get("DLC_CACHE_DIR")
    os.environ["DLC_CACHE_DIR"] = str(cache)
    try:
        out = tmp_path_factory.mktemp("pkg") / "mlp.dlcpkg"
        m, w = build_package("specs/mlp.dln", out)
        yield out, m, w
    finally:
        if old is None:
            os.environ.pop("DLC_CACHE_DIR", None)
        else:
            os.environ["DLC_CACHE_DIR"] = old


@pytest.fixture
def tmpdir_private(tmp_path, monkeypatch):
    """$TMPDIR for this test: where packages are unpacked."""
    d = tmp_path / "tmp"
    d.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(d))
    return d


def _expected(m, w, x):
    return m.run(x, w)["output"]


def _check_runs(path, m, w):
    loaded = dlc.runtime.load(path)
    x = m.random_inputs(3, bind={"N": 3})
    np.testing.assert_allclose(loaded.run(x)["output"], _expected(m, w, x), rtol=1e-4, atol=1e-4)


# --------------------------------------------------------------------------
# zip slip

@pytest.mark.parametrize("where", ["dotdot", "absolute", "subfolder"])
def test_zip_slip_library_name_writes_nothing(pkg, tmp_path, tmpdir_private, where):
    path, _, _ = pkg
    lib = dict((i.filename, d) for i, d in members(path))["lib.so"]
    victim = tmp_path / "victim.so"
    # the old layout unpacked to $TMPDIR/dlc-pkg-<uid>/.x<random>/<member>
    name = {"dotdot": "../../../victim.so", "absolute": str(victim), "subfolder": "sub/lib.so"}[where]
    bad = rewrite(path, tmp_path / "slip.dlcpkg", manifest_change=lambda m: m["library"].update(file=name),
                  drop=("lib.so",), extra=[(name, lib)])
    with pytest.raises(DlcError, match="library"):
        dlc.runtime.load(bad)
    assert not victim.exists()
    written = [p for p in tmpdir_private.rglob("*") if p.is_file()]
    assert written == []


# --------------------------------------------------------------------------
# planted libraries, private extraction, clean-up

def test_planted_library_is_never_loaded(pkg, tmpdir_private, monkeypatch):
    path, m, w = pkg
    uid = os.getuid()
    # where the old runtime looked for an already-unpacked library
    planted = tmpdir_private / f"dlc-pkg-{uid}" / sha256(path)[:32] / "lib.so"
    planted.parent.mkdir(parents=True)
    planted.write_bytes(b"planted by another user")
    tvm = dlc.runtime.package.import_tvm()
    seen = []
    real_load = tvm.runtime.load_module

    def spy(p, *a, **k):
        d = Path(p).parent
        st = d.stat()
        seen.append((Path(p), d, st.st_mode & 0o777, st.st_uid, hashlib.sha256(Path(p).read_bytes()).hexdigest()))
        return real_load(p, *a, **k)

    monkeypatch.setattr(tvm.runtime, "load_module", spy)
    _check_runs(path, m, w)
    _check_runs(path, m, w)
    lib_sha = manifest(path)["library"]["sha256"]
    assert len(seen) == 2 and seen[0][1] != seen[1][1]           # a fresh folder per load
    for lib, d, mode, owner, digest in seen:
        assert lib != planted and mode == 0o700 and owner == uid and digest == lib_sha
        assert not d.exists()                                    # removed once loaded
    assert planted.read_bytes() == b"planted by another user"    # not ours to touch


def test_a_temp_folder_anyone_can_swap_things_in_is_refused(pkg, tmp_path, monkeypatch):
    path, m, w = pkg
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o777)                  # world-writable, not sticky: others may rename our folder
    monkeypatch.setattr(tempfile, "tempdir", str(shared))
    with pytest.raises(DlcError, match="writable by every user and not sticky"):
        dlc.runtime.load(path)
    os.chmod(shared, 0o1777)                 # like /tmp
    _check_runs(path, m, w)


def test_library_that_does_not_match_its_hash_is_refused(pkg, tmp_path, tmpdir_private):
    path, _, _ = pkg
    lib = bytearray(dict((i.filename, d) for i, d in members(path))["lib.so"])
    lib[-1] ^= 0xFF                          # the section header table: dlopen would not notice
    bad = rewrite(path, tmp_path / "swapped.dlcpkg", replace={"lib.so": bytes(lib)})
    with pytest.raises(DlcError, match="sha256"):
        dlc.runtime.load(bad)
    assert [p for p in tmpdir_private.rglob("*")] == []


def test_stale_extraction_folders_are_removed(pkg, tmpdir_private):
    from pkg_tamper import dead_pid
    path, m, w = pkg
    uid = os.getuid()
    stale = tmpdir_private / f"dlc-lib-{uid}-{dead_pid()}-abc"
    stale.mkdir()
    (stale / "lib.so").write_bytes(b"left by a killed run")
    hour_ago = time.time() - 3600
    os.utime(stale, (hour_ago, hour_ago))
    # a dead process's folder younger than a minute may be a live process in
    # another PID namespace: only `dlc cache clear` removes it
    young = tmpdir_private / f"dlc-lib-{uid}-{dead_pid()}-ghi"
    young.mkdir()
    live = tmpdir_private / f"dlc-lib-{uid}-{os.getpid()}-def"
    live.mkdir()
    os.utime(live, (hour_ago, hour_ago))
    _check_runs(path, m, w)
    assert not stale.exists() and live.exists() and young.exists()


# --------------------------------------------------------------------------
# pinned package hash

def test_expect_sha256(pkg, tmp_path):
    path, m, w = pkg
    good = sha256(path)
    loaded = dlc.runtime.load(path, expect_sha256=good.upper())
    x = m.random_inputs(2, bind={"N": 2})
    np.testing.assert_allclose(loaded.run(x)["output"], _expected(m, w, x), rtol=1e-4, atol=1e-4)
    with pytest.raises(DlcError, match=f"sha256 {good}.*expected {'0' * 64}"):
        dlc.runtime.load(path, expect_sha256="0" * 64)
    with pytest.raises(DlcError, match="64 hexadecimal digits"):
        dlc.runtime.load(path, expect_sha256="abc")


def test_cli_run_expect_sha256(pkg):
    from click.testing import CliRunner
    from dlc.cli import main
    path, _, _ = pkg
    r = CliRunner().invoke(main, ["run", str(path), "--expect-sha256", sha256(path)])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(main, ["run", str(path), "--expect-sha256", "1" * 64])
    assert r.exit_code == 1 and "internal error" not in r.output
    assert f"sha256 {sha256(path)}" in r.output and "expected " + "1" * 64 in r.output
    r = CliRunner().invoke(main, ["run", "specs/mlp.dln", "--expect-sha256", "1" * 64])
    assert r.exit_code != 0 and ".dlcpkg" in r.output


def test_compile_prints_the_hash_to_pin(pkg, tmp_path):
    from click.testing import CliRunner
    from dlc.cli import main
    out = tmp_path / "again.dlcpkg"
    r = CliRunner().invoke(main, ["compile", "specs/mlp.dln", "--target", "cpu", "-o", str(out)])
    assert r.exit_code == 0, r.output
    assert f"sha256 {sha256(out)}" in r.output
    r = CliRunner().invoke(main, ["run", str(out), "--expect-sha256", sha256(out)])
    assert r.exit_code == 0, r.output


# --------------------------------------------------------------------------
# exact weights

def test_transposed_weight_is_refused(pkg):
    path, _, w = pkg
    loaded = dlc.runtime.load(path)
    bad = dict(w, **{"hidden.weight": np.ascontiguousarray(w["hidden.weight"].T)})
    with pytest.raises(DlcError, match=r"weight 'hidden.weight' has shape \(64, 128\), the package expects "
                                       r"\(128, 64\)"):
        loaded.set_weights(bad)
    with pytest.raises(DlcError, match=r"shape \(128, 64, 1\)"):
        loaded.set_weights(dict(w, **{"hidden.weight": w["hidden.weight"][..., None]}))


def test_weight_of_another_dtype_is_refused(pkg):
    path, _, w = pkg
    loaded = dlc.runtime.load(path)
    with pytest.raises(DlcError, match="weight 'hidden.bias' has dtype float64, the package expects float32") as e:
        loaded.set_weights(dict(w, **{"hidden.bias": w["hidden.bias"].astype(np.float64)}))
    assert "astype" in (e.value.hint or "")


def test_packaged_weights_of_the_wrong_shape_are_refused(pkg, tmp_path):
    from safetensors.numpy import save
    path, _, w = pkg
    bad_w = dict(w, **{"hidden.weight": np.ascontiguousarray(w["hidden.weight"].T)})
    bad = rewrite(path, tmp_path / "t.dlcpkg", replace={"weights.safetensors": save(bad_w)})
    with pytest.raises(DlcError, match="hidden.weight' has shape"):
        dlc.runtime.load(bad)


# --------------------------------------------------------------------------
# damaged packages: one-line DlcErrors

def _manifest_case(change):
    def build(path, dst):
        return rewrite(path, dst, manifest_change=change)
    return build


def _zip_bomb(path, dst):
    # 64 MiB of zeros (compressed to ~64 KiB) where ~38 KB of weights belong
    items = [(i.filename, d) for i, d in members(path) if i.filename != "weights.safetensors"]
    return write_members(dst, items + [("weights.safetensors", bytes(64 << 20))])


def _duplicate_manifest(path, dst):
    items = [(i.filename, d) for i, d in members(path)]
    m = manifest(path)
    m["library"]["device"] = "cuda"
    return write_members(dst, items + [("manifest.json", json.dumps(m).encode())])


def _lib_in_subfolder(path, dst):
    return rewrite(path, dst, manifest_change=lambda m: m["library"].update(file="lib/lib.so"),
                   rename={"lib.so": "lib/lib.so"})


DAMAGED = {
    "crc-manifest": (lambda p, d: flip_compressed_byte(p, d, "manifest.json"), "is damaged"),
    "crc-weights": (lambda p, d: flip_compressed_byte(p, d, "weights.safetensors"), "is damaged"),
    "crc-library": (lambda p, d: flip_compressed_byte(p, d, "lib.so"), "is damaged"),
    "no-format-version": (_manifest_case(lambda m: del_in(m, ("format_version",))), "format_version"),
    "text-format-version": (_manifest_case(lambda m: set_in(m, ("format_version",), "one")), "format_version"),
    "zero-format-version": (_manifest_case(lambda m: set_in(m, ("format_version",), 0)), "format_version"),
    "no-signature": (_manifest_case(lambda m: del_in(m, ("signature",))), "signature"),
    "list-signature": (_manifest_case(lambda m: set_in(m, ("signature",), [])), "signature"),
    "no-inputs": (_manifest_case(lambda m: del_in(m, ("signature", "inputs"))), "signature.inputs"),
    "no-library": (_manifest_case(lambda m: del_in(m, ("library",))), "library"),
    "text-library": (_manifest_case(lambda m: set_in(m, ("library",), "lib.so")), "library"),
    "library-no-sha": (_manifest_case(lambda m: del_in(m, ("library", "sha256"))), "library.sha256"),
    "no-params": (_manifest_case(lambda m: del_in(m, ("signature", "params"))), "signature.params"),
    "param-dtype": (_manifest_case(lambda m: set_in(m, ("signature", "params", 0, "dtype"), "float99")),
                    "dtype"),
    "param-dtype-object": (_manifest_case(lambda m: set_in(m, ("signature", "params", 0, "dtype"), "object")),
                           "dtype"),
    "input-shape-negative": (_manifest_case(lambda m: set_in(m, ("signature", "inputs", 0, "shape"), ["N", -64])),
                             "shape"),
    "duplicate-manifest": (_duplicate_manifest, "more than once"),
    "example-shape-negative": (_manifest_case(lambda m: set_in(m, ("example_inputs", 0, "shape"), [-5, 64])),
                               "example_inputs"),
    "example-shape-enormous": (_manifest_case(lambda m: set_in(m, ("example_inputs", 0, "shape"),
                                                               [3_000_000_000, 6_400_000])), "example inputs"),
    "example-high": (_manifest_case(lambda m: set_in(m, ("example_inputs", 0), dict(
        name="x", kind="int", dtype="int64", shape=[1, 64], high=0))), "high"),
    "library-in-subfolder": (_lib_in_subfolder, "library"),
    "garbage-weights": (lambda p, d: rewrite(p, d, replace={"weights.safetensors": os.urandom(4096)}),
                        "weights"),
    "zip-bomb-weights": (_zip_bomb, "weights.safetensors.*declares"),
    "no-library-member": (lambda p, d: rewrite(p, d, drop=("lib.so",)), "no lib.so"),
    "not-json": (lambda p, d: rewrite(p, d, replace={"manifest.json": b"{\"format\": "}), "manifest"),
}


@pytest.mark.parametrize("case", sorted(DAMAGED))
def test_damaged_package_gives_a_one_line_error(pkg, tmp_path, tmpdir_private, case):
    path, m, _ = pkg
    build, match = DAMAGED[case]
    bad = build(path, tmp_path / f"{case}.dlcpkg")
    import tracemalloc
    tracemalloc.start()
    try:
        with pytest.raises(DlcError, match=match) as e:
            loaded = dlc.runtime.load(bad)
            loaded.run()            # the example inputs are drawn when the package runs
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert "\n" not in e.value.message
    assert peak < 16 << 20                       # nothing was read whole, nothing enormous allocated
    assert [p for p in tmpdir_private.rglob("*") if p.is_file()] == []


def test_enormous_example_dims_from_the_command_line_are_refused(pkg):
    path, _, _ = pkg
    loaded = dlc.runtime.load(path)
    with pytest.raises(DlcError, match=r"example inputs need .*limit") as e:
        loaded.example_inputs(0, {"N": 10 ** 12})
    assert "\n" not in e.value.message


def test_tampered_signature_fails_cleanly_when_run(pkg, tmp_path):
    """A manifest whose signature disagrees with its library: TVM refuses the
    call, and that refusal is a DlcError."""
    path, _, _ = pkg
    bad = rewrite(path, tmp_path / "sig.dlcpkg",
                  manifest_change=lambda m: set_in(m, ("signature", "inputs", 0, "shape"), ["N", 65]))
    loaded = dlc.runtime.load(bad)
    with pytest.raises(DlcError, match="library"):
        loaded.run({"x": np.zeros((2, 65), np.float32)})


def test_read_manifest_checks_the_manifest(pkg, tmp_path):
    from dlc.backends.tvm.package import read_manifest
    path, _, _ = pkg
    bad = rewrite(path, tmp_path / "m.dlcpkg", manifest_change=lambda m: m["library"].update(file="/etc/passwd"))
    with pytest.raises(DlcError, match="library.file"):
        read_manifest(bad)
    # the zip itself is fine: a pristine copy still reads
    assert read_manifest(path)["library"]["file"] == "lib.so"


def test_unknown_compression_is_a_clean_error(pkg, tmp_path):
    path, _, _ = pkg
    raw = bytearray(Path(path).read_bytes())
    with zipfile.ZipFile(path) as z:
        assert z.infolist()[0].filename == "manifest.json"
    off = raw.find(b"PK\x01\x02")                          # its central directory entry
    raw[off + 10:off + 12] = (99).to_bytes(2, "little")     # an unknown compression method
    bad = tmp_path / "c.dlcpkg"
    bad.write_bytes(bytes(raw))
    with pytest.raises(DlcError, match="is damaged|not a dlc package"):
        dlc.runtime.load(bad)
