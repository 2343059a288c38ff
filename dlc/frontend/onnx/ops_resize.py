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
`scales` only where n * s is whole (ONNX aligns the unrounded n * s).  antialias,
exclude_outside, another cubic coefficient, tf_crop_and_resize and a
`keep_aspect_ratio_policy` other than stretch have no torch counterpart.
"""
from __future__ import annotations

import numpy as np

from .context import Ctx
from .registry import converter

_HALF = ("half_pixel", "pytorch_half_pixel")


def _mode(cx: Ctx, a: dict, nd: int) -> tuple[str, bool | None]:
    """(torch mode, align_corners) for the node's attributes, or a located refusal."""
    mode = _text(a.get("mode", "nearest"))
    ctm = _text(a.get("coordinate_transformation_mode", "half_pixel"))
    near = _text(a.get("nearest_mode", "round_prefer_floor"))
    if mode == "nearest":
        if ctm == "asymmetric" and near == "floor":
            return "nearest", None
        if ctm == "half_pixel" and near == "round_prefer_ceil":
            return "nearest-exact", None
        raise cx.error(f"Resize nearest with coordinate_transformation_mode={ctm!r} and nearest_mode={near!r} "
                       "has no torch counterpart",
                       "dlc maps asymmetric+floor (torch's nearest) and half_pixel+round_prefer_ceil "
                       "(torch's nearest-exact)")
    if mode not in ("linear", "cubic"):
        raise cx.error(f"Resize mode {mode!r} is not one of nearest, linear, cubic")
    if ctm not in _HALF + ("align_corners",):
        raise cx.error(f"Resize {mode} with coordinate_transformation_mode={ctm!r} has no torch counterpart",
                       "dlc maps half_pixel, pytorch_half_pixel and align_corners (torch's align_corners)")
    if mode == "cubic":
        if nd != 2:
            raise cx.error(f"Resize cubic of {nd} spatial axes: torch's bicubic is 2-D only")
        if abs(float(a.get("cubic_coeff_a", -0.75)) + 0.75) > 1e-7:
            raise cx.error(f"Resize cubic_coeff_a={a['cubic_coeff_a']} differs from torch's bicubic (-0.75)")
        if int(a.get("exclude_outside", 0)):
            raise cx.error("Resize exclude_outside=1 has no torch counterpart (torch clamps taps to the border)")
        return "bicubic", ctm == "align_corners" or False
    if nd not in (1, 2):
        raise cx.error(f"Resize linear of {nd} spatial axes: dlc's interpolate is 1-D (linear) or 2-D (bilinear)")
    return ("linear" if nd == 1 else "bilinear"), ctm == "align_corners" or False


def _text(v) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def _per_axis(cx: Ctx, vals: np.ndarray, axes: list, rank: int, what: str, unit) -> list:
    """`vals` given for `axes` (the opset-18 `axes` attribute) spread over all `rank` axes."""
    if len(vals) != len(axes):
        raise cx.error(f"Resize {what} has {len(vals)} values for {len(axes)} axes")
    full = [unit] * rank
    for ax, v in zip(axes, vals):
        full[ax % rank] = v
    return full


@converter("Resize", since=11)
def resize(cx: Ctx, node):
    a = Ctx.attrs(node)
    x = cx.val(node.input[0])
    rank = x.type.rank
    if rank not in (3, 4):
        raise cx.error(f"Resize of a rank-{rank} input: dlc's interpolate resamples (N, C, L) or (N, C, H, W)")
    if int(a.get("antialias", 0)):
        raise cx.error("Resize antialias=1 has no torch interpolate counterpart")
    if _text(a.get("keep_aspect_ratio_policy", "stretch")) != "stretch":
        raise cx.error(f"Resize keep_aspect_ratio_policy={_text(a['keep_aspect_ratio_policy'])!r}: only stretch "
                       "has a torch counterpart")
    if _text(a.get("coordinate_transformation_mode", "")) == "tf_crop_and_resize":
        raise cx.error("Resize tf_crop_and_resize (a region of interest) has no torch counterpart")
    axes = [int(i) for i in a.get("axes", range(rank))]
    names = list(node.input) + ["", "", ""]
    scales_name, sizes_name = names[2], names[3]
    nd = rank - 2
    mode, align = _mode(cx, a, nd)
    attrs = {"mode": mode, "align_corners": align if mode not in ("nearest", "nearest-exact") else None}
    if sizes_name:
        sizes = _per_axis(cx, cx.need_const(sizes_name, "Resize sizes").astype(np.int64).ravel().tolist(),
                          axes, rank, "sizes", None)
        if any(s is not None and s != x.type.shape[i] for i, s in enumerate(sizes[:2])):
            raise cx.error("Resize changes the batch or channel axis: interpolate resamples spatial axes only")
        out = [int(s) if s is not None else x.type.shape[2 + i] for i, s in enumerate(sizes[2:])]
        if any(not isinstance(o, int) for o in out):
            raise cx.error("Resize sizes leave a symbolic spatial axis as it is: give all spatial sizes")
        attrs["size"] = tuple(out)
    elif scales_name:
        scales = _per_axis(cx, cx.need_const(scales_name, "Resize scales").astype(np.float64).ravel().tolist(),
                           axes, rank, "scales", 1.0)
        if scales[0] != 1.0 or scales[1] != 1.0:
            raise cx.error("Resize scales the batch or channel axis: interpolate resamples spatial axes only")
        factors = tuple(float(np.float32(s)) for s in scales[2:])
        attrs["scale_factor"] = factors[0] if len(set(factors)) == 1 else factors
        out = [int(np.floor(float(n) * f)) if isinstance(n, int) else None for n, f in zip(x.type.shape[2:], factors)]
        if align and any(o is None or float(o) != float(n) * f for o, n, f in zip(out, x.type.shape[2:], factors)):
            # ONNX aligns the corners of the unrounded length n * s, torch those of the output
            raise cx.error("Resize align_corners with scales whose output length n * s is not whole: ONNX aligns "
                           "the corners of n * s, torch of floor(n * s)", "give sizes instead of scales")
    else:
        raise cx.error("Resize has neither scales nor sizes")
    if _text(a.get("coordinate_transformation_mode", "half_pixel")) == "pytorch_half_pixel" and 1 in out:
        raise cx.error("Resize pytorch_half_pixel to an output of one sample samples position 0; torch samples the "
                       "middle (use half_pixel)")
    return cx.op("interpolate", x, **attrs)
