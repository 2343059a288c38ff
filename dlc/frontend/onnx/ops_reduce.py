"""Reductions: ReduceSum/Mean/Max/Min/Prod/LogSumExp/L1/L2/SumSquare, ArgMax/ArgMin."""
from __future__ import annotations

import numpy as np

from .context import Ctx
from .registry import converter

REDUCE = {"ReduceSum": "sum", "ReduceMean": "mean", "ReduceMax": "max", "ReduceMin": "min", "ReduceProd": "prod",
          "ReduceLogSumExp": "logsumexp", "ReduceL1": "l1", "ReduceL2": "l2", "ReduceSumSquare": "sumsq",
          "ReduceLogSum": "logsum"}


def _reduce(cx: Ctx, node, axes_from_input: bool):
    a = Ctx.attrs(node)
    x = cx.val(node.input[0])
    keep = bool(a.get("keepdims", 1))
    if axes_from_input:
        axes = cx.ints(node.input[1], "the reduction axes") if len(node.input) > 1 and node.input[1] else None
    else:
        axes = list(a["axes"]) if "axes" in a else None
    if not axes:
        if a.get("noop_with_empty_axes", 0):
            return x
        axes = list(range(x.type.rank))
    axes = tuple(sorted(ax % x.type.rank for ax in axes)) if x.type.rank else None
    kind = REDUCE[node.op_type]
    if any(x.type.shape[i] == 0 for i in (axes or ())):
        return _empty_reduction(cx, x, axes, keep, kind)
    if kind in ("sum", "mean", "max", "min", "prod", "logsumexp"):
        return cx.op(kind, x, axis=axes, keepdims=keep)
    if kind == "l1":
        return cx.op("sum", cx.op("abs", x), axis=axes, keepdims=keep)
    if kind == "sumsq":
        return cx.op("sum", cx.op("mul", x, x), axis=axes, keepdims=keep)
    if kind == "logsum":
        return cx.op("log", cx.op("sum", x, axis=axes, keepdims=keep))
    s = cx.op("sum", cx.op("mul", x, x), axis=axes, keepdims=keep)   # l2
    if not s.type.dtype.is_float:
        return cx.op("cast", cx.op("floor", cx.op("sqrt", cx.op("cast", s, dtype="float64"))), dtype=x.type.dtype.numpy_name)
    return cx.op("sqrt", s)


@converter("ReduceSum", since=13)
def reduce_sum_input(cx: Ctx, node):
    return _reduce(cx, node, True)


@converter("ReduceSum", since=1, until=13)
def reduce_sum_attr(cx: Ctx, node):
    return _reduce(cx, node, False)


@converter(*(k for k in REDUCE if k != "ReduceSum"), since=1, until=18)
def reduce_attr(cx: Ctx, node):
    return _reduce(cx, node, False)


@converter(*(k for k in REDUCE if k != "ReduceSum"), since=18)
def reduce_input(cx: Ctx, node):
    return _reduce(cx, node, True)


@converter("ArgMax", "ArgMin", since=1)
def argmax(cx: Ctx, node):
    a = Ctx.attrs(node)
    x = cx.val(node.input[0])
    axis = a.get("axis", 0) % max(x.type.rank, 1)
    keep = bool(a.get("keepdims", 1))
    if not a.get("select_last_index", 0):
        return cx.op(node.op_type.lower(), x, axis=axis, keepdims=keep)
    # the last of equal extremes: the first in the reversed axis, counted from the end
    n = x.type.shape[axis]
    rev = cx.op("strided_slice", x, begin=[None] * x.type.rank, end=[None] * x.type.rank,
                strides=[-1 if i == axis else 1 for i in range(x.type.rank)])
    i = cx.op(node.op_type.lower(), rev, axis=axis, keepdims=keep)
    return cx.op("sub", cx.scalar(n - 1, i), i)


# the value of a reduction over no elements (ONNX: the identity of the reduction)
_EMPTY = {"sum": 0, "l1": 0, "l2": 0, "sumsq": 0, "prod": 1, "max": -np.inf, "min": np.inf,
          "logsumexp": -np.inf, "logsum": -np.inf, "mean": np.nan}


def _empty_reduction(cx: Ctx, x, axes, keep: bool, kind: str):
    shape = tuple(1 if i in axes else d for i, d in enumerate(x.type.shape)) if keep else \
        tuple(d for i, d in enumerate(x.type.shape) if i not in axes)
    if not all(isinstance(d, int) for d in shape):
        raise cx.error(f"a reduction over an empty axis of {x.type} with symbolic dimensions is not supported")
    dt = np.dtype(x.type.dtype.numpy_name)
    value = _EMPTY[kind]
    if dt.kind in "iub" and not np.isfinite(value):
        value = (np.iinfo(dt).min if value < 0 else np.iinfo(dt).max) if dt.kind != "b" else value > 0
    return np.full(shape, value, dtype=dt)
