"""`dlc cache list` and `dlc cache clear`: what dlc keeps on disk besides the
files you name.

- the TVM compile cache, ``$DLC_CACHE_DIR/tvm`` (default ~/.cache/dlc/tvm):
  one folder per compiled model, reused by `dlc compile`/`run --backend tvm`;
- tuning databases, ``$DLC_CACHE_DIR/tuning``: `dlc tune`'s results, kept by
  `clear` (they are not a cache: they took the tuning budget to make);
- decoded image caches, ``$DLC_CACHE_DIR/data``: `image_folder` data sets
  decoded once to `.npy`, removed by `clear --data`;
- folders under the temp dir (`dlc-lib-*` package extraction, `dlc-build-*`,
  `dlc-tvm-*`, `dlc-ms-*`): each is removed by the process that made it; one
  left by a killed process is "stale", removed by the next package load and
  by `clear`.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path

from .runtime.manifest import human_bytes

COLUMNS = ["kind", "name", "size", "details", "path"]


def _bytes(p: Path) -> int:
    from .runtime.pkgfile import folder_bytes
    if p.is_file():
        return p.stat().st_size
    return folder_bytes(p) if p.is_dir() else 0


def _compile_entries(root: Path) -> list[dict]:
    rows = []
    for sub in sorted(root.iterdir()) if root.is_dir() else []:
        if not (sub.is_dir() and not sub.is_symlink() and len(sub.name) == 2):
            continue
        for e in sorted(sub.iterdir()):
            row = {"kind": "compile", "name": e.name[:16], "bytes": _bytes(e), "path": str(e)}
            if e.name.startswith("."):
                rows.append({**row, "details": "half-written (a compile was interrupted)"})
                continue
            try:
                meta = json.loads((e / "entry.json").read_text())
                t = meta.get("target", {})
                where = " ".join(str(t[k]) for k in ("kind", "mcpu", "arch") if t.get(k))
                details = (f"{meta.get('model', 'a model')} ({_inputs(meta['signature']['inputs'])}) for {where}, "
                           f"{meta.get('created', '?')}")
            except (OSError, ValueError, KeyError, TypeError):
                details = "damaged (rebuilt on its next use)"
            rows.append({**row, "details": details})
    return rows


def _inputs(inputs: list, most: int = 3) -> str:
    shown = [f"{i['name']} {i['dtype']}[{', '.join(str(d) for d in i['shape'])}]" for i in inputs[:most]]
    return ", ".join(shown) + (f", +{len(inputs) - most} more" if len(inputs) > most else "")


def _tuning_databases(root: Path) -> list[dict]:
    rows = []
    for d in sorted(root.iterdir()) if root.is_dir() else []:
        if not d.is_dir() or d.name.startswith("."):
            continue
        try:
            with open(d / "database_tuning_record.json", "rb") as f:
                n = sum(1 for line in f if line.strip())
        except OSError:
            n = 0
        rows.append({"kind": "tuning", "name": d.name, "bytes": _bytes(d), "path": str(d),
                     "details": f"{n} tuning records (kept by clear)"})
    return rows


def _data_caches(root: Path) -> list[dict]:
    rows = []
    for f in sorted(root.glob("*.npy")) if root.is_dir() else []:
        try:
            meta = json.loads(f.with_suffix(".json").read_text())
            details = f"{meta.get('n', '?')} images of {meta.get('root', '?')}"
        except (OSError, ValueError):
            details = "decoded images"
        rows.append({"kind": "data", "name": f.stem, "bytes": _bytes(f), "path": str(f), "details": details})
    return rows


def _temp_folders() -> list[dict]:
    from .runtime.pkgfile import EXTRACT_PREFIX, SCRATCH_KINDS, _uid, stale_extractions
    stale = set(stale_extractions(legacy=True))
    root = Path(tempfile.gettempdir())
    mine = tuple(f"{p}{_uid()}-" for p in (EXTRACT_PREFIX, *(f"dlc-{k}-" for k in SCRATCH_KINDS)))
    rows = []
    for e in sorted(root.iterdir(), key=lambda p: p.name):
        if not (e in stale or e.name.startswith(mine)) or e.is_symlink() or not e.is_dir():
            continue
        age = time.time() - e.lstat().st_mtime
        state = ("left by an older dlc version" if e.name == f"dlc-pkg-{_uid()}" else
                 "stale: its process has exited" if e in stale else "in use by a running process")
        rows.append({"kind": "temp", "name": e.name, "bytes": _bytes(e), "path": str(e),
                     "details": f"{state}, {age / 60:.0f} min old"})
    return rows


def cache_rows() -> list[dict]:
    """Everything `dlc cache list` shows, one dict per entry."""
    from .backends.tvm.cache import cache_dir
    from .runtime.data_images import default_cache_dir
    base = cache_dir().parent
    return (_compile_entries(cache_dir()) + _tuning_databases(base / "tuning") + _data_caches(default_cache_dir())
            + _temp_folders())


def list_report(rows: list[dict], fmt: str) -> str:
    from .tables import TextTable, render, stdout_width
    if fmt == "json":
        return json.dumps({"entries": rows, "total_bytes": sum(r["bytes"] for r in rows)}) + "\n"
    totals = {}
    for r in rows:
        n, b = totals.get(r["kind"], (0, 0))
        totals[r["kind"]] = (n + 1, b + r["bytes"])
    notes = [f"{kind}: {n} entries, {human_bytes(b)}" for kind, (n, b) in totals.items()] or ["nothing cached"]
    size = (lambda b: str(b)) if fmt == "csv" else human_bytes
    table = TextTable("dlc caches", COLUMNS, [[r["kind"], r["name"], size(r["bytes"]), r["details"], r["path"]]
                                              for r in rows], right={"size"}, notes=notes)
    return render([table], fmt, stdout_width())


def clear_data_caches() -> tuple[int, int]:
    """Remove the decoded image caches; (files, bytes) removed."""
    from .runtime.data_images import default_cache_dir
    n = size = 0
    for r in _data_caches(default_cache_dir()):
        p = Path(r["path"])
        for f in (p, p.with_suffix(".json")):
            try:
                b = f.stat().st_size
                f.unlink()
                n, size = n + (f.suffix == ".npy"), size + b
            except OSError:
                pass
    return n, size


def remove_folders(paths) -> tuple[list, list]:
    """rmtree each; (removed [(path, bytes)], the paths that remain)."""
    gone, kept = [], []
    for d in paths:
        b = _bytes(d)
        shutil.rmtree(d, ignore_errors=True)
        (kept if os.path.exists(d) else gone).append((d, b))
    return gone, [d for d, _ in kept]
