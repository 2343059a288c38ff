"""Torch lowerings of the network layers: convolution, pooling, normalisation,
dropout, embedding and attention."""
from __future__ import annotations

from ...compiler.ops.conv import ntuple
from .lowering import LOWERING, _call, _Lines, _register, _trim_none


# convolution and pooling -------------------------------------------------------

for _name in ("conv1d", "conv2d", "conv3d"):
    _register(_name)(lambda o, _n=_name: _call(
        f"F.{_n}", *_trim_none(o.args[:3]),
        *o.kw(("stride", 1), ("padding", 0), ("dilation", 1), ("groups", 1))))


for _name in ("conv_transpose2d", "conv_transpose3d"):
    _register(_name)(lambda o, _n=_name: _call(
        f"F.{_n}", *_trim_none(o.args[:3]),
        *o.kw(("stride", 1), ("padding", 0), ("output_padding", 0), ("groups", 1), ("dilation", 1))))


def _pool_kw(o, kind: str) -> list[str]:
    a = o.attrs
    out = []
    if a.get("stride") is not None and a["stride"] != a["kernel_size"] \
            and not (isinstance(a["stride"], (list, tuple)) and len(a["stride"]) == 0):
        out.append(f"stride={o.a('stride')}")
    out += o.kw(("padding", 0))
    if kind == "max":
        out += o.kw(("dilation", 1))
    out += o.kw(("ceil_mode", False))
    if kind == "avg":
        out += o.kw(("count_include_pad", True), ("divisor_override", None))
    return out


for _name in ("max_pool1d", "max_pool2d", "max_pool3d"):
    _register(_name)(lambda o, _n=_name: _call(f"F.{_n}", o[0], o.a("kernel_size"), *_pool_kw(o, "max")))


def _avg_pool(o, nd: int) -> str:
    a = o.attrs
    dil = ntuple(a.get("dilation", 1), nd, "dilation")
    if all(d == 1 for d in dil):
        return _call(f"F.avg_pool{nd}d", o[0], o.a("kernel_size"), *_pool_kw(o, "avg"))
    # torch's avg_pool has no dilation: a convolution with a dilated ones kernel
    k = ntuple(a["kernel_size"], nd, "kernel_size")
    s = k if a.get("stride") in (None, (), []) else ntuple(a["stride"], nd, "stride")
    args = [list(k), list(s), list(ntuple(a["padding"], nd, "padding")), list(dil), bool(a["ceil_mode"]),
            bool(a["count_include_pad"]), a.get("divisor_override")]
    return _call("_avg_pool_dilated", o[0], *(o.r(v) for v in args))


for _nd in (1, 2, 3):
    _register(f"avg_pool{_nd}d")(lambda o, _nd=_nd: _avg_pool(o, _nd))
    if _nd > 1:
        _register(f"max_pool{_nd}d_indices")(lambda o, _nd=_nd: _call(
            f"F.max_pool{_nd}d", o[0], o.a("kernel_size"), *_pool_kw(o, "max"), "return_indices=True") + "[1]")


for _name in ("adaptive_avg_pool1d", "adaptive_avg_pool2d", "adaptive_max_pool2d"):
    _register(_name)(lambda o, _n=_name: f"F.{_n}({o[0]}, {o.a('output_size')})")


@_register("adaptive_max_pool2d_indices")
def _(o):
    return f"F.adaptive_max_pool2d({o[0]}, {o.a('output_size')}, return_indices=True)[1]"


# normalisation -------------------------------------------------------------------

@_register("batch_norm")
def _(o):
    """(y, new_running_mean, new_running_var); the inputs are never modified: in
    training the running statistics are cloned and F.batch_norm updates the clones."""
    x, rm, rv, w, b = (o[i] for i in range(5))
    y, m, v = o.outs
    rest = _trim_none([w, b])
    eps = o.kw(("eps", 1e-5))
    if not o.attrs["training"]:
        call = _call("F.batch_norm", x, rm, rv, *rest, *eps)
        return _Lines(f"{y}, {m}, {v} = {call}, {rm}, {rv}")
    if rm is None and rv is None:
        call = _call("_batch_norm", x, "None", "None", *rest, "training=True", *o.kw(("momentum", 0.1)), *eps)
        return _Lines(f"{y}, {m}, {v} = {call}, None, None")
    mean = "None" if rm is None else f"{rm}.clone()"
    var = "None" if rv is None else f"{rv}.clone()"
    call = _call("_batch_norm", x, m, v, *rest, "training=True", *o.kw(("momentum", 0.1)), *eps)
    return _Lines(f"{m}, {v} = {mean}, {var}\n{y} = {call}")


@_register("layer_norm")
def _(o):
    ns = o.attrs["normalized_shape"]
    ns = tuple(ns) if isinstance(ns, (list, tuple)) else (ns,)
    return _call("_layer_norm", o[0], o.r(ns), *_trim_none([o[1], o[2]]), *o.kw(("eps", 1e-5)))


@_register("group_norm")
def _(o):
    return _call("_group_norm", o[0], o.a("num_groups"), *_trim_none([o[1], o[2]]), *o.kw(("eps", 1e-5)))


@_register("local_response_norm")
def _(o):
    return _call("F.local_response_norm", o[0], o.a("size"),
                 *o.kw(("alpha", 1e-4), ("beta", 0.75), ("k", 1.0)))


@_register("dropout")
def _(o):
    """Seeded like the NumPy backend (run seed, op seed), so the backward pass's
    dropout of the cotangent drops the same elements as the forward."""
    p, x = o.attrs["p"], o[0]
    if not o.attrs["training"] or p == 0:
        return x
    if p == 1:
        return f"{x} * 0.0"
    return f"_dropout({x}, {o.r(p)}, _generator(seed, {o.a('seed')}, {x}.device))"


@_register("embedding")
def _(o):
    return _call("F.embedding", o[0], o[1], *o.kw(("padding_idx", None)))


@_register("scatter_add_rows")
def _(o):
    idx, upd = o[0], o[1]
    return (f"{upd}.new_zeros({o.a('num_rows')}, {upd}.shape[-1])"
            f".index_add(0, {idx}.reshape(-1), {upd}.reshape(-1, {upd}.shape[-1]))")


@_register("scaled_dot_product_attention")
def _(o):
    mask = f"attn_mask={o[3]}" if o[3] is not None else ""
    return _call("F.scaled_dot_product_attention", o[0], o[1], o[2], mask,
                 *o.kw(("is_causal", False), ("scale", None)))


# channels last ---------------------------------------------------------------------

def _channels_last(lower):
    """The NCHW lowering of a ``layout="NHWC"`` op, between permutes: the
    operand goes to NCHW, the first result comes back to NHWC."""
    def wrapped(args, attrs, out_names, *, dims=None, in_types=None):
        if attrs.get("layout", "NCHW") == "NCHW":
            return lower(args, attrs, out_names, dims=dims, in_types=in_types)
        args = [f"{args[0]}.permute(0, 3, 1, 2)"] + list(args[1:])
        if in_types is not None:
            t = in_types[0]
            in_types = [t.with_shape((t.shape[0], t.shape[3], t.shape[1], t.shape[2]))] + list(in_types[1:])
        body = lower(args, {**attrs, "layout": "NCHW"}, out_names, dims=dims, in_types=in_types)
        y = out_names[0]
        return f"{body}\n{y} = {y}.permute(0, 2, 3, 1)"
    wrapped.__name__, wrapped.__doc__ = lower.__name__, lower.__doc__
    return wrapped


for _name in ("conv2d", "max_pool2d", "avg_pool2d", "adaptive_avg_pool2d", "batch_norm"):
    LOWERING[_name] = _channels_last(LOWERING[_name])


# resampling ------------------------------------------------------------------------

@_register("interpolate")
def _(o):
    # TorchScript's F.interpolate takes size as int or List[int] and scale_factor
    # as float or List[float]: write lists, and floats for integer factors
    size, factor = o.attrs["size"], o.attrs["scale_factor"]
    parts = []
    if size is not None:
        parts.append(f"size={o.r(list(size) if isinstance(size, (list, tuple)) else size)}")
    if factor is not None:
        factor = [float(f) for f in factor] if isinstance(factor, (list, tuple)) else float(factor)
        parts.append(f"scale_factor={o.r(factor)}")
    return _call("F.interpolate", o[0], *parts, f"mode={o.a('mode')}",
                 *o.kw(("align_corners", None), ("recompute_scale_factor", None)))


# pixel_shuffle/pixel_unshuffle as unflatten, permute, flatten: the sizes are read
# at run time (the decomposition's reshapes need every dimension named, which the
# generated module cannot do for a symbolic batch), and F.pixel_shuffle took 2.6x
# the decomposition's time (F.pixel_unshuffle 1.8x) where this takes 1.0x
# (bench/bench_activations.py --ops pixel_shuffle,pixel_unshuffle --shape 16,64,64,64)
@_register("pixel_shuffle")
def _(o):
    r, k = int(o.attrs["upscale_factor"]), o.rank(0) - 3
    perm = tuple(range(k)) + tuple(k + i for i in (0, 3, 1, 4, 2))     # (..., C, H, r, W, r)
    return f"{o[0]}.unflatten(-3, (-1, {r}, {r})).permute{perm}.flatten(-4, -3).flatten(-2, -1)"


@_register("pixel_unshuffle")
def _(o):
    r, k = int(o.attrs["downscale_factor"]), o.rank(0) - 3
    perm = tuple(range(k)) + tuple(k + i for i in (0, 2, 4, 1, 3))     # (..., C, r, r, H, W)
    return f"{o[0]}.unflatten(-1, (-1, {r})).unflatten(-3, (-1, {r})).permute{perm}.flatten(-5, -3)"
