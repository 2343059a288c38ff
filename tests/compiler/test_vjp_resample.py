"""Gradients of the resampling ops (interpolate, pixel_shuffle,
pixel_unshuffle) against finite differences and torch.autograd.  They have
no VJP rule of their own: autodiff differentiates their decompositions, whose
adjoint scatters the weighted cotangent back to the source taps."""
import pytest
from vjp_harness import check_fd, check_torch, make_inputs

torch = pytest.importorskip("torch")
F = torch.nn.functional


def interp(shape, **kw):
    return ("interpolate", [shape], kw, lambda x: F.interpolate(x, **kw))


CASES = {
    "nearest-1d-scale": interp((2, 3, 5), scale_factor=1.7),
    "nearest-2d-size": interp((1, 2, 4, 5), size=(7, 3)),
    "nearest-exact": interp((1, 2, 5, 4), scale_factor=(1.5, 0.75), mode="nearest-exact"),
    "linear-align": interp((2, 2, 6), size=9, mode="linear", align_corners=True),
    "bilinear-up": interp((1, 2, 4, 5), scale_factor=2, mode="bilinear"),
    "bilinear-down": interp((1, 2, 7, 6), size=(3, 4), mode="bilinear", align_corners=False),
    "bicubic-scale": interp((1, 2, 4, 5), scale_factor=1.5, mode="bicubic"),
    "bicubic-align": interp((1, 1, 5, 4), size=(6, 7), mode="bicubic", align_corners=True),
    "bicubic-recompute": interp((1, 1, 5, 4), scale_factor=1.3, mode="bicubic", recompute_scale_factor=True),
    "area": interp((1, 2, 7, 5), size=(3, 2), mode="area"),
    "pixel_shuffle": ("pixel_shuffle", [(2, 8, 3, 2)], {"upscale_factor": 2}, lambda x: F.pixel_shuffle(x, 2)),
    "pixel_unshuffle": ("pixel_unshuffle", [(2, 1, 4, 6)], {"downscale_factor": 2},
                        lambda x: F.pixel_unshuffle(x, 2)),
    "pixel_shuffle-unbatched": ("pixel_shuffle", [(9, 2, 2)], {"upscale_factor": 3}, lambda x: F.pixel_shuffle(x, 3)),
}


@pytest.mark.parametrize("name", CASES)
def test_vjp_matches_finite_differences(name):
    op, specs, attrs, _ = CASES[name]
    check_fd(op, make_inputs(specs), attrs)


@pytest.mark.parametrize("name", CASES)
def test_vjp_matches_torch_autograd(name):
    op, specs, attrs, fn = CASES[name]
    check_torch(op, make_inputs(specs), attrs, fn)
