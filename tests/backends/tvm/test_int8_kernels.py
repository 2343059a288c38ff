"""The TVM int8 kernels (backends/tvm/int8_compute.py, int8_schedule.py) equal
an independent NumPy implementation of the pinned integer formula bit for
bit, and their machine code uses the dot-product instructions: `vpdpbusd`
(x86 AVX512-VNNI), `sdot` (aarch64, cross-compiled), `__dp4a` (CUDA, compiled
only)."""
from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest

tvm = pytest.importorskip("tvm")

from tvm import te  # noqa: E402

from dlc.backends.tvm import int8_compute as C  # noqa: E402
from dlc.backends.tvm import int8_schedule as S  # noqa: E402
from dlc.backends.tvm.pipeline import as_target  # noqa: E402

pytestmark = pytest.mark.tvm

HOST = as_target("llvm")
HAS_VNNI = "vnni" in S.cpu_features(HOST)
QR = {"uint8": (0, 255), "int8": (-128, 127)}


def ref_qconv2d(x, w, bias, mult, shift, stride, pads, dil, groups, x_zp, y_zp, out_dtype, relu):
    """The pinned formula with explicit loops over the kernel taps, in int64."""
    n, _ci, h, wd = x.shape
    co, cig, kh, kw = w.shape
    xc = np.pad(x.astype(np.int64) - x_zp, ((0, 0), (0, 0), (pads[0], pads[2]), (pads[1], pads[3])))
    oh = (h + pads[0] + pads[2] - (kh - 1) * dil[0] - 1) // stride[0] + 1
    ow = (wd + pads[1] + pads[3] - (kw - 1) * dil[1] - 1) // stride[1] + 1
    acc = np.zeros((n, co, oh, ow), np.int64)
    cog = co // groups
    for o in range(co):
        g = o // cog
        for c in range(cig):
            for i in range(kh):
                for j in range(kw):
                    tap = xc[:, g * cig + c, i * dil[0]:i * dil[0] + stride[0] * (oh - 1) + 1:stride[0],
                             j * dil[1]:j * dil[1] + stride[1] * (ow - 1) + 1:stride[1]]
                    acc[:, o] += tap * int(w[o, c, i, j])
    acc = acc + bias.astype(np.int64)[None, :, None, None]
    return _requant(acc, mult[None, :, None, None], shift[None, :, None, None], y_zp, out_dtype, relu)


def ref_qdense(x, w, bias, mult, shift, x_zp, y_zp, out_dtype, relu):
    acc = np.einsum("...k,nk->...n", x.astype(np.int64) - x_zp, w.astype(np.int64)) + bias.astype(np.int64)
    return _requant(acc, mult, shift, y_zp, out_dtype, relu)


def _requant(acc, mult, shift, y_zp, out_dtype, relu):
    m, s = mult.astype(np.int64), shift.astype(np.int64)
    y = y_zp + ((acc * m + (np.int64(1) << (s - 1))) >> s)
    lo, hi = QR[out_dtype]
    return np.clip(y, max(lo, y_zp) if relu else lo, hi).astype(out_dtype)


def _operands(rng, co, w_shape, x_shape, in_dtype="uint8"):
    lo, hi = QR[in_dtype]
    x = rng.integers(lo, hi + 1, x_shape).astype(in_dtype)
    w = rng.integers(-127, 128, w_shape).astype(np.int8)
    bias = rng.integers(-20000, 20000, co).astype(np.int32)
    mult = rng.integers(1 << 30, (1 << 31) - 1, co).astype(np.int32)
    k = int(np.prod(w_shape[1:]))
    # |acc| ~ sqrt(k) * 74 * 73 (uniform bytes); scaled by ~2^30.5 / 2^shift to ~+-60, so
    # that outputs spread over the whole uint8/int8 range and hit both clamps
    base = int(np.log2(np.sqrt(k) * 74 * 73 * 2.0 ** 30.5 / 60))
    shift = rng.integers(base - 1, base + 2, co).astype(np.int32)
    return x, w, bias, mult, shift


def _build(fn_args, outs, sched, target):
    f = sched(te.create_prim_func([*fn_args, *outs]))
    return tvm.compile(tvm.IRModule({"main": f}), target)


def _run(mod, arrays, out_shapes):
    outs = [tvm.runtime.empty(shape, dtype) for shape, dtype in out_shapes]
    mod(*[tvm.runtime.tensor(a) for a in arrays], *outs)
    return [o.numpy() for o in outs]


def _prepare(w, bias, x_zp, lanes, offset, packed=True):
    """The weight-only stages (packing, zero-point bias), compiled for the host."""
    W = te.placeholder(w.shape, "int8", "w")
    B = te.placeholder(bias.shape, "int32", "b")
    wt = C.pack_weight(W, lanes) if packed else C.grouped_weight(W)
    be = C.effective_bias(B, W, x_zp, offset)
    mod = tvm.compile(te.create_prim_func([W, B, wt, be]), HOST)
    return _run(mod, [w, bias], [([int(d) for d in wt.shape], "int8"), ([bias.shape[0]], "int32")])


def _qconv(x, w, bias, mult, shift, *, stride, pads, dil, groups, x_zp, y_zp, out_dtype, relu,
           target=HOST, lanes=16):
    co = w.shape[0]
    X = te.placeholder(x.shape, str(x.dtype), "x")
    M = te.placeholder((co,), "int32", "m")
    Sh = te.placeholder((co,), "int32", "s")
    kw = dict(pads=pads, stride=stride, dilation=dil, x_zp=x_zp, y_zp=y_zp, out_dtype=out_dtype, relu=relu)
    if groups == 1:
        wp, be = _prepare(w, bias, x_zp, lanes, C.act_offset(str(x.dtype), False))
        WP = te.placeholder(wp.shape, "int8", "wp")
        BE = te.placeholder((co,), "int32", "be")
        Y = C.qconv2d_packed(X, WP, BE, M, Sh, n_out=co, **kw)
        mod = _build([X, WP, BE, M, Sh], [Y], lambda f: S.schedule_packed(f, target), target)
    else:
        wp, be = _prepare(w, bias, x_zp, lanes, C.act_offset(str(x.dtype), False), packed=False)
        WP = te.placeholder(wp.shape, "int8", "wt")
        BE = te.placeholder((co,), "int32", "be")
        Y = C.grouped_conv(X, WP, BE, M, Sh, groups=groups, **kw)
        mod = _build([X, WP, BE, M, Sh], [Y], lambda f: S.schedule_grouped(f, target), target)
    (y,) = _run(mod, [x, wp, be, mult, shift], [([int(d) for d in Y.shape], out_dtype)])
    if groups == 1:   # [N, O / L, L, OH, OW] -> NCHW, padding lanes dropped
        y = y.reshape(y.shape[0], -1, y.shape[3], y.shape[4])[:, :co]
    return y, mod


CONV_CASES = [
    # x shape, w shape, stride, pads (t, l, b, r), dilation, groups, out dtype, relu, input dtype
    ((2, 13, 9, 11), (20, 13, 3, 3), (2, 1), (1, 1, 2, 0), (1, 2), 1, "uint8", False, "uint8"),
    ((1, 32, 8, 8), (32, 32, 3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 1, "int8", True, "uint8"),
    ((3, 3, 12, 12), (16, 3, 5, 5), (2, 2), (2, 2, 2, 2), (1, 1), 1, "uint8", True, "uint8"),
    ((2, 64, 7, 7), (48, 64, 1, 1), (1, 1), (0, 0, 0, 0), (1, 1), 1, "uint8", False, "int8"),
    ((2, 8, 9, 9), (8, 1, 3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 8, "uint8", True, "uint8"),     # depthwise
    ((1, 32, 10, 6), (32, 1, 3, 3), (2, 2), (1, 1, 1, 1), (1, 1), 32, "int8", False, "uint8"),  # depthwise, 16-vector
    ((2, 12, 7, 7), (18, 4, 3, 3), (1, 2), (0, 2, 0, 2), (2, 1), 3, "uint8", False, "int8"),    # grouped
]


@pytest.mark.parametrize("xs, ws, stride, pads, dil, groups, odt, relu, idt", CONV_CASES)
def test_qconv2d_kernel_equals_the_pinned_formula(xs, ws, stride, pads, dil, groups, odt, relu, idt):
    rng = np.random.default_rng(sum(xs) + sum(ws))
    x, w, bias, mult, shift = _operands(rng, ws[0], ws, xs, idt)
    x_zp = 131 if idt == "uint8" else -7
    y_zp = 120 if odt == "uint8" else -3
    want = ref_qconv2d(x, w, bias, mult, shift, stride, pads, dil, groups, x_zp, y_zp, odt, relu)
    got, _ = _qconv(x, w, bias, mult, shift, stride=stride, pads=pads, dil=dil, groups=groups,
                    x_zp=x_zp, y_zp=y_zp, out_dtype=odt, relu=relu)
    assert got.dtype == want.dtype and got.shape == want.shape
    np.testing.assert_array_equal(got, want)
    lo, hi = QR[odt]
    assert len(np.unique(want)) > 20 and (want == hi).any() and (want == (y_zp if relu else lo)).any(), \
        "the case should exercise rounding and both clamps"


@pytest.mark.parametrize("xs, n, odt, relu", [((5, 24), 10, "uint8", False), ((2, 7, 40), 33, "int8", True),
                                             ((64, 128), 64, "uint8", True)])
def test_qdense_kernel_equals_the_pinned_formula(xs, n, odt, relu):
    rng = np.random.default_rng(n)
    x, w, bias, mult, shift = _operands(rng, n, (n, xs[-1]), xs)
    x_zp, y_zp = 17, (60 if odt == "uint8" else 5)
    want = ref_qdense(x, w, bias, mult, shift, x_zp, y_zp, odt, relu)
    wp, be = _prepare(w, bias, x_zp, 16, 0)
    X = te.placeholder((int(np.prod(xs[:-1])), xs[-1]), "uint8", "x")
    WP, BE = te.placeholder(wp.shape, "int8", "wp"), te.placeholder((n,), "int32", "be")
    M, Sh = te.placeholder((n,), "int32", "m"), te.placeholder((n,), "int32", "s")
    Y = C.qdense_packed(X, WP, BE, M, Sh, x_zp=x_zp, y_zp=y_zp, out_dtype=odt, relu=relu, n_out=n)
    mod = _build([X, WP, BE, M, Sh], [Y], lambda f: S.schedule_packed(f, HOST), HOST)
    (y,) = _run(mod, [x.reshape(-1, xs[-1]), wp, be, mult, shift], [([int(d) for d in Y.shape], odt)])
    got = y.reshape(-1, wp.shape[0] * 16)[:, :n].reshape(*xs[:-1], n)
    np.testing.assert_array_equal(got, want)


def _asm(mod) -> str:
    return mod.mod.inspect_source("asm")


def _small_conv(target, lanes, signed=False):
    co, ci = 32, 32
    X = te.placeholder((1, ci, 10, 10), "uint8", "x")
    WP = te.placeholder((co // lanes, 3, 3, ci // 4, lanes, 4), "int8", "wp")
    BE, M, Sh = (te.placeholder((co,), "int32", n) for n in ("be", "m", "s"))
    Y = C.qconv2d_packed(X, WP, BE, M, Sh, pads=(1, 1, 1, 1), stride=(1, 1), dilation=(1, 1), x_zp=3,
                         y_zp=5, out_dtype="uint8", relu=True, n_out=co, signed_act=signed)
    return [X, WP, BE, M, Sh], [Y]


@pytest.mark.skipif(not HAS_VNNI, reason="this CPU has no AVX512-VNNI")
def test_x86_conv_kernel_uses_vpdpbusd():
    x, w, bias, mult, shift = _operands(np.random.default_rng(1), 32, (32, 32, 3, 3), (1, 32, 10, 10))
    _, mod = _qconv(x, w, bias, mult, shift, stride=(1, 1), pads=(1, 1, 1, 1), dil=(1, 1), groups=1,
                    x_zp=3, y_zp=5, out_dtype="uint8", relu=True)
    asm = _asm(mod)
    assert "vpdpbusd" in asm
    assert "vpmaddubsw" not in asm        # the saturating int16 path would not be exact


def test_without_vnni_the_kernel_is_plain_int32_and_still_exact():
    """skylake-avx512 has AVX-512 but no VNNI: the fallback must not use the
    saturating vpmaddubsw, and runs on any AVX-512 host."""
    sky = tvm.target.Target({"kind": "llvm", "mtriple": "x86_64-linux-gnu", "mcpu": "skylake-avx512"})
    assert S.cpu_features(sky) == set()
    args, outs = _small_conv(sky, 16)
    asm = _asm(_build(args, outs, lambda f: S.schedule_packed(f, sky), sky))
    assert "vpdpbusd" not in asm and "vpmaddubsw" not in asm
    if not _host_has("avx512f"):
        pytest.skip("this CPU cannot run AVX-512 code")
    rng = np.random.default_rng(3)
    x, w, bias, mult, shift = _operands(rng, 24, (24, 16, 3, 3), (2, 16, 6, 6))
    want = ref_qconv2d(x, w, bias, mult, shift, (1, 1), (1, 1, 1, 1), (1, 1), 1, 9, 100, "uint8", False)
    got, _ = _qconv(x, w, bias, mult, shift, stride=(1, 1), pads=(1, 1, 1, 1), dil=(1, 1), groups=1, x_zp=9,
                    y_zp=100, out_dtype="uint8", relu=False, target=sky)
    np.testing.assert_array_equal(got, want)


def _host_has(flag: str) -> bool:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            return f" {flag}" in f.read()
    except OSError:
        return False


def test_aarch64_cross_compile_uses_sdot():
    arm = tvm.target.Target({"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mattr": ["+neon", "+dotprod"]})
    try:
        feats = S.cpu_features(arm)
    except Exception as e:  # noqa: BLE001
        pytest.skip(f"this LLVM has no aarch64 target: {e}")
    assert feats == {"sdot"}
    args, outs = _small_conv(arm, 4, signed=True)
    asm = _asm(_build(args, outs, lambda f: S.schedule_packed(f, arm), arm))
    assert any(line.split()[0] == "sdot" for line in asm.splitlines() if line.strip())


def test_cuda_compile_uses_dp4a(tmp_path):
    cuda = tvm.target.Target({"kind": "cuda", "arch": "sm_90"})
    args, outs = _small_conv(cuda, 4)
    mod = _build(args, outs, S.schedule_cuda, cuda)
    src = mod.mod.imports[0].inspect_source("cuda")
    assert "__dp4a" in src
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        pytest.skip("nvcc not installed: the CUDA source was checked, not its PTX")
    cu = tmp_path / "k.cu"
    cu.write_text(src)
    subprocess.run([nvcc, "-ptx", "-arch=sm_90", str(cu), "-o", str(tmp_path / "k.ptx")], check=True,
                   capture_output=True, timeout=300)
    assert "dp4a.u32.s32" in (tmp_path / "k.ptx").read_text()
