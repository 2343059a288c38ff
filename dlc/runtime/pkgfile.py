"""Reading a `.dlcpkg` as untrusted input.

A package carries native code, and loading it runs that code, as with any
shared library (docs/security.md).  What this module guarantees is that a
damaged or tampered package cannot do more than that: it cannot write outside
a fresh private folder, swap in a library that is not the one its manifest
hashes, have someone else's planted library loaded instead, or make dlc read
an unbounded amount of data.

- The package file is opened once; its sha256 is computed from that open
  file (and compared with a pinned hash, if given), and the zip is read from
  the same file, so what was hashed is what is read.
- Member names: each name occurs once; the library is lib.so or lib.tar at
  the top of the zip (the manifest's `library.file`, checked by
  `manifest.check_manifest`); nothing else is ever written to disk.
- Sizes: every member is read with a bound, checked against its declared
  size before a byte is decompressed (the manifest at most 1 MiB, the weights
  at most the parameters' bytes plus their safetensors header, the library
  exactly `library.size`).
- The library is written into a fresh folder made by `tempfile.mkdtemp`
  (mode 0700, named `dlc-lib-<uid>-<pid>-*`), its sha256 checked against the
  manifest while it is written, loaded, and the folder removed.  Folders left
  by killed processes are removed by the next load (after a minute) and by
  `dlc cache clear`.
"""
from __future__ import annotations

import collections
import hashlib
import json
import os
import shutil
import stat
import struct
import tempfile
import time
import zipfile
import zlib
from pathlib import Path

from ..errors import DlcError
from .manifest import (LIBRARY_FILES, check_manifest, check_sha256, damaged, human_bytes, nbytes)

MANIFEST = "manifest.json"
WEIGHTS = "weights.safetensors"
MAX_MANIFEST_BYTES = 1 << 20
SAFETENSORS_HEADER_BYTES = 1 << 16          # plus 1 KiB per parameter: names, dtypes, shapes, offsets
EXTRACT_PREFIX = "dlc-lib-"
# dlc's other folders under the temp dir, named dlc-<kind>-<uid>-<pid>-*: a package being
# written, an uncached compile's library, a tuning candidate's build
SCRATCH_KINDS = ("build", "tvm", "ms")
STALE_AFTER_S = 60                          # a dead process's folder this old is removed at load

# what a damaged zip raises: bad CRC, broken deflate stream, truncated data,
# an unknown compression method, an "encrypted" flag, overlapping entries
_ZIP_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, EOFError, OSError, NotImplementedError,
               RuntimeError, ValueError, OverflowError, struct.error, UnicodeDecodeError, KeyError, IndexError)

NOT_A_PACKAGE_HINT = "a .dlcpkg is written by: dlc compile model.dln --target cpu"


def _uid() -> int:
    return os.getuid() if hasattr(os, "getuid") else 0


def sha256_file(path) -> str:
    """sha256 of a file (what `--expect-sha256` compares with)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _one_line(e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    return lines[-1].strip() if lines else type(e).__name__


class PackageFile:
    """An open `.dlcpkg`: `.manifest` (checked), `.sha256` (of the whole
    file), `read_weights()` and `extract_library(folder)`."""

    def __init__(self, path, expect_sha256: str | None = None):
        self.path = path
        expect = check_sha256(expect_sha256, "--expect-sha256") if expect_sha256 is not None else None
        p = Path(path)
        if not p.exists():
            raise DlcError(f"no such package: {path}", hint="build one with: dlc compile model.dln --target cpu")
        if p.is_dir():
            raise DlcError(f"{path} is a directory, not a .dlcpkg package")
        try:
            self._file = open(p, "rb")
        except OSError as e:
            raise DlcError(f"cannot read {path}: {e.strerror or e}") from None
        try:
            self._open(expect)
        except BaseException:
            self.close()
            raise

    def _open(self, expect: str | None) -> None:
        h = hashlib.sha256()
        for chunk in iter(lambda: self._file.read(1 << 20), b""):
            h.update(chunk)
        self.sha256 = h.hexdigest()
        if expect is not None and self.sha256 != expect:
            raise DlcError(f"{self.path} has sha256 {self.sha256}, expected {expect}",
                           hint="this is not the package that was pinned: use the one you trust, or pin "
                                "this one's hash if you trust it")
        self._file.seek(0)
        try:
            self.zip = zipfile.ZipFile(self._file)
            infos = self.zip.infolist()
        except _ZIP_ERRORS as e:
            raise DlcError(f"{self.path} is not a dlc package ({_one_line(e)})", hint=NOT_A_PACKAGE_HINT) from None
        counts = collections.Counter(i.filename for i in infos)
        twice = sorted(n for n, k in counts.items() if k > 1)
        if twice:
            raise damaged(self.path, f"it holds {twice[0]} more than once")
        self.names = set(counts)
        if MANIFEST not in self.names:
            raise DlcError(f"{self.path} is not a dlc package (it has no {MANIFEST})", hint=NOT_A_PACKAGE_HINT)
        try:
            m = json.loads(self.read(MANIFEST, MAX_MANIFEST_BYTES).decode("utf-8"))
        except (ValueError, UnicodeDecodeError, RecursionError) as e:
            raise damaged(self.path, f"its manifest is not JSON ({_one_line(e)})") from None
        self.manifest = check_manifest(m, self.path)

    def close(self) -> None:
        z = getattr(self, "zip", None)
        if z is not None:
            z.close()
        self._file.close()

    def __enter__(self) -> "PackageFile":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------
    # members

    def _info(self, name: str, limit: int) -> zipfile.ZipInfo:
        info = self.zip.getinfo(name)
        if info.file_size > limit:
            raise damaged(self.path, f"{name} declares {human_bytes(info.file_size)}, more than the "
                                     f"{human_bytes(limit)} it can hold")
        return info

    def read(self, name: str, limit: int) -> bytes:
        """Member `name`, refused before reading if it declares more than
        `limit` bytes, and never more than `limit` bytes read."""
        info = self._info(name, limit)
        try:
            with self.zip.open(info) as src:
                data = src.read(limit + 1)
        except _ZIP_ERRORS as e:
            raise damaged(self.path, f"cannot read {name} ({_one_line(e)})") from None
        if len(data) > limit:
            raise damaged(self.path, f"{name} holds more than the {human_bytes(limit)} it can hold")
        return data

    def read_weights(self) -> dict | None:
        """The packaged weights (None if the package has none), read with a
        bound from the parameters' shapes and dtypes."""
        if WEIGHTS not in self.names:
            return None
        params = self.manifest["signature"]["params"]
        limit = (sum(nbytes(p["shape"], p["dtype"]) for p in params) + 8 + SAFETENSORS_HEADER_BYTES
                 + 1024 * len(params))
        data = self.read(WEIGHTS, limit)
        from safetensors.numpy import load as st_load
        try:
            return dict(st_load(data))
        except Exception as e:  # noqa: BLE001 - safetensors raises its own error types
            raise damaged(self.path, f"{WEIGHTS} is not a safetensors file ({_one_line(e)})") from None

    def extract_library(self, folder: Path) -> Path:
        """Write the library into `folder` (a fresh private one), checking its
        size and sha256 against the manifest as it is written."""
        lib = self.manifest["library"]
        name = lib["file"]
        assert name in LIBRARY_FILES            # check_manifest refuses any other name
        if name not in self.names:
            raise damaged(self.path, f"it has no {name}")
        info = self._info(name, lib["size"])
        target = Path(folder) / name
        h = hashlib.sha256()
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
        try:
            with self.zip.open(info) as src, os.fdopen(os.open(target, flags, 0o600), "wb") as dst:
                while chunk := self._chunk(src, name):
                    h.update(chunk)
                    dst.write(chunk)
        except OSError as e:
            raise DlcError(f"cannot unpack the library of {self.path} into {folder}: {e.strerror or e}") from None
        if h.hexdigest() != lib["sha256"]:
            raise damaged(self.path, f"{name} has sha256 {h.hexdigest()}, its manifest says {lib['sha256']}")
        return target

    def _chunk(self, src, name: str) -> bytes:
        try:
            return src.read(1 << 20)
        except _ZIP_ERRORS as e:
            raise damaged(self.path, f"cannot read {name} ({_one_line(e)})") from None


# --------------------------------------------------------------------------
# private extraction folders

def private_dir() -> Path:
    """A fresh folder only this user can enter (mkdtemp: mode 0700, created
    atomically, never an existing one), in a temp root that other users
    cannot rename things in."""
    root = Path(tempfile.gettempdir())
    try:
        st = root.stat()
    except OSError as e:
        raise DlcError(f"the temporary folder {root} is not usable: {e.strerror or e}",
                       hint="set TMPDIR to a folder you own") from None
    if st.st_mode & stat.S_IWOTH and not st.st_mode & stat.S_ISVTX:
        raise DlcError(f"the temporary folder {root} is writable by every user and not sticky, so another user "
                       "could swap the package's library", hint="set TMPDIR to a folder you own")
    d = Path(tempfile.mkdtemp(prefix=f"{EXTRACT_PREFIX}{_uid()}-{os.getpid()}-", dir=root))
    st = os.lstat(d)
    if not stat.S_ISDIR(st.st_mode) or stat.S_IMODE(st.st_mode) & 0o077 or (
            hasattr(os, "getuid") and st.st_uid != _uid()):
        raise DlcError(f"the fresh folder {d} is not private (mode {oct(st.st_mode)}, owner {st.st_uid})")
    return d


def scratch_dir(kind: str) -> Path:
    """A fresh folder under the temp dir for dlc's own work (`kind` one of
    SCRATCH_KINDS), named after this user and process so that, if the process
    is killed before removing it, `stale_extractions` finds it."""
    assert kind in SCRATCH_KINDS, kind
    global _swept
    if not _swept:      # once per process: what killed processes left (a load sweeps too)
        _swept = True
        try:
            remove_stale_extractions(min_age_s=STALE_AFTER_S)
        except OSError:
            pass
    return Path(tempfile.mkdtemp(prefix=f"dlc-{kind}-{_uid()}-{os.getpid()}-"))


_swept = False


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


def _ours(p: Path) -> bool:
    """A real folder (not a link) owned by this user."""
    try:
        st = os.lstat(p)
    except OSError:
        return False
    return stat.S_ISDIR(st.st_mode) and (not hasattr(os, "getuid") or st.st_uid == _uid())


def stale_extractions(min_age_s: float = 0.0, legacy: bool = False) -> list[Path]:
    """Extraction and scratch folders of this user whose process has exited
    (and, with `legacy`, the `dlc-pkg-<uid>` folder of older dlc versions)."""
    root = Path(tempfile.gettempdir())
    prefixes = tuple(f"{p}{_uid()}-" for p in (EXTRACT_PREFIX, *(f"dlc-{k}-" for k in SCRATCH_KINDS)))
    out = []
    try:
        entries = list(os.scandir(root))
    except OSError:
        return []
    now = time.time()
    for e in entries:
        p = Path(e.path)
        prefix = next((x for x in prefixes if e.name.startswith(x)), None)
        if prefix is not None:
            pid = e.name[len(prefix):].split("-", 1)[0]
            if not pid.isdigit() or _alive(int(pid)) or not _ours(p):
                continue
            try:
                if now - os.lstat(p).st_mtime < min_age_s:
                    continue
            except OSError:
                continue
            out.append(p)
        elif legacy and e.name == f"dlc-pkg-{_uid()}" and _ours(p):
            out.append(p)
    return sorted(out)


def remove_stale_extractions(min_age_s: float = 0.0, legacy: bool = False) -> list[Path]:
    """Remove `stale_extractions(...)`; returns the folders removed."""
    removed = []
    for p in stale_extractions(min_age_s, legacy):
        shutil.rmtree(p, ignore_errors=True)
        if not p.exists():
            removed.append(p)
    return removed


def folder_bytes(p: Path) -> int:
    total = 0
    for f in p.rglob("*"):
        try:
            if f.is_file() and not f.is_symlink():
                total += f.stat().st_size
        except OSError:
            pass
    return total
