"""`interpolate` -> ONNX `Resize`, with the settings that compute torch's
modes exactly (the inverse of dlc/frontend/onnx/ops_resize.py):

    nearest        -> nearest, asymmetric, nearest_mode floor
    nearest-exact  -> nearest, half_pixel, nearest_mode round_prefer_ceil
    linear/bilinear-> linear, half_pixel (align_corners: align_corners)
    bicubic        -> cubic, cubic_coeff_a -0.75, half_pixel (align_corners: align_corners)
    area           -> its decomposition (adaptive average pooling has no Resize mode)

The output is given as `sizes` (ONNX then samples with n / m, as torch does
for a size), except for a scale factor torch uses as it is (not recomputed,
without align_corners): then `scales`, so that both sample at d / s.
"""
from __future__ import annotations

import numpy as np

from .table import onnx_op

_MODES = {"nearest": ("nearest", "asymmetric", "floor"), "nearest-exact": ("nearest", "half_pixel", "round_prefer_ceil"),
          "linear": ("linear", "half_pixel", None), "bilinear": ("linear", "half_pixel", None),
          "bicubic": ("cubic", "half_pixel", None)}


@onnx_op("interpolate")
def _interpolate(e, node, x):
    from ...compiler.ops.resample import output_sizes
    a = node.attrs
    if a["mode"] == "area":
        from .lower import _emit_decomposition
        return _emit_decomposition(e, node, x)
    mode, ctm, nearest = _MODES[a["mode"]]
    if a["align_corners"]:
        ctm = "align_corners"
    kw = {"mode": mode, "coordinate_transformation_mode": ctm}
    if nearest:
        kw["nearest_mode"] = nearest
    if mode == "cubic":
        kw["cubic_coeff_a"] = -0.75
    src = node.inputs[0].type
    sizes, kernel_scales = output_sizes(src, a)
    if a["scale_factor"] is not None and not a["recompute_scale_factor"] and not a["align_corners"]:
        scales = np.array([1.0, 1.0] + [float(s) for s in kernel_scales], dtype=np.float32)
        return [e.op("Resize", [x[0], "", e.const(scales, hint="scales")], **kw)]
    shape = e.op("Concat", [e.dim(d) for d in tuple(src.shape[:2]) + tuple(sizes)], axis=0)
    return [e.op("Resize", [x[0], "", "", shape], **kw)]
