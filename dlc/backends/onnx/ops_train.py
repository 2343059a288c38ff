"""Losses and the ops that training graphs add (gradients of embeddings and
gathers), with PyTorch's semantics as the NumPy kernels define them."""
from __future__ import annotations

from ...errors import DlcError
from .emitter import onnx_dtype
from .ops_elementwise import reduce
from .table import onnx_op


def _reduced(e, node, loss: str) -> str:
    r = node.attrs["reduction"]
    if r == "none":
        return loss
    if r == "sum":
        return reduce(e, "ReduceSum", loss, None, False)
    if r == "mean":
        return reduce(e, "ReduceMean", loss, None, False)
    raise DlcError(f"{node.op.name}: reduction '{r}' has no ONNX form here", node.span)


def _s(e, node, value) -> str:
    return e.scalar(value, node.inputs[0].type.dtype.numpy_name)


def _weighted(e, x: list, loss: str, i: int = 2) -> str:
    return e.op("Mul", [loss, x[i]]) if len(x) > i and x[i] is not None else loss


@onnx_op("mse_loss")
def _mse(e, node, x):
    d = e.op("Sub", x[:2])
    return [_reduced(e, node, e.op("Mul", [d, d]))]


@onnx_op("l1_loss")
def _l1(e, node, x):
    return [_reduced(e, node, e.op("Abs", [e.op("Sub", x[:2])]))]


@onnx_op("smooth_l1_loss")
def _smooth_l1(e, node, x):
    beta = float(node.attrs["beta"])
    ad = e.op("Abs", [e.op("Sub", x[:2])])
    if beta == 0:
        return [_reduced(e, node, ad)]
    quad = e.op("Div", [e.op("Mul", [e.op("Mul", [_s(e, node, 0.5), ad]), ad]), _s(e, node, beta)])
    lin = e.op("Sub", [ad, _s(e, node, 0.5 * beta)])
    return [_reduced(e, node, e.op("Where", [e.op("Less", [ad, _s(e, node, beta)]), quad, lin]))]


@onnx_op("binary_cross_entropy")
def _bce(e, node, x):
    p, t = x[0], x[1]
    floor_ = _s(e, node, -100.0)
    log_x = e.op("Max", [e.op("Log", [p]), floor_])
    log_1mx = e.op("Max", [e.op("Log", [e.op("Sub", [_s(e, node, 1.0), p])]), floor_])
    loss = e.op("Sub", [e.op("Mul", [e.op("Sub", [t, _s(e, node, 1.0)]), log_1mx]), e.op("Mul", [t, log_x])])
    return [_reduced(e, node, _weighted(e, x, loss))]


@onnx_op("binary_cross_entropy_with_logits")
def _bce_logits(e, node, x):
    z, t = x[0], x[1]
    one = _s(e, node, 1.0)
    softplus = e.op("Log", [e.op("Add", [one, e.op("Exp", [e.op("Neg", [e.op("Abs", [z])])])])])
    log_sig = e.op("Sub", [e.op("Min", [z, _s(e, node, 0.0)]), softplus])
    if len(x) > 3 and x[3] is not None:
        log_sig = e.op("Mul", [log_sig, e.op("Add", [e.op("Mul", [e.op("Sub", [x[3], one]), t]), one])])
    loss = e.op("Sub", [e.op("Mul", [e.op("Sub", [one, t]), z]), log_sig])
    return [_reduced(e, node, _weighted(e, x, loss))]


@onnx_op("kl_div")
def _kl_div(e, node, x):
    inp, t = x[0], x[1]
    if node.attrs["log_target"]:
        loss = e.op("Mul", [e.op("Exp", [t]), e.op("Sub", [t, inp])])
    else:
        zero = _s(e, node, 0.0)
        xlogy = e.op("Where", [e.op("Equal", [t, zero]), zero, e.op("Mul", [t, e.op("Log", [t])])])
        loss = e.op("Sub", [xlogy, e.op("Mul", [t, inp])])
    if node.attrs["reduction"] == "batchmean":
        total = reduce(e, "ReduceSum", loss, None, False)
        n = node.inputs[0].type.shape[0] if node.inputs[0].type.rank else 1
        count = e.op("Cast", [e.op("Reshape", [e.dim(n), e.ints([])])], to=onnx_dtype(node.inputs[0].type.dtype))
        return [e.op("Div", [total, count])]
    return [_reduced(e, node, loss)]


@onnx_op("nll_loss", "cross_entropy")
def _class_loss(e, node, x):
    a, xv, tv = node.attrs, node.inputs[0], node.inputs[1]
    inp, target = x[0], x[1]
    weight = x[2] if len(x) > 2 else None
    one_d = xv.type.rank == 1
    if one_d:                          # (C,) with a 0-d target: as a batch of one
        inp = e.op("Unsqueeze", [inp, e.ints([0])])
        target = e.op("Unsqueeze", [target, e.ints([0])])
    logp = e.op("LogSoftmax", [inp], axis=1) if node.op.name == "cross_entropy" else inp
    rank = max(xv.type.rank, 2)
    wshape = e.ints([-1] + [1] * (rank - 2))
    if tv.type.dtype.is_float:
        return [_probability_loss(e, node, logp, target, weight, wshape)]
    ls = float(a.get("label_smoothing", 0.0))
    target = e.op("Cast", [target], to=onnx_dtype("int64"))
    valid = e.op("Not", [e.op("Equal", [target, e.scalar(int(a["ignore_index"]), "int64")])])
    safe = e.op("Where", [valid, target, e.scalar(0, "int64")])
    picked = e.op("Squeeze", [e.op("GatherElements", [logp, e.op("Unsqueeze", [safe, e.ints([1])])], axis=1),
                              e.ints([1])])
    validf = e.op("Cast", [valid], to=onnx_dtype(xv.type.dtype))
    wt = validf if weight is None else e.op("Mul", [e.op("Gather", [weight, safe], axis=0), validf])
    terms = e.op("Neg", [e.op("Mul", [picked, wt])])
    out = _class_reduce(e, node, terms, wt)
    if ls > 0:
        wl = logp if weight is None else e.op("Mul", [logp, e.op("Reshape", [weight, wshape])])
        smooth = e.op("Neg", [reduce(e, "ReduceSum", wl, [1], False)])
        smooth = e.op("Mul", [smooth, validf])
        c = int(xv.type.shape[0 if one_d else 1])
        out = e.op("Add", [e.op("Mul", [out, _s(e, node, 1 - ls)]),
                           e.op("Mul", [_class_reduce(e, node, smooth, wt), _s(e, node, ls / c)])])
    if one_d and a["reduction"] == "none":
        out = e.op("Squeeze", [out, e.ints([0])])
    return [out]


def _class_reduce(e, node, terms: str, wt: str) -> str:
    r = node.attrs["reduction"]
    if r == "none":
        return terms
    total = reduce(e, "ReduceSum", terms, None, False)
    return total if r == "sum" else e.op("Div", [total, reduce(e, "ReduceSum", wt, None, False)])


def _probability_loss(e, node, logp, p, weight, wshape) -> str:
    xv = node.inputs[0]
    ls = float(node.attrs.get("label_smoothing", 0.0))
    c = int(xv.type.shape[0 if xv.type.rank == 1 else 1])
    if xv.type.rank == 1:
        p = e.op("Unsqueeze", [p, e.ints([0])])
    if ls > 0:
        p = e.op("Add", [e.op("Mul", [p, _s(e, node, 1 - ls)]), _s(e, node, ls / c)])
    prod = e.op("Mul", [logp, p])
    if weight is not None:
        prod = e.op("Mul", [prod, e.op("Reshape", [weight, wshape])])
    r = node.attrs["reduction"]
    if r == "none":
        out = e.op("Neg", [reduce(e, "ReduceSum", prod, [1], False)])
        return e.op("Squeeze", [out, e.ints([0])]) if xv.type.rank == 1 else out
    total = e.op("Neg", [reduce(e, "ReduceSum", prod, None, False)])
    if r == "sum":
        return total
    n = 1
    for i, d in enumerate(xv.type.shape):
        if i != (0 if xv.type.rank == 1 else 1):
            n = n * d
    count = e.op("Cast", [e.op("Reshape", [e.dim(n), e.ints([])])], to=onnx_dtype(xv.type.dtype))
    return e.op("Div", [total, count])


@onnx_op("scatter_add_rows")
def _scatter_add_rows(e, node, x):
    out = node.outputs[0].type
    zeros = e.op("Expand", [e.scalar(0, out.dtype.numpy_name), e.ints(out.shape)])
    idx = e.op("Unsqueeze", [e.op("Cast", [x[0]], to=onnx_dtype("int64")), e.ints([-1])])
    return [e.op("ScatterND", [zeros, idx, x[1]], reduction="add")]


@onnx_op("scatter_add")
def _scatter_add(e, node, x):
    return [e.op("ScatterElements", x, axis=int(node.attrs["axis"]), reduction="add")]

