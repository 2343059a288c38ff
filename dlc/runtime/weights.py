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


def load_weights(path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file
    try:
        return dict(load_file(str(path)))
    except FileNotFoundError:
        raise DlcError(f"no such weights file: {path}") from None
    except Exception as e:  # safetensors raises its own error types
        raise DlcError(f"cannot read weights from {path}: {e}", hint="weights are .safetensors files") from None
