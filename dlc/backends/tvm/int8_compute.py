"""TE computations of dlc's integer ops `qconv2d` and `qdense` for TVM.

The arithmetic is the pinned one (see `docs/backends/tvm-int8.md`):

    acc = bias_q[co] + sum (int32(x_q) - x_zp) * int32(w_q)      (padding adds 0)
    y   = clamp(y_zp + ((int64(acc) * mult[co] + (1 << (shift[co] - 1))) >> shift[co]), lo, qmax)

The dot-product instructions (`vpdpbusd`, `sdot`, `dp4a`) multiply raw bytes,
so the zero point is moved out of the sum:

    sum (x - zp) * w  =  sum x * w  -  zp * sum w

and ``bias_eff[co] = bias_q[co] - zp * sum_k w[co, k]`` is a weight-only
value (computed once, when the weights are bound: `LiftTransformParams` moves
it to ``main_transform_params``).  Spatial padding is filled with ``zp`` so
that it adds ``(zp - zp) * w = 0``, as the formula says.  In int32 the two
forms are equal modulo 2^32, so they agree bit for bit even where int32
would wrap.

Layouts (what the dot-product intrinsics read):

* activations: NCHW uint8 -> ``xp[N, H + pads, W + pads, C4]`` (NHWC, channels
  padded to a multiple of 4; the padded channels meet zero weights);
* weights: OIHW int8 -> ``wp[O / L, KH, KW, C4 / 4, L, 4]`` where L is the
  intrinsic's lane count (16 for AVX512-VNNI, 4 for aarch64 sdot);
* accumulator ``acc[N, OH, OW, O / L, L]`` int32 (kept in registers by the
  schedule); the requantisation epilogue writes ``y[N, O / L, L, OH, OW]``,
  which the caller reshapes to NCHW (a view) and slices when O % L != 0.

`signed_act=True` (aarch64 `sdot`, int8 x int8) stores the activations as
``x - 128`` in int8 and folds ``128 * sum w`` into ``bias_eff`` the same way.

Grouped and depthwise convolutions (groups > 1) use `grouped_conv`, a plain
int32 contraction vectorized over output channels.
"""
from __future__ import annotations

from tvm import te, tirx

QRANGE = {"uint8": (0, 255), "int8": (-128, 127)}


def ceil_to(n, m: int):
    return (n + m - 1) // m * m


def requant(acc, mult, shift, y_zp: int, out_dtype: str, relu: bool):
    """The pinned int64 fixed-point requantisation of one int32 value."""
    qmin, qmax = QRANGE[out_dtype]
    lo = max(qmin, y_zp) if relu else qmin
    a = acc.astype("int64") * mult.astype("int64")
    s = shift.astype("int64")
    v = (a + (tirx.const(1, "int64") << (s - tirx.const(1, "int64")))) >> s
    v = v + tirx.const(y_zp, "int64")
    v = tirx.max(tirx.min(v, tirx.const(qmax, "int64")), tirx.const(lo, "int64"))
    return v.astype(out_dtype)


def act_offset(in_dtype: str, signed_act: bool) -> int:
    """What is added to the activations (and their zero point) to store them in
    the intrinsic's operand type: uint8 for vpdpbusd / dp4a, int8 for sdot."""
    if signed_act:
        return -128 if in_dtype == "uint8" else 0
    return 128 if in_dtype == "int8" else 0


def pad_act_nhwc(x, pads, x_zp: int, c_multiple: int = 4, signed_act: bool = False):
    """NCHW uint8/int8 -> zero-point-padded NHWC with channels padded to `c_multiple`.

    `pads` = (top, left, bottom, right).  The stored value is shifted by
    `act_offset` (e.g. ``x - 128`` as int8 for `sdot`); `x_zp` is the input's
    own zero point."""
    n, c, h, w = x.shape
    pt, pl, pb, pr = (int(p) for p in pads)
    c4 = ceil_to(int(c), c_multiple)
    dtype = "int8" if signed_act else "uint8"
    shift = act_offset(str(x.dtype), signed_act)
    fill = tirx.const(x_zp + shift, dtype)

    def value(b, i, j, k):
        inside = tirx.all(i >= pt, i < h + pt, j >= pl, j < w + pl, k < c)
        v = x[b, tirx.min(k, c - 1), i - pt, j - pl] if c4 != c else x[b, k, i - pt, j - pl]
        if shift:
            v = (v.astype("int32") + shift).astype(dtype)
        return tirx.if_then_else(inside, v, fill)

    return te.compute((n, h + pt + pb, w + pl + pr, c4), value, name="x_nhwc_pad")


def pack_weight(w, lanes: int):
    """OIHW int8 -> ``wp[O / lanes, KH, KW, C4 / 4, lanes, 4]`` (zero-padded); a
    dense weight [N, K] packs as the 1 x 1 kernel [N, K, 1, 1]."""
    if len(w.shape) == 2:
        w2 = w
        w = te.compute((*w2.shape, 1, 1), lambda o, c, y, x: w2[o, c], name="w_as_1x1")
    o, c, kh, kw = (int(d) for d in w.shape)
    ob, cb = ceil_to(o, lanes) // lanes, ceil_to(c, 4) // 4

    def value(bo, y, x, bc, lo, lc):
        oc, ic = bo * lanes + lo, bc * 4 + lc
        inside = tirx.all(oc < o, ic < c)
        return tirx.if_then_else(inside, w[tirx.min(oc, o - 1), tirx.min(ic, c - 1), y, x],
                                 tirx.const(0, "int8"))

    return te.compute((ob, kh, kw, cb, lanes, 4), value, name="w_packed")


def effective_bias(bias, w, x_zp: int, offset: int = 0):
    """``bias_q - (zp + offset) * sum(w)`` per output channel (int32), for any
    weight rank whose axis 0 is the output channel (`offset`: `act_offset`)."""
    zp = x_zp + offset
    axes = [te.reduce_axis((0, int(d)), name=f"k{i}") for i, d in enumerate(w.shape[1:])]
    wsum = te.compute((w.shape[0],), lambda o: te.sum(w[(o, *axes)].astype("int32"), axis=axes),
                      name="w_sum")
    return te.compute((w.shape[0],),
                      lambda o: bias[o] - tirx.const(zp, "int32") * wsum[o], name="bias_eff")


def conv_packed(xp, wp, out_hw, stride, dilation):
    """``acc[N, OH, OW, O / L, L]`` = sum over (kh, kw, c) of xp * wp, in int32."""
    n = xp.shape[0]
    ob, kh, kw, cb, lanes, _ = (int(d) for d in wp.shape)
    oh, ow = out_hw
    sh, sw = stride
    dh, dw = dilation
    rkh = te.reduce_axis((0, kh), name="rkh")
    rkw = te.reduce_axis((0, kw), name="rkw")
    rcb = te.reduce_axis((0, cb), name="rcb")
    rci = te.reduce_axis((0, 4), name="rci")
    return te.compute(
        (n, oh, ow, ob, lanes),
        lambda b, i, j, o, l: te.sum(
            xp[b, i * sh + rkh * dh, j * sw + rkw * dw, rcb * 4 + rci].astype("int32")
            * wp[o, rkh, rkw, rcb, l, rci].astype("int32"),
            axis=[rkh, rkw, rcb, rci]),
        name="acc")


def requant_blocked(acc, bias_eff, mult, shift, y_zp, out_dtype, relu, n_out, channels_last=False):
    """``y[N, O / L, L, OH, OW]`` (or with `channels_last` ``y[N, OH, OW, O / L, L]``) from
    ``acc[N, OH, OW, O / L, L]``.  Lanes past `n_out` (padding) read channel
    ``n_out - 1``'s constants and are sliced off by the caller."""
    n, oh, ow, ob, lanes = acc.shape
    padded = int(ob) * int(lanes) != n_out

    def value(b, o, l, i, j):
        co = o * lanes + l
        if padded:  # (a clamp only where needed: it turns the vector loads into gathers)
            co = tirx.min(co, n_out - 1)
        return requant(acc[b, i, j, o, l] + bias_eff[co], mult[co], shift[co], y_zp, out_dtype, relu)

    if channels_last:
        return te.compute((n, oh, ow, ob, lanes), lambda b, i, j, o, l: value(b, o, l, i, j),
                          name="requant_nhwc")
    return te.compute((n, ob, lanes, oh, ow), value, name="requant")


def qconv2d_packed(x, wp, bias_eff, mult, shift, *, pads, stride, dilation, x_zp, y_zp,
                   out_dtype, relu, n_out, signed_act=False, channels_last=False):
    """The whole groups == 1 kernel: pad/transpose, contraction, requantisation.
    Returns ``y[N, O / L, L, OH, OW]`` (see `requant_blocked`)."""
    kh, kw = int(wp.shape[1]), int(wp.shape[2])
    h, w = x.shape[2], x.shape[3]
    oh = (h + pads[0] + pads[2] - ((kh - 1) * dilation[0] + 1)) // stride[0] + 1
    ow = (w + pads[1] + pads[3] - ((kw - 1) * dilation[1] + 1)) // stride[1] + 1
    xp = pad_act_nhwc(x, pads, x_zp, signed_act=signed_act)
    acc = conv_packed(xp, wp, (oh, ow), stride, dilation)
    return requant_blocked(acc, bias_eff, mult, shift, y_zp, out_dtype, relu, n_out, channels_last)


def qdense_packed(x2d, wp, bias_eff, mult, shift, *, x_zp, y_zp, out_dtype, relu, n_out,
                  signed_act=False):
    """qdense on ``x[M, K]`` as a 1 x M "image" of K channels: the same kernel
    with kernel size 1 (the rows of the register tile are rows of x).
    Returns ``y[1, 1, M, N / L, L]``."""
    m, k = x2d.shape
    img = te.compute((1, k, 1, m), lambda b, c, i, j: x2d[j, c], name="x_rows")
    return qconv2d_packed(img, wp, bias_eff, mult, shift, pads=(0, 0, 0, 0), stride=(1, 1),
                          dilation=(1, 1), x_zp=x_zp, y_zp=y_zp, out_dtype=out_dtype, relu=relu,
                          n_out=n_out, signed_act=signed_act, channels_last=True)


def grouped_weight(w):
    """OIHW int8 (I = C / groups) -> ``[KH, KW, I, O]``: output channels innermost."""
    o, i, kh, kw = w.shape
    return te.compute((kh, kw, i, o), lambda y, x, c, k: w[k, c, y, x], name="w_hwio")


def grouped_conv(x, w_hwio, bias_eff, mult, shift, *, groups, pads, stride, dilation, x_zp,
                 y_zp, out_dtype, relu):
    """groups > 1 (depthwise included): ``y[N, O, OH, OW]`` through an NHWC
    int32 accumulator ``acc[N, OH, OW, O]``."""
    kh, kw, ci, co = (int(d) for d in w_hwio.shape)
    cog = co // groups
    h, w = x.shape[2], x.shape[3]
    oh = (h + pads[0] + pads[2] - ((kh - 1) * dilation[0] + 1)) // stride[0] + 1
    ow = (w + pads[1] + pads[3] - ((kw - 1) * dilation[1] + 1)) // stride[1] + 1
    xp = pad_act_nhwc(x, pads, x_zp, c_multiple=1)
    rkh = te.reduce_axis((0, kh), name="rkh")
    rkw = te.reduce_axis((0, kw), name="rkw")
    rc = te.reduce_axis((0, ci), name="rc")
    acc = te.compute(
        (x.shape[0], oh, ow, co),
        lambda b, i, j, o: te.sum(
            xp[b, i * stride[0] + rkh * dilation[0], j * stride[1] + rkw * dilation[1],
               (o // cog) * ci + rc].astype("int32") * w_hwio[rkh, rkw, rc, o].astype("int32"),
            axis=[rkh, rkw, rc]),
        name="acc")
    return te.compute(
        (x.shape[0], co, oh, ow),
        lambda b, o, i, j: requant(acc[b, i, j, o] + bias_eff[o], mult[o], shift[o], y_zp,
                                   out_dtype, relu),
        name="requant")


# ---------------------------------------------------------------------------
# direct forms: what the lowering emits (any target); the pipeline's
# `int8_pass.Int8Kernels` replaces them by the packed kernels above on CPUs
# and CUDA.  Also the quantize / dequantize / requant_multiplier ops.
# ---------------------------------------------------------------------------

def _zp_pad(x, pads, x_zp: int):
    n, c, h, w = x.shape
    pt, pl, pb, pr = (int(p) for p in pads)
    if not any((pt, pl, pb, pr)):
        return x
    fill = tirx.const(x_zp, str(x.dtype))

    def value(b, k, i, j):
        inside = tirx.all(i >= pt, i < h + pt, j >= pl, j < w + pl)
        return tirx.if_then_else(inside, x[b, k, i - pt, j - pl], fill)

    return te.compute((n, c, h + pt + pb, w + pl + pr), value, name="x_pad")


def direct_qconv2d(x, w, bias, mult, shift, *, pads, stride, dilation, groups, x_zp, y_zp,
                   out_dtype, relu):
    """qconv2d as written in the pinned formula (NCHW / OIHW, any groups)."""
    co, ci, kh, kw = (int(d) for d in w.shape)
    cog = co // groups
    h, wd = x.shape[2], x.shape[3]
    oh = (h + pads[0] + pads[2] - ((kh - 1) * dilation[0] + 1)) // stride[0] + 1
    ow = (wd + pads[1] + pads[3] - ((kw - 1) * dilation[1] + 1)) // stride[1] + 1
    xp = _zp_pad(x, pads, x_zp)
    rc = te.reduce_axis((0, ci), name="rc")
    rkh = te.reduce_axis((0, kh), name="rkh")
    rkw = te.reduce_axis((0, kw), name="rkw")
    zp = tirx.const(x_zp, "int32")
    acc = te.compute(
        (x.shape[0], co, oh, ow),
        lambda b, o, i, j: te.sum(
            (xp[b, (o // cog) * ci + rc, i * stride[0] + rkh * dilation[0],
                j * stride[1] + rkw * dilation[1]].astype("int32") - zp)
            * w[o, rc, rkh, rkw].astype("int32"), axis=[rc, rkh, rkw]),
        name="acc")
    return te.compute(acc.shape, lambda b, o, i, j: requant(
        acc[b, o, i, j] + bias[o], mult[o], shift[o], y_zp, out_dtype, relu), name="requant")


def direct_qdense(x, w, bias, mult, shift, *, x_zp, y_zp, out_dtype, relu):
    """qdense as written in the pinned formula, x of any rank >= 1."""
    k = te.reduce_axis((0, int(w.shape[1])), name="k")
    zp = tirx.const(x_zp, "int32")
    shape = (*x.shape[:-1], w.shape[0])
    acc = te.compute(shape, lambda *ix: te.sum(
        (x[(*ix[:-1], k)].astype("int32") - zp) * w[ix[-1], k].astype("int32"), axis=k), name="acc")
    return te.compute(shape, lambda *ix: requant(
        acc[ix] + bias[ix[-1]], mult[ix[-1]], shift[ix[-1]], y_zp, out_dtype, relu), name="requant")


def _along(t, ix, axis):
    """A scale / zero point at output index `ix`: scalar, or 1-D along `axis`."""
    return t[()] if len(t.shape) == 0 else t[ix[axis]]


def quantize_linear(x, scale, zp, *, axis, dtype: str):
    """clamp(round_half_even(x / scale) + zp, qmin, qmax); x / scale a float32 true division."""
    qmin, qmax = QRANGE[dtype] if dtype in QRANGE else (-(1 << 31), (1 << 31) - 1)

    def value(*ix):
        r = tirx.nearbyint(x[ix].astype("float32") / _along(scale, ix, axis)).astype("float64")
        if zp is not None:
            r = r + _along(zp, ix, axis).astype("float64")
        r = tirx.max(tirx.min(r, tirx.const(qmax, "float64")), tirx.const(qmin, "float64"))
        return r.astype(dtype)

    return te.compute(x.shape, value, name="quantize")


def dequantize_linear(q, scale, zp, *, axis):
    """float32(int32(q) - zp) * scale."""
    def value(*ix):
        d = q[ix].astype("int64")
        if zp is not None:
            d = d - _along(zp, ix, axis).astype("int64")
        return d.astype("float32") * _along(scale, ix, axis)

    return te.compute(q.shape, value, name="dequantize")


def _pow2(k):
    """2.0 ** k (float64) for an int64 k in [-1022, 1023], built from its bits."""
    return tirx.reinterpret("float64", (k + tirx.const(1023, "int64")) << tirx.const(52, "int64"))


def requant_multiplier(s_x, s_w, s_y, shape):
    """(multiplier, shift) of m = f64(s_x) * f64(s_w) / f64(s_y) = f * 2^e, f in [0.5, 1):
    multiplier = round_half_even(f * 2^31) (2^31 -> 2^30, e + 1), shift = 31 - e; m == 0
    gives (0, 31).  frexp is read off the float64's exponent bits (m is normal: a
    subnormal m has no valid shift anyway)."""
    def at(t, ix):
        return t[()] if len(t.shape) == 0 else t[ix[0] if len(t.shape) == 1 else ix]

    def parts(*ix):
        m = (at(s_x, ix).astype("float64") * at(s_w, ix).astype("float64")
             / at(s_y, ix).astype("float64"))
        bits = tirx.reinterpret("int64", m)
        e = ((bits >> tirx.const(52, "int64")) & tirx.const(0x7FF, "int64")) - tirx.const(1022, "int64")
        scaled = tirx.nearbyint(m * _pow2(tirx.const(31, "int64") - e))   # f * 2^31, exact scaling
        top = scaled == tirx.const(float(1 << 31), "float64")
        mult = tirx.if_then_else(top, scaled / 2.0, scaled)
        shift = tirx.const(31, "int64") - tirx.if_then_else(top, e + 1, e)
        zero = m == tirx.const(0.0, "float64")
        return (tirx.if_then_else(zero, tirx.const(0, "int32"), mult.astype("int32")),
                tirx.if_then_else(zero, tirx.const(31, "int32"), shift.astype("int32")))

    mult = te.compute(shape, lambda *ix: parts(*ix)[0], name="multiplier")
    shift = te.compute(shape, lambda *ix: parts(*ix)[1], name="shift")
    return [mult, shift]
