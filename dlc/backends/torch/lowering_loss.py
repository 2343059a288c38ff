"""Torch lowerings of the losses (mse, l1, smooth_l1, binary cross-entropy,
kl_div, cross_entropy, nll)."""
from __future__ import annotations

from ...compiler.types import DType
from .lowering import _call, _register, _trim_none


# losses ------------------------------------------------------------------------------

_RED = ("reduction", "mean")
for _name in ("mse_loss", "l1_loss"):
    _register(_name)(lambda o, _n=_name: _call(f"F.{_n}", o[0], o[1], *o.kw(_RED)))


@_register("smooth_l1_loss")
def _(o):
    return _call("F.smooth_l1_loss", o[0], o[1], *o.kw(_RED, ("beta", 1.0)))


@_register("binary_cross_entropy")
def _(o):
    return _call("F.binary_cross_entropy", *_trim_none(o.args[:3]), *o.kw(_RED))


@_register("binary_cross_entropy_with_logits")
def _(o):
    return _call("F.binary_cross_entropy_with_logits", *_trim_none(o.args[:3]),
                 f"pos_weight={o[3]}" if o[3] is not None else "", *o.kw(_RED))


@_register("kl_div")
def _(o):
    # reduction="mean" averages over every element; torch warns that this is
    # not the true KL divergence, so it is spelled out
    lt = o.kw(("log_target", False))
    if o.attrs["reduction"] == "mean":
        return _call("F.kl_div", o[0], o[1], 'reduction="none"', *lt) + ".mean()"
    return _call("F.kl_div", o[0], o[1], *o.kw(_RED), *lt)


def _target(o) -> str:
    """Class-index targets as int64 (torch rejects int32), probabilities as they are."""
    t = o.type(1)
    if t is None:
        return f"({o[1]} if {o[1]}.is_floating_point() else {o[1]}.long())"
    if t.dtype.is_int and t.dtype != DType.i64:
        return f"{o[1]}.long()"
    return o[1]


@_register("cross_entropy")
def _(o):
    return _call("F.cross_entropy", o[0], _target(o), *_trim_none(o.args[2:3]),
                 *o.kw(("ignore_index", -100), _RED, ("label_smoothing", 0.0)))


@_register("nll_loss")
def _(o):
    return _call("F.nll_loss", o[0], _target(o), *_trim_none(o.args[2:3]),
                 *o.kw(("ignore_index", -100), _RED))
