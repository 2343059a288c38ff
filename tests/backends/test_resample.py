"""interpolate / upsample and pixel_shuffle / pixel_unshuffle against PyTorch.

The NumPy kernel and the decomposition (what gradients and backends without a
kernel use) are both compared with `torch.nn.functional` over every mode,
align_corners, size and scale_factor (including factors torch steps by
rather than in/out, and the sizes where torch's kernels copy or halve);
float64 to 1e-12, float32 to float32 rounding.  Then the `.dln` builtins, the
shape rule (symbolic sizes) and the errors bad arguments give, at their line.
"""
from __future__ import annotations

import textwrap

import numpy as np
import pytest

import dlc
import dlc.backends.numpy.interpreter as interp
from dlc.backends.numpy.interpreter import Interpreter
from dlc.compiler.builder import Builder
from dlc.compiler.dims import Dim
from dlc.compiler.ir import Graph
from dlc.compiler.types import DType, TensorType
from dlc.errors import DlcError, ShapeError

torch = pytest.importorskip("torch")
F = torch.nn.functional

_RESIZES = {1: [{"size": 3}, {"size": 11}, {"size": 1}, {"scale_factor": 2}, {"scale_factor": 1.7},
                {"scale_factor": 0.6}, {"scale_factor": 1.1}, {"scale_factor": 2.1},
                {"scale_factor": 2.3, "recompute_scale_factor": True}],
            2: [{"size": (3, 4)}, {"size": (11, 13)}, {"size": (1, 1)}, {"scale_factor": 2},
                {"scale_factor": (1.5, 0.75)}, {"scale_factor": (1.1, 2.1)}, {"scale_factor": 0.6},
                {"scale_factor": (2.3, 1.3), "recompute_scale_factor": True}]}
_MODES = {"nearest": (1, 2), "nearest-exact": (1, 2), "linear": (1,), "bilinear": (2,), "bicubic": (2,),
          "area": (1, 2)}


def _cases():
    out = []
    for mode, nds in _MODES.items():
        aligns = [None] if mode in ("nearest", "nearest-exact", "area") else [False, True]
        for nd in nds:
            for ac in aligns:
                for kw in _RESIZES[nd]:
                    attrs = {"mode": mode, **kw, **({} if ac is None else {"align_corners": ac})}
                    out.append(pytest.param(nd, attrs, id=f"{nd}d-" + "-".join(f"{k}={v}" for k, v in attrs.items())))
    return out


CASES = _cases()


def _one_node(op: str, x: np.ndarray, attrs: dict) -> Graph:
    g = Graph("one")
    v = g.add_input("x", TensorType(DType.from_numpy(x.dtype), x.shape))
    y = Builder(g).op(op, v, **attrs)
    g.outputs, g.output_names = [y], ["y"]
    return g


def _input(nd: int, dtype=np.float64, seed=0):
    shape = (2, 3, 5) if nd == 1 else (2, 3, 5, 7)
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def _torch(op, x, attrs):
    return getattr(F, op)(torch.from_numpy(x), **attrs).numpy()


def _run(op, x, attrs, decomposed: bool, monkeypatch):
    if decomposed:
        monkeypatch.delitem(interp.KERNELS, op)
    return Interpreter(_one_node(op, x, attrs)).run({"x": x}, {})[0]["y"]


@pytest.mark.parametrize("decomposed", [False, True], ids=["kernel", "decomposition"])
@pytest.mark.parametrize("nd,attrs", CASES)
def test_interpolate_float64_matches_torch(nd, attrs, decomposed, monkeypatch):
    x = _input(nd)
    want = _torch("interpolate", x, attrs)
    got = _run("interpolate", x, attrs, decomposed, monkeypatch)
    assert got.shape == want.shape and got.dtype == x.dtype
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("nd,attrs", CASES)
def test_interpolate_float32_matches_torch(nd, attrs, monkeypatch):
    x = _input(nd, np.float32, seed=1)
    want = _torch("interpolate", x, attrs)
    got = _run("interpolate", x, attrs, False, monkeypatch)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=2e-6, atol=4e-6)


def test_nearest_picks_torchs_source_pixels_exactly():
    """Nearest's index rule, on an arange: floor(d * s) in float32, the copy/halve
    special cases of 2-D, and none of them in 1-D (as torch's kernels do)."""
    for shape, kw in [((1, 1, 5), {"scale_factor": 2.1}), ((1, 1, 1, 5), {"scale_factor": (1, 2.1)}),
                      ((1, 1, 5), {"scale_factor": 1.1}), ((1, 1, 1, 5), {"scale_factor": (1, 1.1)}),
                      ((1, 1, 7), {"size": 3}), ((1, 1, 3, 7), {"size": (8, 16)})]:
        x = np.arange(int(np.prod(shape)), dtype=np.float64).reshape(shape)
        got = Interpreter(_one_node("interpolate", x, kw)).run({"x": x}, {})[0]["y"]
        np.testing.assert_array_equal(got, _torch("interpolate", x, kw), err_msg=str(kw))


@pytest.mark.parametrize("decomposed", [False, True], ids=["kernel", "decomposition"])
@pytest.mark.parametrize("op,shape,r", [("pixel_shuffle", (2, 18, 4, 5), 3), ("pixel_shuffle", (8, 2, 3), 2),
                                        ("pixel_shuffle", (2, 3, 4, 1, 2), 1),
                                        ("pixel_unshuffle", (3, 2, 6, 9), 3), ("pixel_unshuffle", (2, 4, 6), 2)])
def test_pixel_shuffle_matches_torch(op, shape, r, decomposed, monkeypatch):
    x = np.random.default_rng(2).standard_normal(shape)
    key = "upscale_factor" if op == "pixel_shuffle" else "downscale_factor"
    got = _run(op, x, {key: r}, decomposed, monkeypatch)
    np.testing.assert_array_equal(got, _torch(op, x, {key: r}))


def test_nonfinite_values_pass_through_as_in_torch(monkeypatch):
    x = np.random.default_rng(3).standard_normal((1, 2, 4, 5))
    x[0, 0, 1, 2], x[0, 1, 3, 0] = np.nan, np.inf
    for attrs in ({"scale_factor": 2, "mode": "bilinear"}, {"size": (7, 3), "mode": "bicubic"},
                  {"scale_factor": 1.5}):
        want = _torch("interpolate", x, attrs)
        for decomposed in (False, True):
            with monkeypatch.context() as m:
                got = _run("interpolate", x, attrs, decomposed, m)
            np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
            np.testing.assert_allclose(got[~np.isnan(want)], want[~np.isnan(want)], rtol=1e-12)


# ------------------------------------------------------------ shape rule
def test_symbolic_sizes_follow_an_integer_scale_factor():
    g = Graph("sym")
    h, w = Dim.symbol("H"), Dim.symbol("W")
    x = g.add_input("x", TensorType(DType.f32, (Dim.symbol("N"), 8, h, w)))
    b = Builder(g)
    y = b.op("interpolate", x, scale_factor=2, mode="bilinear")
    assert y.type.shape[2:] == (2 * h, 2 * w)
    z = b.op("pixel_unshuffle", b.op("pixel_shuffle", x, upscale_factor=2), downscale_factor=2)
    assert z.type.shape[1] == 8
    with pytest.raises(ShapeError, match="gives no exact size"):
        b.op("interpolate", x, scale_factor=1.5)


def _spec(tmp_path, body: str, shape="f32[N, 4, 6, 5]", ret="f32[N, 4, 12, 10]"):
    p = tmp_path / "m.dln"
    p.write_text(textwrap.dedent(f"""\
        model M(x: {shape}) -> {ret} {{
            example N = 2
            y = {body}
            return y
        }}
        """))
    return p


@pytest.mark.parametrize("body", ['interpolate(x, scale_factor=2, mode="bilinear", align_corners=true)',
                                  'upsample(x, size=(12, 10), mode="bicubic")',
                                  "x |> upsample(scale_factor=2)",
                                  "pixel_shuffle(pixel_unshuffle(interpolate(x, scale_factor=2), 2), 2)"])
def test_builtins_match_torch(tmp_path, body):
    m = dlc.load(_spec(tmp_path, body))
    x = np.random.default_rng(4).standard_normal((2, 4, 6, 5)).astype(np.float32)
    got = m.run({"x": x})["y"]
    t = torch.from_numpy(x)
    ref = {0: lambda: F.interpolate(t, scale_factor=2, mode="bilinear", align_corners=True),
           1: lambda: F.interpolate(t, size=(12, 10), mode="bicubic"),
           2: lambda: F.interpolate(t, scale_factor=2),
           3: lambda: F.pixel_shuffle(F.pixel_unshuffle(F.interpolate(t, scale_factor=2), 2), 2)}
    idx = [i for i, b in enumerate(["bilinear", "bicubic", "|>", "pixel"]) if b in body][0]
    np.testing.assert_allclose(got, ref[idx]().numpy(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("body,shape,message", [
    ('interpolate(x, scale_factor=2, mode="bilinear")', "f32[N, 4, 6]", "mode 'bilinear' needs a rank 4"),
    ('interpolate(x, scale_factor=2, mode="linear")', "f32[N, 4, 6, 5]", "mode 'linear' needs a rank 3"),
    ('interpolate(x, scale_factor=2, mode="trilinear")', "f32[N, 4, 6, 5]", "unknown mode 'trilinear'"),
    ("interpolate(x)", "f32[N, 4, 6, 5]", "exactly one of size and scale_factor"),
    ("interpolate(x, size=(12, 10), scale_factor=2)", "f32[N, 4, 6, 5]", "exactly one of size and scale_factor"),
    ("interpolate(x, scale_factor=2, align_corners=true)", "f32[N, 4, 6, 5]", "align_corners only applies"),
    ("interpolate(x, size=(12, 10, 3))", "f32[N, 4, 6, 5]", "size needs 2 value"),
    ("interpolate(x, size=(12, 0))", "f32[N, 4, 6, 5]", "size must be positive"),
    ("interpolate(x, scale_factor=0.1)", "f32[N, 4, 6, 5]", "empty output"),
    ("interpolate(x, size=(12, 10), recompute_scale_factor=true)", "f32[N, 4, 6, 5]", "recompute_scale_factor"),
    ("pixel_shuffle(x, 2)", "f32[N, 6, 6, 5]", r"not divisible by upscale_factor\^2 = 4"),
    ("pixel_unshuffle(x, 2)", "f32[N, 4, 6, 5]", "width 5 of .* is not divisible"),
    ("pixel_shuffle(x, 0)", "f32[N, 4, 6, 5]", "must be a positive int"),
    ('interpolate(x, size=(12, 10), mode="bilinear", align_corners=1)', "f32[N, 4, 6, 5]",
     "align_corners must be true, false or none"),
    ('interpolate(x, size=(12, 10), mode="bilinear", align_corners="yes")', "f32[N, 4, 6, 5]",
     "align_corners must be true, false or none"),
    ("interpolate(x, scale_factor=(2, 1e400))", "f32[N, 4, 6, 5]", "scale_factor must be positive"),
    ('interpolate(x, scale_factor="x")', "f32[N, 4, 6, 5]", "scale_factor must be positive"),
    ("interpolate(x, size=H)", "f32[N, 4, H, 5]", "size must be positive int"),
    ("interpolate(x, scale_factor=2, mode=[1])", "f32[N, 4, 6, 5]", "unknown mode"),
])
def test_bad_arguments_are_located_errors(tmp_path, body, shape, message):
    with pytest.raises(DlcError, match=message) as e:
        dlc.load(_spec(tmp_path, body, shape=shape))
    assert "m.dln:3" in str(e.value)


def test_generated_torch_module_is_torchscript(tmp_path):
    """`dlc compile -t torch --script`: TorchScript's F.interpolate wants float
    scale factors and list sizes; the lowering writes them so."""
    from click.testing import CliRunner

    from dlc.cli import main
    p = tmp_path / "m.dln"
    p.write_text(textwrap.dedent("""\
        model M(x: f32[N, 4, 6, 5], s: f32[N, 4, 7]) -> (f32[N, 4, 12, 10], f32[N, 4, 3]) {
            example N = 2
            a = interpolate(x, scale_factor=2, mode="bilinear", align_corners=true)
            b = upsample(x, size=(12, 10), mode="bicubic")
            c = interpolate(x, scale_factor=(2, 2.0)) + pixel_shuffle(pixel_unshuffle(a, 2), 2)
            t = interpolate(s, size=3, mode="linear") + interpolate(s, scale_factor=0.5)
            return a + b + c, t
        }
        """))
    res = CliRunner().invoke(main, ["compile", str(p), "-t", "torch", "--script", "-o", str(tmp_path / "m.py")])
    assert res.exit_code == 0, res.output
    src = (tmp_path / "m.py").read_text()
    assert "scale_factor=2.0" in src and "size=[12, 10]" in src and "scale_factor=[2.0, 2.0]" in src
    assert "size=3" in src and "scale_factor=0.5" in src
