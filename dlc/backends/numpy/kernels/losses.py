"""NumPy reference kernels: loss functions, as torch.nn.functional.

`reduction` is "mean" (over all elements unless stated), "sum" or "none".
Class-index losses (nll_loss, cross_entropy) take input (N, C), (N, C, d1, ...)
or (C,) with integer targets (N,), (N, d1, ...) or (); their "mean" divides by
the summed weights of the non-ignored targets (nan when every target is
ignored, as PyTorch).
"""
from __future__ import annotations

import numpy as np

from .dtypes import as_array, as_float, quiet, result_type
from .elementwise import log_softmax

_REDUCTIONS = ("mean", "sum", "none")


def _reduce(loss: np.ndarray, reduction: str) -> np.ndarray:
    if reduction == "mean":
        return np.mean(loss, dtype=loss.dtype)
    if reduction == "sum":
        return np.sum(loss, dtype=loss.dtype)
    if reduction == "none":
        return loss
    raise ValueError(f"unknown reduction {reduction!r}; expected one of {_REDUCTIONS}")


def _pair(input, target):
    dt = result_type(input, target)
    if dt.kind != "f":
        dt = np.dtype(np.float32)
    return as_array(input, dt), as_array(target, dt)


@quiet
def mse_loss(input, target, *, reduction="mean"):
    x, t = _pair(input, target)
    d = x - t
    return _reduce(d * d, reduction)


@quiet
def l1_loss(input, target, *, reduction="mean"):
    x, t = _pair(input, target)
    return _reduce(np.abs(x - t), reduction)


@quiet
def smooth_l1_loss(input, target, *, reduction="mean", beta=1.0):
    """0.5 d^2 / beta where |d| < beta, else |d| - 0.5 beta (l1 when beta = 0)."""
    x, t = _pair(input, target)
    if beta < 0:
        raise ValueError("smooth_l1_loss: beta must be non-negative")
    ad = np.abs(x - t)
    if beta == 0:
        return _reduce(ad, reduction)
    b = x.dtype.type(beta)
    half = x.dtype.type(0.5)
    loss = np.where(ad < b, half * ad * ad / b, ad - half * b)
    return _reduce(loss, reduction)


@quiet
def binary_cross_entropy(input, target, weight=None, *, reduction="mean"):
    """-w (t log x + (1 - t) log(1 - x)) with each log clamped at -100 (torch)."""
    x, t = _pair(input, target)
    if x.size and not (np.all(x >= 0) and np.all(x <= 1)):
        raise ValueError("binary_cross_entropy: all elements of input should be between 0 and 1")
    one, floor_ = x.dtype.type(1), x.dtype.type(-100)
    log_x = np.maximum(np.log(x), floor_)
    log_1mx = np.maximum(np.log1p(-x), floor_)
    loss = (t - one) * log_1mx - t * log_x
    if weight is not None:
        loss = loss * as_array(weight, x.dtype)
    return _reduce(loss, reduction)


@quiet
def binary_cross_entropy_with_logits(input, target, weight=None, pos_weight=None, *,
                                     reduction="mean"):
    """(1 - t) x - (1 + (pos_weight - 1) t) log sigmoid(x), times weight; with
    log sigmoid(x) = min(x, 0) - log1p(e^-|x|) for stability (torch)."""
    x, t = _pair(input, target)
    one = x.dtype.type(1)
    log_sig = np.minimum(x, x.dtype.type(0)) - np.log1p(np.exp(-np.abs(x)))
    if pos_weight is not None:
        pw = as_array(pos_weight, x.dtype)
        log_sig = log_sig * ((pw - one) * t + one)
    loss = (one - t) * x - log_sig
    if weight is not None:
        loss = loss * as_array(weight, x.dtype)
    return _reduce(loss, reduction)


def _class_layout(x: np.ndarray, target: np.ndarray, op: str):
    """Class axis of input; validates that target matches input minus that axis."""
    if x.ndim == 0:
        raise ValueError(f"{op}: input must have at least one dimension")
    cax = 0 if x.ndim == 1 else 1
    expect = x.shape[:cax] + x.shape[cax + 1:]
    if target.shape != expect:
        raise ValueError(f"{op}: target shape {target.shape} does not match input shape "
                         f"{x.shape} (expected {expect})")
    return cax


def _picked(x, target, weight, ignore_index, cax, op):
    """(-w[t] * x[t] at every position with ignored ones zeroed, w[t] likewise)."""
    C = x.shape[cax]
    t = target.astype(np.int64, copy=False)
    ignored = t == ignore_index
    if np.any((~ignored) & ((t < 0) | (t >= C))):
        bad = t[(~ignored) & ((t < 0) | (t >= C))].flat[0]
        raise IndexError(f"{op}: target {bad} is out of bounds for {C} classes")
    safe = np.where(ignored, 0, t)
    vals = np.take_along_axis(x, np.expand_dims(safe, cax), axis=cax).squeeze(cax)
    if weight is not None:
        w = as_array(weight, x.dtype)
        if w.shape != (C,):
            raise ValueError(f"{op}: weight must have shape ({C},), got {w.shape}")
        wt = w[safe]
    else:
        wt = np.ones(t.shape, dtype=x.dtype)
    wt = np.where(ignored, x.dtype.type(0), wt)
    return -wt * vals, wt, ignored


@quiet
def nll_loss(input, target, weight=None, *, ignore_index=-100, reduction="mean"):
    """loss_n = -weight[t_n] * input[n, t_n]; ignored targets contribute 0 to
    the loss and to the mean's denominator (sum of weights)."""
    x = as_float(input)
    target = as_array(target)
    if target.dtype.kind not in "iu":
        raise TypeError(f"nll_loss: target must hold integer class indices, got {target.dtype}")
    cax = _class_layout(x, target, "nll_loss")
    loss, wt, _ = _picked(x, target, weight, ignore_index, cax, "nll_loss")
    if reduction == "none":
        return loss
    if reduction == "sum":
        return np.sum(loss, dtype=x.dtype)
    if reduction == "mean":
        return np.sum(loss, dtype=x.dtype) / np.sum(wt, dtype=x.dtype)
    raise ValueError(f"unknown reduction {reduction!r}; expected one of {_REDUCTIONS}")


@quiet
def cross_entropy(input, target, weight=None, *, ignore_index=-100, reduction="mean",
                  label_smoothing=0.0):
    """torch.nn.functional.cross_entropy = nll_loss(log_softmax(input)) with
    label smoothing mixed in exactly as PyTorch does:

        (1 - ls) * nll + ls / C * smooth,   smooth_n = -sum_c w_c logp[n, c]

    where ignored positions have smooth_n = 0 and the "mean" of smooth divides
    by the same denominator as nll (sum of w[t_n] over non-ignored targets, or
    their count without weights).

    Float targets of the input's shape are class probabilities (torch's other
    mode): loss_n = -sum_c w_c p[n, c] logp[n, c] with p smoothed to
    p (1 - ls) + ls / C; "mean" divides by N (the number of positions)."""
    x = as_float(input)
    target = as_array(target)
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError("cross_entropy: label_smoothing must be in [0, 1]")
    if reduction not in _REDUCTIONS:
        raise ValueError(f"unknown reduction {reduction!r}; expected one of {_REDUCTIONS}")
    if x.ndim == 0:
        raise ValueError("cross_entropy: input must have at least one dimension")
    cax = 0 if x.ndim == 1 else 1
    C = x.shape[cax]
    logp = log_softmax(x, axis=cax)
    wshape = [1] * x.ndim
    wshape[cax] = C
    w = None if weight is None else as_array(weight, x.dtype)
    if w is not None and w.shape != (C,):
        raise ValueError(f"cross_entropy: weight must have shape ({C},), got {w.shape}")
    ls = x.dtype.type(label_smoothing)
    one = x.dtype.type(1)

    if target.dtype.kind == "f":                       # class probabilities
        if target.shape != x.shape:
            raise ValueError(f"cross_entropy: probability target shape {target.shape} must "
                             f"equal input shape {x.shape}")
        p = target.astype(x.dtype, copy=False)
        if label_smoothing > 0:
            p = p * (one - ls) + ls / x.dtype.type(C)
        prod = logp * p
        if w is not None:
            prod = prod * w.reshape(wshape)
        if reduction == "none":
            return -np.sum(prod, axis=cax, dtype=x.dtype)
        total = -np.sum(prod, dtype=x.dtype)
        if reduction == "sum":
            return total
        n = x.size // C if C else 0
        return total / x.dtype.type(n) if n else x.dtype.type(np.nan)

    if target.dtype.kind not in "iu":
        raise TypeError(f"cross_entropy: target must hold class indices or probabilities, "
                        f"got {target.dtype}")
    _class_layout(x, target, "cross_entropy")
    nll_terms, wt, ignored = _picked(logp, target, w, ignore_index, cax, "cross_entropy")
    if reduction == "none":
        nll = nll_terms
    elif reduction == "sum":
        nll = np.sum(nll_terms, dtype=x.dtype)
    else:
        nll = np.sum(nll_terms, dtype=x.dtype) / np.sum(wt, dtype=x.dtype)
    if label_smoothing <= 0:
        return nll

    weighted = logp * w.reshape(wshape) if w is not None else logp
    smooth = -np.sum(weighted, axis=cax, dtype=x.dtype)
    smooth = np.where(ignored, x.dtype.type(0), smooth)
    if reduction == "none":
        ret = smooth
    elif reduction == "sum":
        ret = np.sum(smooth, dtype=x.dtype)
    else:
        ret = np.sum(smooth, dtype=x.dtype) / np.sum(wt, dtype=x.dtype)
    return (one - ls) * nll + ret * (ls / x.dtype.type(C))


@quiet
def kl_div(input, target, *, reduction="mean", log_target=False):
    """Pointwise target * (log target - input) (0 where target is 0), or
    exp(target) * (target - input) with log_target.  "batchmean" divides the
    sum by input.shape[0]; "mean" averages over all elements."""
    x, t = _pair(input, target)
    if log_target:
        loss = np.exp(t) * (t - x)
    else:
        xlogy = np.where(t == 0, x.dtype.type(0), t * np.log(t))
        xlogy = np.where(np.isnan(t), t, xlogy)
        loss = xlogy - t * x
    if reduction == "batchmean":
        total = np.sum(loss, dtype=loss.dtype)
        return total / loss.dtype.type(x.shape[0]) if x.ndim else total
    return _reduce(loss, reduction)


KERNELS = {
    "mse_loss": mse_loss, "l1_loss": l1_loss, "smooth_l1_loss": smooth_l1_loss,
    "binary_cross_entropy": binary_cross_entropy,
    "binary_cross_entropy_with_logits": binary_cross_entropy_with_logits,
    "cross_entropy": cross_entropy, "nll_loss": nll_loss, "kl_div": kl_div,
}
