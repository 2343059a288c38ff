"""Tampered copies of a real `.dlcpkg`, for the package-hardening tests.

A package is a zip of manifest.json, weights.safetensors and lib.so; these
helpers rewrite one part of a copy and leave the rest byte for byte.
"""
from __future__ import annotations

import json
import warnings
import zipfile
from pathlib import Path

from dlc.backends.tvm import cache as tvm_cache
from dlc.backends.tvm.package import example_input_specs, source_hash, write_package

ROOT = Path(__file__).resolve().parents[3]


def build_package(spec: str, out: Path) -> tuple:
    """Compile `spec` for this CPU (through the cache) and package it;
    returns (model, weights)."""
    import dlc
    m = dlc.load(ROOT / spec)
    cm, _ = tvm_cache.compile_cached(m.graph, "cpu")
    w = m.init_weights(0)
    write_package(out, cm, w, source_hash=source_hash(ROOT / spec), spec_path=spec, model_name=m.name,
                  target_name="cpu", example_inputs=example_input_specs(m._elaborate("eval")),
                  example_dims=dict(m.graph.dims))
    return m, w


def members(path) -> list[tuple[zipfile.ZipInfo, bytes]]:
    with zipfile.ZipFile(path) as z:
        return [(i, z.read(i)) for i in z.infolist()]


def manifest(path) -> dict:
    with zipfile.ZipFile(path) as z:
        return json.loads(z.read("manifest.json"))


def write_members(dst, items, compress=zipfile.ZIP_DEFLATED) -> Path:
    """A zip of (name, bytes) pairs, in order (duplicates allowed)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")          # zipfile warns about duplicate names
        with zipfile.ZipFile(dst, "w") as z:
            for name, data in items:
                z.writestr(name, data, compress_type=compress)
    return Path(dst)


def rewrite(src, dst, *, manifest_change=None, replace: dict | None = None, rename: dict | None = None,
            drop=(), extra=()) -> Path:
    """A copy of package `src` with its manifest changed by
    `manifest_change(m)`, members replaced (name -> bytes), renamed or
    dropped, and `extra` (name, bytes) members appended."""
    items = []
    for info, data in members(src):
        name = info.filename
        if name in drop:
            continue
        if name == "manifest.json" and manifest_change is not None:
            m = json.loads(data)
            manifest_change(m)
            data = json.dumps(m).encode()
        if replace and name in replace:
            data = replace[name]
        items.append(((rename or {}).get(name, name), data))
    items += list(extra)
    return write_members(dst, items)


def flip_compressed_byte(src, dst, member: str) -> Path:
    """A byte-for-byte copy of `src` with one byte of `member`'s stored
    (compressed) data inverted: its CRC-32 no longer matches, or its deflate
    stream is broken."""
    raw = bytearray(Path(src).read_bytes())
    with zipfile.ZipFile(src) as z:
        info = z.getinfo(member)
    # the local header: 30 bytes, then the name and the extra field
    name_len = int.from_bytes(raw[info.header_offset + 26:info.header_offset + 28], "little")
    extra_len = int.from_bytes(raw[info.header_offset + 28:info.header_offset + 30], "little")
    start = info.header_offset + 30 + name_len + extra_len
    raw[start + info.compress_size // 2] ^= 0xFF
    Path(dst).write_bytes(bytes(raw))
    return Path(dst)


def set_in(m: dict, path: tuple, value) -> None:
    """m[path[0]][path[1]]... = value (a missing key is created)."""
    for k in path[:-1]:
        m = m[k]
    m[path[-1]] = value


def del_in(m: dict, path: tuple) -> None:
    for k in path[:-1]:
        m = m[k]
    del m[path[-1]]


def sha256(path) -> str:
    import hashlib
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def dead_pid() -> int:
    """The id of a process that has exited."""
    import subprocess
    import sys
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid
