"""Parameter initialisation, seeded and reproducible, PyTorch's formulas.

Each parameter draws from its own stream, keyed by the run seed and a hash
of its name, so adding a layer never changes the weights of the others.
"""
from __future__ import annotations

import math
import zlib

import numpy as np

from .ir import Graph, Init
from .types import DType


def fans(shape: tuple) -> tuple[int, int]:
    """torch.nn.init._calculate_fan_in_and_fan_out."""
    if len(shape) < 2:
        n = shape[0] if shape else 1
        return n, n
    rf = math.prod(shape[2:]) if len(shape) > 2 else 1
    return shape[1] * rf, shape[0] * rf


def gain(nonlinearity: str, a: float = 0.0) -> float:
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        return math.sqrt(2.0 / (1 + a * a))
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "selu":
        return 3.0 / 4
    return 1.0


def init_array(init: Init, shape: tuple, dtype: DType, rng: np.random.Generator) -> np.ndarray:
    k = init.kwargs()
    kind = init.kind
    if kind == "zeros":
        out = np.zeros(shape)
    elif kind == "ones":
        out = np.ones(shape)
    elif kind == "constant":
        out = np.full(shape, k["value"])
    elif kind == "normal":
        out = rng.normal(k.get("mean", 0.0), k.get("std", 1.0), size=shape)
    elif kind == "uniform":
        out = rng.uniform(k.get("low", 0.0), k.get("high", 1.0), size=shape)
    elif kind == "trunc_normal":
        mean, std, a, b = k.get("mean", 0.0), k.get("std", 1.0), k.get("a", -2.0), k.get("b", 2.0)
        out = rng.normal(mean, std, size=shape)
        bad = (out < a) | (out > b)
        while bad.any():
            out[bad] = rng.normal(mean, std, size=int(bad.sum()))
            bad = (out < a) | (out > b)
    elif kind in ("xavier_uniform", "xavier_normal"):
        fi, fo = fans(shape)
        std = k.get("gain", 1.0) * math.sqrt(2.0 / (fi + fo))
        if kind == "xavier_uniform":
            bound = math.sqrt(3.0) * std
            out = rng.uniform(-bound, bound, size=shape)
        else:
            out = rng.normal(0.0, std, size=shape)
    elif kind in ("kaiming_uniform", "kaiming_normal"):
        fi, fo = fans(shape)
        fan = fi if k.get("mode", "fan_in") == "fan_in" else fo
        std = gain(k.get("nonlinearity", "leaky_relu"), k.get("a", 0.0)) / math.sqrt(max(fan, 1))
        if kind == "kaiming_uniform":
            bound = math.sqrt(3.0) * std
            out = rng.uniform(-bound, bound, size=shape)
        else:
            out = rng.normal(0.0, std, size=shape)
    elif kind == "orthogonal":
        rows = shape[0] if shape else 1
        cols = int(np.prod(shape[1:])) if len(shape) > 1 else 1
        a = rng.normal(size=(max(rows, cols), min(rows, cols)))
        q, r = np.linalg.qr(a)
        q *= np.sign(np.diag(r))
        q = q if rows >= cols else q.T
        out = k.get("gain", 1.0) * q[:rows, :cols].reshape(shape)
    else:
        raise ValueError(f"unknown initialiser {kind}")
    if "padding_idx" in k and k["padding_idx"] is not None:
        out[int(k["padding_idx"])] = 0.0
    return np.asarray(out).astype(dtype.numpy_name if dtype != DType.bf16 else "float32")


def param_rng(seed: int, name: str) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(name.encode())])


def init_params(graph: Graph, seed: int = 0, env: dict | None = None) -> dict[str, np.ndarray]:
    """Fresh weights (and buffers) for every parameter of `graph`."""
    from .dims import Dim
    out = {}
    for p in graph.params:
        shape = tuple(d.evaluate(env or {}) if isinstance(d, Dim) else d for d in p.type.shape)
        out[p.name] = init_array(p.param.init, shape, p.type.dtype, param_rng(seed, p.name))
    return out
