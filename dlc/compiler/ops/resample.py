"""Resampling: `interpolate` (torch.nn.functional.interpolate, also the
`upsample` builtin) and `pixel_shuffle`/`pixel_unshuffle`.

`interpolate` follows PyTorch's CPU kernels (aten/src/ATen/native/UpSample.h)
to the rounding:

* the source coordinate of output index d along an axis of n -> m samples is
  ``s * d`` (align_corners) or ``s * (d + 0.5) - 0.5``, with
  ``s = (n - 1) / (m - 1)`` (align_corners; 0 when m == 1), else ``1 / scale_factor``
  when the user gave one (and did not ask to recompute it), else ``n / m``;
* nearest takes ``min(floor(d * s), n - 1)`` computed in float32 (identity when
  m == n, ``d >> 1`` when m == 2n, as torch's deprecated `nearest_idx`);
  nearest-exact takes ``min(floor((d + 0.5) * s), n - 1)``;
* linear clamps a negative source coordinate to 0 and blends the two
  neighbours ``i0 = min(floor(src), n - 1)`` and ``min(i0 + 1, n - 1)``;
* bicubic is Keys' cubic convolution with A = -0.75 over four taps whose
  indices are clamped to the border;
* area is adaptive average pooling to the output size.

Each axis is resampled on its own (the modes are separable), so the
decomposition is one `index_select` per tap and axis, weighted, with the taps
and weights computed by IR arithmetic from `arange` (the IR has no tensor
constants; no input enters them, so autodiff passes them by).  Its VJP (the adjoint: `scatter_add` of the weighted
cotangent) comes from that decomposition.  `axis_taps` computes the same taps
in NumPy for the backends' direct kernels.
"""
from __future__ import annotations

import math

import numpy as np

from ...errors import ShapeError
from ..dims import floordiv, is_symbolic, known_equal, mul
from .common import require_float
from .registry import RESAMPLE, defdecomp, defop, required
from .vjp_util import scalar

MODES = {"nearest": (1, 2), "nearest-exact": (1, 2), "linear": (1,), "bilinear": (2,), "bicubic": (2,),
         "area": (1, 2)}
CUBIC_A = -0.75
_SPATIAL = {1: "(N, C, L)", 2: "(N, C, H, W)"}


def _per_axis(v, nd: int, what: str):
    vals = tuple(v) if isinstance(v, (list, tuple)) else (v,) * nd
    if len(vals) != nd:
        raise ShapeError(f"interpolate: {what} needs {nd} value(s) for a {nd}-D resample, got {v!r}")
    return vals


def _check_mode(x, attrs) -> int:
    """The number of spatial axes, after checking mode, rank and align_corners as torch does."""
    mode = attrs["mode"]
    if not isinstance(mode, str) or mode not in MODES:
        raise ShapeError(f"interpolate: unknown mode {mode!r}", f"modes: {', '.join(MODES)}")
    nd = x.rank - 2
    if nd not in MODES[mode]:
        want = " or ".join(f"rank {k + 2} {_SPATIAL[k]}" for k in MODES[mode])
        raise ShapeError(f"interpolate: mode {mode!r} needs a {want} input, got {x}",
                         "linear is 1-D, bilinear and bicubic are 2-D; reshape the input or pick the mode "
                         "for its rank")
    for flag in ("align_corners", "recompute_scale_factor"):
        if attrs[flag] is not None and not isinstance(attrs[flag], bool):
            raise ShapeError(f"interpolate: {flag} must be true, false or none, got {attrs[flag]!r}")
    if attrs["align_corners"] is not None and mode not in ("linear", "bilinear", "bicubic"):
        raise ShapeError(f"interpolate: align_corners only applies to linear, bilinear and bicubic, "
                         f"not {mode!r}", "leave align_corners unset for nearest and area")
    if mode not in ("nearest", "area"):
        require_float(x, f"interpolate (mode {mode!r})")
    elif x.dtype.short == "bool":
        raise ShapeError(f"interpolate is not defined on bool tensors, got {x}")
    return nd


def output_sizes(x, attrs) -> tuple:
    """(out sizes, kernel scales): the spatial output size per axis, and the
    scale factor torch's kernel receives (None: it uses in/out)."""
    nd = _check_mode(x, attrs)
    size, factor = attrs["size"], attrs["scale_factor"]
    if (size is None) == (factor is None):
        raise ShapeError("interpolate: give exactly one of size and scale_factor",
                         "e.g. interpolate(x, scale_factor=2) or interpolate(x, size=(64, 64))")
    spatial = x.shape[2:]
    if size is not None:
        if attrs["recompute_scale_factor"]:
            raise ShapeError("interpolate: recompute_scale_factor needs scale_factor, not size")
        sizes = _per_axis(size, nd, "size")
        if not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in sizes):
            raise ShapeError(f"interpolate: size must be positive int(s), got {size!r} (input {x})",
                             "for an output that follows a symbolic input size, use scale_factor=2 and the like")
        return sizes, (None,) * nd
    factors = _per_axis(factor, nd, "scale_factor")
    if not all(isinstance(f, (int, float)) and not isinstance(f, bool) and f > 0 and math.isfinite(f)
               for f in factors):
        raise ShapeError(f"interpolate: scale_factor must be positive number(s), got {factor!r} (input {x})",
                         "e.g. scale_factor=2, or one per spatial axis: scale_factor=(2, 1.5)")
    outs = []
    for n, f in zip(spatial, factors):
        if is_symbolic(n):
            if float(f) != int(f):
                raise ShapeError(f"interpolate: scale_factor {f} of the symbolic size {n} gives no exact size "
                                 f"(input {x})", "use an integer scale_factor, size=..., or bind the dimension")
            outs.append(mul(n, int(f)))
        else:
            # torch: floor(double(in) * scale), in Python's float arithmetic
            outs.append(math.floor(float(n) * float(f)))
    if any(isinstance(o, int) and o <= 0 for o in outs):
        raise ShapeError(f"interpolate: scale_factor {factor!r} gives an empty output from {x}",
                         "input and output sizes must be greater than 0")
    kernel_scales = (None,) * nd if attrs["recompute_scale_factor"] else tuple(float(f) for f in factors)
    return tuple(outs), kernel_scales


def _infer_interpolate(ts, attrs):
    x = ts[0]
    outs, _ = output_sizes(x, attrs)
    return x.with_shape(x.shape[:2] + tuple(outs))


defop("interpolate", "x", _infer_interpolate,
      attrs={"size": None, "scale_factor": None, "mode": "nearest", "align_corners": None,
             "recompute_scale_factor": None},
      groups={RESAMPLE},
      doc="torch.nn.functional.interpolate (nearest, nearest-exact, linear, bilinear, bicubic, area) "
          "by size or scale_factor; no MACs (torchvision's counters count none).")


# ------------------------------------------------------------- source taps
def source_scale(n, m, mode: str, align_corners, scale) -> float:
    """torch's area_pixel_compute_scale (nearest: compute_scales_value)."""
    if align_corners and mode not in ("nearest", "nearest-exact"):
        return (n - 1) / (m - 1) if m > 1 else 0.0
    if scale is not None and scale > 0:
        return 1.0 / scale
    return n / m


def nearest_scale(n: int, m: int, mode: str, scale, nd: int) -> float:
    """The float32 step of nearest.  torch's 2-D nearest (nearest_idx) copies
    when m == n and halves when m == 2n whatever the scale_factor (floor(d * 1.0)
    and floor(d * 0.5) in float32 are exactly that); its 1-D nearest does not."""
    if mode == "nearest" and nd == 2 and m == n:
        return 1.0
    if mode == "nearest" and nd == 2 and m == 2 * n:
        return 0.5
    return source_scale(n, m, mode, None, scale)


def _cubic_weights(t):
    """Keys' cubic convolution weights of the four taps at offsets -1..2 (A = -0.75)."""
    A = CUBIC_A

    def near(v):        # |v| <= 1
        return ((A + 2) * v - (A + 3)) * v * v + 1

    def far(v):         # 1 < |v| < 2
        return ((A * v - 5 * A) * v + 8 * A) * v - 4 * A
    return [far(t + 1), near(t), near(1 - t), far(2 - t)]


def skips_axis(n, m, mode: str) -> bool:
    """torch's separable linear kernels leave an axis whose size does not
    change untouched, whatever the scale_factor (bicubic does not)."""
    return mode in ("linear", "bilinear") and known_equal(n, m) is True


def axis_taps(n: int, m: int, mode: str, align_corners, scale, dtype, nd: int) -> tuple[list, list]:
    """([index arrays], [weight arrays or None]) resampling one axis of n to m
    (of an nd-D resample), each of length m, as torch's CPU kernels compute
    them (`dtype`: the arithmetic's float type, the input's)."""
    d = np.arange(m)
    if skips_axis(n, m, mode):
        return [d], [None]
    if mode in ("nearest", "nearest-exact"):
        s = np.float32(nearest_scale(n, m, mode, scale, nd))
        df = d.astype(np.float32) + (np.float32(0.5) if mode == "nearest-exact" else np.float32(0))
        return [np.minimum(np.floor(df * s).astype(np.int64), n - 1)], [None]
    dt = np.dtype(dtype)
    s = dt.type(source_scale(n, m, mode, align_corners, scale))
    df = d.astype(dt)
    src = s * df if align_corners else s * (df + dt.type(0.5)) - dt.type(0.5)
    if mode != "bicubic":
        src = np.maximum(src, dt.type(0))
    i0 = np.minimum(np.floor(src).astype(np.int64), n - 1)
    lam = np.clip(src - i0.astype(dt), 0, 1).astype(dt)
    if mode != "bicubic":
        return [i0, np.minimum(i0 + 1, n - 1)], [(1 - lam).astype(dt), lam]
    return [np.clip(i0 - 1 + k, 0, n - 1) for k in range(4)], [w.astype(dt) for w in _cubic_weights(lam)]


# ------------------------------------------------------ the decomposition
def _along(b, v, axis: int, rank: int):
    """A (m,) vector shaped to broadcast along `axis` of a rank-`rank` tensor."""
    return b.op("reshape", v, shape=(v.type.shape[0],) + (1,) * (rank - 1 - axis))


def _concrete(n, what: str) -> int:
    if not isinstance(n, int):
        raise ShapeError(f"interpolate: the decomposition (used for gradients and on backends without a kernel) "
                         f"needs a concrete {what}, got {n}", "bind the dimension, e.g. --bind H=64")
    return n


def _ir_taps(b, x, n: int, m: int, mode, align_corners, scale, nd: int):
    """axis_taps built from IR ops, with the same arithmetic."""
    i64 = lambda v: b.op("full", shape=(), value=v, dtype="int64")   # noqa: E731
    f32 = lambda v: b.op("full", shape=(), value=v, dtype="float32")   # noqa: E731
    d = b.op("arange", stop=m, dtype="int64")
    if mode in ("nearest", "nearest-exact"):
        df = b.op("cast", d, dtype="float32")
        if mode == "nearest-exact":
            df = b.op("add", df, f32(0.5))
        s = f32(nearest_scale(n, m, mode, scale, nd))
        idx = b.op("cast", b.op("floor", b.op("mul", df, s)), dtype="int64")
        return [b.op("minimum", idx, i64(n - 1))], [None]
    c = lambda v: scalar(b, v, x)   # noqa: E731
    s = c(source_scale(n, m, mode, align_corners, scale))
    df = b.op("cast", d, dtype=x.type.dtype.numpy_name)
    src = b.op("mul", s, df) if align_corners else b.op("sub", b.op("mul", s, b.op("add", df, c(0.5))), c(0.5))
    if mode != "bicubic":
        src = b.op("maximum", src, c(0.0))
    i0 = b.op("minimum", b.op("cast", b.op("floor", src), dtype="int64"), i64(n - 1))
    lam = b.op("sub", src, b.op("cast", i0, dtype=x.type.dtype.numpy_name))
    lam = b.op("minimum", b.op("maximum", lam, c(0.0)), c(1.0))
    if mode != "bicubic":
        i1 = b.op("minimum", b.op("add", i0, i64(1)), i64(n - 1))
        return [i0, i1], [b.op("sub", c(1.0), lam), lam]
    idx = [b.op("maximum", b.op("minimum", b.op("add", i0, i64(k - 1)), i64(n - 1)), i64(0)) for k in range(4)]
    return idx, _cubic_weights_ir(b, lam, c)


def _cubic_weights_ir(b, t, c):
    """_cubic_weights in IR ops (Horner's form, as torch evaluates it)."""
    A = CUBIC_A
    mul, add, sub = (lambda p, q: b.op("mul", p, q)), (lambda p, q: b.op("add", p, q)), \
        (lambda p, q: b.op("sub", p, q))

    def near(v):
        return add(mul(mul(sub(mul(c(A + 2), v), c(A + 3)), v), v), c(1.0))

    def far(v):
        return sub(mul(add(mul(sub(mul(c(A), v), c(5 * A)), v), c(8 * A)), v), c(4 * A))
    one = c(1.0)
    return [far(add(t, one)), near(t), near(sub(one, t)), far(sub(c(2.0), t))]


@defdecomp("interpolate")
def _(b, ins, a):
    (x,) = ins
    outs, scales = output_sizes(x.type, a)
    nd = len(outs)
    if a["mode"] == "area":
        return b.op(f"adaptive_avg_pool{nd}d", x, output_size=tuple(outs) if nd == 2 else outs[0])
    y = x
    for i in range(nd):
        axis = 2 + i
        if skips_axis(x.type.shape[axis], outs[i], a["mode"]):
            continue
        n = _concrete(x.type.shape[axis], "input size along the resampled axes")
        m = _concrete(outs[i], "output size")
        idx, weights = _ir_taps(b, y, n, m, a["mode"], a["align_corners"], scales[i], nd)
        acc = None
        for ix, w in zip(idx, weights):
            t = b.op("index_select", y, ix, axis=axis)
            if w is not None:
                t = b.op("mul", t, _along(b, w, axis, y.type.rank))
            acc = t if acc is None else b.op("add", acc, t)
        y = acc
    return y


# ------------------------------------------------------ pixel (un)shuffle
def _shuffle(unshuffle: bool):
    name = "pixel_unshuffle" if unshuffle else "pixel_shuffle"
    key = "downscale_factor" if unshuffle else "upscale_factor"

    def infer(ts, attrs):
        x = ts[0]
        r = attrs[key]
        if isinstance(r, bool) or not isinstance(r, int) or r <= 0:
            raise ShapeError(f"{name}: {key} must be a positive int, got {r!r}")
        if x.rank < 3:
            raise ShapeError(f"{name} needs an input of rank >= 3 (..., C, H, W), got {x}")
        c, h, w = x.shape[-3:]
        if unshuffle:
            for d, what in ((h, "height"), (w, "width")):
                if isinstance(d, int) and d % r:
                    raise ShapeError(f"{name}: the {what} {d} of {x} is not divisible by {key} {r}",
                                     f"crop or pad it to a multiple of {r}")
            return x.with_shape(x.shape[:-3] + (mul(c, r * r), floordiv(h, r), floordiv(w, r)))
        if isinstance(c, int) and c % (r * r):
            raise ShapeError(f"{name}: the channels {c} of {x} are not divisible by {key}^2 = {r * r}",
                             f"use a channel count that is a multiple of {r * r}")
        return x.with_shape(x.shape[:-3] + (floordiv(c, r * r), mul(h, r), mul(w, r)))
    return infer


defop("pixel_shuffle", "x", _shuffle(False), attrs={"upscale_factor": required()}, groups={RESAMPLE},
      doc="torch.nn.functional.pixel_shuffle: (..., C*r*r, H, W) -> (..., C, H*r, W*r).")
defop("pixel_unshuffle", "x", _shuffle(True), attrs={"downscale_factor": required()}, groups={RESAMPLE},
      doc="torch.nn.functional.pixel_unshuffle: (..., C, H*r, W*r) -> (..., C*r*r, H, W).")


@defdecomp("pixel_shuffle", "pixel_unshuffle")
def _(b, ins, a):
    (x,) = ins
    lead, (c, h, w) = x.type.shape[:-3], x.type.shape[-3:]
    k = len(lead)
    if "upscale_factor" in a:
        r = a["upscale_factor"]
        co = floordiv(c, r * r)
        # (..., C, r, r, H, W) -> (..., C, H, r, W, r)
        t = b.op("reshape", x, shape=lead + (co, r, r, h, w))
        t = b.op("transpose", t, axes=tuple(range(k)) + tuple(k + i for i in (0, 3, 1, 4, 2)))
        return b.op("reshape", t, shape=lead + (co, mul(h, r), mul(w, r)))
    r = a["downscale_factor"]
    ho, wo = floordiv(h, r), floordiv(w, r)
    # (..., C, H, r, W, r) -> (..., C, r, r, H, W)
    t = b.op("reshape", x, shape=lead + (c, ho, r, wo, r))
    t = b.op("transpose", t, axes=tuple(range(k)) + tuple(k + i for i in (0, 2, 4, 1, 3)))
    return b.op("reshape", t, shape=lead + (mul(c, r * r), ho, wo))
