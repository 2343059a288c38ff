"""Torch lowerings of the reductions (sum, mean, max, var, prod, argmax, ...)."""
from __future__ import annotations

from .lowering import _call, _register, render


# reductions --------------------------------------------------------------------

def _axes_attr(axis):
    """None, or a tuple of ints (a one-element list/tuple becomes its int)."""
    if axis is None:
        return None
    if isinstance(axis, (list, tuple)):
        axis = tuple(int(a) for a in axis)
        return axis[0] if len(axis) == 1 else axis
    return int(axis)


def _all_dims(o) -> str:
    r = o.rank(0)
    return render(tuple(range(r))) if r is not None else f"tuple(range({o[0]}.dim()))"


def _reduction(fn: str, needs_dim: bool = False, extra=()):
    def lower(o):
        axis, keep = _axes_attr(o.attrs["axis"]), bool(o.attrs["keepdims"])
        kws = o.kw(*extra)
        if axis is None and not keep:
            dim = [f"dim={_all_dims(o)}"] if needs_dim else []
        elif axis is None:
            dim = [f"dim={_all_dims(o)}", "keepdim=True"]
        else:
            dim = [f"dim={render(axis)}"] + (["keepdim=True"] if keep else [])
        return _call(fn, o[0], *dim, *kws)
    return lower


_register("sum")(_reduction("torch.sum"))
_register("mean")(_reduction("torch.mean"))
_register("max")(_reduction("torch.amax"))
_register("min")(_reduction("torch.amin"))
_register("logsumexp")(_reduction("torch.logsumexp", needs_dim=True))
_register("var")(_reduction("torch.var", extra=[("correction", 1)]))
_register("std")(_reduction("torch.std", extra=[("correction", 1)]))


@_register("prod")
def _(o):
    """torch.prod takes one dim: several axes are reduced one after the other."""
    x, axis, keep = o[0], _axes_attr(o.attrs["axis"]), bool(o.attrs["keepdims"])
    if axis is None:
        if not keep:
            return f"torch.prod({x})"
        r = o.rank(0)
        ones = render((1,) * r) if r is not None else f"[1] * {x}.dim()"
        return f"torch.prod({x}).reshape({ones})"
    if isinstance(axis, int):
        return f"torch.prod({x}, dim={axis}" + (", keepdim=True)" if keep else ")")
    r = o.rank(0)
    if r is not None:
        # innermost first, so the remaining axis numbers stay valid
        out = x
        for a in sorted((a % r for a in axis), reverse=True):
            out += f".prod({a}" + (", keepdim=True)" if keep else ")")
        return out
    out = x + "".join(f".prod({a}, keepdim=True)" for a in axis)
    return out if keep else f"{out}.squeeze({render(axis)})"


for _name in ("argmax", "argmin"):
    def _arg(o, _n=_name):
        axis, keep = _axes_attr(o.attrs["axis"]), bool(o.attrs["keepdims"])
        if isinstance(axis, tuple):
            raise TypeError(f"{_n} takes a single axis, got {axis!r}")
        parts = [] if axis is None else [f"dim={axis}"]
        return _call(f"torch.{_n}", o[0], *parts, "keepdim=True" if keep else "")
    _register(_name)(_arg)
