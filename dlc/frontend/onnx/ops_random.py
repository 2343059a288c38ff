"""RandomNormal(Like) and RandomUniform(Like) -> the IR's `randn` / `uniform`, as the `.dln`
frontend builds `randn(...)`, `randn_like(x)` and `uniform(...)`.

Seeds.  dlc's random ops carry a stream id (`seed`), not a generator state: a
run draws stream k from the run's seed, so one model gives the same noise on
every dlc backend for a given run seed, and different noise per run seed (the
trainer changes it every step).  `dlc export` writes the stream id as ONNX's
`seed`; the importer reads it back, so a dlc-exported model gets its own
streams again.  A whole, non-negative `seed` is the stream id; any other value
(ONNX seeds are floats) names the stream by its float32 bits; a node without
`seed` ("auto-generated" in ONNX) gets the next stream id no other random node
of the model uses.  What is NOT reproduced: the samples themselves of
onnxruntime or of ONNX's reference implementation, whose generators differ
from dlc's (the distribution, shape and dtype are the same).
"""
from __future__ import annotations

import numpy as np

from .context import NP_TO_DTYPE, Ctx
from .loader import ONNX_TO_NUMPY
from .registry import converter


def _stream(cx: Ctx, a: dict) -> int:
    used = cx.root.__dict__.setdefault("random_streams", set())
    seed = a.get("seed")
    if seed is None:
        k = 0
        while k in used:
            k += 1
    elif float(seed).is_integer() and 0 <= seed < 2 ** 62:
        k = int(seed)
    else:
        k = int(np.float32(seed).view(np.uint32))
    used.add(k)
    return k


def _dtype(cx: Ctx, a: dict, default: str) -> str:
    code = a.get("dtype")
    if code is None:
        return default
    np_dt = ONNX_TO_NUMPY.get(int(code))
    name = np.dtype(np_dt).name if np_dt is not None else f"ONNX type {code}"
    if name not in NP_TO_DTYPE or not np.issubdtype(np.dtype(name), np.floating):
        raise cx.error(f"{cx.node.op_type} samples {name}; dlc's random ops sample float types")
    return name


def _like_shape(cx: Ctx, name: str):
    """The shape (and dtype) of the `*Like` operand: only its type matters, it is never computed for this."""
    known = cx.const(name)
    if known is not None:
        return tuple(known.shape), str(known.dtype)
    v = cx.val(name)
    return tuple(v.type.shape), v.type.dtype.numpy_name


@converter("RandomNormal", "RandomNormalLike", "RandomUniform", "RandomUniformLike", since=1)
def random(cx: Ctx, node):
    a = Ctx.attrs(node)
    if node.op_type.endswith("Like"):
        shape, like_dt = _like_shape(cx, node.input[0])
        dt = _dtype(cx, a, like_dt)
    else:
        if a.get("shape") is None:
            raise cx.error(f"{node.op_type} needs its `shape` attribute")
        shape, dt = tuple(int(d) for d in a["shape"]), _dtype(cx, a, "float32")
    seed = _stream(cx, a)
    if node.op_type.startswith("RandomUniform"):
        return cx.op("uniform", shape=shape, low=float(a.get("low", 0.0)), high=float(a.get("high", 1.0)),
                     seed=seed, dtype=dt)
    out = cx.op("randn", shape=shape, seed=seed, dtype=dt)
    mean, scale = float(a.get("mean", 0.0)), float(a.get("scale", 1.0))
    if scale != 1.0:
        out = cx.op("mul", out, cx.scalar(scale, out))
    if mean != 0.0:
        out = cx.op("add", out, cx.scalar(mean, out))
    return out
