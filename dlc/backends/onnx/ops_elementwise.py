"""Elementwise, activation and reduction ops."""
from __future__ import annotations

from ...compiler.types import DType
from .emitter import onnx_dtype
from .table import onnx_op, simple

simple({"abs": "Abs", "ceil": "Ceil", "cos": "Cos", "erf": "Erf", "exp": "Exp", "floor": "Floor",
        "log": "Log", "neg": "Neg", "reciprocal": "Reciprocal", "relu": "Relu", "sigmoid": "Sigmoid",
        "sin": "Sin", "sqrt": "Sqrt", "tanh": "Tanh", "logical_not": "Not", "selu": "Selu"})


def np_dtype(v) -> str:
    return v.type.dtype.numpy_name


def cast_to(e, name: str, have: DType, want: DType) -> str:
    return name if have == want else e.op("Cast", [name], to=onnx_dtype(want))


def operands_as(e, node, x, want: DType) -> list:
    return [None if n is None else cast_to(e, n, v.type.dtype, want) for n, v in zip(x, node.inputs)]


_BOOL_OPS = {"Add": "Or", "Mul": "And", "Max": "Or", "Min": "And"}


def _binary(op_type: str):
    def fn(e, node, x):
        want = node.outputs[0].type.dtype
        op = _BOOL_OPS.get(op_type, op_type) if want == DType.bool else op_type
        return [e.op(op, operands_as(e, node, x, want))]
    return fn


for _name, _t in {"add": "Add", "sub": "Sub", "mul": "Mul", "div": "Div", "pow": "Pow",
                  "maximum": "Max", "minimum": "Min", "logical_and": "And", "logical_or": "Or"}.items():
    onnx_op(_name)(_binary(_t))


def _compare(op_type: str, negate: bool = False):
    def fn(e, node, x):
        a, b = node.inputs
        want = a.type.dtype if a.type.dtype == b.type.dtype or not b.type.dtype.is_float else b.type.dtype
        out = e.op(op_type, operands_as(e, node, x, want))
        return [e.op("Not", [out]) if negate else out]
    return fn


for _name, _t in {"eq": "Equal", "gt": "Greater", "ge": "GreaterOrEqual", "lt": "Less",
                  "le": "LessOrEqual"}.items():
    onnx_op(_name)(_compare(_t))
onnx_op("ne")(_compare("Equal", negate=True))


@onnx_op("where")
def _where(e, node, x):
    want = node.outputs[0].type.dtype
    c, a, b = x
    return [e.op("Where", [c, cast_to(e, a, node.inputs[1].type.dtype, want),
                           cast_to(e, b, node.inputs[2].type.dtype, want)])]


@onnx_op("cast")
def _cast(e, node, x):
    return [e.op("Cast", x, to=onnx_dtype(node.outputs[0].type.dtype))]


@onnx_op("sign")
def _sign(e, node, x):
    out = e.op("Sign", x)
    if not node.inputs[0].type.dtype.is_float:
        return [out]
    # dlc's sign of NaN is 0 (as the reference defines it); ONNX's is NaN
    return [e.op("Where", [e.op("IsNaN", x), e.scalar(0, np_dtype(node.inputs[0])), out])]


@onnx_op("rsqrt")
def _rsqrt(e, node, x):
    return [e.op("Reciprocal", [e.op("Sqrt", x)])]


@onnx_op("square")
def _square(e, node, x):
    return [e.op("Mul", [x[0], x[0]])]


@onnx_op("log1p")
def _log1p(e, node, x):
    return [e.op("Log", [e.op("Add", [x[0], e.scalar(1, np_dtype(node.inputs[0]))])])]


@onnx_op("elu")
def _elu(e, node, x):
    return [e.op("Elu", x, alpha=float(node.attrs["alpha"]))]


@onnx_op("leaky_relu")
def _leaky(e, node, x):
    return [e.op("LeakyRelu", x, alpha=float(node.attrs["negative_slope"]))]


@onnx_op("relu6")
def _relu6(e, node, x):
    dt = np_dtype(node.inputs[0])
    return [e.op("Clip", [x[0], e.scalar(0, dt), e.scalar(6, dt)])]


@onnx_op("hardtanh")
def _hardtanh(e, node, x):
    dt = np_dtype(node.inputs[0])
    return [e.op("Clip", [x[0], e.scalar(node.attrs["min_val"], dt), e.scalar(node.attrs["max_val"], dt)])]


@onnx_op("prelu")
def _prelu(e, node, x):
    xv, w = node.inputs
    slope = x[1]
    if xv.type.rank > 2 and w.type.rank == 1:
        # torch's weight is per channel (axis 1); ONNX broadcasts from the right
        slope = e.op("Reshape", [slope, e.ints([-1] + [1] * (xv.type.rank - 2))])
    return [e.op("PRelu", [x[0], slope])]


@onnx_op("softmax")
def _softmax(e, node, x):
    return [e.op("Softmax", x, axis=int(node.attrs["axis"]))]


@onnx_op("log_softmax")
def _log_softmax(e, node, x):
    return [e.op("LogSoftmax", x, axis=int(node.attrs["axis"]))]


# reductions ---------------------------------------------------------------
def axes_of(axis, rank: int) -> list[int] | None:
    if axis is None:
        return None
    axes = [axis] if isinstance(axis, int) else list(axis)
    return sorted(a % rank if rank else 0 for a in axes)


def reduce(e, op_type: str, name: str, axes: list[int] | None, keepdims: bool) -> str:
    """ReduceX over `axes` (None: all), the axes as an input (opset 18; ReduceSum from 13)."""
    if axes is None:
        return e.op(op_type, [name], keepdims=int(keepdims))
    if op_type == "ReduceSum" or e.opset >= 18:
        return e.op(op_type, [name, e.ints(axes)], keepdims=int(keepdims))
    return e.op(op_type, [name], axes=axes, keepdims=int(keepdims))


def _reduction(op_type: str):
    def fn(e, node, x):
        a, v = node.attrs, node.inputs[0]
        axes, keep = axes_of(a["axis"], v.type.rank), bool(a["keepdims"])
        src = cast_to(e, x[0], v.type.dtype, node.outputs[0].type.dtype)    # sum of int32/bool: int64
        out = reduce(e, op_type, src, axes, keep)
        if op_type in ("ReduceMax", "ReduceMin") and v.type.dtype.is_float:
            # a NaN wins, as in NumPy (onnxruntime's max skips it)
            nan = reduce(e, "ReduceMax", e.op("Cast", [e.op("IsNaN", [x[0]])], to=onnx_dtype(v.type.dtype)),
                         axes, keep)
            out = e.op("Where", [e.op("Cast", [nan], to=onnx_dtype(DType.bool)), nan_of(e, v), out])
        return [out]
    return fn


def nan_of(e, v) -> str:
    return e.scalar(float("nan"), np_dtype(v))


for _name, _t in {"sum": "ReduceSum", "mean": "ReduceMean", "max": "ReduceMax", "min": "ReduceMin",
                  "prod": "ReduceProd", "logsumexp": "ReduceLogSumExp"}.items():
    onnx_op(_name)(_reduction(_t))


def _arg(op_type: str):
    def fn(e, node, x):
        a, src = node.attrs, x[0]
        if a["axis"] is None:            # over the flattened tensor
            src = e.op("Reshape", [src, e.ints([-1])])
            out = e.op(op_type, [src], axis=0, keepdims=0)
            if a["keepdims"]:
                out = e.op("Reshape", [out, e.ints([1] * node.inputs[0].type.rank)])
            return [out]
        out = e.op(op_type, [src], axis=int(a["axis"]), keepdims=int(bool(a["keepdims"])))
        if not node.inputs[0].type.dtype.is_float:
            return [out]
        # NumPy's argmax/argmin stop at the first NaN
        nan = e.op("Cast", [e.op("IsNaN", [src])], to=onnx_dtype(DType.i32))
        first = e.op("ArgMax", [nan], axis=int(a["axis"]), keepdims=int(bool(a["keepdims"])))
        has = e.op("Cast", [e.op("ReduceMax", [nan], axes=[int(a["axis"])], keepdims=int(bool(a["keepdims"])))
                            if e.opset < 18 else e.op("ReduceMax", [nan, e.ints([int(a["axis"])])],
                                                      keepdims=int(bool(a["keepdims"])))], to=onnx_dtype(DType.bool))
        return [e.op("Where", [has, first, out])]
    return fn


onnx_op("argmax")(_arg("ArgMax"))
onnx_op("argmin")(_arg("ArgMin"))


def _moment(std: bool):
    def fn(e, node, x):
        a, v = node.attrs, node.inputs[0]
        axes = axes_of(a["axis"], v.type.rank)
        dt = np_dtype(v)
        mean = reduce(e, "ReduceMean", x[0], axes, True)
        d = e.op("Sub", [x[0], mean])
        ss = reduce(e, "ReduceSum", e.op("Mul", [d, d]), axes, bool(a["keepdims"]))
        count = _count(e, v, axes)
        denom = e.op("Sub", [e.op("Cast", [count], to=onnx_dtype(v.type.dtype)), e.scalar(a["correction"], dt)])
        out = e.op("Div", [ss, e.op("Reshape", [denom, e.ints([])])])
        return [e.op("Sqrt", [out]) if std else out]
    return fn


def _count(e, v, axes) -> str:
    dims = v.type.shape if axes is None else [v.type.shape[i] for i in axes]
    total = 1
    for d in dims:
        total = total * d
    return e.dim(total)


onnx_op("var")(_moment(False))
onnx_op("std")(_moment(True))
