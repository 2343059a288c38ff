"""TVM lowering of the losses.

Registered into `lowering.LOWERING`; see that module for the conventions.

Losses follow dlc/backends/numpy/kernels/losses.py term by term (torch's
formulas, clamped logs, label smoothing, ignore_index, weights); "mean" over a
symbolic extent is a Relax mean, never a division by a dimension.  The
reference's argument checks (targets out of range, probabilities outside
[0, 1]) raise there; compiled code does not check.
"""
from __future__ import annotations

from .lowering import arg_as, cast, in_dtype, lowers, out_dtype, scalar, _op


def _rank(v) -> int:
    return len(v.type.shape)


def _log1p(low, x):
    from tvm import te, tirx
    return low.bb.emit_te(lambda a: te.compute(a.shape, lambda *i: tirx.log1p(a(*i)), name="log1p"), x)


def _reduce(low, loss, reduction: str, rank: int):
    """mean / sum over every element, or the loss itself ("none")."""
    op = _op()
    if reduction == "none" or rank == 0:
        return loss
    if reduction == "mean":
        return low.emit(op.mean(loss, None, False))
    if reduction == "sum":
        return low.emit(op.sum(loss, None, False))
    raise NotImplementedError(f"reduction {reduction!r}")


def _pair(low, node, args, dt):
    return arg_as(low, node, args, 0, dt), arg_as(low, node, args, 1, dt)


def _opt(args, i):
    return args[i] if len(args) > i else None



# ---------------------------------------------------------------------------
# pointwise losses
# ---------------------------------------------------------------------------

@lowers("mse_loss")
def _mse(low, node, args, env):
    op, dt = _op(), out_dtype(node)
    x, t = _pair(low, node, args, dt)
    d = low.emit(op.subtract(x, t))
    return _reduce(low, low.emit(op.multiply(d, d)), node.attrs["reduction"], _rank(node.inputs[0]))


@lowers("l1_loss")
def _l1(low, node, args, env):
    op, dt = _op(), out_dtype(node)
    x, t = _pair(low, node, args, dt)
    return _reduce(low, low.emit(op.abs(op.subtract(x, t))), node.attrs["reduction"], _rank(node.inputs[0]))


@lowers("smooth_l1_loss")
def _smooth_l1(low, node, args, env):
    op, dt = _op(), out_dtype(node)
    x, t = _pair(low, node, args, dt)
    beta = float(node.attrs["beta"])
    ad = low.emit(op.abs(op.subtract(x, t)))
    if beta == 0:
        loss = ad
    else:
        b, half = scalar(low, beta, dt), scalar(low, 0.5, dt)
        quad = op.divide(op.multiply(op.multiply(half, ad), ad), b)
        lin = op.subtract(ad, op.multiply(half, b))
        loss = low.emit(op.where(op.less(ad, b), quad, lin))
    return _reduce(low, loss, node.attrs["reduction"], _rank(node.inputs[0]))


@lowers("binary_cross_entropy")
def _bce(low, node, args, env):
    op, dt = _op(), out_dtype(node)
    x, t = _pair(low, node, args, dt)
    floor_ = scalar(low, -100.0, dt)
    log_x = low.emit(op.maximum(op.log(x), floor_))
    log_1mx = low.emit(op.maximum(_log1p(low, low.emit(op.negative(x))), floor_))
    loss = low.emit(op.subtract(op.multiply(op.subtract(t, scalar(low, 1.0, dt)), log_1mx),
                                op.multiply(t, log_x)))
    if _opt(args, 2) is not None:
        loss = low.emit(op.multiply(loss, arg_as(low, node, args, 2, dt)))
    return _reduce(low, loss, node.attrs["reduction"], _rank(node.inputs[0]))


@lowers("binary_cross_entropy_with_logits")
def _bce_logits(low, node, args, env):
    op, dt = _op(), out_dtype(node)
    x, t = _pair(low, node, args, dt)
    one, zero = scalar(low, 1.0, dt), scalar(low, 0.0, dt)
    e = low.emit(op.exp(op.negative(op.abs(x))))
    log_sig = low.emit(op.subtract(op.minimum(x, zero), _log1p(low, e)))
    if _opt(args, 3) is not None:
        pw = arg_as(low, node, args, 3, dt)
        log_sig = low.emit(op.multiply(log_sig, op.add(op.multiply(op.subtract(pw, one), t), one)))
    loss = low.emit(op.subtract(op.multiply(op.subtract(one, t), x), log_sig))
    if _opt(args, 2) is not None:
        loss = low.emit(op.multiply(loss, arg_as(low, node, args, 2, dt)))
    return _reduce(low, loss, node.attrs["reduction"], _rank(node.inputs[0]))


@lowers("kl_div")
def _kl_div(low, node, args, env):
    op, dt = _op(), out_dtype(node)
    x, t = _pair(low, node, args, dt)
    if node.attrs["log_target"]:
        loss = low.emit(op.multiply(op.exp(t), op.subtract(t, x)))
    else:
        zero = scalar(low, 0.0, dt)
        xlogy = low.emit(op.where(op.equal(t, zero), zero, op.multiply(t, op.log(t))))
        xlogy = low.emit(op.where(op.isnan(t), t, xlogy))
        loss = low.emit(op.subtract(xlogy, op.multiply(t, x)))
    r = _rank(node.inputs[0])
    red = node.attrs["reduction"]
    if red == "batchmean":
        if r == 0:
            return loss
        # sum / shape[0] == mean over axis 0 of the per-row sums (shape[0] may be symbolic)
        rows = low.emit(op.sum(loss, list(range(1, r)), False)) if r > 1 else loss
        return low.emit(op.mean(rows, [0], False))
    return _reduce(low, loss, red, r)


# ---------------------------------------------------------------------------
# class-index losses
# ---------------------------------------------------------------------------

def _picked(low, node, x, t, w, ignore_index, cax, dt):
    """(-w[t] * x[t] with ignored positions 0, w[t] likewise 0 there, ignored mask)."""
    op = _op()
    t = cast(low, t, in_dtype(node, 1), "int64")
    ignored = low.emit(op.equal(t, low.const(ignore_index, "int64")))
    safe = low.emit(op.where(ignored, low.const(0, "int64"), t))
    vals = low.emit(op.gather_elements(x, op.expand_dims(safe, [cax]), cax))
    vals = low.emit(op.squeeze(vals, [cax]))
    zero = scalar(low, 0.0, dt)
    if w is not None:
        wt = low.emit(op.take(w, safe, 0, mode="clip"))
        wt = low.emit(op.where(ignored, zero, wt))
    else:
        wt = low.emit(op.where(ignored, zero, scalar(low, 1.0, dt)))
    loss = low.emit(op.negative(op.multiply(wt, vals)))
    return loss, wt, ignored


def _class_reduce(low, terms, wt, reduction, rank):
    op = _op()
    if reduction == "none" or rank == 0:
        if reduction == "mean" and rank == 0:
            return low.emit(op.divide(terms, wt))
        return terms
    s = low.emit(op.sum(terms, None, False))
    if reduction == "sum":
        return s
    return low.emit(op.divide(s, op.sum(wt, None, False)))


@lowers("nll_loss")
def _nll(low, node, args, env):
    dt = out_dtype(node)
    x = arg_as(low, node, args, 0, dt)
    cax = 0 if _rank(node.inputs[0]) == 1 else 1
    w = arg_as(low, node, args, 2, dt) if _opt(args, 2) is not None else None
    loss, wt, _ = _picked(low, node, x, args[1], w, int(node.attrs["ignore_index"]), cax, dt)
    return _class_reduce(low, loss, wt, node.attrs["reduction"], _rank(node.inputs[1]))


@lowers("cross_entropy")
def _cross_entropy(low, node, args, env):
    op, dt = _op(), out_dtype(node)
    x = arg_as(low, node, args, 0, dt)
    r = _rank(node.inputs[0])
    cax = 0 if r == 1 else 1
    C = low.concrete(node.inputs[0].type.shape[cax], "the number of classes of cross_entropy")
    logp = low.emit(op.nn.log_softmax(x, axis=cax))
    w = arg_as(low, node, args, 2, dt) if _opt(args, 2) is not None else None
    wview = None
    if w is not None:
        wshape = [1] * r
        wshape[cax] = C
        wview = low.emit(op.reshape(w, wshape))
    ls = float(node.attrs["label_smoothing"])
    red = node.attrs["reduction"]
    one = scalar(low, 1.0, dt)

    if node.inputs[1].type.dtype.is_float:          # class probabilities
        p = arg_as(low, node, args, 1, dt)
        if ls > 0:
            p = low.emit(op.add(op.multiply(p, op.subtract(one, scalar(low, ls, dt))),
                                op.divide(scalar(low, ls, dt), scalar(low, float(C), dt))))
        prod = low.emit(op.multiply(logp, p))
        if wview is not None:
            prod = low.emit(op.multiply(prod, wview))
        per = low.emit(op.negative(op.sum(prod, [cax], False)))
        if red == "none" or r == 1:
            return per
        if red == "sum":
            return low.emit(op.sum(per, None, False))
        return low.emit(op.mean(per, None, False))

    nll_terms, wt, ignored = _picked(low, node, logp, args[1], w, int(node.attrs["ignore_index"]), cax, dt)
    trank = _rank(node.inputs[1])
    nll = _class_reduce(low, nll_terms, wt, red, trank)
    if ls <= 0:
        return nll
    weighted = low.emit(op.multiply(logp, wview)) if wview is not None else logp
    smooth = low.emit(op.negative(op.sum(weighted, [cax], False)))
    smooth = low.emit(op.where(ignored, scalar(low, 0.0, dt), smooth))
    ret = _class_reduce(low, smooth, wt, red, trank)
    lsv = scalar(low, ls, dt)
    return low.emit(op.add(op.multiply(op.subtract(one, lsv), nll),
                           op.multiply(ret, op.divide(lsv, scalar(low, float(C), dt)))))
