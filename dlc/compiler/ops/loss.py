"""Loss functions, as torch.nn.functional: a scalar unless reduction="none"."""
from __future__ import annotations

from ...errors import ShapeError
from ..types import TensorType, fmt_shape
from .common import broadcast_shapes, promote, require_float, require_int, same_dim
from .registry import CLASS_INDEX_TARGET, LOSS, defop

_REDUCTIONS = ("mean", "sum", "none")


def _reduced(name: str, attrs: dict, t: TensorType, shape: tuple, allowed=_REDUCTIONS) -> TensorType:
    r = attrs["reduction"]
    if r not in allowed:
        raise ShapeError(f"{name}: reduction must be one of {', '.join(repr(a) for a in allowed)}, got {r!r}",
                         "'mean' averages, 'sum' adds, 'none' keeps one loss per element")
    return TensorType(t.dtype, tuple(shape) if r == "none" else ())


def _same_shape(a: TensorType, b: TensorType, name: str, wa="input", wb="target") -> None:
    msg = f"{name}: {wa} {a} and {wb} {b} have different shapes"
    hint = f"the {wb} must have the {wa}'s shape {fmt_shape(a.shape)}"
    if a.rank != b.rank:
        raise ShapeError(msg, hint)
    for x, y in zip(a.shape, b.shape):
        same_dim(x, y, msg, hint)


def _broadcasts_to(w, target: TensorType, what: str, name: str) -> None:
    if w is None:
        return
    promote(target.dtype, w.dtype, name)
    try:
        got = broadcast_shapes(w.shape, target.shape, name)
    except ShapeError:
        got = None
    if got is None or len(got) != target.rank or any(a != b for a, b in zip(got, target.shape)):
        raise ShapeError(f"{name}: {what} {w} does not broadcast to input {target}",
                         f"give {what} a shape broadcastable to {fmt_shape(target.shape)}")


def _pointwise(name: str, need_beta: bool = False, allowed=_REDUCTIONS):
    def infer(ts, attrs):
        inp, tgt = ts[0], ts[1]
        require_float(inp, name)
        promote(inp.dtype, tgt.dtype, name)
        _same_shape(inp, tgt, name)
        if need_beta:
            b = attrs["beta"]
            if isinstance(b, bool) or not isinstance(b, (int, float)) or b < 0:
                raise ShapeError(f"{name}: beta must be a non-negative number, got {b!r}")
        if name == "binary_cross_entropy":
            _broadcasts_to(ts[2] if len(ts) > 2 else None, inp, "weight", name)
        if name == "binary_cross_entropy_with_logits":
            _broadcasts_to(ts[2] if len(ts) > 2 else None, inp, "weight", name)
            _broadcasts_to(ts[3] if len(ts) > 3 else None, inp, "pos_weight", name)
        return _reduced(name, attrs, inp, inp.shape, allowed)
    return infer


defop("mse_loss", "input target", _pointwise("mse_loss"), attrs={"reduction": "mean"}, groups={LOSS},
      doc="Mean squared error.")
defop("l1_loss", "input target", _pointwise("l1_loss"), attrs={"reduction": "mean"}, groups={LOSS},
      doc="Mean absolute error.")
defop("smooth_l1_loss", "input target", _pointwise("smooth_l1_loss", need_beta=True),
      attrs={"reduction": "mean", "beta": 1.0}, groups={LOSS},
      doc="Huber-like loss: quadratic below beta, linear above.")
defop("binary_cross_entropy", "input target weight?", _pointwise("binary_cross_entropy"),
      attrs={"reduction": "mean"}, groups={LOSS}, doc="BCE on probabilities in [0, 1].")
defop("binary_cross_entropy_with_logits", "input target weight? pos_weight?",
      _pointwise("binary_cross_entropy_with_logits"), attrs={"reduction": "mean"}, groups={LOSS},
      doc="BCE on logits (sigmoid fused in, numerically stable).")
defop("kl_div", "input target", _pointwise("kl_div", allowed=_REDUCTIONS + ("batchmean",)),
      attrs={"reduction": "mean", "log_target": False}, groups={LOSS},
      doc="KL divergence with `input` given as log-probabilities.")


def _classification(name: str):
    def infer(ts, attrs):
        inp, tgt = ts[0], ts[1]
        weight = ts[2] if len(ts) > 2 else None
        require_float(inp, name)
        if inp.rank == 0:
            raise ShapeError(f"{name}: input must be (C,), (N, C) or (N, C, d...), got {inp}")
        cdim = 0 if inp.rank == 1 else 1
        c = inp.shape[cdim]
        per_elem = inp.shape[:cdim] + inp.shape[cdim + 1:]
        probs = name == "cross_entropy" and tgt.dtype.is_float
        if probs:
            promote(inp.dtype, tgt.dtype, name)
            _same_shape(inp, tgt, name)
        else:
            if not tgt.dtype.is_int:
                require_int(tgt, name, "class-index targets")
            msg = (f"{name}: target {tgt} does not match input {inp}: class-index targets need shape "
                   f"{fmt_shape(per_elem)} (the input without its class dimension {cdim})")
            hint = "targets hold one class index per sample" + (
                "; for probability targets use a float tensor shaped like the input" if name == "cross_entropy" else "")
            if tgt.rank != len(per_elem):
                raise ShapeError(msg, hint)
            for a, b in zip(per_elem, tgt.shape):
                same_dim(a, b, msg, hint)
        if weight is not None:
            promote(inp.dtype, weight.dtype, name)
            if weight.rank != 1:
                raise ShapeError(f"{name}: weight {weight} must be 1-D with one entry per class of {inp}")
            same_dim(weight.shape[0], c, f"{name}: weight {weight} does not have one entry per class of "
                                         f"input {inp} ({c} classes)", f"give weight the shape [{c}]")
        ii = attrs["ignore_index"]
        if isinstance(ii, bool) or not isinstance(ii, int):
            raise ShapeError(f"{name}: ignore_index must be an int, got {ii!r}")
        if name == "cross_entropy":
            ls = attrs["label_smoothing"]
            if isinstance(ls, bool) or not isinstance(ls, (int, float)) or not 0.0 <= ls <= 1.0:
                raise ShapeError(f"cross_entropy: label_smoothing must lie in [0, 1], got {ls!r}")
        return _reduced(name, attrs, inp, per_elem)
    return infer


defop("cross_entropy", "input target weight?", _classification("cross_entropy"),
      attrs={"ignore_index": -100, "reduction": "mean", "label_smoothing": 0.0},
      groups={LOSS, CLASS_INDEX_TARGET},
      doc="log_softmax over the class axis (1) followed by nll_loss; targets are indices or probabilities.")
defop("nll_loss", "input target weight?", _classification("nll_loss"),
      attrs={"ignore_index": -100, "reduction": "mean"}, groups={LOSS, CLASS_INDEX_TARGET},
      doc="Negative log-likelihood of class indices given log-probabilities.")


# ---------------------------------------------------------------- VJP rules
# Targets of float dtype get gradients too (class-index targets: None).  Weights
# and pos_weight get the exact gradient of the loss as the NumPy kernel defines
# it (PyTorch leaves the weight of nll_loss / binary_cross_entropy underivable).
from .reduce import count_value  # noqa: E402
from .registry import defvjp  # noqa: E402
from .vjp_util import as_float, scalar, sum_to  # noqa: E402


def _elementwise_ct(b, node, g, shape):
    """The cotangent of each element's loss, from the reduced loss's cotangent."""
    r = node.attrs["reduction"]
    if r == "none":
        return g
    if r == "mean":
        g = b.op("div", g, count_value(b, shape, g))
    elif r == "batchmean" and len(shape):
        g = b.op("div", g, count_value(b, shape[:1], g))
    return g if tuple(shape) == g.type.shape else b.op("expand", g, shape=tuple(shape))


def _float_or_none(v):
    return v is not None and v.type.dtype.is_float


def _mul(b, *xs):
    out = None
    for x in xs:
        if x is not None:
            out = x if out is None else b.op("mul", out, x)
    return out


@defvjp("mse_loss")
def _(b, node, g):
    x, t = node.inputs
    gx = _mul(b, _elementwise_ct(b, node, g[0], x.type.shape), b.op("sub", x, t), scalar(b, 2.0, x))
    return [gx, b.op("neg", gx) if _float_or_none(t) else None]


def _l1_like(b, node, g, slope):
    x, t = node.inputs
    gx = b.op("mul", _elementwise_ct(b, node, g[0], x.type.shape), slope)
    return [gx, b.op("neg", gx) if _float_or_none(t) else None]


@defvjp("l1_loss")
def _(b, node, g):
    x, t = node.inputs
    return _l1_like(b, node, g, b.op("sign", b.op("sub", x, t)))


@defvjp("smooth_l1_loss")
def _(b, node, g):
    x, t = node.inputs
    d = b.op("sub", x, t)
    beta = float(node.attrs["beta"])
    slope = b.op("sign", d)
    if beta > 0:
        slope = b.op("where", b.op("lt", b.op("abs", d), scalar(b, beta, x)),
                     b.op("div", d, scalar(b, beta, x)), slope)
    return _l1_like(b, node, g, slope)


def _clamped_log(b, v):
    return b.op("maximum", b.op("log", v), scalar(b, -100.0, v))


@defvjp("binary_cross_entropy")
def _(b, node, g):
    # loss = -w (t log x + (1 - t) log(1 - x)), logs clamped at -100 (torch);
    # d/dx = w (x - t) / max(x (1 - x), 1e-12) as torch's backward
    x, t = node.inputs[0], node.inputs[1]
    w = node.inputs[2] if len(node.inputs) > 2 else None
    ge = _elementwise_ct(b, node, g[0], x.type.shape)
    gw_ = _mul(b, ge, w)
    one = scalar(b, 1.0, x)
    one_minus = b.op("sub", one, x)
    denom = b.op("maximum", b.op("mul", x, one_minus), scalar(b, 1e-12, x))
    gx = b.op("div", _mul(b, gw_, b.op("sub", x, t)), denom)
    log_x, log_1mx = _clamped_log(b, x), _clamped_log(b, one_minus)
    gt = _mul(b, gw_, b.op("sub", log_1mx, log_x)) if _float_or_none(t) else None
    gw = None
    if _float_or_none(w):
        loss = b.op("sub", b.op("mul", b.op("sub", t, one), log_1mx), b.op("mul", t, log_x))
        gw = sum_to(b, b.op("mul", ge, loss), w.type.shape)
    return [gx, gt, gw]


@defvjp("binary_cross_entropy_with_logits")
def _(b, node, g):
    # loss = w ((1 - t) x - lw log sigmoid(x)),  lw = 1 + (pos_weight - 1) t
    x, t = node.inputs[0], node.inputs[1]
    w = node.inputs[2] if len(node.inputs) > 2 else None
    pw = node.inputs[3] if len(node.inputs) > 3 else None
    ge = _elementwise_ct(b, node, g[0], x.type.shape)
    gw_ = _mul(b, ge, w)
    one = scalar(b, 1.0, x)
    log_sig = b.op("sub", b.op("minimum", x, scalar(b, 0.0, x)),
                   b.op("log1p", b.op("exp", b.op("neg", b.op("abs", x)))))
    one_minus_t = b.op("sub", one, t)
    if pw is not None:
        pw_m1 = b.op("sub", pw, one)
        lw = b.op("add", b.op("mul", pw_m1, t), one)
    else:
        lw = None
    # d/dx: (1 - t) - lw sigmoid(-x)
    sig_neg = b.op("sigmoid", b.op("neg", x))
    dx = b.op("sub", one_minus_t, _mul(b, lw, sig_neg))
    gx = b.op("mul", gw_, dx)
    if gx.type.shape != x.type.shape:
        gx = b.op("expand", gx, shape=x.type.shape)
    gt = None
    if _float_or_none(t):
        dt = b.op("neg", x) if pw is None else b.op("sub", b.op("neg", x), b.op("mul", pw_m1, log_sig))
        gt = sum_to(b, b.op("mul", gw_, dt), t.type.shape)
    gw = None
    if _float_or_none(w):
        loss = b.op("sub", b.op("mul", one_minus_t, x), _mul(b, lw, log_sig) if lw is not None else log_sig)
        gw = sum_to(b, b.op("mul", ge, loss), w.type.shape)
    gpw = None
    if _float_or_none(pw):
        gpw = sum_to(b, b.op("neg", _mul(b, gw_, t, log_sig)), pw.type.shape)
    return [gx, gt, gw, gpw]


@defvjp("kl_div")
def _(b, node, g):
    x, t = node.inputs
    ge = _elementwise_ct(b, node, g[0], x.type.shape)
    if node.attrs["log_target"]:
        # loss = exp(t) (t - x)
        et = b.op("exp", t)
        gx = b.op("neg", b.op("mul", ge, et))
        gt = _mul(b, ge, et, b.op("add", b.op("sub", t, x), scalar(b, 1.0, x)))
    else:
        # loss = t log t - t x (0 where t == 0)
        gx = b.op("neg", b.op("mul", ge, t))
        zero = b.op("eq", t, scalar(b, 0.0, t))
        safe = b.op("where", zero, scalar(b, 1.0, t), t)
        d = b.op("sub", b.op("add", b.op("log", safe), scalar(b, 1.0, x)), x)
        gt = b.op("mul", ge, b.op("where", zero, scalar(b, 0.0, x), d))
    return [gx, gt if _float_or_none(t) else None]


# class-index losses ------------------------------------------------------------
def _cls_layout(x):
    r = x.type.rank
    cax = 0 if r == 1 else 1
    return r, cax, x.type.shape[cax], x.type.shape[:cax] + x.type.shape[cax + 1:]


def _at_class_axis(b, v, cax, rank):
    """A per-class vector (C,) shaped to broadcast along the class axis."""
    shape = (1,) * cax + v.type.shape + (1,) * (rank - cax - 1)
    return v if shape == v.type.shape else b.op("reshape", v, shape=shape)


def _unsqueeze_class(b, v, cax):
    """A per-position value (input shape without the class axis) with the class axis as 1."""
    shape = v.type.shape[:cax] + (1,) + v.type.shape[cax:]
    return b.op("reshape", v, shape=shape)


def _others(cax, rank):
    return tuple(i for i in range(rank) if i != cax)


def _sum_over(b, v, axes):
    return b.op("sum", v, axis=axes, keepdims=False) if axes else v


def _index_loss_vjp(b, node, g, smoothing: float, log_probs_of_input: bool):
    """nll_loss (and cross_entropy with class indices, on log_softmax(x)).

    loss_n = valid_n [(1 - ls) (-w[t_n] logp[n, t_n]) + ls / C (-sum_c w_c logp[n, c])],
    "mean" divides the sum by D = sum_n valid_n w[t_n].
    """
    x, t = node.inputs[0], node.inputs[1]
    w = node.inputs[2] if len(node.inputs) > 2 else None
    r, cax, C, per = _cls_layout(x)
    idt = t.type.dtype.numpy_name
    valid = b.op("ne", t, b.op("full", shape=(), value=node.attrs["ignore_index"], dtype=idt))
    safe = b.op("where", valid, t, b.op("full", shape=(), value=0, dtype=idt))
    onehot = b.op("one_hot", safe, num_classes=C, dtype=x.type.dtype.numpy_name)
    if r > 2:
        onehot = b.op("transpose", onehot, axes=(0, r - 1) + tuple(range(1, r - 1)))
    validf = as_float(b, valid, x)
    wc = None if w is None else _at_class_axis(b, w, cax, r)
    picked_w = _mul(b, onehot, wc)                                   # w[t] one-hot
    red = node.attrs["reduction"]
    gy = g[0]
    denom = None
    if red == "mean":
        wt = _sum_over(b, picked_w, (cax,))                          # w[t_n]
        denom = b.op("sum", b.op("mul", wt, validf), axis=None, keepdims=False)
        gy = b.op("div", gy, denom)
    if red != "none" and per:
        gy = b.op("expand", gy, shape=per)
    a = b.op("mul", gy, validf)                                      # per-position cotangent
    A = _unsqueeze_class(b, a, cax)
    ls = float(smoothing)
    # dL/dlogp
    glogp = b.op("neg", b.op("mul", A, picked_w))
    if ls > 0:
        inv_c = b.op("div", scalar(b, ls, x), count_value(b, (C,), x))
        smooth = _mul(b, A, wc, inv_c)
        glogp = b.op("sub", b.op("mul", glogp, scalar(b, 1.0 - ls, x)), smooth)
        if glogp.type.shape != x.type.shape:
            glogp = b.op("expand", glogp, shape=x.type.shape)
    if log_probs_of_input:
        gx = glogp
    else:       # through log_softmax
        p = b.op("softmax", x, axis=cax)
        gx = b.op("sub", glogp, b.op("mul", p, b.op("sum", glogp, axis=cax, keepdims=True)))
    gw = None
    if _float_or_none(w):
        logp = x if log_probs_of_input else b.op("log_softmax", x, axis=cax)
        # d numerator / d w_c = sum_n valid_n (-(1 - ls) onehot_nc - ls / C) logp_nc
        coef = b.op("mul", onehot, scalar(b, 1.0 - ls, x)) if ls > 0 else onehot
        if ls > 0:
            coef = b.op("add", coef, b.op("div", scalar(b, ls, x), count_value(b, (C,), x)))
        gw = b.op("neg", _sum_over(b, _mul(b, A, coef, logp), _others(cax, r)))
        if red == "mean":
            # quotient rule: the denominator D = sum_n valid_n w[t_n] also depends on w
            count = _sum_over(b, b.op("mul", onehot, _unsqueeze_class(b, validf, cax)), _others(cax, r))
            scale = b.op("div", b.op("mul", g[0], node.outputs[0]), denom)
            gw = b.op("sub", gw, b.op("mul", scale, count))
    return [gx, None, gw]


@defvjp("nll_loss")
def _(b, node, g):
    return _index_loss_vjp(b, node, g, 0.0, True)


@defvjp("cross_entropy")
def _(b, node, g):
    x, t = node.inputs[0], node.inputs[1]
    if not t.type.dtype.is_float:
        return _index_loss_vjp(b, node, g, node.attrs["label_smoothing"], False)
    # class probabilities: loss_n = -sum_c w_c p'_nc logp_nc, p' = t (1 - ls) + ls / C;
    # "mean" divides by the number of positions
    w = node.inputs[2] if len(node.inputs) > 2 else None
    r, cax, C, per = _cls_layout(x)
    ls = float(node.attrs["label_smoothing"])
    wc = None if w is None else _at_class_axis(b, w, cax, r)
    p_t = t
    if ls > 0:
        p_t = b.op("add", b.op("mul", t, scalar(b, 1.0 - ls, x)),
                   b.op("div", scalar(b, ls, x), count_value(b, (C,), x)))
    gy = g[0]
    if node.attrs["reduction"] == "mean":
        gy = b.op("div", gy, count_value(b, per, x))
    if node.attrs["reduction"] != "none" and per:
        gy = b.op("expand", gy, shape=per)
    A = _unsqueeze_class(b, gy, cax) if r > 1 else gy
    logp = b.op("log_softmax", x, axis=cax)
    glogp = b.op("neg", _mul(b, A, p_t, wc))
    gx = b.op("sub", glogp, b.op("mul", b.op("softmax", x, axis=cax),
                                 b.op("sum", glogp, axis=cax, keepdims=True)))
    gt = b.op("neg", _mul(b, A, wc, logp, scalar(b, 1.0 - ls, x) if ls > 0 else None))
    gw = None
    if _float_or_none(w):
        gw = b.op("neg", _sum_over(b, _mul(b, A, p_t, logp), _others(cax, r)))
    return [gx, gt, gw]
