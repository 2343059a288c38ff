"""Compiled artifacts cached by content.

The key is a hash of everything the library depends on: the printed IR of
the graph (`str(graph)`), the bindings, the target dict, dlc's and TVM's
versions, `SCHEDULE_VERSION`, the source of the TVM backend's compiler
(lowering, pipeline, schedules) and the content of the tuning database, if
any.  An entry is a directory:

    $DLC_CACHE_DIR/tvm (default ~/.cache/dlc/tvm)/<key[:2]>/<key>/
        entry.json      signature, target, library file and format
        lib.so          the exported library (lib.tar without a cross compiler)

An entry is built in a temporary directory and renamed into place, so a
reader sees a whole entry or none.  Deleting the cache is always safe (`dlc
cache clear`), and a damaged entry counts as a miss (it is rebuilt and
replaced), never as an error: entry.json carries a checksum of itself and the
library's sha256, and both are checked on every read.  The cache is trusted
as far as the user's home is (a library in it is loaded, as a package's is);
its folders are created private (0700).

    model, hit = compile_cached(graph, "cpu")
    model.runner().set_weights(w).run({"x": x})
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from ...errors import DlcError
from ...runtime.pkgfile import scratch_dir, sha256_file

SCHEDULE_VERSION = 1
ENTRY = "entry.json"

# the compiler's own source: a change to any of these (and to any lowering*.py,
# the per-family lowering modules, and schedules/*.py) invalidates the cache
_SOURCES = ("relaxgen.py", "pipeline.py", "compile.py", "package.py")


def cache_dir() -> Path:
    """``$DLC_CACHE_DIR/tvm`` (default ``~/.cache/dlc/tvm``); `dlc tune`'s
    databases live beside it, in ``$DLC_CACHE_DIR/tuning``."""
    d = os.environ.get("DLC_CACHE_DIR")
    return (Path(d).expanduser() if d else Path.home() / ".cache" / "dlc") / "tvm"


def default_tuning_dir(target_dict: dict):
    """The directory `dlc tune` wrote for this target, if it holds records.
    (Looked up only when some tuning directory exists, so that an untuned
    cached compile does not import TVM.)"""
    from . import tune
    root = tune.cache_root() / "tuning"
    try:
        if not root.is_dir() or not any(root.iterdir()):
            return None
        from ...runtime.package import import_tvm
        import_tvm()
        d = tune.default_db_dir(target_dict)
        return d if tune._has_records(d) else None
    except (OSError, DlcError):
        return None


def _dlc_version() -> str:
    from ..._version import __version__
    return __version__


def _code_hash() -> str:
    here = Path(__file__).parent
    return _hash_files([here / n for n in _SOURCES] + sorted(here.glob("lowering*.py"))
                       + sorted((here / "schedules").glob("*.py")))


def _hash_files(files) -> str:
    """sha256 over each file's name and bytes, in the order given (an unreadable file is skipped)."""
    h = hashlib.sha256()
    for f in files:
        try:
            h.update(f.name.encode() + b"\0" + f.read_bytes())
        except OSError:
            pass
    return h.hexdigest()


def database_hash(database) -> str | None:
    """A content hash of a tuning database: a directory (or a JSON file) of
    MetaSchedule records.  None for no database; raises for one that cannot be
    hashed (a database object), which disables the cache."""
    if database is None:
        return None
    if isinstance(database, (str, os.PathLike)):
        p = Path(database)
        return _hash_files(sorted(p.rglob("*.json")) if p.is_dir() else [p])
    raise TypeError("a tuning database object has no content hash")


def open_database(path):
    """A MetaSchedule JSON database from a directory (its
    ``*workload*.json`` and ``*tuning_record*.json``)."""
    p = Path(path)
    if not p.is_dir():
        raise DlcError(f"no tuning database at {path}", hint="--tuning-db takes the directory dlc tune wrote")
    work = sorted(p.glob("*workload*.json"))
    recs = sorted(p.glob("*tuning_record*.json"))
    if not work or not recs:
        raise DlcError(f"{path} holds no MetaSchedule database (*workload*.json, *tuning_record*.json)")
    from tvm.s_tir import meta_schedule as ms
    return ms.database.JSONDatabase(path_workload=str(work[0]), path_tuning_record=str(recs[0]),
                                    allow_missing=False)


def cache_key(graph, bind, target_dict: dict, db_hash: str | None = None, lift_params: bool = True) -> str:
    from .target import _tvm_version
    doc = {
        "ir": str(graph),
        "bind": {str(k): bind[k] for k in sorted(bind or {})},
        "target": target_dict,
        "dlc": _dlc_version(),
        "tvm": _tvm_version(),
        "schedule_version": SCHEDULE_VERSION,
        "code": _code_hash(),
        "database": db_hash,
        "lift_params": bool(lift_params),
    }
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()


@dataclass
class CachedModel:
    """A compiled model backed by a library file (a cache entry, or a
    temporary export when the cache is off)."""

    signature: dict
    target: dict
    lib_path: Path
    lib_info: dict                      # {"file", "format", "arch", "device", "cross_compiler", ...}
    key: str
    compile_seconds: float = 0.0
    _executable: object = field(default=None, repr=False)
    database: str | None = None         # the tuning database applied, if any

    @property
    def executable(self):
        """The runnable module: the in-memory executable after a fresh
        compile, else the library loaded from the cache."""
        if self._executable is None:
            if self.lib_info.get("format") != "so":
                raise DlcError(f"the cached library {self.lib_path.name} cannot be loaded here",
                               hint="install the cross compiler for a .so")
            from ...runtime.package import import_tvm
            tvm = import_tvm()
            self._executable = tvm.runtime.load_module(str(self.lib_path))
        return self._executable

    def runner(self, device=None):
        from ...runtime.package import Runner, import_tvm
        tvm = import_tvm()
        return Runner(self.executable, self.signature, device or tvm.cpu())


def _entry_checksum(meta: dict) -> str:
    """sha256 of an entry's record, without its own checksum field."""
    doc = {k: v for k, v in meta.items() if k != "checksum"}
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


def _read_entry(d: Path, key: str) -> CachedModel | None:
    """The entry in `d`, or None when it is missing or damaged: its record's
    checksum and its library's sha256 (both written with it) must match, so a
    flipped byte of the right size is a miss, not a hit."""
    try:
        meta = json.loads((d / ENTRY).read_text())
        if meta.get("key") != key or meta.get("checksum") != _entry_checksum(meta):
            return None
        name = meta["library"]["file"]
        if name not in ("lib.so", "lib.tar"):
            return None
        lib = d / name
        if not lib.is_file() or lib.stat().st_size != meta["library"].get("size", -1):
            return None
        if sha256_file(lib) != meta["library"].get("sha256"):
            return None
        return CachedModel(meta["signature"], meta["target"], lib, meta["library"], key,
                           meta.get("compile_seconds", 0.0), database=meta.get("database"))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def _stats_bump(which: str):
    STATS[which] = STATS.get(which, 0) + 1


STATS: dict[str, int] = {}


def compile_cached(graph, target, *, bind: dict | None = None, database=None, cache: bool = True,
                   arch: str | None = None, options: dict | None = None,
                   lift_params: bool = True, auto_database: bool = True) -> tuple[CachedModel, bool]:
    """Compile `graph` for `target` (a name or dict), or take it from the
    cache.  Returns (model, hit).  `database`: a tuning-database directory;
    without one, the one `dlc tune` wrote for this target is applied, if any
    (`auto_database=False` to not)."""
    from .target import resolve_target
    target_dict = resolve_target(target, arch, options)
    if database is None and auto_database:
        database = default_tuning_dir(target_dict)
    try:
        db_hash = database_hash(database)
    except TypeError:
        cache, db_hash = False, None
    key = cache_key(graph, bind, target_dict, db_hash, lift_params)
    root = cache_dir()
    d = root / key[:2] / key
    if cache:
        hit = _read_entry(d, key)
        if hit is not None:
            _stats_bump("hit")
            try:
                os.utime(d / ENTRY)          # for a least-recently-used clean-up
            except OSError:
                pass
            return hit, True
    _stats_bump("miss")

    from ...runtime.package import import_tvm
    tvm = import_tvm()
    try:
        tvm.target.Target(target_dict)
    except Exception as e:  # noqa: BLE001 - TVM rejects bad options with various types
        raise DlcError(f"TVM rejects the target {json.dumps(target_dict)}: "
                       f"{str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__}",
                       hint="check --target-opt keys (mtriple, mcpu, mattr, num-cores) and --arch") from None
    _check_mcpu(tvm, target_dict)
    db = database
    if isinstance(database, (str, os.PathLike)):
        db = open_database(database)
    from .compile import compile_graph
    t0 = time.perf_counter()
    compiled = compile_graph(graph, target_dict, bind=bind, database=db, lift_params=lift_params)
    from .package import export_library
    tmp = None
    if cache:
        try:
            root.mkdir(mode=0o700, parents=True, exist_ok=True)     # private: its libraries get loaded
            (root / key[:2]).mkdir(mode=0o700, parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=f".{key[:16]}.", dir=root / key[:2]))
        except OSError:
            cache = False
    if tmp is None:     # uncached: a scratch folder that the next package load removes if this process dies
        tmp = scratch_dir("tvm")
    if not cache:
        import atexit
        atexit.register(shutil.rmtree, tmp, True)
    lib_info = export_library(compiled.executable, target_dict, tmp)
    seconds = time.perf_counter() - t0
    entry = {"key": key, "model": graph.name, "signature": compiled.signature, "target": target_dict,
             "library": lib_info,
             "database": str(database) if database is not None else None,
             "compile_seconds": seconds, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    entry["checksum"] = _entry_checksum(entry)       # lib_info carries the library's sha256
    (tmp / ENTRY).write_text(json.dumps(entry, indent=1))
    final = tmp
    if cache:
        try:
            if d.exists() and _read_entry(d, key) is None:   # a damaged entry: replace it
                shutil.rmtree(d, ignore_errors=True)
            os.replace(tmp, d)
            final = d
        except OSError:                      # another process stored it first, or a read-only cache
            final = d if _read_entry(d, key) is not None else tmp
            if final is d:
                shutil.rmtree(tmp, ignore_errors=True)
    model = CachedModel(compiled.signature, target_dict, final / lib_info["file"], lib_info, key, seconds,
                        compiled.executable, database=str(database) if database is not None else None)
    return model, False


def _check_mcpu(tvm, target_dict: dict) -> None:
    """LLVM falls back to a generic CPU (with a warning per kernel) for an
    unknown -mcpu; refuse it instead."""
    for t in (target_dict, target_dict.get("host")):
        if not isinstance(t, dict) or t.get("kind") != "llvm" or "mcpu" not in t:
            continue
        try:
            from tvm.target import codegen
            known = list(codegen.llvm_get_cpu_archlist(tvm.target.Target(
                {"kind": "llvm", "mtriple": t.get("mtriple", "x86_64-linux-gnu")})))
        except Exception:  # noqa: BLE001 - no list: let LLVM decide
            continue
        if known and t["mcpu"] not in known:
            import difflib
            close = difflib.get_close_matches(str(t["mcpu"]), known, n=3)
            raise DlcError(f"LLVM does not know the CPU '{t['mcpu']}' for {t.get('mtriple', 'this triple')}",
                           hint=("did you mean " + ", ".join(close) + "?") if close else
                           "see: llc -mtriple=<triple> -mcpu=help")


def clear_cache() -> tuple[int, int]:
    """Delete every cache entry (and half-written ones left by killed
    compiles); returns (how many entries, how many bytes) were removed.
    Tuning databases (``$DLC_CACHE_DIR/tuning``) are kept: they are not a
    cache but the result of `dlc tune`."""
    root = cache_dir()
    n = size = 0
    if root.is_dir():
        for sub in root.iterdir():
            if sub.is_dir() and not sub.is_symlink() and len(sub.name) == 2:
                for e in sub.iterdir():
                    n += not e.name.startswith(".")
                    size += sum(f.stat().st_size for f in e.rglob("*") if f.is_file() and not f.is_symlink())
                shutil.rmtree(sub, ignore_errors=True)
    return n, size
