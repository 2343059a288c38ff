"""Loss functions, as torch.nn.functional: a scalar unless reduction="none"."""
from __future__ import annotations

from ...errors import ShapeError
from ..types import TensorType, fmt_shape
from .common import broadcast_shapes, promote, require_float, require_int, same_dim
from .registry import LOSS, defop

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
      attrs={"ignore_index": -100, "reduction": "mean", "label_smoothing": 0.0}, groups={LOSS},
      doc="log_softmax over the class axis (1) followed by nll_loss; targets are indices or probabilities.")
defop("nll_loss", "input target weight?", _classification("nll_loss"),
      attrs={"ignore_index": -100, "reduction": "mean"}, groups={LOSS},
      doc="Negative log-likelihood of class indices given log-probabilities.")
