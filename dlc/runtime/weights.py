"""Weights on disk: safetensors only (never pickle), written atomically."""
from __future__ import annotations

import numpy as np

from ..errors import DlcError
from .atomic import atomic_write


def save_weights(path, weights: dict[str, np.ndarray], metadata: dict[str, str] | None = None) -> None:
    from safetensors.numpy import save
    # np.asarray, not ascontiguousarray: the latter turns 0-d buffers into shape (1,)
    data = save({k: np.asarray(v, order="C") for k, v in weights.items()}, metadata=metadata)
    atomic_write(path, data)


def read_metadata(path) -> dict[str, str]:
    """The safetensors metadata of `path` ({} for none); a clear error for a
    missing file or one that is not safetensors."""
    from safetensors import safe_open
    try:
        with safe_open(str(path), framework="numpy") as f:
            return dict(f.metadata() or {})
    except FileNotFoundError:
        raise DlcError(f"no such weights file: {path}") from None
    except Exception as e:  # safetensors raises its own error types
        raise DlcError(f"cannot read weights from {path}: {e}", hint="weights are .safetensors files") from None


def load_weights(path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file
    try:
        return dict(load_file(str(path)))
    except FileNotFoundError:
        raise DlcError(f"no such weights file: {path}") from None
    except Exception as e:  # safetensors raises its own error types
        raise DlcError(f"cannot read weights from {path}: {e}", hint="weights are .safetensors files") from None


def _matches(name: str, patterns) -> bool:
    from fnmatch import fnmatchcase
    return any(fnmatchcase(name, p) for p in patterns)


def check_state_dict(expected: dict[str, tuple[tuple, str]], given: dict, *, source: str = "the weights",
                     allow_missing=(), allow_unused=()) -> tuple[list[str], list[str]]:
    """Strict matching of `given` arrays against `expected` (name -> (shape,
    dtype name)), as torch's ``load_state_dict(strict=True)``: names the
    model has and `given` lacks, names `given` has and the model does not,
    and entries of the wrong shape or dtype are one error listing them all.

    `allow_missing` / `allow_unused` are fnmatch patterns (``"fc.*"``) that
    excuse missing and unused names on purpose.  Returns (the names to load
    from `given`, the missing names that the caller initialises)."""
    missing = [n for n in expected if n not in given]
    unused = [n for n in given if n not in expected]
    wrong = []
    for n, (shape, dtype) in expected.items():
        if n in given:
            a = given[n]
            if tuple(a.shape) != tuple(shape) or np.dtype(a.dtype) != np.dtype(dtype):
                wrong.append(f"{n}: {np.dtype(a.dtype).name}{list(a.shape)} in the file, "
                             f"the model has {np.dtype(dtype).name}{list(shape)}")
    bad_missing = [n for n in missing if not _matches(n, allow_missing)]
    bad_unused = [n for n in unused if not _matches(n, allow_unused)]
    if bad_missing or bad_unused or wrong:
        parts = []
        if bad_missing:
            parts.append(f"missing ({len(bad_missing)}): {', '.join(bad_missing)}")
        if bad_unused:
            parts.append(f"unused ({len(bad_unused)}): {', '.join(bad_unused)}")
        if wrong:
            parts.append(f"wrong shape or dtype ({len(wrong)}): {'; '.join(wrong)}")
        hints = []
        if bad_missing:
            hints.append(f"{_flags('--allow-missing', bad_missing)} initialises missing parameters as the spec says")
        if bad_unused:
            hints.append(f"{_flags('--allow-unused', bad_unused)} ignores entries the model lacks")
        if wrong and not hints:
            hints.append("the file was saved from a different model (or --bind sizes)")
        raise DlcError(f"{source} do not match the model: " + "; ".join(parts), hint="; ".join(hints))
    return [n for n in expected if n in given], missing


def _flags(flag: str, names: list[str]) -> str:
    """The flags for the hint, one per top-level prefix: --allow-missing "fc.*" --allow-missing "head.*"."""
    heads = list(dict.fromkeys(n.split(".")[0] for n in names))
    pats = [f"{h}.*" if any(n.startswith(h + ".") for n in names) else h for h in heads[:4]]
    return " ".join(f'{flag} "{p}"' for p in pats) + (" ..." if len(heads) > 4 else "")
