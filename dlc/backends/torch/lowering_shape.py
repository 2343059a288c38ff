"""Torch lowerings of the shape ops (reshape, transpose, slices, pad, gather,
one_hot) and the operand-free constants (full, arange, randn, uniform)."""
from __future__ import annotations

import math
import numbers

from ...compiler.dims import dim as _dim
from .lowering import _call, _is_default, _register, torch_dtype


# shape ops ---------------------------------------------------------------------

def _shape_args(o, shape) -> str:
    """A shape as call arguments: ``6, -1``; ``()`` for a 0-d shape."""
    if not isinstance(shape, (list, tuple)):
        return o.r(shape)
    if len(shape) == 0:
        return "()"
    return ", ".join(o.r(d) for d in shape)


@_register("reshape")
def _(o):
    return f"{o[0]}.reshape({_shape_args(o, o.attrs['shape'])})"


@_register("expand")
def _(o):
    return f"{o[0]}.expand({_shape_args(o, o.attrs['shape'])})"


@_register("transpose")
def _(o):
    axes = o.attrs["axes"]
    if axes is None:
        r = o.rank(0)
        if r is None:
            return f"{o[0]}.permute(*reversed(range({o[0]}.dim())))"
        axes = tuple(reversed(range(r)))
    axes = tuple(axes)
    if not axes:
        return f"{o[0]}.permute(())"
    return f"{o[0]}.permute({', '.join(o.r(a) for a in axes)})"


@_register("concat")
def _(o):
    return f"torch.cat([{', '.join(o.args)}], dim={o.a('axis')})"


@_register("split", multi=True)
def _(o):
    sec, axis = o.attrs["sections"], o.a("axis")
    if isinstance(sec, (list, tuple)):
        return f"torch.split({o[0]}, {o.r(list(sec))}, dim={axis})"
    return f"torch.chunk({o[0]}, {o.r(sec)}, dim={axis})"


def _slice_part(o, b, e, s) -> str:
    # a bound may be a symbolic dimension (x[:, :T - 1]): rendered from the runtime sizes
    parts = ["" if b is None else o.r(b), "" if e is None else o.r(e)]
    text = ":".join(parts)
    if s != 1:
        text += f":{s}"
    return text


@_register("strided_slice")
def _(o):
    """x[b0:e0:s0, ...] with Python semantics; torch has no negative steps, so an
    axis walked backwards is flipped first and sliced forwards with -b-1 : -e-1."""
    lists = [o.attrs[k] for k in ("begin", "end", "strides")]
    n = max((len(v) for v in lists if v is not None), default=0)
    begin, end, strides = ([None] * n if v is None else list(v) for v in lists)
    flips, parts = [], []
    for ax, (b, e, s) in enumerate(zip(begin, end, strides)):
        s = 1 if s is None else int(s)
        if s < 0:
            flips.append(ax)
            b = None if b is None else _dim(-b - 1)
            e = None if e is None else _dim(-e - 1)
            s = -s
        parts.append(_slice_part(o, b, e, s))
    while parts and parts[-1] == ":":
        parts.pop()
    src = o[0]
    if flips:
        src += f".flip({', '.join(str(a) for a in flips)})"
    if parts:
        src += "[" + ", ".join(parts) + "]"
    return src


@_register("pad")
def _(o):
    pad = tuple(int(p) for p in o.attrs["pad"])
    mode = o.attrs["mode"]
    if mode == "constant":
        return _call("F.pad", o[0], o.r(pad), *o.kw(("value", 0.0)))
    r, k = o.rank(0), len(pad) // 2
    if r is not None and r in (k + 1, k + 2):
        return f"F.pad({o[0]}, {o.r(pad)}, mode={o.r(mode)})"
    return f"_pad({o[0]}, {o.r(pad)}, {o.r(mode)})"


@_register("gather")
def _(o):
    return f"torch.gather({o[0]}, {o.a('axis')}, {o[1]})"


@_register("scatter_add")
def _(o):
    return f"{o[0]}.scatter_add({o.a('axis')}, {o[1]}, {o[2]})"


@_register("index_select")
def _(o):
    return f"torch.index_select({o[0]}, {o.a('axis')}, {o[1]})"


for _name in ("tril", "triu"):
    _register(_name)(lambda o, _n=_name: _call(f"torch.{_n}", o[0], *o.kw(("k", 0, "diagonal"))))


@_register("one_hot")
def _(o):
    n = o.attrs["num_classes"]
    hot = _call("F.one_hot", o.long(0), "" if (isinstance(n, int) and n < 0) else o.r(n))
    dt = o.attrs["dtype"]
    return hot if torch_dtype(dt) == "torch.int64" else f"{hot}.to({torch_dtype(dt)})"


# operand-free constants ------------------------------------------------------------

def _sized(o, shape) -> str:
    """A size for torch.zeros/ones/randn/empty: ``N, 64`` or ``()``."""
    if not isinstance(shape, (list, tuple)):
        shape = (shape,)
    return _shape_args(o, tuple(shape))


@_register("full")
def _(o):
    shape, value, dt = o.attrs["shape"], o.attrs["value"], torch_dtype(o.attrs["dtype"])
    tail = f"dtype={dt}, device=device"
    if not isinstance(value, bool) and isinstance(value, numbers.Real) and value in (0, 1) \
            and not (isinstance(value, float) and math.copysign(1.0, value) < 0):
        fn = "torch.zeros" if value == 0 else "torch.ones"
        return f"{fn}({_sized(o, shape)}, {tail})"
    if not isinstance(shape, (list, tuple)):
        shape = (shape,)
    return f"torch.full({o.r(tuple(shape))}, {o.r(value)}, {tail})"


@_register("arange")
def _(o):
    start, stop, step = o.attrs["start"], o.attrs["stop"], o.attrs["step"]
    tail = f"dtype={torch_dtype(o.attrs['dtype'])}, device=device"
    if _is_default(start, 0) and _is_default(step, 1) and not isinstance(start, float):
        return f"torch.arange({o.r(stop)}, {tail})"
    return f"torch.arange({o.r(start)}, {o.r(stop)}, {o.r(step)}, {tail})"


@_register("sinusoidal_positions")
def _(o):
    return (f"_sinusoidal_positions({o.a('length')}, {o.a('dim')}, "
            f"{torch_dtype(o.attrs['dtype'])}, device)")


@_register("randn")
def _(o):
    return (f"torch.randn({_sized(o, o.attrs['shape'])}, generator=_generator(seed, {o.a('seed')}, device), "
            f"dtype={torch_dtype(o.attrs['dtype'])}, device=device)")


@_register("uniform")
def _(o):
    return (f"torch.empty({_sized(o, o.attrs['shape'])}, dtype={torch_dtype(o.attrs['dtype'])}, device=device)"
            f".uniform_({o.a('low')}, {o.a('high')}, generator=_generator(seed, {o.a('seed')}, device))")
