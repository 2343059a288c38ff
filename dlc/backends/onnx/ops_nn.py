"""Convolution, pooling, normalisation and attention."""
from __future__ import annotations

import numpy as np

from ...compiler.ops.conv import conv_pads, ntuple
from ...compiler.ops.pool import avg_pool_counts
from ...errors import DlcError
from .emitter import onnx_dtype
from .ops_elementwise import reduce
from .table import onnx_op


def _layout(node) -> None:
    if node.attrs.get("layout", "NCHW") not in ("NCHW", None):
        raise DlcError(f"{node.op.name} in layout {node.attrs['layout']} has no ONNX form", node.span,
                       "export the NCHW graph (the layout pass only rewrites graphs for TVM)")


@onnx_op("conv1d", "conv2d", "conv3d")
def _conv(e, node, x):
    _layout(node)
    a, w = node.attrs, node.inputs[1].type.shape
    nd = len(w) - 2
    kernel = [int(k) for k in w[2:]]
    stride, dil = ntuple(a["stride"], nd, "stride"), ntuple(a["dilation"], nd, "dilation")
    pads = conv_pads(a["padding"], nd, kernel, dil, stride)
    return [e.op("Conv", x, kernel_shape=kernel, strides=list(stride), dilations=list(dil),
                 pads=[p[0] for p in pads] + [p[1] for p in pads], group=int(a["groups"]))]


@onnx_op("conv_transpose2d", "conv_transpose3d")
def _conv_transpose(e, node, x):
    a, w = node.attrs, node.inputs[1].type.shape
    nd = len(w) - 2
    kernel = [int(k) for k in w[2:]]
    pads = ntuple(a["padding"], nd, "padding")
    return [e.op("ConvTranspose", x, kernel_shape=kernel, strides=list(ntuple(a["stride"], nd, "stride")),
                 dilations=list(ntuple(a["dilation"], nd, "dilation")), pads=list(pads) * 2,
                 output_padding=list(ntuple(a["output_padding"], nd, "output_padding")), group=int(a["groups"]))]


def _pool_attrs(node, nd: int, dilation=None, extend: bool = True) -> dict:
    """ONNX pool attributes giving torch's output size: explicit end padding in
    place of ceil_mode (torch drops a last window that would start in the
    padding; ONNX's ceil_mode does not).  `extend=False` (an average counting
    the padding) keeps ceil_mode where extra padding would change the divisor."""
    a = node.attrs
    k = ntuple(a["kernel_size"], nd, "kernel_size")
    s = ntuple(a["stride"] if a["stride"] is not None else a["kernel_size"], nd, "stride")
    p = ntuple(a["padding"], nd, "padding")
    d = dilation or (1,) * nd
    size = [int(v) for v in node.inputs[0].type.shape[-nd:]]
    out = [int(v) for v in node.outputs[0].type.shape[-nd:]]
    hi = [(o - 1) * st + dd * (kk - 1) + 1 - n - lo for o, st, dd, kk, n, lo in zip(out, s, d, k, size, p)]
    if a["ceil_mode"] and not extend and hi != list(p):
        return {"kernel_shape": list(k), "strides": list(s), "pads": list(p) * 2, "ceil_mode": 1}
    return {"kernel_shape": list(k), "strides": list(s), "pads": list(p) + [max(h, lo) for h, lo in zip(hi, p)]}


def _batched(e, node, nd: int, x: list, emit) -> list:
    """Pool an unbatched (C, H, W) input as a batch of one."""
    if node.inputs[0].type.rank > nd + 1:
        return emit(x)
    outs = emit([e.op("Unsqueeze", [x[0], e.ints([0])])])
    return [e.op("Squeeze", [o, e.ints([0])]) for o in outs]


def _pool_nd(node) -> int:
    return int(node.op.name.split("_pool")[1][0])


@onnx_op("max_pool1d", "max_pool2d", "max_pool3d")
def _max_pool(e, node, x):
    _layout(node)
    nd = _pool_nd(node)
    dil = ntuple(node.attrs["dilation"], nd, "dilation")
    return _batched(e, node, nd, x, lambda xs: [e.op("MaxPool", xs, dilations=list(dil),
                                                     **_pool_attrs(node, nd, dil))])


@onnx_op("max_pool2d_indices", "max_pool3d_indices")
def _max_pool_indices(e, node, x):
    # ONNX numbers the argmax over the whole (N, C, *spatial) tensor; torch within each plane
    nd = _pool_nd(node)
    dil = ntuple(node.attrs["dilation"], nd, "dilation")
    _, idx = e.op("MaxPool", x, n_out=2, dilations=list(dil), **_pool_attrs(node, nd, dil))
    shape = node.inputs[0].type.shape
    plane = shape[-1]
    for d in shape[-nd:-1]:
        plane = plane * d
    return [e.op("Mod", [idx, e.dim(plane)])]


def _dilated_avg_pool(e, node, x, nd: int) -> list:
    """Average pooling with a dilation: each plane convolved with a dilated ones kernel
    (the window sums, over zero padding and the ceil_mode overhang), divided by the
    per-position tap counts (a constant).  Every opset has this form; ONNX's
    AveragePool takes dilations from opset 19 only."""
    a = node.attrs
    shape, out = node.inputs[0].type.shape, node.outputs[0].type.shape
    k = ntuple(a["kernel_size"], nd, "kernel_size")
    s = k if a["stride"] is None else ntuple(a["stride"], nd, "stride")
    p, d = ntuple(a["padding"], nd, "padding"), ntuple(a["dilation"], nd, "dilation")
    sizes, osz = [int(v) for v in shape[-nd:]], [int(v) for v in out[-nd:]]
    hi = [max(lo, (o - 1) * st + dd * (kk - 1) + 1 - n - lo) for o, st, dd, kk, n, lo in zip(osz, s, d, k, sizes, p)]
    dt = node.outputs[0].type.dtype.numpy_name
    planes = e.op("Reshape", [x[0], e.ints([-1, 1] + sizes)])
    ones = e.const(np.ones((1, 1) + tuple(k), dt), hint=f"{node.scope}.ones")
    total = e.op("Conv", [planes, ones], kernel_shape=list(k), strides=list(s), dilations=list(d),
                 pads=list(p) + hi)
    if a.get("divisor_override"):
        div = np.asarray(a["divisor_override"], dt)
    else:
        div = np.ones((), dt)
        for i in range(nd):
            counts = avg_pool_counts(sizes[i], k[i], s[i], p[i], d[i], osz[i], bool(a["count_include_pad"]))
            div = np.multiply.outer(div, np.asarray(counts, dt))
    y = e.op("Div", [total, e.const(div, hint=f"{node.scope}.divisor")])
    return [e.op("Reshape", [y, e.ints(list(out))])]


@onnx_op("avg_pool1d", "avg_pool2d", "avg_pool3d")
def _avg_pool(e, node, x):
    _layout(node)
    nd = _pool_nd(node)
    a = node.attrs
    if any(v != 1 for v in ntuple(a.get("dilation", 1), nd, "dilation")):
        return _dilated_avg_pool(e, node, x, nd)
    if a.get("divisor_override") is not None:
        if a["ceil_mode"]:
            raise DlcError(f"{node.op.name} with divisor_override and ceil_mode has no ONNX form", node.span)
        # the window sums (every window is whole: the padding counts as zeros), then torch's divisor
        k = int(np.prod(ntuple(a["kernel_size"], nd, "kernel_size")))
        dt = node.outputs[0].type.dtype.numpy_name
        return _batched(e, node, nd, x, lambda xs: [e.op("Mul", [
            e.op("AveragePool", xs, count_include_pad=1, **_pool_attrs(node, nd)),
            e.scalar(k / a["divisor_override"], dt)])])
    include = bool(a["count_include_pad"])
    return _batched(e, node, nd, x, lambda xs: [e.op("AveragePool", xs, count_include_pad=int(include),
                                                     **_pool_attrs(node, nd, extend=not include))])


@onnx_op("adaptive_avg_pool1d", "adaptive_avg_pool2d", "adaptive_max_pool2d")
def _adaptive_pool(e, node, x):
    _layout(node)
    nd = 1 if node.op.name.endswith("1d") else 2
    use_max = "max" in node.op.name
    src, shape, out = x[0], node.inputs[0].type.shape, node.outputs[0].type.shape
    rank = len(shape)
    for axis in range(rank - nd, rank):
        n, o = int(shape[axis]), int(out[axis])
        if n == o:
            continue
        # torch's bins [floor(i*n/o), ceil((i+1)*n/o)), one slice and reduction each (equal bins: one pool)
        if n % o == 0:       # equal bins: a reshape and one reduction (any rank, unlike ONNX pools)
            # axes before this one are pooled already (their output sizes), those after not yet
            cur = list(out[:axis]) + [o, n // o] + list(shape[axis + 1:])
            grouped = e.op("Reshape", [src, e.ints(cur)])
            src = reduce(e, "ReduceMax" if use_max else "ReduceMean", grouped, [axis + 1], False)
            continue
        parts = []
        for i in range(o):
            lo, hi = (i * n) // o, -((-(i + 1) * n) // o)
            piece = e.op("Slice", [src, e.ints([lo]), e.ints([hi]), e.ints([axis])])
            parts.append(reduce(e, "ReduceMax" if use_max else "ReduceMean", piece, [axis], True))
        src = e.op("Concat", parts, axis=axis)
    return [src if src != x[0] else e.op("Identity", [src])]


def _ones(e, node, shape, dt) -> str:
    return e.const(np.ones(tuple(int(d) for d in shape), dtype=dt), hint=f"{node.scope}.ones")


def _zeros(e, node, shape, dt) -> str:
    return e.const(np.zeros(tuple(int(d) for d in shape), dtype=dt), hint=f"{node.scope}.zeros")


@onnx_op("batch_norm")
def _batch_norm(e, node, x):
    _layout(node)
    a = node.attrs
    xv = node.inputs[0]
    c = xv.type.shape[1]
    dt = xv.type.dtype.numpy_name
    xs = list(x) + [None] * (5 - len(x))
    weight = xs[3] or _ones(e, node, (c,), dt)
    bias = xs[4] or _zeros(e, node, (c,), dt)
    if a["training"]:
        return _batch_norm_train(e, node, xs, weight, bias)
    y = e.op("BatchNormalization", [xs[0], weight, bias, xs[1], xs[2]], epsilon=float(a["eps"]))
    return [y, xs[1], xs[2]]          # eval: the statistics pass through unchanged


def _batch_norm_train(e, node, xs, weight, bias):
    """Batch statistics, torch's running-statistics update (unbiased variance), by hand:
    ONNX BatchNormalization's training mode updates with the biased variance."""
    a, xv = node.attrs, node.inputs[0]
    rank, dt = xv.type.rank, xv.type.dtype.numpy_name
    axes = [0] + list(range(2, rank))
    mean = reduce(e, "ReduceMean", xs[0], axes, True)
    d = e.op("Sub", [xs[0], mean])
    var = reduce(e, "ReduceMean", e.op("Mul", [d, d]), axes, True)
    inv = e.op("Reciprocal", [e.op("Sqrt", [e.op("Add", [var, e.scalar(a["eps"], dt)])])])
    bshape = e.ints([-1] + [1] * (rank - 2))
    y = e.op("Mul", [e.op("Mul", [d, inv]), e.op("Reshape", [weight, bshape])])
    y = e.op("Add", [y, e.op("Reshape", [bias, bshape])])
    if xs[1] is None:
        return [y, e.op("Reshape", [mean, e.ints([-1])]), e.op("Reshape", [var, e.ints([-1])])]
    shape = xv.type.shape
    count = 1
    for i in axes:
        count = count * shape[i]
    n = e.op("Cast", [e.dim(count)], to=onnx_dtype(xv.type.dtype))
    unbiased = e.op("Div", [e.op("Mul", [e.op("Reshape", [var, e.ints([-1])]), n]),
                            e.op("Sub", [n, e.scalar(1, dt)])])
    m = e.scalar(a["momentum"], dt)
    keep = e.scalar(1 - a["momentum"], dt)
    new_mean = e.op("Add", [e.op("Mul", [xs[1], keep]), e.op("Mul", [e.op("Reshape", [mean, e.ints([-1])]), m])])
    new_var = e.op("Add", [e.op("Mul", [xs[2], keep]), e.op("Mul", [unbiased, m])])
    return [y, new_mean, new_var]


@onnx_op("layer_norm")
def _layer_norm(e, node, x):
    a, xv = node.attrs, node.inputs[0]
    ns = a["normalized_shape"]
    ns = (ns,) if isinstance(ns, int) else tuple(ns)
    dt = xv.type.dtype.numpy_name
    xs = list(x) + [None] * (3 - len(x))
    weight = xs[1] or _ones(e, node, ns, dt)
    return [e.op("LayerNormalization", [xs[0], weight, xs[2]], axis=-len(ns), epsilon=float(a["eps"]))]


@onnx_op("group_norm")
def _group_norm(e, node, x):
    a, xv = node.attrs, node.inputs[0]
    g, dt, shape = int(a["num_groups"]), xv.type.dtype.numpy_name, xv.type.shape
    xs = list(x) + [None] * (3 - len(x))
    grouped = e.op("Reshape", [xs[0], e.ints([shape[0], g, -1])])
    mean = reduce(e, "ReduceMean", grouped, [2], True)
    d = e.op("Sub", [grouped, mean])
    var = reduce(e, "ReduceMean", e.op("Mul", [d, d]), [2], True)
    y = e.op("Div", [d, e.op("Sqrt", [e.op("Add", [var, e.scalar(a["eps"], dt)])])])
    y = e.op("Reshape", [y, e.ints(shape)])
    bshape = e.ints([-1] + [1] * (len(shape) - 2))
    if xs[1] is not None:
        y = e.op("Mul", [y, e.op("Reshape", [xs[1], bshape])])
    if xs[2] is not None:
        y = e.op("Add", [y, e.op("Reshape", [xs[2], bshape])])
    return [y]


@onnx_op("local_response_norm")
def _lrn(e, node, x):
    a = node.attrs
    return [e.op("LRN", x, size=int(a["size"]), alpha=float(a["alpha"]), beta=float(a["beta"]), bias=float(a["k"]))]


@onnx_op("scaled_dot_product_attention")
def _sdpa(e, node, x):
    a = node.attrs
    q, k = node.inputs[0], node.inputs[1]
    dt = q.type.dtype.numpy_name
    scale = a["scale"] if a["scale"] is not None else 1.0 / float(np.sqrt(int(q.type.shape[-1])))
    rank = k.type.rank
    kt = e.op("Transpose", [x[1]], perm=list(range(rank - 2)) + [rank - 1, rank - 2])
    scores = e.op("Mul", [e.op("MatMul", [x[0], kt]), e.scalar(scale, dt)])
    mask = x[3] if len(x) > 3 else None
    if a["is_causal"]:
        ls = e.op("Concat", [e.dim(q.type.shape[-2]), e.dim(k.type.shape[-2])], axis=0)
        ones = e.op("Expand", [e.scalar(1.0, "float32"), ls])
        mask = e.op("Cast", [e.op("Trilu", [ones], upper=0)], to=onnx_dtype("bool"))
        is_bool = True
    else:
        is_bool = mask is not None and node.inputs[3].type.dtype.name == "bool"
    if mask is None:
        return [e.op("MatMul", [e.op("Softmax", [scores], axis=-1), x[2]])]
    if is_bool:
        scores = e.op("Where", [mask, scores, e.scalar(-np.inf, dt)])
    else:
        scores = e.op("Add", [scores, mask])
    # the reference's softmax: a fully masked row gives zeros, not NaN
    row_max = reduce(e, "ReduceMax", scores, [rank - 1], True)
    row_max = e.op("Where", [e.op("IsInf", [row_max]), e.scalar(0, dt), row_max])
    ex = e.op("Exp", [e.op("Sub", [scores, row_max])])
    denom = reduce(e, "ReduceSum", ex, [rank - 1], True)
    denom = e.op("Where", [e.op("Equal", [denom, e.scalar(0, dt)]), e.scalar(1, dt), denom])
    return [e.op("MatMul", [e.op("Div", [ex, denom]), x[2]])]


@onnx_op("dropout")
def _dropout(e, node, x):
    a = node.attrs
    if not a["training"] or a["p"] == 0:
        return [e.op("Identity", x)]
    dt = node.inputs[0].type.dtype.numpy_name
    return [e.op("Dropout", [x[0], e.scalar(a["p"], dt), e.const(np.array(True), hint="training_mode")],
                 seed=int(a["seed"]) % (2 ** 31))]


@onnx_op("randn", "uniform")
def _random(e, node, x):
    a = node.attrs
    name = e.noise_input(node)
    if name is not None:
        return [name]
    dt = onnx_dtype(node.outputs[0].type.dtype)
    shape = node.outputs[0].type.shape
    like = e.op("ConstantOfShape", [e.ints(shape)])
    if node.op.name == "randn":
        return [e.op("RandomNormalLike", [like], dtype=dt, seed=float(a["seed"]))]
    return [e.op("RandomUniformLike", [like], dtype=dt, low=float(a["low"]), high=float(a["high"]),
                 seed=int(a["seed"]) % (2 ** 31))]
