"""A training run's folder: what `dlc train --out DIR` may find there, and
what it leaves.

    metrics.jsonl            one JSON line per epoch
    epoch-NNN.safetensors    a checkpoint per epoch (weights, optimizer state,
                             step, best-so-far, early-stopping state, and what
                             the run trains: the spec's hash and the
                             parameter signature)
    best.safetensors         the weights of the best epoch so far
    rankR.safetensors        data-parallel runs: each rank's final weights

Runs cannot mix: a fresh run into a non-empty folder is refused unless
`--overwrite` (which removes the files above first); `--resume` refuses a
checkpoint written for another spec, other parameters or another kind of
optimizer state, and rewrites a `best.safetensors` that an interrupted run
left stale.  Temporary files orphaned by a kill are removed at each start.
"""
from __future__ import annotations

import hashlib
import re
from pathlib import Path

from .errors import DlcError

RUN_FILES = ("metrics.jsonl", "epoch-*.safetensors", "best.safetensors", "rank*.safetensors", "transfer.json")
BEST = "best.safetensors"


def prepare(out_dir: Path, *, resume: bool, overwrite: bool) -> None:
    """Clean orphaned temp files; refuse to start a fresh run over another one."""
    if resume and overwrite:
        raise DlcError("--resume continues the run in the folder and --overwrite deletes it: give one")
    if not out_dir.exists():
        if resume:
            raise DlcError(f"nothing to resume: {out_dir} does not exist", hint="drop --resume to start a run")
        return
    if not out_dir.is_dir():
        raise DlcError(f"the run folder {out_dir} is a file", hint="choose another --out")
    for p in out_dir.glob(".*.tmp"):     # atomic_write's temporary names: .<target>.<random>.tmp
        p.unlink(missing_ok=True)
    if resume:
        return
    if overwrite:
        for pattern in RUN_FILES:
            for p in out_dir.glob(pattern):
                p.unlink()
        return
    present = sorted(p.name for p in out_dir.iterdir())
    if present:
        shown = ", ".join(present[:3]) + (", ..." if len(present) > 3 else "")
        raise DlcError(f"the run folder {out_dir} is not empty ({shown})",
                       hint="continue that run with --resume, start over with --overwrite, or choose another --out")


def latest_checkpoint(out_dir: Path) -> Path | None:
    best = None
    for p in out_dir.glob("epoch-*.safetensors"):
        m = re.fullmatch(r"epoch-(\d+)\.safetensors", p.name)
        if m and (best is None or int(m.group(1)) > best[0]):
            best = (int(m.group(1)), p)
    return best[1] if best else None


def checkpoint_path(out_dir: Path, epoch: int) -> Path:
    return out_dir / f"epoch-{epoch:03d}.safetensors"


def spec_hash(path) -> str:
    """sha256 of the spec's text: a checkpoint belongs to the spec it was trained from."""
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError:
        return ""


def param_signature(weights: dict) -> dict[str, str]:
    """name -> "dtype[shape]" of every weight and buffer."""
    return {k: f"{v.dtype}{list(v.shape)}" for k, v in weights.items()}


def check_checkpoint(path: Path, extra: dict, *, spec: str, params: dict, state_kind: str) -> None:
    """Refuse to resume from a checkpoint of another run."""
    hint = "resume with the spec and flags that wrote it, or start over with --overwrite"
    if "spec_sha256" not in extra or "params" not in extra:
        raise DlcError(f"{path} does not record which spec it was trained from", hint=hint)
    if extra["params"] != params:
        old, new = extra["params"], params
        diff = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
        shown = "; ".join(f"{k}: checkpoint {old.get(k, 'absent')}, model {new.get(k, 'absent')}" for k in diff[:3])
        raise DlcError(f"{path} holds other parameters than the model ({shown})", hint=hint)
    if extra["spec_sha256"] != spec:
        raise DlcError(f"{path} was trained from another version of the spec (its sha256 differs)", hint=hint)
    if extra.get("state_kind", state_kind) != state_kind:
        raise DlcError(f"{path} holds {extra['state_kind']} optimizer state; this run keeps {state_kind} state",
                       hint="resume with the --backend and --grad that wrote it")


def repair_best(out_dir: Path, best: dict | None, key: str) -> None:
    """Rewrite best.safetensors from the best epoch's checkpoint if a kill left it stale."""
    from .runtime.checkpoint import load_checkpoint
    from .runtime.weights import save_weights
    if not best:
        return
    target = out_dir / BEST
    if _best_epoch(target) == best["epoch"]:
        return
    src = checkpoint_path(out_dir, best["epoch"])
    if not src.is_file():
        raise DlcError(f"best.safetensors is stale and {src.name}, the best epoch's checkpoint, is gone",
                       hint="start over with --overwrite")
    save_weights(target, load_checkpoint(src).weights, {"epoch": str(best["epoch"]), key: str(best[key])})


def _best_epoch(path: Path) -> int | None:
    from safetensors import safe_open
    try:
        with safe_open(str(path), framework="numpy") as f:
            return int((f.metadata() or {}).get("epoch", -1))
    except Exception:  # noqa: BLE001 - missing or damaged: rewrite it
        return None
