"""TVM lowerings of the shape and indexing ops: reshape, transpose, concat,
split, strided slices, padding, gathers and scatters, and the constant
builders (arange, full, one_hot, sinusoidal positions).

Registered into `lowering.LOWERING`; see that module for the conventions.
"""
from __future__ import annotations

import numpy as np

from ...compiler.dims import Dim
from .lowering import arg_as, cast, in_dtype, lowers, ndim, norm_axis, out_dtype, out_shape, _op
from .relaxgen import Unsupported


# ---------------------------------------------------------------------------
# shape ops
# ---------------------------------------------------------------------------

@lowers("reshape")
def _reshape(low, node, args, env):
    shape = out_shape(low, node)
    if any(isinstance(d, int) and d == 0 for d in shape):
        # relax's reshape reads a 0 as "keep the input's dimension" (ONNX's
        # allowzero=0); dlc's shape is already resolved, and a result with a
        # 0-size dimension holds no data, so it is built rather than reshaped
        return _empty(low, args[0], shape)
    return low.emit(_op().reshape(args[0], shape))


def _empty(low, x, shape):
    """A tensor of `shape` (which has a 0-size dimension) and `x`'s dtype.
    Computed from `x` (its loop runs no iteration, so it reads nothing) rather
    than a constant: FoldConstant would make `zeros` a 0-size constant, which
    TVM saves in the library but cannot load back ("Invalid DLTensor file
    format")."""
    from tvm import te

    def build(a):
        return te.compute(shape, lambda *_: a(*[0] * len(a.shape)), name="empty")
    return low.bb.emit_te(build, x, primfunc_name_hint="reshape")


@lowers("transpose")
def _transpose(low, node, args, env):
    r = ndim(node)
    return low.emit(_op().permute_dims(args[0], [norm_axis(a, r) for a in node.attrs["axes"]]))


@lowers("expand")
def _expand(low, node, args, env):
    return low.emit(_op().broadcast_to(args[0], out_shape(low, node)))


@lowers("concat")
def _concat(low, node, args, env):
    dt = out_dtype(node)
    xs = [arg_as(low, node, args, i, dt) for i in range(len(args))]
    axis = norm_axis(node.attrs["axis"], ndim(node))
    from tvm import relax
    return low.emit(_op().concat(relax.Tuple(xs), axis=axis))


@lowers("split")
def _split(low, node, args, env):
    axis = norm_axis(node.attrs["axis"], ndim(node))
    outs = []
    start = 0
    for i, o in enumerate(node.outputs):
        size = o.type.shape[axis]
        outs.append(_slice_axis(low, args[0], axis, start, start + size))
        start = start + size
    return outs


def _slice_axis(low, x, axis, begin, end):
    from tvm import relax
    b, e = low.prim(begin), low.prim(end)
    return low.emit(_op().strided_slice(x, [axis], [b], [e], assume_inbound=True))


@lowers("strided_slice")
def _strided_slice(low, node, args, env):
    op = _op()
    shape = node.inputs[0].type.shape
    out = node.outputs[0].type.shape
    r = len(shape)
    begin = node.attrs["begin"] or [None] * r
    end = node.attrs["end"] or [None] * r
    strides = node.attrs["strides"] or [None] * r
    x = args[0]
    axes, bs, es, ss = [], [], [], []
    for a in range(r):
        b, e, s = begin[a], end[a], strides[a]
        s = 1 if s is None else int(s)
        if b is None and e is None and s == 1:
            continue
        n = shape[a]
        if s < 0:
            # reverse the axis, then slice it with a positive stride
            x = low.emit(op.flip(x, a))
            b = 0 if b is None else n - 1 - _py_index(b, n, True)
            s = -s
        else:
            b = 0 if b is None else _py_index(b, n, False)
        # the shape rule already worked out the length; end = begin + (len-1)*s + 1
        # stays in bounds whatever the Python bounds were
        axes.append(a)
        bs.append(low.prim(b))
        es.append(low.prim(Dim.of(b) + (Dim.of(out[a]) - 1) * s + 1))
        ss.append(s)
    if not axes:
        return x
    return low.emit(op.strided_slice(x, axes, bs, es, ss, assume_inbound=True))


def _py_index(i, n, for_reverse):
    """A Python slice bound made non-negative and clamped to [0, n] (or
    [-1, n-1] on a reversed axis); symbolic bounds are taken as in range."""
    if isinstance(i, Dim) and i.is_const:
        i = i.value
    if isinstance(i, int) and i < 0:
        i = n + i
        if isinstance(i, Dim) and i.is_const:
            i = i.value
    if isinstance(i, int) and isinstance(n, int):
        lo, hi = (-1, n - 1) if for_reverse else (0, n)
        i = min(max(i, lo), hi)
    return i


@lowers("pad")
def _pad(low, node, args, env):
    op = _op()
    pad = [int(p) for p in low.concrete_attr(node.attrs["pad"], "padding amounts")]
    mode = node.attrs["mode"]
    shape = node.inputs[0].type.shape
    r = len(shape)
    widths = [[0, 0] for _ in range(r)]
    for i in range(len(pad) // 2):
        widths[r - 1 - i] = [pad[2 * i], pad[2 * i + 1]]
    x = args[0]
    if any(lo < 0 or hi < 0 for lo, hi in widths):
        axes, bs, es = [], [], []
        for d, (lo, hi) in enumerate(widths):
            if lo < 0 or hi < 0:
                axes.append(d)
                bs.append(-min(lo, 0))
                es.append(low.prim(shape[d] + min(hi, 0)))
        x = low.emit(op.strided_slice(x, axes, bs, es, assume_inbound=True))
        widths = [[max(lo, 0), max(hi, 0)] for lo, hi in widths]
    if not any(lo or hi for lo, hi in widths):
        return x
    flat = [w for pair in widths for w in pair]
    if mode == "constant":
        return low.emit(op.nn.pad(x, flat, "constant", float(node.attrs["value"])))
    if mode in ("reflect", "replicate", "circular"):
        return _pad_by_concat(low, node, x, widths, mode)
    raise Unsupported(f"pad mode {mode!r}", node.span)


def _pad_by_concat(low, node, x, widths, mode):
    """reflect / replicate / circular padding as slices and concatenations."""
    from tvm import relax
    op = _op()
    shape = list(node.inputs[0].type.shape)
    for d, (lo, hi) in enumerate(widths):
        if not lo and not hi:
            continue
        n = low.concrete(shape[d], "the size of a reflect/replicate/circular padded axis")
        parts = []

        def sl(b, e, step=1):
            return low.emit(op.strided_slice(x, [d], [b], [e], [step], assume_inbound=True))

        if mode == "reflect":
            if lo:
                parts.append(low.emit(op.flip(sl(1, lo + 1), d)))
            parts.append(x)
            if hi:
                parts.append(low.emit(op.flip(sl(n - hi - 1, n - 1), d)))
        elif mode == "replicate":
            if lo:
                parts.append(low.emit(op.repeat(sl(0, 1), lo, d)))
            parts.append(x)
            if hi:
                parts.append(low.emit(op.repeat(sl(n - 1, n), hi, d)))
        else:  # circular
            if lo:
                parts.append(sl(n - lo, n))
            parts.append(x)
            if hi:
                parts.append(sl(0, hi))
        x = low.emit(op.concat(relax.Tuple(parts), axis=d))
        shape[d] = n + lo + hi
    return x


@lowers("gather")
def _gather(low, node, args, env):
    axis = norm_axis(node.attrs["axis"], ndim(node))
    idx = cast(low, args[1], in_dtype(node, 1), "int64")
    return low.emit(_op().gather_elements(args[0], idx, axis))


@lowers("index_select")
def _index_select(low, node, args, env):
    axis = norm_axis(node.attrs["axis"], ndim(node))
    idx = cast(low, args[1], in_dtype(node, 1), "int64")
    return low.emit(_op().take(args[0], idx, axis, mode="clip"))  # out-of-range ids must not crash compiled code


@lowers("embedding")
def _embedding(low, node, args, env):
    idx = cast(low, args[0], in_dtype(node, 0), "int64")
    return low.emit(_op().take(args[1], idx, 0, mode="clip"))  # out-of-range ids must not crash compiled code


@lowers("tril", "triu")
def _tril(low, node, args, env):
    fn = _op().tril if node.op.name == "tril" else _op().triu
    return low.emit(fn(args[0], int(node.attrs["k"])))


@lowers("one_hot")
def _one_hot(low, node, args, env):
    from tvm import relax
    depth = int(node.outputs[0].type.shape[-1]) if not isinstance(node.outputs[0].type.shape[-1], Dim) \
        else low.concrete(node.outputs[0].type.shape[-1], "the number of one-hot classes")
    dt = out_dtype(node)
    idx = cast(low, args[0], in_dtype(node, 0), "int64")
    if dt == "bool":
        y = low.emit(_op().one_hot(idx, _prim_const(1, "int64"), _prim_const(0, "int64"), depth, -1))
        return cast(low, y, "int64", "bool")
    one = _prim_const(1, dt)
    zero = _prim_const(0, dt)
    return low.emit(_op().one_hot(idx, one, zero, depth, -1))


def _prim_const(v, dt):
    from tvm import tirx
    if dt.startswith("float"):
        return tirx.FloatImm(dt, float(v))
    return tirx.IntImm(dt, int(v))


@lowers("arange")
def _arange(low, node, args, env):
    a = node.attrs
    dt = out_dtype(node)
    start, stop, step = (low.concrete_attr(a[k], "arange bounds") for k in ("start", "stop", "step"))
    return low.const(np.arange(start, stop, step).astype(dt), dt)


@lowers("full")
def _full(low, node, args, env):
    dt = out_dtype(node)
    shape = node.outputs[0].type.shape
    value = node.attrs["value"]
    if all(isinstance(d, int) for d in shape):
        return low.const(np.full(tuple(shape), value, dtype=dt), dt)
    from tvm import relax
    return low.emit(_op().full(low.shape(shape), low.const(value, dt), dt))


@lowers("sinusoidal_positions")
def _sinusoidal(low, node, args, env):
    from ...compiler.ops.shape import sinusoidal_table
    from ...compiler.types import DType
    from ...runtime.floats import to_float
    a = node.attrs
    length = low.concrete(a["length"], "the length of sinusoidal positions")
    dim = low.concrete(a["dim"], "the width of sinusoidal positions")
    dt = out_dtype(node)
    arr = to_float(sinusoidal_table(length, dim), DType.parse(a["dtype"]).numpy_name)
    return low.const(arr.astype(dt), dt)


@lowers("scatter_add")
def _scatter_add(low, node, args, env):
    dt = out_dtype(node)
    axis = norm_axis(node.attrs["axis"], ndim(node))
    idx = cast(low, args[1], in_dtype(node, 1), "int64")
    x, src = arg_as(low, node, args, 0, dt), arg_as(low, node, args, 2, dt)
    # torch.scatter_add allows index smaller than src: take the matching corner
    ishape, sshape = node.inputs[1].type.shape, node.inputs[2].type.shape
    if list(ishape) != list(sshape):
        src = low.emit(_op().strided_slice(src, list(range(len(ishape))), [0] * len(ishape),
                                           low.shape(ishape), assume_inbound=True))
    return low.emit(_op().scatter_elements(x, idx, src, axis, "add"))


@lowers("scatter_add_rows")
def _scatter_add_rows(low, node, args, env):
    """zeros(num_rows, *updates.shape[idx.ndim:]) with updates added at rows idx."""
    op = _op()
    dt = out_dtype(node)
    idx = cast(low, args[0], in_dtype(node, 0), "int64")
    upd = arg_as(low, node, args, 1, dt)
    ishape = node.inputs[0].type.shape
    ushape = node.inputs[1].type.shape
    tail = list(ushape[len(ishape):])
    n = 1
    for d in ishape:
        n = n * d
    idx = low.emit(op.reshape(idx, [low.prim(n), 1]))
    upd = low.emit(op.reshape(upd, [low.prim(n)] + low.shape(tail)))
    zeros = low.emit(op.zeros(out_shape(low, node), dt))
    return low.emit(op.scatter_nd(zeros, idx, upd, "add"))
