"""Convolutions and pooling, with PyTorch's argument conventions.

conv1d/conv2d take weights (Cout, Cin/groups, k...), conv_transpose2d takes
(Cin, Cout/groups, kh, kw).  Inputs are batched: (N, C, L) or (N, C, H, W);
pools also accept the unbatched (C, ...) form, as torch does.
"""
from __future__ import annotations

from ...errors import ShapeError
from ..dims import Dim, add, known_equal, mul, prod, sub
from ..types import TensorType
from .common import conv_out, pair, promote, require_float, same_dim
from .registry import CONV, POOL, defop, required

_SPATIAL = {1: "L", 2: "H, W"}


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
