"""Pooling: MaxPool (with its Indices output), MaxUnpool, AveragePool, LpPool, GlobalAveragePool/GlobalMaxPool.

MaxPool and AveragePool map to dlc's max_pool{1,2,3}d / avg_pool{1,2,3}d (PyTorch's
conventions): symmetric pads up to half the kernel become the op's padding, others
an explicit `pad` first (-inf for max; zeros for average, then divided by the
pooled share of real elements where ONNX does not count the padding).
AveragePool's dilations are the op's `dilation` (its divisor counts the taps).
MaxPool's Indices are ONNX's: a flat index over the whole (N, C, *spatial) input,
row-major (storage_order 0) or column-major within each plane (storage_order 1),
built from dlc's per-plane argmax (max_pool2d/3d_indices, torch's return_indices).
"""
from __future__ import annotations

import math

import numpy as np

from .context import Ctx
from .ops_nn import _explicit_pad, spatial_pads
from .registry import converter


def _pool_args(cx: Ctx, node, x):
    a = Ctx.attrs(node)
    kernel = tuple(a["kernel_shape"])
    nd = len(kernel)
    if nd not in (1, 2, 3) or x.type.rank != nd + 2:
        raise cx.error(f"{node.op_type} with {nd} spatial dimensions and input {x.type} is not supported "
                       "(dlc pools (N, C, ...) inputs in 1-D, 2-D and 3-D)")
    strides = tuple(a.get("strides", [1] * nd))
    dil = tuple(a.get("dilations", [1] * nd))
    pads = spatial_pads(cx, node, x, kernel, strides, dil)
    return a, kernel, strides, dil, pads, nd


def _one(t, nd):
    return t[0] if nd == 1 else t


def _needs_explicit_pad(pads, kernel) -> bool:
    """dlc's pools (as torch's) take symmetric padding of at most half the kernel."""
    return any(lo != hi or lo > k // 2 for (lo, hi), k in zip(pads, kernel))


def _lowest(x) -> float:
    return -math.inf if x.type.dtype.is_float else int(np.iinfo(x.type.dtype.numpy_name).min)


@converter("MaxPool", since=8)
def max_pool(cx: Ctx, node):
    x = cx.val(node.input[0])
    a, kernel, strides, dil, pads, nd = _pool_args(cx, node, x)
    sizes = tuple(x.type.shape[2:])
    padded = _needs_explicit_pad(pads, kernel)
    if padded:
        x = _explicit_pad(cx, x, pads, value=_lowest(x))
    p = (0,) * nd if padded else tuple(lo for lo, _ in pads)
    args = {"kernel_size": kernel, "stride": strides, "padding": p, "dilation": dil,
            "ceil_mode": bool(a.get("ceil_mode", 0))}
    y = cx.op(f"max_pool{nd}d", x, **{k: _one(v, nd) if isinstance(v, tuple) else v for k, v in args.items()})
    if len(node.output) < 2 or not node.output[1]:
        return y
    return y, _onnx_indices(cx, x, args, sizes, pads if padded else None, int(a.get("storage_order", 0)))


def _onnx_indices(cx: Ctx, x, args: dict, sizes: tuple, pads, storage_order: int):
    """MaxPool's Indices: dlc's per-plane argmax (on x, padded when `pads` is given)
    as ONNX's flat index into the unpadded (N, C, *sizes) input."""
    nd = len(sizes)
    if nd == 1:       # there is no max_pool1d_indices: pool (N, C, 1, L)
        x = cx.op("reshape", x, shape=tuple(x.type.shape[:2]) + (1, x.type.shape[2]))
        args = {k: ((0 if k == "padding" else 1,) + v if isinstance(v, tuple) else v) for k, v in args.items()}
    idx = cx.op(f"max_pool{max(nd, 2)}d_indices", x, **args)
    out_shape = tuple(idx.type.shape)
    plane = math.prod(sizes)
    if pads is not None or (storage_order == 1 and nd > 1):
        # a table from the pooled plane's flat index to ONNX's (padding positions never hold
        # the max of a window with a real element; they map to -1)
        have = tuple(int(s) for s in x.type.shape[2:])
        lo = [p[0] for p in pads] if pads is not None else [0] * nd
        coords = np.unravel_index(np.arange(math.prod(have)), have[-nd:] if nd > 1 else (have[-1],))
        coords = [c - o for c, o in zip(coords, lo)]
        inside = np.logical_and.reduce([(c >= 0) & (c < n) for c, n in zip(coords, sizes)])
        order = "F" if storage_order == 1 else "C"
        clipped = [np.clip(c, 0, n - 1) for c, n in zip(coords, sizes)]
        table = np.where(inside, np.ravel_multi_index(clipped, sizes, order=order), -1).astype(np.int64)
        flat = cx.op("reshape", idx, shape=(math.prod(out_shape),))
        idx = cx.op("index_select", cx.materialize(table, "maxpool_index_table"), flat, axis=0)
        idx = cx.op("reshape", idx, shape=out_shape)
    # ONNX numbers the planes too: (n * C + c) * plane + the index within the plane
    n, c = x.type.shape[:2]
    offs = cx.op("mul", cx.op("arange", stop=n * c, dtype="int64"),
                 cx.op("full", shape=(), value=plane, dtype="int64"))
    offs = cx.op("reshape", offs, shape=(n, c) + (1,) * (len(out_shape) - 2))
    idx = cx.op("add", idx, offs)
    return cx.op("reshape", idx, shape=(n, c) + out_shape[-nd:]) if nd == 1 else idx


@converter("AveragePool", since=11)
def avg_pool(cx: Ctx, node):
    x = cx.val(node.input[0])
    a, kernel, strides, dil, pads, nd = _pool_args(cx, node, x)
    include = bool(a.get("count_include_pad", 0))
    ceil = bool(a.get("ceil_mode", 0))
    common = {"kernel_size": _one(kernel, nd), "stride": _one(strides, nd), "ceil_mode": ceil,
              "dilation": _one(dil, nd)}
    if _needs_explicit_pad(pads, kernel):
        args = {**common, "padding": _one((0,) * nd, nd), "count_include_pad": True}
        s = cx.op(f"avg_pool{nd}d", _explicit_pad(cx, x, pads), **args)
        if include:
            return s
        # the mean over the real elements only: divide by the pooled share of them
        ones = cx.op("full", shape=tuple(x.type.shape), value=1.0, dtype=x.type.dtype.numpy_name)
        return cx.op("div", s, cx.op(f"avg_pool{nd}d", _explicit_pad(cx, ones, pads), **args))
    return cx.op(f"avg_pool{nd}d", x, padding=_one(tuple(p for p, _ in pads), nd), count_include_pad=include,
                 **common)


@converter("GlobalAveragePool", "GlobalMaxPool", since=1)
def global_pool(cx: Ctx, node):
    x = cx.val(node.input[0])
    if x.type.rank == 4 and node.op_type == "GlobalAveragePool":
        return cx.op("adaptive_avg_pool2d", x, output_size=(1, 1))
    axes = tuple(range(2, x.type.rank))
    return cx.op("mean" if node.op_type == "GlobalAveragePool" else "max", x, axis=axes, keepdims=True)


@converter("LpPool", since=11)
def lp_pool(cx: Ctx, node):
    """(sum over the window of |x|^p)^(1/p), the padding reading 0 (ONNX's definition and its
    node tests): a sum pool (avg_pool with divisor_override=1) of |x|^p."""
    x = cx.val(node.input[0])
    a, kernel, strides, dil, pads, nd = _pool_args(cx, node, x)
    if not x.type.dtype.is_float:
        raise cx.error(f"LpPool needs a floating-point input, got {x.type}")
    p = a.get("p", 2)
    if isinstance(p, float) and p.is_integer():
        p = int(p)
    if not isinstance(p, int) or p < 1:
        raise cx.error(f"LpPool's p must be a positive integer, got {p!r}")
    y = cx.op("abs", x) if p != 2 else x
    y = y if p == 1 else cx.op("square", y) if p == 2 else cx.op("pow", y, cx.scalar(float(p), y))
    if _needs_explicit_pad(pads, kernel):
        y, pads = _explicit_pad(cx, y, pads), [(0, 0)] * nd
    shape = tuple(y.type.shape)
    lift = nd == 1           # divisor_override (a window sum) is 2-D and 3-D: pool (N, C, 1, L)
    if lift:
        y = cx.op("reshape", y, shape=shape[:2] + (1,) + shape[2:])

    def lifted(t, v):
        return (v,) + tuple(t) if lift else tuple(t)
    s = cx.op(f"avg_pool{max(nd, 2)}d", y, kernel_size=lifted(kernel, 1), stride=lifted(strides, 1),
              padding=lifted((lo for lo, _ in pads), 0), dilation=lifted(dil, 1),
              ceil_mode=bool(a.get("ceil_mode", 0)), count_include_pad=True, divisor_override=1)
    if lift:
        s = cx.op("reshape", s, shape=tuple(s.type.shape[:2]) + tuple(s.type.shape[3:]))
    return s if p == 1 else cx.op("sqrt", s) if p == 2 else cx.op("pow", s, cx.scalar(1.0 / p, s))


@converter("MaxUnpool", since=9)
def max_unpool(cx: Ctx, node):
    """Y = zeros(the unpooled shape) with Y.flat[I] = X: ONNX's whole-tensor flat indices (as
    MaxPool's Indices) scattered with scatter_add_rows; a larger output_shape pads Y with zeros after.  An index that several elements of X name gets
    the mean of their values (MaxPool's overlapping windows name one element with one value:
    that value; ONNX's reference keeps the last of them)."""
    x, idx = cx.val(node.input[0]), cx.val(node.input[1])
    if not x.type.dtype.is_float:
        raise cx.error(f"MaxUnpool of a {x.type.dtype} input is not supported (dlc scatters floating-point rows)")
    a = Ctx.attrs(node)
    kernel = tuple(a["kernel_shape"])
    nd = len(kernel)
    if x.type.rank != nd + 2 or tuple(idx.type.shape) != tuple(x.type.shape):
        raise cx.error(f"MaxUnpool needs X (N, C, {nd} spatial dims) and indices of its shape, got {x.type} "
                       f"and {idx.type}")
    strides = tuple(a.get("strides", [1] * nd))
    pads = list(a.get("pads", [0] * (2 * nd)))
    inferred = tuple(x.type.shape[:2]) + tuple((x.type.shape[2 + i] - 1) * strides[i] + kernel[i] - pads[i]
                                               - pads[nd + i] for i in range(nd))
    out = inferred
    if len(node.input) > 2 and node.input[2]:
        out = tuple(cx.ints(node.input[2], "MaxUnpool's output_shape"))
        if len(out) != nd + 2 or tuple(out[:2]) != inferred[:2] or any(o < i for o, i in zip(out, inferred)):
            raise cx.error(f"MaxUnpool's output_shape {list(out)} must be (N, C, {nd} sizes), each at least "
                           f"the unpooled size {list(inferred)}")
    count = math.prod(x.type.shape)
    total = math.prod(inferred)
    flat = cx.op("reshape", idx if idx.type.dtype.short == "i64" else cx.op("cast", idx, dtype="int64"),
                 shape=(count,))
    sums = cx.op("scatter_add_rows", flat, cx.op("reshape", x, shape=(count, 1)), num_rows=total)
    ones = cx.op("full", shape=(count, 1), value=1.0, dtype=x.type.dtype.numpy_name)
    hits = cx.op("scatter_add_rows", flat, ones, num_rows=total)
    y = cx.op("div", sums, cx.op("maximum", hits, cx.scalar(1.0, hits)))
    y = cx.op("reshape", y, shape=inferred)
    if out == inferred:
        return y
    # ONNX places the unpooled tensor at the start of a larger output_shape, zeros after it
    pad = []
    for o, i in reversed(list(zip(out[2:], inferred[2:]))):
        pad += [0, o - i]
    return cx.op("pad", y, pad=pad)
