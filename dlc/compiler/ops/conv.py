"""Convolutions, with PyTorch's argument conventions.

conv1d/conv2d/conv3d take weights (Cout, Cin/groups, k...), conv_transpose2d/3d
take (Cin, Cout/groups, k...).  Inputs are batched: (N, C, L), (N, C, H, W) or
(N, C, D, H, W);
pools also accept the unbatched (C, ...) form, as torch does.

The attribute normalisation every backend shares (`ntuple`, `conv_pads`) lives
here; pooling is in `pool`.
"""
from __future__ import annotations

import numbers

from ...errors import ShapeError
from ..dims import Dim, add, dim, known_equal, mul, prod, sub
from ..types import TensorType
from .common import conv_out, pair, promote, require_float, same_dim
from .registry import CONV, defop, defvjp

_SPATIAL = {1: "L", 2: "H, W", 3: "D, H, W"}
_KERNEL = {1: "k", 2: "kh, kw", 3: "kd, kh, kw"}


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
                         f"the weight is (out_channels, in_channels/groups, {_KERNEL[nd]})")
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
defop("conv3d", "x weight bias?", _conv(3), attrs=_CONV_ATTRS, macs=_conv_macs, groups={CONV},
      doc="3-D cross-correlation, torch.nn.functional.conv3d.")


def _conv_transpose(nd: int):
    name = f"conv_transpose{nd}d"

    def infer(ts, attrs):
        x, w, b = _conv_common(ts, name, nd)
        groups = attrs["groups"]
        _check_groups(groups, name)
        stride = _ints(attrs["stride"], nd, "stride", name, 1)
        padding = _ints(attrs["padding"], nd, "padding", name)
        outpad = _ints(attrs["output_padding"], nd, "output_padding", name)
        dilation = _ints(attrs["dilation"], nd, "dilation", name, 1)
        for op_, s, d in zip(outpad, stride, dilation):
            if op_ >= s and op_ >= d:
                raise ShapeError(f"{name}: output_padding {attrs['output_padding']!r} must be smaller than "
                                 f"the stride {attrs['stride']!r} or the dilation {attrs['dilation']!r} (input {x})",
                                 "output_padding only resolves the ambiguity of strided outputs")
        cin = x.shape[1]
        same_dim(cin, w.shape[0],
                 f"{name}: input {x} has {cin} channels but weight {w} expects {w.shape[0]} "
                 f"(a transposed-convolution weight is (in_channels, out_channels/groups, {_KERNEL[nd]}))",
                 f"set the layer's in_channels to {cin}, or make the previous layer produce {w.shape[0]} channels")
        _divides(cin, groups, "in_channels", x, name)
        cout = mul(w.shape[1], groups)
        _check_bias(b, cout, name, w)
        ks = _kernel(w, nd, name)
        out = []
        for i in range(nd):
            size = x.shape[2 + i]
            o = add(sub(mul(sub(size, 1), stride[i]), 2 * padding[i]), dilation[i] * (ks[i] - 1) + outpad[i] + 1)
            if isinstance(o, int) and o <= 0:
                raise ShapeError(f"{name}: input {x} with weight {w} gives a non-positive output size {o}",
                                 "reduce the padding")
            out.append(o)
        return TensorType(x.dtype, (x.shape[0], cout) + tuple(out))

    return infer


def _conv_transpose_macs(ins, outs, attrs):
    x, w = ins[0], ins[1]
    return mul(mul(prod(x.shape), w.shape[1]), prod(w.shape[2:]))


for _nd in (2, 3):
    defop(f"conv_transpose{_nd}d", "x weight bias?", _conv_transpose(_nd),
          attrs={"stride": 1, "padding": 0, "output_padding": 0, "groups": 1, "dilation": 1},
          macs=_conv_transpose_macs, groups={CONV},
          doc=f"{_nd}-D transposed convolution (fractionally strided), torch.nn.functional.conv_transpose{_nd}d.")




# ---------------------------------------------------------------- VJP rules
# Convolutions differentiate into convolutions: the input gradient of convNd is
# a conv_transpose2d/3d of the cotangent, the weight gradient a convolution of the
# input with the cotangent (batch and channel axes swapped, stride and dilation
# exchanged).  Every rule is built from differentiable IR ops, so it can be
# differentiated again.


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
    """d<convNd(x, w), gy>/dx as a conv_transpose2d/3d of gy (1-D lifted to 2-D)."""
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
    gx = b.op(f"conv_transpose{max(nd, 2)}d", gy, w, stride=one + tuple(stride),
              padding=zero + tuple(p[0] for p in pads),
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


defvjp("conv1d", "conv2d", "conv3d")(_conv_vjp)


@defvjp("conv_transpose2d", "conv_transpose3d")
def _(b, node, g):
    opname = node.op.name
    nd = node.inputs[0].type.rank - 2
    x, w = node.inputs[0], node.inputs[1]
    has_bias = len(node.inputs) > 2 and node.inputs[2] is not None
    gy = g[0]
    a = node.attrs
    ks = tuple(w.type.shape[2:])
    stride = _ints(a["stride"], nd, "stride", opname, 1)
    padding = _ints(a["padding"], nd, "padding", opname)
    dilation = _ints(a["dilation"], nd, "dilation", opname, 1)
    groups = a["groups"]
    # conv_transposeNd is the adjoint of convNd(., w) in its input: its input
    # gradient is that convNd (cropped where output_padding >= stride adds rows)
    gx = b.op(f"conv{nd}d", gy, w, stride=stride, padding=padding, dilation=dilation, groups=groups)
    gx = _fit(b, gx, [(0, _need_int(sub(x.type.shape[2 + i], gx.type.shape[2 + i]), "the input size", opname))
                      for i in range(nd)])
    # ... and its weight gradient that convNd's weight gradient with the roles of
    # input (here gy) and cotangent (here x) exchanged
    gw = _conv_weight_grad(b, gy, x, ks, stride, dilation, padding, groups, opname)
    out = [gx, gw]
    if len(node.inputs) > 2:
        out.append(_sum_bias(b, gy) if has_bias else None)
    return out
