"""Normalisation and friends: batch_norm, layer_norm, group_norm,
local_response_norm, dropout, embedding.

batch_norm is pure: it returns the new running statistics as extra results
(the graph's `state_updates` hands them back to the buffers).
"""
from __future__ import annotations

from ...errors import ShapeError
from ..dims import Dim, known_equal
from ..types import TensorType, fmt_shape
from .common import promote, require_float, require_int
from .registry import NORM, RANDOM, defop, required


def _number(v, what: str, opname: str, lo=None, hi=None, lo_open=False) -> None:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ShapeError(f"{opname}: {what} must be a number, got {v!r}")
    if (lo is not None and (v < lo or (lo_open and v == lo))) or (hi is not None and v > hi):
        rng = f"{'(' if lo_open else '['}{lo}, {hi if hi is not None else 'inf'}]"
        raise ShapeError(f"{opname}: {what} must lie in {rng}, got {v!r}", f"choose {what} within {rng}")


def _per_channel(t, shape: tuple, what: str, x: TensorType, opname: str) -> None:
    """Check an optional parameter tensor `t` has exactly `shape`."""
    if t is None:
        return
    promote(x.dtype, t.dtype, opname)
    if t.rank != len(shape) or any(known_equal(a, b) is not True for a, b in zip(t.shape, shape)):
        raise ShapeError(f"{opname}: {what} {t} does not match input {x}; expected shape {fmt_shape(shape)}",
                         f"give {what} the shape {fmt_shape(shape)}")


def _opt(ts, i):
    return ts[i] if len(ts) > i else None


def _batch_norm(ts, attrs):
    x = ts[0]
    require_float(x, "batch_norm")
    if x.rank < 2:
        raise ShapeError(f"batch_norm expects an input (N, C, ...) of rank >= 2, got {x}")
    c = x.shape[1]
    for i, what in enumerate(("running_mean", "running_var", "weight", "bias"), start=1):
        _per_channel(_opt(ts, i), (c,), what, x, "batch_norm")
    _number(attrs["eps"], "eps", "batch_norm", 0, lo_open=True)
    if attrs["momentum"] is not None:
        _number(attrs["momentum"], "momentum", "batch_norm", 0, 1)
    stat = _opt(ts, 1)
    if not attrs["training"] and (stat is None or _opt(ts, 2) is None):
        raise ShapeError(f"batch_norm in eval mode needs running_mean and running_var (input {x})",
                         "pass the running statistics, or set training=True")
    stat_type = TensorType(stat.dtype if stat is not None else x.dtype, (c,))
    return [x, stat_type, stat_type]


defop("batch_norm", "x running_mean? running_var? weight? bias?", _batch_norm,
      attrs={"training": False, "momentum": 0.1, "eps": 1e-5}, groups={NORM},
      doc="Batch normalisation over axis 1; returns (y, new_running_mean, new_running_var).")


def _layer_norm(ts, attrs):
    x = ts[0]
    require_float(x, "layer_norm")
    ns = attrs["normalized_shape"]
    ns = tuple(ns) if isinstance(ns, (list, tuple)) else (ns,)
    if not ns:
        raise ShapeError("layer_norm: normalized_shape must not be empty")
    tail = x.shape[-len(ns):] if len(ns) <= x.rank else None
    if tail is None or any(known_equal(a, b) is not True for a, b in zip(tail, ns)):
        raise ShapeError(f"layer_norm: normalized_shape {fmt_shape(ns)} does not match the trailing "
                         f"dimensions of input {x}",
                         f"normalized_shape must equal the last {len(ns)} dimension(s) of the input"
                         + (f", i.e. {fmt_shape(x.shape[-len(ns):])}" if len(ns) <= x.rank else ""))
    _per_channel(_opt(ts, 1), ns, "weight", x, "layer_norm")
    _per_channel(_opt(ts, 2), ns, "bias", x, "layer_norm")
    _number(attrs["eps"], "eps", "layer_norm", 0, lo_open=True)
    return x


defop("layer_norm", "x weight? bias?", _layer_norm, attrs={"normalized_shape": required(), "eps": 1e-5},
      groups={NORM}, doc="Normalise over the trailing `normalized_shape` dimensions.")


def _group_norm(ts, attrs):
    x = ts[0]
    require_float(x, "group_norm")
    if x.rank < 2:
        raise ShapeError(f"group_norm expects an input (N, C, ...) of rank >= 2, got {x}")
    g = attrs["num_groups"]
    if isinstance(g, bool) or not isinstance(g, int) or g <= 0:
        raise ShapeError(f"group_norm: num_groups must be a positive int, got {g!r}")
    c = x.shape[1]
    if Dim.of(c).exact_div(g) is None:
        raise ShapeError(f"group_norm: the {c} channels of {x} are not divisible by num_groups={g}",
                         "choose num_groups dividing the channel count")
    _per_channel(_opt(ts, 1), (c,), "weight", x, "group_norm")
    _per_channel(_opt(ts, 2), (c,), "bias", x, "group_norm")
    _number(attrs["eps"], "eps", "group_norm", 0, lo_open=True)
    return x


defop("group_norm", "x weight? bias?", _group_norm, attrs={"num_groups": required(), "eps": 1e-5},
      groups={NORM}, doc="Normalise over groups of channels (and all spatial positions).")


def _lrn(ts, attrs):
    x = ts[0]
    require_float(x, "local_response_norm")
    if x.rank < 3:
        raise ShapeError(f"local_response_norm expects an input (N, C, ...) of rank >= 3, got {x}",
                         "reshape to (N, C, L) or (N, C, H, W)")
    size = attrs["size"]
    if isinstance(size, bool) or not isinstance(size, int) or size <= 0:
        raise ShapeError(f"local_response_norm: size must be a positive int, got {size!r}")
    for k in ("alpha", "beta", "k"):
        _number(attrs[k], k, "local_response_norm")
    return x


defop("local_response_norm", "x", _lrn, attrs={"size": required(), "alpha": 1e-4, "beta": 0.75, "k": 1.0},
      groups={NORM}, doc="AlexNet's cross-channel local response normalisation.")


def _dropout(ts, attrs):
    x = ts[0]
    require_float(x, "dropout")
    _number(attrs["p"], "p", "dropout", 0, 1)
    return x


defop("dropout", "x", _dropout, attrs={"p": 0.5, "training": True, "seed": 0}, groups={RANDOM},
      doc="Zero elements with probability p and scale by 1/(1-p) when training; identity otherwise.")


def _embedding(ts, attrs):
    idx, w = ts
    require_int(idx, "embedding")
    if w.rank != 2:
        raise ShapeError(f"embedding: weight must be 2-D (num_embeddings, dim), got {w} (indices {idx})",
                         "give the table the shape [num_embeddings, embedding_dim]")
    require_float(w, "embedding", "weight")
    p = attrs["padding_idx"]
    if p is not None:
        v = w.shape[0]
        if isinstance(p, bool) or not isinstance(p, int) or (isinstance(v, int) and not -v <= p < v):
            raise ShapeError(f"embedding: padding_idx {p!r} is out of range for weight {w}",
                             "padding_idx must index a row of the table")
    return TensorType(w.dtype, idx.shape + (w.shape[1],))


defop("embedding", "indices weight", _embedding, attrs={"padding_idx": None},
      doc="Look up rows of `weight` by integer indices: indices.shape + (dim,).")
