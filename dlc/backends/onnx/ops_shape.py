"""Shape, indexing, constant and matrix ops."""
from __future__ import annotations

import numpy as np

from ...compiler.dims import Dim
from .emitter import onnx_dtype
from .table import onnx_op

_I64_MAX, _I64_MIN = np.iinfo(np.int64).max, np.iinfo(np.int64).min


def out_shape(node, i: int = 0):
    return node.outputs[i].type.shape


def is_static(shape) -> bool:
    return not any(isinstance(d, Dim) and not d.is_const for d in shape)


@onnx_op("reshape")
def _reshape(e, node, x):
    return [e.op("Reshape", [x[0], e.ints(out_shape(node))])]


@onnx_op("expand")
def _expand(e, node, x):
    return [e.op("Expand", [x[0], e.ints(out_shape(node))])]


@onnx_op("transpose")
def _transpose(e, node, x):
    rank = node.inputs[0].type.rank
    return [e.op("Transpose", x, perm=[int(a) % rank for a in node.attrs["axes"]])]


@onnx_op("concat")
def _concat(e, node, x):
    return [e.op("Concat", x, axis=int(node.attrs["axis"]))]


@onnx_op("split")
def _split(e, node, x):
    axis = int(node.attrs["axis"]) % node.inputs[0].type.rank
    sizes = [o.type.shape[axis] for o in node.outputs]
    outs = e.op("Split", [x[0], e.ints(sizes)], n_out=len(sizes), axis=axis)
    return outs if len(sizes) > 1 else [outs]


@onnx_op("strided_slice")
def _strided_slice(e, node, x):
    a, rank = node.attrs, node.inputs[0].type.rank
    begin = list(a["begin"]) + [None] * (rank - len(a["begin"]))
    end = list(a["end"]) + [None] * (rank - len(a["end"]))
    strides = list(a["strides"] or []) + [None] * (rank - len(a["strides"] or []))
    starts, ends, axes, steps = [], [], [], []
    for i, (b, en, s) in enumerate(zip(begin, end, strides)):
        s = 1 if s is None else int(s)
        if b is None and en is None and s == 1:
            continue
        axes.append(i)
        steps.append(s)
        # Python's slice defaults, as ONNX Slice clamps out-of-range bounds the same way
        starts.append(b if b is not None else (0 if s > 0 else _I64_MAX))
        ends.append(en if en is not None else (_I64_MAX if s > 0 else _I64_MIN))
    if not axes:
        return [e.op("Identity", x)]
    return [e.op("Slice", [x[0], e.ints(starts), e.ints(ends), e.ints(axes), e.ints(steps)])]


_PAD_MODES = {"constant": "constant", "reflect": "reflect", "replicate": "edge", "circular": "wrap"}


@onnx_op("pad")
def _pad(e, node, x):
    a, rank = node.attrs, node.inputs[0].type.rank
    pad = [int(p) for p in a["pad"]]
    before, after = [0] * rank, [0] * rank
    for i in range(len(pad) // 2):            # torch lists (before, after) from the LAST axis
        before[rank - 1 - i], after[rank - 1 - i] = pad[2 * i], pad[2 * i + 1]
    mode = _PAD_MODES[a["mode"]]
    value = e.scalar(a["value"], node.inputs[0].type.dtype.numpy_name) if mode == "constant" else None
    return [e.op("Pad", [x[0], e.ints(before + after), value], mode=mode)]


@onnx_op("gather")
def _gather(e, node, x):
    return [e.op("GatherElements", x, axis=int(node.attrs["axis"]))]


@onnx_op("index_select")
def _index_select(e, node, x):
    idx = x[1]
    if node.inputs[1].type.rank == 0:
        idx = e.op("Reshape", [idx, e.ints([1])])
    out = e.op("Gather", [x[0], idx], axis=int(node.attrs["axis"]))
    if node.inputs[0].type.rank == 0:
        out = e.op("Reshape", [out, e.ints(out_shape(node))])
    return [out]


@onnx_op("embedding")
def _embedding(e, node, x):
    return [e.op("Gather", [x[1], x[0]], axis=0)]


@onnx_op("one_hot")
def _one_hot(e, node, x):
    n = out_shape(node)[-1]
    classes = e.op("Range", [e.scalar(0, "int64"), e.op("Reshape", [e.dim(n), e.ints([])]), e.scalar(1, "int64")])
    idx = e.op("Unsqueeze", [e.op("Cast", [x[0]], to=onnx_dtype("int64")), e.ints([-1])])
    return [e.op("Cast", [e.op("Equal", [idx, classes])], to=onnx_dtype(node.outputs[0].type.dtype))]


@onnx_op("tril", "triu")
def _tri(e, node, x):
    return [e.op("Trilu", [x[0], e.scalar(int(node.attrs["k"]), "int64")], upper=int(node.op.name == "triu"))]


@onnx_op("arange")
def _arange(e, node, x):
    a = node.attrs
    dt = node.outputs[0].type.dtype
    vals = [a["start"], a["stop"], a["step"]]
    if all(isinstance(v, int) for v in vals):
        if len(range(*vals)) > 1:
            # a Range on constants, not a table: an importer reads it back as `arange`, not as a weight
            out = e.op("Range", [e.scalar(v, "int64") for v in vals])
            return [out if dt.numpy_name == "int64" else e.op("Cast", [out], to=onnx_dtype(dt))]
        return [e.const(np.arange(*vals, dtype=np.int64).astype(dt.numpy_name), hint="arange")]
    if all(isinstance(v, (int, Dim)) for v in vals):   # a symbolic bound: computed at run time
        parts = [e.op("Reshape", [e.dim(v), e.ints([])]) for v in vals]
        out = e.op("Range", parts)
        return [out if dt.numpy_name == "int64" else e.op("Cast", [out], to=onnx_dtype(dt))]
    # float values: start + i*step in float64, then rounded, as the reference does
    n = out_shape(node)[0]
    idx = e.op("Cast", [e.op("Range", [e.scalar(0, "int64"), e.op("Reshape", [e.dim(n), e.ints([])]),
                                       e.scalar(1, "int64")])], to=onnx_dtype("float64"))
    vals = e.op("Add", [e.scalar(float(a["start"]), "float64"), e.op("Mul", [idx, e.scalar(float(a["step"]), "float64")])])
    return [e.op("Cast", [vals], to=onnx_dtype(dt))]     # to an integer type: truncated, as the reference


@onnx_op("full")
def _full(e, node, x):
    dt = node.outputs[0].type.dtype.numpy_name
    shape = out_shape(node)
    if is_static(shape) and not shape:
        return [e.const(np.full((), node.attrs["value"], dtype=dt), hint="full")]
    if is_static(shape):    # a constant, not a weight: an initializer would import back as a parameter
        from onnx import numpy_helper
        value = numpy_helper.from_array(np.full((1,), node.attrs["value"], dtype=dt), "value")
        return [e.op("ConstantOfShape", [e.ints(shape)], value=value)]
    return [e.op("Expand", [e.scalar(node.attrs["value"], dt), e.ints(shape)])]


@onnx_op("sinusoidal_positions")
def _sinusoidal(e, node, x):
    a = node.attrs
    dt = node.outputs[0].type.dtype
    length, dim = a["length"], int(a["dim"])
    # the float64 formula in the graph, then rounded once (a symbolic length needs it; a static one too,
    # so that an importer reads the op back rather than a (length, dim) weight)
    pos = e.op("Cast", [e.op("Range", [e.scalar(0, "int64"), e.op("Reshape", [e.dim(length), e.ints([])]),
                                       e.scalar(1, "int64")])], to=onnx_dtype("float64"))
    pos = e.op("Unsqueeze", [pos, e.ints([1])])
    cols = np.arange(dim)
    denom = np.power(10000.0, (cols - cols % 2).astype(np.float64) / dim)
    angle = e.op("Div", [pos, e.const(denom[None, :], hint="positions_denominator")])
    even = e.const((cols % 2 == 0)[None, :], hint="positions_even")
    table = e.op("Where", [even, e.op("Sin", [angle]), e.op("Cos", [angle])])
    return [e.op("Cast", [table], to=onnx_dtype(dt))]


@onnx_op("matmul")
def _matmul(e, node, x):
    return [e.op("MatMul", x)]


@onnx_op("linear")
def _linear(e, node, x):
    xv = node.inputs[0]
    if xv.type.rank == 2:
        return [e.op("Gemm", x, transB=1)]
    y = e.op("MatMul", [x[0], e.op("Transpose", [x[1]], perm=[1, 0])])
    return [y if len(x) < 3 or x[2] is None else e.op("Add", [y, x[2]])]
