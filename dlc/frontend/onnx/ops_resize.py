"""ONNX `Resize` -> the IR's `interpolate` (torch.nn.functional.interpolate).

Only the ONNX settings that compute exactly what one of torch's modes
computes are mapped (the same sample positions, taps and weights); any other
is refused with an error naming the node, never approximated:

    mode     coordinate_transformation_mode      nearest_mode        -> interpolate
    nearest  asymmetric                          floor               -> nearest
    nearest  half_pixel                          round_prefer_ceil   -> nearest-exact
    linear   half_pixel (pytorch_half_pixel*)    -                   -> linear/bilinear
    linear   align_corners                       -                   -> ... align_corners=true
    cubic    half_pixel (pytorch_half_pixel*)    -  (a = -0.75)      -> bicubic
    cubic    align_corners                       -  (a = -0.75)      -> bicubic, align_corners=true

(*) pytorch_half_pixel differs from half_pixel only on an axis whose output
has one sample, where it samples 0 and torch the middle: refused there.
Only the spatial axes (2 and on, of a rank-3 or rank-4 input) may change
size.  `scales` give `scale_factor` (output floor(n * s), as both define it;
the source position uses s itself, as torch does when given a factor);
`sizes` give `size` (the position uses n / m in both); align_corners with
`scales` only where n * s is whole (ONNX aligns the unrounded n * s).

Every other setting (antialias, exclude_outside, another cubic coefficient,
the other nearest modes, half_pixel_symmetric, asymmetric cubic/linear,
tf_crop_and_resize, keep_aspect_ratio_policy, any rank or axis) is imported
exactly as per-axis tables (`resize_tables.py`): for each resized axis an
index gather when every output copies one input sample (nearest), else a
matmul with the constant interpolation matrix plus an offset (nonzero only
where tf_crop_and_resize extrapolates).  NaN/inf: the reference multiplies its
taps by their weights, zero ones included; a gather passes them only where
picked (as onnxruntime), a matmul to every output of the row.
"""
from __future__ import annotations

import numpy as np

from . import resize_tables as rt
from .context import Ctx
from .registry import converter

_HALF = ("half_pixel", "pytorch_half_pixel")


def _mode(st: dict, nd: int) -> tuple[str, bool] | None:
    """(torch mode, align_corners) computing exactly what the node's settings compute, or None."""
    mode, ctm, near = st["mode"], st["ctm"], st["nearest_mode"]
    if st["antialias"] or st["policy"] != "stretch":
        return None
    if mode == "nearest":
        if ctm == "asymmetric" and near == "floor":
            return "nearest", False
        if ctm == "half_pixel" and near == "round_prefer_ceil":
            return "nearest-exact", False
        return None
    if mode not in ("linear", "cubic") or ctm not in _HALF + ("align_corners",):
        return None
    if mode == "cubic":
        # torch's bicubic: 2-D, a = -0.75, taps clamped to the border
        if nd != 2 or abs(st["cubic_coeff_a"] + 0.75) > 1e-7 or st["exclude_outside"]:
            return None
        return "bicubic", ctm == "align_corners"
    if nd not in (1, 2):
        return None
    return ("linear" if nd == 1 else "bilinear"), ctm == "align_corners"


def _per_axis(cx: Ctx, vals: list, axes: list, rank: int, what: str, unit) -> list:
    """`vals` given for `axes` (the opset-18 `axes` attribute) spread over all `rank` axes."""
    if len(vals) != len(axes):
        raise cx.error(f"Resize {what} has {len(vals)} values for {len(axes)} axes")
    full = [unit] * rank
    for ax, v in zip(axes, vals):
        full[ax % rank] = v
    return full


def _as_interpolate(cx: Ctx, x, st: dict, axes: list, scales, sizes):
    """The node as torch's `interpolate` where that computes exactly the same, else None."""
    rank = x.type.rank
    if rank not in (3, 4):
        return None
    found = _mode(st, rank - 2)
    if found is None:
        return None
    mode, align = found
    attrs = {"mode": mode, "align_corners": align if mode not in ("nearest", "nearest-exact") else None}
    shape = x.type.shape
    if sizes is not None:
        sizes = _per_axis(cx, sizes, axes, rank, "sizes", None)
        if any(s is not None and s != shape[i] for i, s in enumerate(sizes[:2])):
            return None       # the batch or channel axis changes size: interpolate resamples spatial axes only
        out = [int(s) if s is not None else shape[2 + i] for i, s in enumerate(sizes[2:])]
        if any(not isinstance(o, int) for o in out):
            return None
        attrs["size"] = tuple(out)
    else:
        scales = _per_axis(cx, scales, axes, rank, "scales", 1.0)
        if scales[0] != 1.0 or scales[1] != 1.0:
            return None
        factors = tuple(float(np.float32(s)) for s in scales[2:])
        attrs["scale_factor"] = factors[0] if len(set(factors)) == 1 else factors
        out = [int(np.floor(float(n) * f)) if isinstance(n, int) else None for n, f in zip(shape[2:], factors)]
        if align and any(o is None or float(o) != float(n) * f for o, n, f in zip(out, shape[2:], factors)):
            return None       # ONNX aligns the corners of the unrounded n * s, torch those of floor(n * s)
    if st["ctm"] == "pytorch_half_pixel" and 1 in out:
        return None           # ONNX samples position 0 for a one-sample output, torch the middle
    return cx.op("interpolate", x, **attrs)


def _roi(cx: Ctx, node, rank: int, axes: list | None) -> list | None:
    """The region of interest as (start, end) per axis (tf_crop_and_resize only), as the reference spreads it."""
    names = list(node.input) + ["", ""]
    if not names[1]:
        return None
    roi = list(cx.need_const(names[1], "Resize roi").reshape(-1))
    if not roi:
        return None
    if axes is None:
        if len(roi) != 2 * rank:
            raise cx.error(f"Resize roi has {len(roi)} values for a rank-{rank} input (2 per axis)")
        return [(roi[i], roi[rank + i]) for i in range(rank)]
    if len(roi) != 2 * len(axes):
        raise cx.error(f"Resize roi has {len(roi)} values for {len(axes)} axes (2 per axis)")
    full = [(0.0, 1.0)] * rank
    for i, d in enumerate(axes):
        full[d % rank] = (roi[i], roi[len(axes) + i])
    return full


def _by_tables(cx: Ctx, node, x, st: dict, axes: list | None, scales, sizes):
    """The node axis by axis: a gather (nearest) or a matmul with the axis's interpolation matrix."""
    shape, rank = list(x.type.shape), x.type.rank
    resized = list(range(rank)) if axes is None else [int(d) % rank for d in axes]
    roi = _roi(cx, node, rank, axes) if st["ctm"] == "tf_crop_and_resize" else None
    for k, d in enumerate(resized):
        # a symbolic axis (a dynamic batch) may stay as it is: scale exactly 1, no region of interest
        kept = sizes is None and float(scales[k]) == 1.0 and st["policy"] == "stretch" \
            and (roi is None or rt.is_identity(1, 1.0, 1, roi[d]))
        if not isinstance(shape[d], int) and not kept:
            raise cx.error(f"Resize of axis {d}, whose length {shape[d]} is symbolic: the interpolation "
                           "tables are computed when the model is imported", "bind the dimension (bind=)")
    try:
        scale, out = rt.plan(shape, axes, scales, sizes, st["policy"])
    except rt.ResizeSettingError as e:
        raise cx.error(f"Resize: {e}") from None
    dt = x.type.dtype
    for d in resized:
        axis_roi = None if roi is None else roi[d]
        if rt.is_identity(shape[d], scale[d], out[d], axis_roi):
            continue
        try:
            mat, off = rt.axis_table(shape[d], scale[d], out[d], st, axis_roi)
        except rt.ResizeSettingError as e:
            raise cx.error(f"Resize: {e}") from None
        idx = rt.gather_index(mat, off)
        if idx is not None:
            x = cx.op("index_select", x, cx.materialize(idx, f"resize_index{d}"), axis=d)
            continue
        if not dt.is_float:
            raise cx.error(f"Resize {st['mode']} of a {dt.numpy_name} input: dlc interpolates floating point only")
        x = _apply_matrix(cx, x, d, mat.astype(dt.numpy_name), off.astype(dt.numpy_name))
    return x


def _apply_matrix(cx: Ctx, x, d: int, mat: np.ndarray, off: np.ndarray):
    """y = M @ x + c along axis d (M @ x on the second-to-last axis, x @ M^T on the last, else moved last)."""
    rank = x.type.rank
    if d == rank - 2 and rank >= 2:
        y = cx.op("matmul", cx.materialize(mat, f"resize_matrix{d}"), x)
        return cx.op("add", y, cx.materialize(off.reshape(-1, 1), f"resize_offset{d}")) if off.any() else y
    perm = list(range(rank))
    perm[d], perm[-1] = perm[-1], perm[d]
    moved = x if d == rank - 1 else cx.op("transpose", x, axes=tuple(perm))
    y = cx.op("matmul", moved, cx.materialize(np.ascontiguousarray(mat.T), f"resize_matrix{d}"))
    if off.any():
        y = cx.op("add", y, cx.materialize(off, f"resize_offset{d}"))
    return y if d == rank - 1 else cx.op("transpose", y, axes=tuple(perm))


@converter("Resize", since=11)
def resize(cx: Ctx, node):
    a = Ctx.attrs(node)
    x = cx.val(node.input[0])
    st = rt.settings(a)
    if st["mode"] not in ("nearest", "linear", "cubic"):
        raise cx.error(f"Resize mode {st['mode']!r} is not one of nearest, linear, cubic")
    axes = [int(i) for i in a["axes"]] if "axes" in a else None
    names = list(node.input) + ["", "", ""]
    scales = sizes = None
    if names[3]:
        sizes = cx.need_const(names[3], "Resize sizes").astype(np.int64).ravel().tolist()
    if sizes is None or not sizes:
        sizes = None
        if names[2]:
            scales = cx.need_const(names[2], "Resize scales").astype(np.float64).ravel().tolist()
        if not scales:
            raise cx.error("Resize has neither scales nor sizes")
    want = len(axes) if axes is not None else x.type.rank
    if len(sizes if sizes is not None else scales) != want:
        raise cx.error(f"Resize {'sizes' if sizes is not None else 'scales'} has "
                       f"{len(sizes if sizes is not None else scales)} values for {want} axes")
    readable = _as_interpolate(cx, x, st, axes if axes is not None else list(range(x.type.rank)), scales, sizes)
    return readable if readable is not None else _by_tables(cx, node, x, st, axes, scales, sizes)
