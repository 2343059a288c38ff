"""TVM lowering of `interpolate` through relax's image.resize2d.

resize2d computes each source coordinate from the ratio in/out (or
(in - 1)/(out - 1) with align_corners) in float32, as torch's kernels do when
no scale_factor is passed to them; where torch steps by the user's
1/scale_factor instead and that differs from in/out, and for the modes and
dtypes resize2d has no exact twin of (1-D modes, area, float64, integers), and
for bicubic (where the decomposition measured faster), the node lowers through
its decomposition.  pixel_shuffle/pixel_unshuffle lower
through theirs (a reshape and a transpose is what TVM would emit anyway).
"""
from __future__ import annotations

from ...compiler.ops.resample import nearest_scale, output_sizes, skips_axis
from .lowering import _op, arg_as, lowers, out_dtype

# torch mode -> (resize2d method, coordinate transformation without / with align_corners).
# Bicubic (resize2d "cubic", cubic_alpha -0.75, matches torch too) is left to the
# decomposition: resize2d took 1.4x its time (9.9 vs 6.9 ms, x2 of 8x32x32x32; 13.3 vs
# 10.3 ms to 50x70 align_corners), where bilinear's resize2d is 15x faster than the
# decomposition (bench/bench_activations.py --backends tvm --ops interpolate)
_METHOD = {
    "nearest": ("nearest_neighbor", "asymmetric", None),
    "nearest-exact": ("nearest_neighbor", "tf_half_pixel_for_nn", None),
    "bilinear": ("linear", "half_pixel", "align_corners"),
}


def _ratio_is_torchs(n: int, m: int, mode: str, align_corners, scale) -> bool:
    """Whether resize2d's in/out step along an axis equals the one torch takes."""
    if scale is None or (align_corners and mode in ("bilinear", "bicubic")) or skips_axis(n, m, mode):
        return True
    if mode in ("nearest", "nearest-exact"):
        return nearest_scale(n, m, mode, scale, 2) == n / m
    return 1.0 / scale == n / m


@lowers("interpolate")
def _interpolate(low, node, args, env):
    a = node.attrs
    x_type = node.inputs[0].type
    dt = out_dtype(node)
    if a["mode"] not in _METHOD or dt != "float32":
        return low.decomposed(node, args)
    outs, scales = output_sizes(x_type, a)
    sizes = [low.concrete(d, "the interpolate input size") for d in x_type.shape[2:]]
    outs = [low.concrete(d, "the interpolate output size") for d in outs]
    if not all(_ratio_is_torchs(n, m, a["mode"], a["align_corners"], s) for n, m, s in zip(sizes, outs, scales)) \
            or (a["align_corners"] and 1 in outs):    # topi divides by out - 1; torch's step is then 0
        return low.decomposed(node, args)
    method, plain, aligned = _METHOD[a["mode"]]
    x = arg_as(low, node, args, 0, dt)
    return low.emit(_op().image.resize2d(
        x, tuple(outs), layout="NCHW", method=method,
        coordinate_transformation_mode=aligned if a["align_corners"] else plain,
        rounding_method="floor" if method == "nearest_neighbor" else ""))
