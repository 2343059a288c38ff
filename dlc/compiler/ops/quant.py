"""Quantized (int8) ops: the IR the quantize and lower_int8 passes produce.

The arithmetic is pinned (every backend implements exactly this; the NumPy
kernels in `backends/numpy/kernels/quant.py` are the reference):

    quantize_linear(x, scale, zero_point; axis, dtype)
        q = clamp(round_half_to_even(x / scale) + zp, qmin, qmax)
        x / scale is a float32 TRUE division (never x * (1/scale)), as ONNX QuantizeLinear.
    dequantize_linear(q, scale, zero_point; axis)
        x = float32(int32(q) - zp) * scale
    requant_multiplier(s_x, s_w, s_y) -> (multiplier, shift)
        m = f64(s_x) * f64(s_w) / f64(s_y) = f * 2^e, f in [0.5, 1) (frexp);
        multiplier = round_half_to_even(f * 2^31) (2^31 -> 2^30 with e + 1); shift = 31 - e, in [1, 62]
    qconv2d(x_q, w_q, bias_q, multiplier, shift; stride, padding, dilation, groups,
            x_zero_point, y_zero_point, out_dtype, relu)
        acc[n,co,oh,ow] = bias_q[co] + sum (int32(x_q) - x_zero_point) * int32(w_q)  (padding adds 0),
                          an int32 accumulator
        y = clamp(y_zp + ((int64(acc) * multiplier[co] + (1 << (shift[co] - 1))) >> shift[co]), lo, qmax)
        (arithmetic shift; lo = max(qmin, y_zp) when relu else qmin)
    qdense(x_q [..., K], w_q [N, K], bias_q [N], multiplier [N], shift [N]; ...): the same with
        acc[..., n] = bias_q[n] + sum_k (x_q[..., k] - x_zp) * w_q[n, k]

Scales, zero points, multipliers and shifts are tensors of the IR (constants
for the activations' calibrated scales, weight-only values for everything
derived from the weights), never attributes; only the two activation zero
points of qconv2d/qdense are int attributes (one number each, known when the
pass runs).  `dtype` of quantize_linear may be uint8 (activations), int8
(weights) or int32 (a bias quantized with scale s_x * s_w).

None of these ops is differentiable: a quantized graph is for inference
(train the float model, then quantize it).  Autodiff meeting one raises an
error at its `.dln` line rather than differentiating through the rounding.
"""
from __future__ import annotations

from ...errors import DlcError, ShapeError
from ..dims import known_equal, mul, prod
from ..types import DType, TensorType
from .common import broadcast_shapes, conv_out, norm_axis, same_dim
from .conv import _check_groups, _divides, _ints
from .registry import defop, defvjp

QUANT = "quant"          # the group of the ops of this module

# quantized storage dtypes and their [qmin, qmax]
QRANGE = {DType.u8: (0, 255), DType.i8: (-128, 127), DType.i32: (-(1 << 31), (1 << 31) - 1)}
_ACT_DTYPES = (DType.u8, DType.i8)
_MADE_BY_PASS = "made by the quantize/lower_int8 passes from a QuantPlan, not written in a spec"


def qdtype(name, opname: str, allowed=tuple(QRANGE)) -> DType:
    """The DType of a quantized-dtype attribute ("uint8", "int8", "int32"), or a ShapeError."""
    try:
        dt = name if isinstance(name, DType) else DType.parse(str(name))
    except KeyError:
        dt = None
    if dt not in allowed:
        raise ShapeError(f"{opname}: dtype {name!r} is not a quantized type",
                         "use " + " or ".join(d.numpy_name for d in allowed))
    return dt


def _per_axis(t: TensorType, scale: TensorType, zp: TensorType | None, axis, opname: str) -> None:
    """scale (and zero point) are scalars (per-tensor, axis None) or 1-D along `axis`."""
    if scale.dtype != DType.f32:
        raise ShapeError(f"{opname}: the scale must be f32, got {scale}")
    if zp is not None and zp.shape != scale.shape:
        raise ShapeError(f"{opname}: zero point {zp} and scale {scale} differ in shape",
                         "give one zero point per scale")
    if axis is None:
        if scale.rank != 0:
            raise ShapeError(f"{opname}: a per-tensor scale is a scalar, got {scale}",
                             "set axis for per-channel scales")
        return
    if isinstance(axis, bool) or not isinstance(axis, int):
        raise ShapeError(f"{opname}: axis must be an int or none, got {axis!r}")
    ax = norm_axis(axis, t.rank, opname)
    if scale.rank != 1:
        raise ShapeError(f"{opname}: a per-channel scale (axis={axis}) is 1-D, got {scale}")
    same_dim(scale.shape[0], t.shape[ax],
             f"{opname}: {scale.shape[0]} scales for the {t.shape[ax]} channels of axis {axis} of {t}")


def _quantize_linear(ts, attrs):
    x, scale = ts[0], ts[1]
    zp = ts[2] if len(ts) > 2 else None
    if not x.dtype.is_float:
        raise ShapeError(f"quantize_linear needs a floating-point input, got {x}")
    dt = qdtype(attrs["dtype"], "quantize_linear")
    if zp is not None and zp.dtype != dt:
        raise ShapeError(f"quantize_linear: zero point {zp} is not of the output dtype {dt}",
                         "the zero point has the quantized type, as in ONNX")
    _per_axis(x, scale, zp, attrs["axis"], "quantize_linear")
    return TensorType(dt, x.shape)


def _dequantize_linear(ts, attrs):
    q, scale = ts[0], ts[1]
    zp = ts[2] if len(ts) > 2 else None
    qdtype(q.dtype, "dequantize_linear")
    if zp is not None and zp.dtype != q.dtype:
        raise ShapeError(f"dequantize_linear: zero point {zp} is not of the input's dtype {q.dtype}")
    _per_axis(q, scale, zp, attrs["axis"], "dequantize_linear")
    return TensorType(DType.f32, q.shape)


defop("quantize_linear", "x scale zero_point?", _quantize_linear, attrs={"axis": None, "dtype": "uint8"},
      groups={QUANT}, builtin=_MADE_BY_PASS,
      doc="ONNX QuantizeLinear: clamp(round_half_even(x / scale) + zero_point) to uint8/int8/int32.")
defop("dequantize_linear", "x scale zero_point?", _dequantize_linear, attrs={"axis": None},
      groups={QUANT}, builtin=_MADE_BY_PASS,
      doc="ONNX DequantizeLinear: float32(int32(x) - zero_point) * scale.")


def _requant_multiplier(ts, attrs):
    for t, what in zip(ts, ("s_x", "s_w", "s_y")):
        if t.dtype != DType.f32 or t.rank > 1:
            raise ShapeError(f"requant_multiplier: {what} must be an f32 scalar or vector, got {t}")
    shape = broadcast_shapes(broadcast_shapes(ts[0].shape, ts[1].shape, "requant_multiplier"),
                             ts[2].shape, "requant_multiplier")
    return [TensorType(DType.i32, shape), TensorType(DType.i32, shape)]


defop("requant_multiplier", "s_x s_w s_y", _requant_multiplier, groups={QUANT}, builtin=_MADE_BY_PASS,
      doc="The fixed-point multiplier and right shift of s_x * s_w / s_y (int32 each).")


def _q_operands(ts, opname: str, cout):
    """The checks qconv2d and qdense share: dtypes and the per-channel vectors."""
    x, w, b, m, s = ts
    if x.dtype not in _ACT_DTYPES:
        raise ShapeError(f"{opname}: the input must be uint8 or int8, got {x}")
    if w.dtype != DType.i8:
        raise ShapeError(f"{opname}: the weight must be int8, got {w}")
    for t, what in ((b, "bias_q"), (m, "multiplier"), (s, "shift")):
        if t.dtype != DType.i32 or t.rank != 1 or known_equal(t.shape[0], cout) is not True:
            raise ShapeError(f"{opname}: {what} must be i32[{cout}], got {t}",
                             "one value per output channel")


def _zero_points(attrs, x: TensorType, opname: str) -> DType:
    out = qdtype(attrs["out_dtype"], opname, _ACT_DTYPES)
    for key, dt in (("x_zero_point", x.dtype), ("y_zero_point", out)):
        v = attrs[key]
        lo, hi = QRANGE[dt]
        if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
            raise ShapeError(f"{opname}: {key} must be an int in [{lo}, {hi}] ({dt}), got {v!r}")
    if not isinstance(attrs["relu"], bool):
        raise ShapeError(f"{opname}: relu must be true or false, got {attrs['relu']!r}")
    return out


def _qconv2d(ts, attrs):
    name = "qconv2d"
    x, w = ts[0], ts[1]
    if x.rank != 4 or w.rank != 4:
        raise ShapeError(f"{name} expects a rank-4 input and weight, got {x} and {w}")
    _q_operands(ts, name, w.shape[0])
    out_dt = _zero_points(attrs, x, name)
    groups = attrs["groups"]
    _check_groups(groups, name)
    stride = _ints(attrs["stride"], 2, "stride", name, 1)
    padding = _ints(attrs["padding"], 2, "padding", name)
    dilation = _ints(attrs["dilation"], 2, "dilation", name, 1)
    cin, cout = x.shape[1], w.shape[0]
    same_dim(cin, mul(w.shape[1], groups),
             f"{name}: input {x} has {cin} channels but weight {w} expects {mul(w.shape[1], groups)}")
    _divides(cout, groups, "out_channels", w, name)
    ks = w.shape[2:]
    if not all(isinstance(k, int) and k > 0 for k in ks):
        raise ShapeError(f"{name}: the kernel size of weight {w} must be known positive ints")
    out = tuple(conv_out(x.shape[2 + i], ks[i], stride[i], padding[i], dilation[i], f"{name} (input {x})")
                for i in range(2))
    return TensorType(out_dt, (x.shape[0], cout) + out)


def _qdense(ts, attrs):
    name = "qdense"
    x, w = ts[0], ts[1]
    if x.rank < 1 or w.rank != 2:
        raise ShapeError(f"{name} expects an input [..., K] and a weight [N, K], got {x} and {w}")
    _q_operands(ts, name, w.shape[0])
    out_dt = _zero_points(attrs, x, name)
    same_dim(x.shape[-1], w.shape[1], f"{name}: input {x} has {x.shape[-1]} features, weight {w} takes {w.shape[1]}")
    return TensorType(out_dt, x.shape[:-1] + (w.shape[0],))


def _qconv_macs(ins, outs, attrs):
    w = ins[1]
    return mul(mul(prod(outs[0].shape), w.shape[1]), prod(w.shape[2:]))


def _qdense_macs(ins, outs, attrs):
    return mul(prod(outs[0].shape), ins[1].shape[1])


_Q_ATTRS = {"x_zero_point": 0, "y_zero_point": 0, "out_dtype": "uint8", "relu": False}
defop("qconv2d", "x_q w_q bias_q multiplier shift", _qconv2d,
      attrs={"stride": 1, "padding": 0, "dilation": 1, "groups": 1, **_Q_ATTRS}, macs=_qconv_macs,
      groups={QUANT}, builtin=_MADE_BY_PASS,
      doc="int8 2-D convolution: int32 accumulation, fixed-point requantisation, optional relu.")
defop("qdense", "x_q w_q bias_q multiplier shift", _qdense, attrs=dict(_Q_ATTRS), macs=_qdense_macs,
      groups={QUANT}, builtin=_MADE_BY_PASS,
      doc="int8 dense layer x @ w.T: int32 accumulation, fixed-point requantisation, optional relu.")


class NotDifferentiable(DlcError):
    """Autodiff met a quantized op."""


@defvjp("quantize_linear", "dequantize_linear", "requant_multiplier", "qconv2d", "qdense")
def _no_gradient(b, node, g):
    raise NotDifferentiable(
        f"{node.op.name} is not differentiable: a quantized graph runs inference only",
        node.span, "train the float model (without a quantization plan), then quantize it")


QUANT_OPS = ("quantize_linear", "dequantize_linear", "requant_multiplier", "qconv2d", "qdense")
