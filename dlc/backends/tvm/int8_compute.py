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


def pad_act_nhwc(x, pads, x_zp: int, c_multiple: int = 4, signed_act: bool = False):
    """NCHW uint8 -> zero-point-padded NHWC with channels padded to `c_multiple`.

    `pads` = (top, left, bottom, right).  With `signed_act` the stored value
    is ``x - 128`` as int8 (what `sdot` multiplies)."""
    n, c, h, w = x.shape
    pt, pl, pb, pr = (int(p) for p in pads)
    c4 = ceil_to(int(c), c_multiple)
    dtype = "int8" if signed_act else "uint8"
    fill = tirx.const(x_zp - 128 if signed_act else x_zp, dtype)

    def value(b, i, j, k):
        inside = tirx.all(i >= pt, i < h + pt, j >= pl, j < w + pl, k < c)
        v = x[b, tirx.min(k, c - 1), i - pt, j - pl]
        if signed_act:
            v = (v.astype("int32") - 128).astype("int8")
        return tirx.if_then_else(inside, v, fill)

    return te.compute((n, h + pt + pb, w + pl + pr, c4), value, name="x_nhwc_pad")


def pack_weight(w, lanes: int):
    """OIHW int8 -> ``wp[O / lanes, KH, KW, C4 / 4, lanes, 4]`` (zero-padded)."""
    o, c, kh, kw = (int(d) for d in w.shape)
    ob, cb = ceil_to(o, lanes) // lanes, ceil_to(c, 4) // 4

    def value(bo, y, x, bc, lo, lc):
        oc, ic = bo * lanes + lo, bc * 4 + lc
        inside = tirx.all(oc < o, ic < c)
        return tirx.if_then_else(inside, w[tirx.min(oc, o - 1), tirx.min(ic, c - 1), y, x],
                                 tirx.const(0, "int8"))

    return te.compute((ob, kh, kw, cb, lanes, 4), value, name="w_packed")


def effective_bias(bias, w, x_zp: int, signed_act: bool = False):
    """``bias_q - zp * sum(w)`` per output channel (int32), for any weight rank
    whose axis 0 is the output channel."""
    zp = x_zp - 128 if signed_act else x_zp
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


def requant_blocked(acc, bias_eff, mult, shift, y_zp, out_dtype, relu, n_out):
    """``y[N, O / L, L, OH, OW]`` from ``acc[N, OH, OW, O / L, L]``.  Lanes past
    `n_out` (padding) read channel ``n_out - 1``'s constants and are sliced
    off by the caller."""
    n, oh, ow, ob, lanes = acc.shape

    padded = int(ob) * int(lanes) != n_out

    def value(b, o, l, i, j):
        co = o * lanes + l
        if padded:  # (a clamp only where needed: it turns the vector loads into gathers)
            co = tirx.min(co, n_out - 1)
        return requant(acc[b, i, j, o, l] + bias_eff[co], mult[co], shift[co], y_zp, out_dtype, relu)

    return te.compute((n, ob, lanes, oh, ow), value, name="requant")


def qconv2d_packed(x, wp, bias_eff, mult, shift, *, pads, stride, dilation, x_zp, y_zp,
                   out_dtype, relu, n_out, signed_act=False):
    """The whole groups == 1 kernel: pad/transpose, contraction, requantisation.
    Returns ``y[N, O / L, L, OH, OW]``."""
    kh, kw = int(wp.shape[1]), int(wp.shape[2])
    h, w = x.shape[2], x.shape[3]
    oh = (h + pads[0] + pads[2] - ((kh - 1) * dilation[0] + 1)) // stride[0] + 1
    ow = (w + pads[1] + pads[3] - ((kw - 1) * dilation[1] + 1)) // stride[1] + 1
    xp = pad_act_nhwc(x, pads, x_zp, signed_act=signed_act)
    acc = conv_packed(xp, wp, (oh, ow), stride, dilation)
    return requant_blocked(acc, bias_eff, mult, shift, y_zp, out_dtype, relu, n_out)


def qdense_packed(x2d, wp, bias_eff, mult, shift, *, x_zp, y_zp, out_dtype, relu, n_out,
                  signed_act=False):
    """qdense on ``x[M, K]`` as a 1 x M "image" of K channels: the same kernel
    with kernel size 1 (the rows of the register tile are rows of x).
    Returns ``y[1, N / L, L, 1, M]``."""
    m, k = x2d.shape
    img = te.compute((1, k, 1, m), lambda b, c, i, j: x2d[j, c], name="x_rows")
    return qconv2d_packed(img, wp, bias_eff, mult, shift, pads=(0, 0, 0, 0), stride=(1, 1),
                          dilation=(1, 1), x_zp=x_zp, y_zp=y_zp, out_dtype=out_dtype, relu=relu,
                          n_out=n_out, signed_act=signed_act)


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
