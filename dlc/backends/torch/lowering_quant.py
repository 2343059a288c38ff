"""Torch lowerings of the quantized ops (compiler/ops/quant.py), bit for bit
the NumPy integer reference.

qconv2d and qdense run REAL int8 matrix products: `torch._int_mm` (int8 x
int8 -> int32; on CPU torch 2.13 it takes any shape).  The uint8 activations
are shifted into int8 as x_q - 128, and the zero point comes back exactly in
int32:

    sum_k (x - zp) w = sum_k (x - 128) w + (128 - zp) * sum_k w

For qconv2d the input is padded with its zero point (so padding adds 0, as
pinned) before im2col; the patches are gathered by `F.unfold` in float32,
which holds the small integers exactly, then stored as int8 for the product.
The bias add and the requantisation (int64 multiply, rounding add,
arithmetic right shift, clamp) are integer tensor ops, not a simulation.
quantize_linear/dequantize_linear are float32 element-wise ops as ONNX
defines them (torch.round rounds half to even).
"""
from __future__ import annotations

from .lowering import _call, _register
from .lowering_helpers import HELPERS

_QRANGE = {"uint8": (0, 255), "int8": (-128, 127), "int32": (-(1 << 31), (1 << 31) - 1)}
_DTYPE = {"uint8": "uint8", "u8": "uint8", "int8": "int8", "i8": "int8", "int32": "int32", "i32": "int32"}

HELPERS.update({
    "_q_along": '''\
def _q_along(v, ndim, axis):
    """A per-channel vector shaped to broadcast along `axis` of an ndim-d tensor (a scalar as is)."""
    if axis is None or v.dim() == 0:
        return v
    shape = [1] * ndim
    shape[axis % ndim] = v.shape[0]
    return v.reshape(shape)
''',
    "_q_quantize": '''\
def _q_quantize(x, scale, zp, axis, qmin, qmax, dtype):
    """clamp(round_half_even(x / scale) + zp): a float32 true division, the rest exact in float64."""
    s = _q_along(scale.to(torch.float32), x.dim(), axis)
    r = torch.round(torch.div(x.to(torch.float32), s)).to(torch.float64)
    if zp is not None:
        r = r + _q_along(zp, x.dim(), axis).to(torch.float64)
    return r.clamp(qmin, qmax).to(dtype)
''',
    "_q_dequantize": '''\
def _q_dequantize(q, scale, zp, axis):
    """float32(int32(q) - zp) * scale."""
    d = q.to(torch.int64)
    if zp is not None:
        d = d - _q_along(zp, q.dim(), axis).to(torch.int64)
    return d.to(torch.float32) * _q_along(scale.to(torch.float32), q.dim(), axis)
''',
    "_q_multiplier": '''\
def _q_multiplier(s_x, s_w, s_y):
    """(multiplier, shift) of m = s_x * s_w / s_y in float64: m = f * 2^e, M = rint(f * 2^31), shift = 31 - e."""
    m = s_x.to(torch.float64) * s_w.to(torch.float64) / s_y.to(torch.float64)
    m = torch.broadcast_to(m, torch.broadcast_shapes(s_x.shape, s_w.shape, s_y.shape))
    if not bool(torch.isfinite(m).all()) or bool((m < 0).any()):
        raise ValueError(f"the requantisation multiplier s_x * s_w / s_y must be finite and >= 0, got {m}")
    f, e = torch.frexp(m)
    mult = torch.round(torch.ldexp(f, torch.tensor(31, dtype=torch.int32)))
    top = mult == float(1 << 31)
    mult = torch.where(top, mult / 2, mult)
    shift = 31 - torch.where(top, e + 1, e).to(torch.int64)
    bad = ((shift < 1) | (shift > 62)) & (m != 0)
    if bool(bad.any()):
        raise ValueError(f"a requantisation multiplier needs a shift outside [1, 62]: {shift[bad].tolist()}")
    shift = torch.where(m != 0, shift, torch.full_like(shift, 31))
    return mult.to(torch.int32), shift.to(torch.int32)
''',
    "_q_requantize": '''\
def _q_requantize(acc, multiplier, shift, y_zp, qmin, qmax, relu, axis, dtype):
    """clamp(y_zp + ((int64(acc) * M + (1 << (shift - 1))) >> shift), lo, qmax), per channel on `axis`."""
    m = _q_along(multiplier.to(torch.int64), acc.dim(), axis)
    sh = _q_along(shift.to(torch.int64), acc.dim(), axis)
    y = torch.bitwise_right_shift(acc.to(torch.int64) * m + torch.bitwise_left_shift(torch.ones_like(sh), sh - 1), sh)
    return (y + y_zp).clamp(max(qmin, y_zp) if relu else qmin, qmax).to(dtype)
''',
    "_q_int8_matmul": '''\
def _q_int8_matmul(xs, w, x_zp):
    """sum_k (x - x_zp) * w[n, k] for x = xs + 128 (xs int8 [M, K], w int8 [N, K]) as int32, with the
    int8 product in torch._int_mm and the zero point's share added exactly."""
    acc = torch._int_mm(xs, w.t())
    wsum = w.to(torch.int32).sum(dim=1)
    return acc + (128 - x_zp) * wsum
''',
    "_q_dense": '''\
def _q_dense(x, w, bias, multiplier, shift, x_zp, y_zp, qmin, qmax, relu, dtype):
    """int8 x @ w.T (torch._int_mm), int32 accumulator plus bias_q, requantised per output feature."""
    lead = x.shape[:-1]
    xs = (x.to(torch.int16) - 128).to(torch.int8).reshape(-1, x.shape[-1])
    acc = _q_int8_matmul(xs, w, x_zp) + bias.to(torch.int32)
    return _q_requantize(acc.reshape(*lead, w.shape[0]), multiplier, shift, y_zp, qmin, qmax, relu, -1, dtype)
''',
    "_q_conv2d": '''\
def _q_conv2d(x, w, bias, multiplier, shift, stride, padding, dilation, groups, x_zp, y_zp, qmin, qmax, relu,
              dtype):
    """int8 conv2d as im2col + torch._int_mm per group; padding holds x_zp, so it adds 0."""
    n, c, h, wd = x.shape
    co, cg, kh, kw = w.shape
    xs = x.to(torch.float32) - 128.0
    if padding[0] or padding[1]:
        xs = F.pad(xs, (padding[1], padding[1], padding[0], padding[0]), value=float(x_zp - 128))
    oh = (xs.shape[2] - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    ow = (xs.shape[3] - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    cols = F.unfold(xs, (kh, kw), dilation=dilation, stride=stride)          # (n, c*kh*kw, oh*ow)
    cols = cols.to(torch.int8).reshape(n, groups, cg * kh * kw, oh * ow)
    wg = w.reshape(groups, co // groups, cg * kh * kw)
    outs = []
    for g in range(groups):
        a = cols[:, g].transpose(1, 2).reshape(n * oh * ow, cg * kh * kw).contiguous()
        outs.append(_q_int8_matmul(a, wg[g], x_zp).reshape(n, oh * ow, co // groups))
    acc = torch.cat(outs, dim=2).transpose(1, 2).reshape(n, co, oh, ow) + bias.to(torch.int32).reshape(1, co, 1, 1)
    return _q_requantize(acc, multiplier, shift, y_zp, qmin, qmax, relu, 1, dtype)
''',
})


def _dtype(name) -> tuple[str, int, int]:
    key = _DTYPE[getattr(name, "numpy_name", name)]
    lo, hi = _QRANGE[key]
    return f"torch.{key}", lo, hi


def _axis(o) -> str:
    return o.r(o.attrs.get("axis"))


@_register("quantize_linear")
def _(o):
    dt, lo, hi = _dtype(o.attrs["dtype"])
    return _call("_q_quantize", o[0], o[1], o[2] or "None", _axis(o), str(lo), str(hi), dt)


@_register("dequantize_linear")
def _(o):
    return _call("_q_dequantize", o[0], o[1], o[2] or "None", _axis(o))


@_register("requant_multiplier", multi=True)
def _(o):
    return _call("_q_multiplier", o[0], o[1], o[2])


def _q_tail(o) -> list[str]:
    dt, lo, hi = _dtype(o.attrs["out_dtype"])
    return [o.a("x_zero_point"), o.a("y_zero_point"), str(lo), str(hi), o.a("relu"), dt]


@_register("qdense")
def _(o):
    return _call("_q_dense", *o.args[:5], *_q_tail(o))


@_register("qconv2d")
def _(o):
    pairs = [o.r(_pair(o.attrs[k])) for k in ("stride", "padding", "dilation")]
    return _call("_q_conv2d", *o.args[:5], *pairs, o.a("groups"), *_q_tail(o))


def _pair(v) -> tuple[int, int]:
    return tuple(v) if isinstance(v, (list, tuple)) else (v, v)
