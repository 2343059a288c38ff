"""Convolutions and pooling, with PyTorch's argument conventions.

conv1d/conv2d take weights (Cout, Cin/groups, k...), conv_transpose2d takes
(Cin, Cout/groups, kh, kw).  Inputs are batched: (N, C, L) or (N, C, H, W);
pools also accept the unbatched (C, ...) form, as torch does.
"""
from __future__ import annotations

import numbers

from ...errors import ShapeError
from ..dims import Dim, add, known_equal, mul, prod, sub
from ..types import TensorType
from .common import conv_out, pair, promote, require_float, same_dim
from .registry import CONV, POOL, defop, required

_SPATIAL = {1: "L", 2: "H, W"}


# attribute normalisation, shared by every backend's convolution and pooling
def ntuple(value, n: int, name: str) -> tuple[int, ...]:
    """Expand an int (or a 1-element sequence, as torch allows) to an n-tuple."""
    if isinstance(value, numbers.Integral):
        return (int(value),) * n
    items = tuple(int(v) for v in value)
    if len(items) == 1:
        return items * n
    if len(items) != n:
        raise ValueError(f"{name} must be an int or a {n}-tuple, got {value!r}")
    return items


def conv_pads(padding, nd: int, kernel, dilation, stride) -> tuple[tuple[int, int], ...]:
    """Resolve torch's conv ``padding`` (int, tuple, "valid", "same") to (lo, hi) pairs."""
    if isinstance(padding, str):
        if padding == "valid":
            return ((0, 0),) * nd
        if padding == "same":
            # torch rejects "same" for strided convs: the output size would be ambiguous.
            if any(s != 1 for s in stride):
                raise ValueError("padding='same' is not supported for strided convolutions")
            pads = []
            for k, d in zip(kernel, dilation):
                total = d * (k - 1)
                # torch puts the odd extra element on the high side.
                pads.append((total // 2, total - total // 2))
            return tuple(pads)
        raise ValueError(f"invalid padding string {padding!r}; expected 'valid' or 'same'")
    return tuple((p, p) for p in ntuple(padding, nd, "padding"))


def _ints(v, n: int, what: str, opname: str, minimum: int = 0) -> tuple[int, ...]:
    vals = pair(v, n, f"{opname}: {what}")
    for x in vals:
        if isinstance(x, bool) or not isinstance(x, int) or x < minimum:
            kind = "positive" if minimum > 0 else "non-negative"
            raise ShapeError(f"{opname}: {what} must be {kind} int(s), got {v!r}",
                             f"give an int or {n} ints, each >= {minimum}")
    return tuple(vals)


def _kernel(w: TensorType, nd: int, opname: str) -> tuple[int, ...]:
    ks = w.shape[2:]
    if not all(isinstance(k, int) and k > 0 for k in ks):
        raise ShapeError(f"{opname}: the kernel size of weight {w} must be known positive ints")
    return tuple(ks)


def _conv_common(ts, opname: str, nd: int):
    x, w = ts[0], ts[1]
    b = ts[2] if len(ts) > 2 else None
    require_float(x, opname)
    promote(x.dtype, w.dtype, opname)
    if x.rank != nd + 2:
        raise ShapeError(f"{opname} expects a rank-{nd + 2} input (N, C, {_SPATIAL[nd]}), got {x}",
                         "add a batch dimension" if x.rank == nd + 1 else None)
    if w.rank != nd + 2:
        raise ShapeError(f"{opname} expects a rank-{nd + 2} weight, got {w} (input {x})",
                         f"the weight is (out_channels, in_channels/groups, {'k' if nd == 1 else 'kh, kw'})")
    return x, w, b


def _check_groups(groups, opname: str):
    if isinstance(groups, bool) or not isinstance(groups, int) or groups <= 0:
        raise ShapeError(f"{opname}: groups must be a positive int, got {groups!r}")


def _divides(d, groups: int, what: str, t: TensorType, opname: str):
    if Dim.of(d).exact_div(groups) is None:
        raise ShapeError(f"{opname}: {what} {d} of {t} is not divisible by groups={groups}",
                         "channels must be a multiple of groups")


def _check_bias(b, cout, opname: str, w: TensorType):
    if b is not None and (b.rank != 1 or known_equal(b.shape[0], cout) is not True):
        raise ShapeError(f"{opname}: bias {b} does not match the {cout} output channels of weight {w}",
                         f"the bias must have shape [{cout}]")


def _conv(nd: int):
    name = f"conv{nd}d"

    def infer(ts, attrs):
        x, w, b = _conv_common(ts, name, nd)
        groups = attrs["groups"]
        _check_groups(groups, name)
        stride = _ints(attrs["stride"], nd, "stride", name, 1)
        dilation = _ints(attrs["dilation"], nd, "dilation", name, 1)
        padding = attrs["padding"]
        if isinstance(padding, str):
            if padding not in ("valid", "same"):
                raise ShapeError(f"{name}: padding must be an int, a pair, 'valid' or 'same', got {padding!r}")
            if padding == "same" and any(s != 1 for s in stride):
                raise ShapeError(f"{name}: padding='same' needs stride 1, got stride={attrs['stride']!r}",
                                 "use explicit padding with strided convolutions")
        else:
            padding = _ints(padding, nd, "padding", name)
        cin, cout = x.shape[1], w.shape[0]
        expect = mul(w.shape[1], groups)
        same_dim(cin, expect,
                 f"{name}: input {x} has {cin} channels but weight {w} expects {expect} "
                 f"(weight.shape[1]={w.shape[1]} x groups={groups})",
                 f"set the layer's in_channels to {cin}, or make the previous layer produce {expect} channels")
        _divides(cin, groups, "in_channels", x, name)
        _divides(cout, groups, "out_channels", w, name)
        _check_bias(b, cout, name, w)
        ks = _kernel(w, nd, name)
        spatial = x.shape[2:]
        if padding == "same":
            out = spatial
        else:
            pads = (0,) * nd if padding == "valid" else padding
            out = tuple(conv_out(spatial[i], ks[i], stride[i], pads[i], dilation[i], f"{name} (input {x}, weight {w})")
                        for i in range(nd))
        return TensorType(x.dtype, (x.shape[0], cout) + tuple(out))

    return infer


def _conv_macs(ins, outs, attrs):
    w = ins[1]
    return mul(mul(prod(outs[0].shape), w.shape[1]), prod(w.shape[2:]))


_CONV_ATTRS = {"stride": 1, "padding": 0, "dilation": 1, "groups": 1}
defop("conv1d", "x weight bias?", _conv(1), attrs=_CONV_ATTRS, macs=_conv_macs, groups={CONV},
      doc="1-D cross-correlation, torch.nn.functional.conv1d.")
defop("conv2d", "x weight bias?", _conv(2), attrs=_CONV_ATTRS, macs=_conv_macs, groups={CONV},
      doc="2-D cross-correlation, torch.nn.functional.conv2d.")


def _conv_transpose2d(ts, attrs):
    name = "conv_transpose2d"
    x, w, b = _conv_common(ts, name, 2)
    groups = attrs["groups"]
    _check_groups(groups, name)
    stride = _ints(attrs["stride"], 2, "stride", name, 1)
    padding = _ints(attrs["padding"], 2, "padding", name)
    outpad = _ints(attrs["output_padding"], 2, "output_padding", name)
    dilation = _ints(attrs["dilation"], 2, "dilation", name, 1)
    for op_, s, d in zip(outpad, stride, dilation):
        if op_ >= s and op_ >= d:
            raise ShapeError(f"{name}: output_padding {attrs['output_padding']!r} must be smaller than "
                             f"the stride {attrs['stride']!r} or the dilation {attrs['dilation']!r} (input {x})",
                             "output_padding only resolves the ambiguity of strided outputs")
    cin = x.shape[1]
    same_dim(cin, w.shape[0],
             f"{name}: input {x} has {cin} channels but weight {w} expects {w.shape[0]} "
             f"(a transposed-convolution weight is (in_channels, out_channels/groups, kh, kw))",
             f"set the layer's in_channels to {cin}, or make the previous layer produce {w.shape[0]} channels")
    _divides(cin, groups, "in_channels", x, name)
    cout = mul(w.shape[1], groups)
    _check_bias(b, cout, name, w)
    ks = _kernel(w, 2, name)
    out = []
    for i in range(2):
        size = x.shape[2 + i]
        o = add(sub(mul(sub(size, 1), stride[i]), 2 * padding[i]), dilation[i] * (ks[i] - 1) + outpad[i] + 1)
        if isinstance(o, int) and o <= 0:
            raise ShapeError(f"{name}: input {x} with weight {w} gives a non-positive output size {o}",
                             "reduce the padding")
        out.append(o)
    return TensorType(x.dtype, (x.shape[0], cout) + tuple(out))


def _conv_transpose_macs(ins, outs, attrs):
    x, w = ins[0], ins[1]
    return mul(mul(prod(x.shape), w.shape[1]), prod(w.shape[2:]))


defop("conv_transpose2d", "x weight bias?", _conv_transpose2d,
      attrs={"stride": 1, "padding": 0, "output_padding": 0, "groups": 1, "dilation": 1},
      macs=_conv_transpose_macs, groups={CONV}, doc="2-D transposed convolution (fractionally strided).")


# pooling ----------------------------------------------------------------------
def _pool_input(x: TensorType, nd: int, name: str):
    if x.rank not in (nd + 1, nd + 2):
        raise ShapeError(f"{name} expects a rank-{nd + 2} input (N, C, {_SPATIAL[nd]}) or rank {nd + 1} "
                         f"without the batch, got {x}", "reshape the input to (N, C, ...)")


def _pool(nd: int, kind: str):
    name = f"{kind}_pool{nd}d"

    def infer(ts, attrs):
        x = ts[0]
        _pool_input(x, nd, name)
        if kind == "avg":
            require_float(x, name)
        elif x.dtype.short == "bool":
            raise ShapeError(f"{name} is not defined on bool tensors, got {x}")
        ks = _ints(attrs["kernel_size"], nd, "kernel_size", name, 1)
        stride = ks if attrs["stride"] is None else _ints(attrs["stride"], nd, "stride", name, 1)
        padding = _ints(attrs["padding"], nd, "padding", name)
        dilation = _ints(attrs.get("dilation", 1), nd, "dilation", name, 1)
        div = attrs.get("divisor_override")
        if div is not None and (isinstance(div, bool) or not isinstance(div, int) or div <= 0):
            raise ShapeError(f"{name}: divisor_override must be a positive int or None, got {div!r}")
        for k, p in zip(ks, padding):
            if p > k // 2:
                raise ShapeError(f"{name}: padding {attrs['padding']!r} is more than half the kernel size "
                                 f"{attrs['kernel_size']!r} (input {x})", f"use padding <= {k // 2}")
        spatial = x.shape[-nd:]
        out = tuple(conv_out(spatial[i], ks[i], stride[i], padding[i], dilation[i], f"{name} (input {x})",
                             ceil=bool(attrs["ceil_mode"])) for i in range(nd))
        return x.with_shape(x.shape[:-nd] + out)

    return infer


for _nd in (1, 2):
    defop(f"max_pool{_nd}d", "x", _pool(_nd, "max"),
          attrs={"kernel_size": required(), "stride": None, "padding": 0, "dilation": 1, "ceil_mode": False},
          groups={POOL}, doc=f"{_nd}-D max pooling, torch.nn.functional.max_pool{_nd}d.")
    defop(f"avg_pool{_nd}d", "x", _pool(_nd, "avg"),
          attrs={"kernel_size": required(), "stride": None, "padding": 0, "ceil_mode": False,
                 "count_include_pad": True, **({"divisor_override": None} if _nd == 2 else {})},
          groups={POOL}, doc=f"{_nd}-D average pooling, torch.nn.functional.avg_pool{_nd}d.")


def _adaptive(nd: int, kind: str):
    name = f"adaptive_{kind}_pool{nd}d"

    def infer(ts, attrs):
        x = ts[0]
        _pool_input(x, nd, name)
        if kind == "avg":
            require_float(x, name)
        size = pair(attrs["output_size"], nd, f"{name}: output_size")
        out = []
        for s, d in zip(size, x.shape[-nd:]):
            if s is None:
                out.append(d)
            elif isinstance(s, bool) or not isinstance(s, int) or s <= 0:
                raise ShapeError(f"{name}: output_size must be positive int(s) or None, "
                                 f"got {attrs['output_size']!r} (input {x})", "e.g. output_size=1 for global pooling")
            else:
                out.append(s)
        return x.with_shape(x.shape[:-nd] + tuple(out))

    return infer


for _nd, _kind in ((1, "avg"), (2, "avg"), (2, "max")):
    defop(f"adaptive_{_kind}_pool{_nd}d", "x", _adaptive(_nd, _kind), attrs={"output_size": required()},
          groups={POOL}, doc=f"Adaptive {_kind} pooling to a fixed {_nd}-D output size.")


# backward helper ops ----------------------------------------------------------
from ..types import DType  # noqa: E402


def _indices_of(infer):
    def rule(ts, attrs):
        return TensorType(DType.i64, infer(ts, attrs).shape)
    return rule


defop("max_pool2d_indices", "x", _indices_of(_pool(2, "max")),
      attrs={"kernel_size": required(), "stride": None, "padding": 0, "dilation": 1, "ceil_mode": False},
      groups={POOL}, nondiff=True,
      doc="The argmax of each max_pool2d window as an i64 flat index h*W + w into the input plane "
          "(torch's return_indices; ties go to the first maximum).  Not differentiable.")
defop("adaptive_max_pool2d_indices", "x", _indices_of(_adaptive(2, "max")), attrs={"output_size": required()},
      groups={POOL}, nondiff=True,
      doc="The argmax of each adaptive_max_pool2d bin as an i64 flat index h*W + w into the input plane "
          "(torch's return_indices).  Not differentiable.")


# ---------------------------------------------------------------- VJP rules
# Convolutions differentiate into convolutions: the input gradient of convNd is
# a conv_transpose2d of the cotangent, the weight gradient a convolution of the
# input with the cotangent (batch and channel axes swapped, stride and dilation
# exchanged).  Max pooling routes the cotangent to the argmax of each window
# with `scatter_add_rows` (whose VJP is an embedding lookup); average pooling is
# a transposed convolution with a ones kernel.  Every rule is built from
# differentiable IR ops, so it can be differentiated again.
from ..dims import dim  # noqa: E402
from .registry import defvjp  # noqa: E402
from .vjp_util import scalar  # noqa: E402


def _need_int(v, what: str, opname: str) -> int:
    v = dim(v)
    if not isinstance(v, int):
        raise ShapeError(f"the VJP of {opname} needs {what} to be known at compile time, got {v}",
                         "give the spatial dimensions fixed sizes")
    return v


def _fit(b, v, lohi):
    """Zero-pad (or, for negative amounts, crop) the trailing spatial axes of v."""
    if all(lo == 0 and hi == 0 for lo, hi in lohi):
        return v
    pad = []
    for lo, hi in reversed(lohi):
        pad += [lo, hi]
    return b.op("pad", v, pad=pad)


def _swap01(b, v):
    axes = (1, 0) + tuple(range(2, v.type.rank))
    return b.op("transpose", v, axes=axes)


def _conv_input_grad(b, gy, w, x_type, ks, stride, dilation, pads, groups, opname):
    """d<convNd(x, w), gy>/dx as a conv_transpose2d of gy (1-D lifted to 2-D)."""
    nd = len(ks)
    in_sp, out_sp = x_type.shape[2:], gy.type.shape[2:]
    outpad, rest = [], []
    for i in range(nd):
        lo = pads[i][0]
        full = add(mul(sub(out_sp[i], 1), stride[i]), dilation[i] * (ks[i] - 1) + 1)
        extra = _need_int(sub(add(in_sp[i], 2 * lo), full), "the input size", opname)
        op_ = extra if 0 <= extra < max(stride[i], dilation[i]) else 0
        outpad.append(op_)
        rest.append((0, extra - op_))
    lift = nd == 1      # there is no conv_transpose1d: use a unit H axis
    one, zero = ((1,), (0,)) if lift else ((), ())
    if lift:
        gy = b.op("reshape", gy, shape=gy.type.shape[:2] + (1,) + gy.type.shape[2:])
        w = b.op("reshape", w, shape=w.type.shape[:2] + (1,) + w.type.shape[2:])
    gx = b.op("conv_transpose2d", gy, w, stride=one + tuple(stride), padding=zero + tuple(p[0] for p in pads),
              output_padding=zero + tuple(outpad), dilation=one + tuple(dilation), groups=groups)
    if lift:
        gx = b.op("reshape", gx, shape=gx.type.shape[:2] + gx.type.shape[3:])
    return _fit(b, gx, rest)


def _conv_weight_grad(b, inp, cot, ks, stride, dilation, lows, groups, opname):
    """gw[o, c, k] = sum_{n, i} cot[n, o, i] * inp_padded[n, g(o)*Cg + c, i*stride + k*dilation],
    computed as one grouped convolution; inp (N, C, *), cot (N, O, *) -> (O, C/groups, *ks)."""
    nd = len(ks)
    sp, osp = inp.type.shape[2:], cot.type.shape[2:]
    lohi = []
    for i in range(nd):
        need = add(mul(sub(osp[i], 1), stride[i]), dilation[i] * (ks[i] - 1) + 1)
        lohi.append((lows[i], _need_int(sub(sub(need, sp[i]), lows[i]), "the input size", opname)))
    conv = f"conv{nd}d"
    if all(lo == hi for lo, hi in lohi):
        padding = tuple(lo for lo, _ in lohi)
    else:
        inp, padding = _fit(b, inp, lohi), 0
    n, c = inp.type.shape[:2]
    if groups == 1:
        xr = _swap01(b, inp)                                     # (C, N, *)
    else:
        cg = Dim.of(c).exact_div(groups)
        cg = dim(cg) if cg is not None else c
        xr = b.op("reshape", inp, shape=(n, groups, cg) + inp.type.shape[2:])
        xr = b.op("transpose", xr, axes=(2, 1, 0) + tuple(range(3, nd + 3)))
        xr = b.op("reshape", xr, shape=(cg, mul(n, groups)) + inp.type.shape[2:])   # (Cg, G*N, *)
    out = b.op(conv, xr, _swap01(b, cot), stride=tuple(dilation), dilation=tuple(stride),
               padding=padding, groups=groups)                                      # (Cg, O, *ks)
    return _swap01(b, out)


def _sum_bias(b, gy):
    return b.op("sum", gy, axis=(0,) + tuple(range(2, gy.type.rank)), keepdims=False)


def _conv_vjp(b, node, g):
    nd = node.inputs[0].type.rank - 2
    opname = node.op.name
    x, w = node.inputs[0], node.inputs[1]
    has_bias = len(node.inputs) > 2 and node.inputs[2] is not None
    gy = g[0]
    a = node.attrs
    ks = tuple(w.type.shape[2:])
    stride = _ints(a["stride"], nd, "stride", opname, 1)
    dilation = _ints(a["dilation"], nd, "dilation", opname, 1)
    pads = conv_pads(a["padding"], nd, ks, dilation, stride)
    gx = _conv_input_grad(b, gy, w, x.type, ks, stride, dilation, pads, a["groups"], opname)
    gw = _conv_weight_grad(b, x, gy, ks, stride, dilation, [p[0] for p in pads], a["groups"], opname)
    out = [gx, gw]
    if len(node.inputs) > 2:
        out.append(_sum_bias(b, gy) if has_bias else None)
    return out


defvjp("conv1d", "conv2d")(_conv_vjp)


@defvjp("conv_transpose2d")
def _(b, node, g):
    opname = "conv_transpose2d"
    x, w = node.inputs[0], node.inputs[1]
    has_bias = len(node.inputs) > 2 and node.inputs[2] is not None
    gy = g[0]
    a = node.attrs
    ks = tuple(w.type.shape[2:])
    stride = _ints(a["stride"], 2, "stride", opname, 1)
    padding = _ints(a["padding"], 2, "padding", opname)
    dilation = _ints(a["dilation"], 2, "dilation", opname, 1)
    groups = a["groups"]
    # conv_transpose2d is the adjoint of conv2d(., w) in its input: its input
    # gradient is that conv2d (cropped where output_padding >= stride adds rows)
    gx = b.op("conv2d", gy, w, stride=stride, padding=padding, dilation=dilation, groups=groups)
    gx = _fit(b, gx, [(0, _need_int(sub(x.type.shape[2 + i], gx.type.shape[2 + i]), "the input size", opname))
                      for i in range(2)])
    # ... and its weight gradient that conv2d's weight gradient with the roles of
    # input (here gy) and cotangent (here x) exchanged
    gw = _conv_weight_grad(b, gy, x, ks, stride, dilation, padding, groups, opname)
    out = [gx, gw]
    if len(node.inputs) > 2:
        out.append(_sum_bias(b, gy) if has_bias else None)
    return out


# pooling ----------------------------------------------------------------------
def _pool_attrs_2d(node, nd: int, kind: str) -> dict:
    """The pooling attributes of a 1-D pool lifted to 2-D (a unit H axis), or the 2-D ones."""
    a = node.attrs
    name = node.op.name
    ks = _ints(a["kernel_size"], nd, "kernel_size", name, 1)
    st = ks if a["stride"] is None else _ints(a["stride"], nd, "stride", name, 1)
    pd = _ints(a["padding"], nd, "padding", name)
    lift = (lambda t, v: (v,) + tuple(t)) if nd == 1 else (lambda t, v: tuple(t))
    out = {"kernel_size": lift(ks, 1), "stride": lift(st, 1), "padding": lift(pd, 0),
           "ceil_mode": bool(a["ceil_mode"])}
    if kind == "max":
        out["dilation"] = lift(_ints(a["dilation"], nd, "dilation", name, 1), 1)
    else:
        out["count_include_pad"] = bool(a["count_include_pad"])
        out["divisor_override"] = a.get("divisor_override")
    return out


def _lift(b, v, nd: int):
    """(..., L) -> (..., 1, L) for 1-D pools."""
    if nd == 2:
        return v
    return b.op("reshape", v, shape=v.type.shape[:-1] + (1, v.type.shape[-1]))


def _route_to_argmax(b, idx, gy, x_type):
    """Scatter-add gy (..., Ho, Wo) to the flat plane positions idx (..., Ho, Wo) of x (..., H, W)."""
    lead = x_type.shape[:-2]
    planes = prod(lead)
    hw = _need_int(mul(x_type.shape[-2], x_type.shape[-1]), "the input plane size", "max pooling")
    per = mul(idx.type.shape[-2], idx.type.shape[-1])
    flat = b.op("reshape", idx, shape=(planes, per))
    offs = b.op("mul", b.op("arange", stop=planes, dtype="int64"), b.op("full", shape=(), value=hw, dtype="int64"))
    flat = b.op("add", flat, b.op("reshape", offs, shape=(planes, 1)))
    flat = b.op("reshape", flat, shape=(mul(planes, per),))
    upd = b.op("reshape", gy, shape=(mul(planes, per), 1))
    gx = b.op("scatter_add_rows", flat, upd, num_rows=mul(planes, hw))
    return b.op("reshape", gx, shape=x_type.shape)


@defvjp("max_pool1d", "max_pool2d")
def _(b, node, g):
    x = node.inputs[0]
    nd = 1 if node.op.name == "max_pool1d" else 2
    x2 = _lift(b, x, nd)
    idx = b.op("max_pool2d_indices", x2, **_pool_attrs_2d(node, nd, "max"))
    gx = _route_to_argmax(b, idx, _lift(b, g[0], nd), x2.type)
    return [b.op("reshape", gx, shape=x.type.shape) if nd == 1 else gx]


@defvjp("adaptive_max_pool2d")
def _(b, node, g):
    x = node.inputs[0]
    idx = b.op("adaptive_max_pool2d_indices", x, output_size=node.attrs["output_size"])
    return [_route_to_argmax(b, idx, g[0], x.type)]


def _uniform_divisor(a: dict) -> int | None:
    """The avg-pool divisor when it is the same for every window, else None."""
    if a["divisor_override"]:
        return a["divisor_override"]
    area = a["kernel_size"][0] * a["kernel_size"][1]
    if a["ceil_mode"] or not (a["count_include_pad"] or not any(a["padding"])):
        return None
    return area


@defvjp("avg_pool1d", "avg_pool2d")
def _(b, node, g):
    x = node.inputs[0]
    nd = 1 if node.op.name == "avg_pool1d" else 2
    a = _pool_attrs_2d(node, nd, "avg")
    x2, g2 = _lift(b, x, nd), _lift(b, g[0], nd)
    sizes, outs = x2.type.shape[-2:], g2.type.shape[-2:]
    div = _uniform_divisor(a)
    if div is not None:
        q = b.op("div", g2, scalar(b, float(div), g2))
    else:
        # 1/divisor per window = avg_pool(ones) / sum_pool(ones): exact for every
        # mix of padding, ceil_mode and count_include_pad (each window holds >= 1 input)
        ones = b.op("full", shape=(1,) + tuple(sizes), value=1.0, dtype=x.type.dtype.numpy_name)
        avg = b.op("avg_pool2d", ones, **a)
        cnt = b.op("avg_pool2d", ones, **{**a, "divisor_override": 1})
        q = b.op("mul", g2, b.op("div", avg, cnt))
    # the adjoint of the zero-padded window sum: a transposed convolution with a ones kernel
    ks, st, pd = a["kernel_size"], a["stride"], a["padding"]
    planes = prod(g2.type.shape[:-2])
    qr = b.op("reshape", q, shape=(planes, 1) + tuple(outs))
    ones_k = b.op("full", shape=(1, 1) + tuple(ks), value=1.0, dtype=x.type.dtype.numpy_name)
    outpad, rest = [], []
    for i in range(2):
        full = add(mul(sub(outs[i], 1), st[i]), ks[i])
        extra = _need_int(sub(add(sizes[i], 2 * pd[i]), full), "the input size", node.op.name)
        op_ = extra if 0 <= extra < st[i] else 0
        outpad.append(op_)
        rest.append((0, extra - op_))
    gx = b.op("conv_transpose2d", qr, ones_k, stride=st, padding=pd, output_padding=tuple(outpad))
    gx = _fit(b, gx, rest)
    return [b.op("reshape", gx, shape=x.type.shape)]


def _adaptive_avg_matrix_t(b, n, out, like):
    """(n, out): column i averages adaptive bin i, i.e. adaptive_avg_pool1d of the identity."""
    eye = b.op("one_hot", b.op("arange", stop=n, dtype="int64"), num_classes=n, dtype=like.type.dtype.numpy_name)
    return b.op("adaptive_avg_pool1d", eye, output_size=out)


@defvjp("adaptive_avg_pool1d", "adaptive_avg_pool2d")
def _(b, node, g):
    x = node.inputs[0]
    nd = 1 if node.op.name == "adaptive_avg_pool1d" else 2
    gy = g[0]
    sizes, outs = x.type.shape[-nd:], gy.type.shape[-nd:]
    gx = gy
    # adaptive average pooling is separable: x -> A_h x A_w^T; its adjoint is A_h^T g A_w
    if known_equal(sizes[-1], outs[-1]) is not True:
        gx = b.op("matmul", gx, b.op("transpose", _adaptive_avg_matrix_t(b, sizes[-1], outs[-1], x), axes=(1, 0)))
    if nd == 2 and known_equal(sizes[0], outs[0]) is not True:
        gx = b.op("matmul", _adaptive_avg_matrix_t(b, sizes[0], outs[0], x), gx)
    return [gx]
