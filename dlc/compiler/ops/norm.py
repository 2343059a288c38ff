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


def batch_statistics_error(node, shape):
    """The error for a training-mode batch_norm `node` whose input has the
    concrete `shape`, or None when every channel has more than one value.

    The batch variance of one value is 0 and its unbiased running estimate
    divides by zero; torch refuses it ("Expected more than 1 value per channel
    when training") and so does every dlc backend, with this one message."""
    from ...errors import DlcRuntimeError
    if not node.attrs.get("training") or len(shape) < 2:
        return None
    count = int(shape[0])
    for n in shape[2:]:
        count *= int(n)
    if count > 1:
        return None
    return DlcRuntimeError(
        f"batch_norm in training mode needs more than one value per channel, got input "
        f"{fmt_shape(tuple(int(n) for n in shape))} ({count} value per channel)", node.span,
        "a batch of 1 (with 1x1 or no spatial dimensions) has one value per channel: use a batch size of "
        "at least 2, or drop the incomplete last batch (drop_last)")


def check_batch_statistics(graph, dims: dict | None = None, inputs: dict | None = None) -> None:
    """Raise `batch_statistics_error` for the first training-mode batch_norm of
    `graph` (scan bodies included) that sees one value per channel when its
    symbolic dimensions take the sizes in `dims`, or the sizes read off the
    arrays `inputs` (by input name); unknown sizes are not checked."""
    from ..dims import Dim
    dims = dict(dims or {})
    for v in graph.inputs if inputs else ():
        if v.name in inputs:
            for d, n in zip(v.type.shape, getattr(inputs[v.name], "shape", ())):
                if isinstance(d, Dim) and len(d.symbols()) == 1 and d == Dim.symbol(next(iter(d.symbols()))):
                    dims.setdefault(next(iter(d.symbols())), int(n))
    for node in _nodes(graph):
        if node.op.name != "batch_norm" or not node.attrs.get("training"):
            continue
        shape = []
        for d in node.inputs[0].type.shape:
            if isinstance(d, Dim):
                if not d.symbols() <= set(dims):
                    break
                d = d.evaluate(dims)
            shape.append(d)
        else:
            err = batch_statistics_error(node, shape)
            if err is not None:
                raise err


def _nodes(graph):
    for node in graph.nodes:
        yield node
        if getattr(node, "body", None) is not None:
            yield from _nodes(node.body)


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


def _scatter_add_rows(ts, attrs):
    idx, upd = ts
    require_int(idx, "scatter_add_rows")
    require_float(upd, "scatter_add_rows", "updates")
    if upd.rank != idx.rank + 1 or any(known_equal(a, b) is False for a, b in zip(idx.shape, upd.shape)):
        raise ShapeError(f"scatter_add_rows: updates {upd} must have the shape of indices {idx} plus one "
                         f"trailing row dimension", "updates[i] is the row added at indices[i]")
    n = attrs["num_rows"]
    if not isinstance(n, Dim) and (isinstance(n, bool) or not isinstance(n, int) or n <= 0):
        raise ShapeError(f"scatter_add_rows: num_rows must be a positive int, got {n!r}")
    return TensorType(upd.dtype, (n, upd.shape[-1]))


defop("scatter_add_rows", "indices updates", _scatter_add_rows, attrs={"num_rows": required()},
      doc="zeros(num_rows, D) with updates[i] added to row indices[i] (repeats sum): the adjoint of "
          "embedding in its table, and the argmax routing of max pooling.")


# ---------------------------------------------------------------- VJP rules
# Normalisations differentiate through their batch statistics exactly:
# gx = invstd * (gxhat - mean(gxhat) - xhat * mean(gxhat * xhat)) over the
# normalised axes.  All rules are built from differentiable IR ops.
from ..dims import prod  # noqa: E402
from .registry import defvjp  # noqa: E402
from .vjp_util import as_float, scalar  # noqa: E402


def _normalize_grad(b, gxhat, xhat, invstd, axes):
    m1 = b.op("mean", gxhat, axis=axes, keepdims=True)
    m2 = b.op("mean", b.op("mul", gxhat, xhat), axis=axes, keepdims=True)
    return b.op("mul", invstd, b.op("sub", b.op("sub", gxhat, m1), b.op("mul", xhat, m2)))


def _stats(b, x, axes, eps):
    """(x - mean, 1/sqrt(biased var + eps)) over `axes`, kept as broadcastable dims."""
    xc = b.op("sub", x, b.op("mean", x, axis=axes, keepdims=True))
    var = b.op("mean", b.op("square", xc), axis=axes, keepdims=True)
    return xc, b.op("rsqrt", b.op("add", var, scalar(b, eps, x)))


def _sum_over(b, v, axes):
    return b.op("sum", v, axis=axes, keepdims=False) if axes else v


@defvjp("batch_norm")
def _(b, node, g):
    ins = list(node.inputs) + [None] * (5 - len(node.inputs))
    x, rm, rv, w, bias = ins
    gy = g[0]
    res = [None] * len(node.inputs)
    if gy is None:          # only the running statistics were used: they are not differentiated
        return res
    c = x.type.shape[1]
    axes = (0,) + tuple(range(2, x.type.rank))
    bshape = (1, c) + (1,) * (x.type.rank - 2)
    eps = node.attrs["eps"]
    if node.attrs["training"]:
        xc, invstd = _stats(b, x, axes, eps)
    else:
        xc = b.op("sub", x, b.op("reshape", rm, shape=bshape))
        invstd = b.op("rsqrt", b.op("add", b.op("reshape", rv, shape=bshape), scalar(b, eps, x)))
    xhat = b.op("mul", xc, invstd)
    gxhat = gy if w is None else b.op("mul", gy, b.op("reshape", w, shape=bshape))
    if node.attrs["training"]:
        res[0] = _normalize_grad(b, gxhat, xhat, invstd, axes)
    else:
        res[0] = b.op("mul", gxhat, invstd)
        # eval mode: y is also a function of the running statistics
        res[1] = b.op("neg", b.op("sum", res[0], axis=axes, keepdims=False))
        t = b.op("sum", b.op("mul", gxhat, xhat), axis=axes, keepdims=False)
        inv2 = b.op("reshape", b.op("square", invstd), shape=(c,))
        res[2] = b.op("mul", b.op("mul", t, inv2), scalar(b, -0.5, x))
    if w is not None:
        res[3] = b.op("sum", b.op("mul", gy, xhat), axis=axes, keepdims=False)
    if bias is not None:
        res[4] = b.op("sum", gy, axis=axes, keepdims=False)
    return res


@defvjp("layer_norm")
def _(b, node, g):
    x = node.inputs[0]
    w = node.inputs[1] if len(node.inputs) > 1 else None
    bias = node.inputs[2] if len(node.inputs) > 2 else None
    gy = g[0]
    ns = node.attrs["normalized_shape"]
    k = len(ns) if isinstance(ns, (list, tuple)) else 1
    axes = tuple(range(x.type.rank - k, x.type.rank))
    lead = tuple(range(x.type.rank - k))
    xc, invstd = _stats(b, x, axes, node.attrs["eps"])
    xhat = b.op("mul", xc, invstd)
    gxhat = gy if w is None else b.op("mul", gy, w)
    res = [_normalize_grad(b, gxhat, xhat, invstd, axes)]
    if len(node.inputs) > 1:
        res.append(None if w is None else _sum_over(b, b.op("mul", gy, xhat), lead))
    if len(node.inputs) > 2:
        res.append(None if bias is None else _sum_over(b, gy, lead))
    return res


@defvjp("group_norm")
def _(b, node, g):
    x = node.inputs[0]
    w = node.inputs[1] if len(node.inputs) > 1 else None
    bias = node.inputs[2] if len(node.inputs) > 2 else None
    gy = g[0]
    n, c = x.type.shape[:2]
    groups = node.attrs["num_groups"]
    per = prod((Dim.of(c).exact_div(groups),) + tuple(x.type.shape[2:]))
    gshape = (n, groups, per)
    chan_axes = (0,) + tuple(range(2, x.type.rank))
    bshape = (1, c) + (1,) * (x.type.rank - 2)
    xc, invstd = _stats(b, b.op("reshape", x, shape=gshape), (2,), node.attrs["eps"])
    xhat = b.op("mul", xc, invstd)
    gxhat = gy if w is None else b.op("mul", gy, b.op("reshape", w, shape=bshape))
    gx = _normalize_grad(b, b.op("reshape", gxhat, shape=gshape), xhat, invstd, (2,))
    res = [b.op("reshape", gx, shape=x.type.shape)]
    if len(node.inputs) > 1:
        xhat_full = b.op("reshape", xhat, shape=x.type.shape)
        res.append(None if w is None else b.op("sum", b.op("mul", gy, xhat_full), axis=chan_axes, keepdims=False))
    if len(node.inputs) > 2:
        res.append(None if bias is None else b.op("sum", gy, axis=chan_axes, keepdims=False))
    return res


def _channel_window_sum(b, v, size: int, mirror: bool):
    """Sum of v (N, 1, C, M) over the channel window [c - size//2, c + (size-1)//2]
    (LRN's window) or, mirrored, [c - (size-1)//2, c + size//2] (its adjoint),
    zero-padded: a conv2d with a constant (1, 1, K, 1) kernel of ones."""
    dt = v.type.dtype.numpy_name
    ones = b.op("full", shape=(1, 1, size, 1), value=1.0, dtype=dt)
    if size % 2 == 0:
        # an odd kernel of size+1 taps with a zero at one end centres the even window
        ones = b.op("pad", ones, pad=[0, 0, 1, 0] if mirror else [0, 0, 0, 1])
    k = ones.type.shape[2]
    return b.op("conv2d", v, ones, padding=(k // 2, 0))


@defvjp("local_response_norm")
def _(b, node, g):
    x = node.inputs[0]
    gy = g[0]
    a = node.attrs
    size, alpha, beta = a["size"], a["alpha"], a["beta"]
    n, c = x.type.shape[:2]
    flat = (n, 1, c, prod(x.type.shape[2:]))
    # y = x * D^-beta with D = k + alpha/size * window_sum(x^2)
    s = _channel_window_sum(b, b.op("reshape", b.op("square", x), shape=flat), size, False)
    d = b.op("add", b.op("mul", b.op("reshape", s, shape=x.type.shape), scalar(b, alpha / size, x)),
             scalar(b, a["k"], x))
    dpow = b.op("pow", d, scalar(b, -beta, x))
    t = b.op("div", b.op("mul", b.op("mul", gy, x), dpow), d)
    back = b.op("reshape", _channel_window_sum(b, b.op("reshape", t, shape=flat), size, True), shape=x.type.shape)
    gx = b.op("sub", b.op("mul", gy, dpow), b.op("mul", b.op("mul", x, back), scalar(b, 2.0 * alpha * beta / size, x)))
    return [gx]


@defvjp("dropout")
def _(b, node, g):
    # the same p and seed draw the same mask, so the VJP is dropout of the cotangent
    return [b.op("dropout", g[0], **node.attrs)]


@defvjp("embedding")
def _(b, node, g):
    idx, w = node.inputs
    rows = w.type.shape[0]
    gw = b.op("scatter_add_rows", idx, g[0], num_rows=rows)
    p = node.attrs["padding_idx"]
    if p is not None:
        # as torch: the padding row gets no gradient
        if p < 0:
            if not isinstance(rows, int):
                raise ShapeError(f"the VJP of embedding needs the table size to resolve padding_idx={p}")
            p += rows
        keep = b.op("ne", b.op("arange", stop=rows, dtype="int64"), b.op("full", shape=(), value=p, dtype="int64"))
        gw = b.op("mul", gw, b.op("reshape", as_float(b, keep, gw), shape=(rows, 1)))
    return [None, gw]


@defvjp("scatter_add_rows")
def _(b, node, g):
    return [None, b.op("embedding", node.inputs[0], g[0])]
