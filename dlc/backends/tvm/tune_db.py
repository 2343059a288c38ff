"""Where `dlc tune`'s databases live and how they are opened: the default
folder ``$DLC_CACHE_DIR/tuning/<target-hash>``, the two MetaSchedule JSON
files in it, and the check that a target can be measured on this machine."""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from ...errors import DlcError

WORKLOAD_FILE = "database_workload.json"
RECORD_FILE = "database_tuning_record.json"


def cache_root() -> Path:
    env = os.environ.get("DLC_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "dlc"


def _target_dict(target) -> dict:
    from .target import resolve_target
    if hasattr(target, "kind") and hasattr(target, "export"):
        return dict(target.export())
    return resolve_target(target)


def target_hash(target) -> str:
    """A short hash of the target (as a TVM target dict) and the TVM version."""
    import tvm
    d = dict(tvm.target.Target(_target_dict(target)).export())
    d.pop("tag", None)
    blob = json.dumps({"target": d, "tvm": tvm.__version__}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def default_db_dir(target) -> Path:
    """``$DLC_CACHE_DIR/tuning/<target-hash>`` (default ``~/.cache/dlc/tuning/...``)."""
    return cache_root() / "tuning" / target_hash(target)


def _has_records(d: Path) -> bool:
    rec = d / RECORD_FILE
    return (d / WORKLOAD_FILE).is_file() and rec.is_file() and rec.stat().st_size > 0


def load_database(path):
    """The MetaSchedule `JSONDatabase` in directory `path` (its
    database_workload.json and database_tuning_record.json), or None when
    the directory holds no records."""
    d = Path(path).expanduser()
    if not _has_records(d):
        return None
    from tvm.s_tir import meta_schedule as ms
    return ms.database.JSONDatabase(str(d / WORKLOAD_FILE), str(d / RECORD_FILE), allow_missing=False)


def default_database(target):
    """The tuning database of `target` (a name such as ``"cpu"``, a target
    dict or a `tvm.target.Target`) in the default place, or None when there
    is none yet.  `compile_graph(..., database=default_database(t))` applies it."""
    return load_database(default_db_dir(target))


def check_tunable(target) -> dict:
    """The target dict, if MetaSchedule can measure it on this machine (the host CPU)."""
    d = _target_dict(target)
    if d.get("kind") != "llvm":
        raise DlcError(f"tuning measures kernels on this machine: target '{target}' is not its CPU",
                       hint="tune with --target cpu (tuning for another device must run on that device)")
    from .target import host_target_dict
    host = host_target_dict()
    triple = d.get("mtriple")
    if triple and triple.split("-")[0] != host["mtriple"].split("-")[0]:
        raise DlcError(f"cannot measure {triple} kernels on this {host['mtriple']} machine",
                       hint="run dlc tune on the target device")
    return d



def count_records(db_dir) -> int:
    p = Path(db_dir) / RECORD_FILE
    if not p.exists():
        return 0
    with open(p, "rb") as f:
        return sum(1 for line in f if line.strip())
