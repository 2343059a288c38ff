"""The TVM backend's compile pipeline and default CPU schedules.

Small Relax modules, written the way relaxgen writes them (PyTorch layouts,
``num_input`` attribute, weights after the inputs), are compiled with
`pipeline.build` for this host and checked against NumPy in float32: linear
(+bias, relu) with a static and a symbolic batch, batched matmul, conv2d
variants through ConvertLayout (NCHW in, NCHW out: 3x3, stride 2, 1x1, 7x7
stem, grouped, depthwise, with batch-norm / residual / relu6 epilogues),
pooling, softmax, layer norm and reductions.  Then the schedules themselves:
the matmul and conv kernels of `pipeline.optimize` are parallel and
vectorized, every kernel is scheduled, weights are packed and lifted into
``main_transform_params``, and aarch64 and CUDA targets compile.
"""
from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("TVM_NUM_THREADS", str(max(1, min(os.cpu_count() or 1, 2))))
tvm = pytest.importorskip("tvm")

from dlc.backends.tvm import pipeline
from tvm import relax, tirx

pytestmark = pytest.mark.tvm

RTOL = 1e-4


@pytest.fixture(scope="module")
def target():
    return pipeline.as_target("llvm")


def _var(name, shape, dtype="float32"):
    return relax.Var(name, relax.TensorType(shape, dtype))


def _module(inputs, weights, body):
    """One ``main(inputs..., weights...)`` with num_input; `body(bb, *vars)` returns the output expr."""
    bb = relax.BlockBuilder()
    params = list(inputs) + list(weights)
    with bb.function("main", params, attrs={"num_input": len(inputs)}):
        with bb.dataflow():
            out = body(bb, *params)
            gv = bb.emit_output(out)
        bb.emit_func_output(gv)
    return bb.get()


def _run(target, mod, inputs, weights):
    ex = pipeline.build(mod, target)
    vm = relax.VirtualMachine(ex, tvm.cpu())
    params = pipeline.run_transform_params(vm, [tvm.runtime.tensor(w) for w in weights])
    out = vm["main"](*[tvm.runtime.tensor(x) for x in inputs], *params)
    if isinstance(out, tvm.runtime.Tensor):
        return out.numpy()
    return [o.numpy() for o in out]


def _close(got, want, rtol=RTOL):
    scale = max(float(np.abs(want).max()), 1e-6)
    err = float(np.abs(got - want).max()) / scale
    assert got.shape == want.shape
    assert err < rtol, f"relative error {err:.2e}"


rng = np.random.default_rng(0)


def _rand(*shape, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype("float32")


# ---------------------------------------------------------------- numpy refs

def _conv_ref(x, w, stride, pad, groups=1):
    n, _c, h, wd = x.shape
    o, cg, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    ho = (h + 2 * pad - kh) // stride + 1
    wo = (wd + 2 * pad - kw) // stride + 1
    out = np.zeros((n, o, ho, wo), np.float64)
    og = o // groups
    for g in range(groups):
        xs = xp[:, g * cg:(g + 1) * cg]
        ws = w[g * og:(g + 1) * og].astype(np.float64)
        for i in range(kh):
            for j in range(kw):
                patch = xs[:, :, i:i + stride * ho:stride, j:j + stride * wo:stride]
                out[:, g * og:(g + 1) * og] += np.einsum("nchw,oc->nohw", patch, ws[:, :, i, j])
    return out.astype(np.float32)


# ---------------------------------------------------------------- matmul

@pytest.mark.parametrize("symbolic", [False, True])
def test_linear_bias_relu(target, symbolic):
    m, k, n = 37, 96, 200
    batch = tirx.Var("N", "int64") if symbolic else m
    mod = _module([_var("x", (batch, k))], [_var("w", (n, k)), _var("b", (n,))],
                  lambda bb, x, w, b: bb.emit(relax.op.nn.relu(relax.op.linear(x, w, b))))
    x, w, b = _rand(m, k), _rand(n, k), _rand(n)
    _close(_run(target, mod, [x], [w, b]), np.maximum(x @ w.T + b, 0))
    if symbolic:  # same executable, another batch
        ex = pipeline.build(mod, target)
        vm = relax.VirtualMachine(ex, tvm.cpu())
        params = pipeline.run_transform_params(vm, [tvm.runtime.tensor(w), tvm.runtime.tensor(b)])
        x2 = _rand(5, k)
        got = vm["main"](tvm.runtime.tensor(x2), *params).numpy()
        _close(got, np.maximum(x2 @ w.T + b, 0))


def test_matmul_wide_packed_and_gemv(target):
    """Wide weights are packed ([N // 64, K, 64]) and lifted; M == 1 works."""
    k, n = 128, 256
    mod = _module([_var("x", (1, k))], [_var("w", (n, k))],
                  lambda bb, x, w: bb.emit(relax.op.linear(x, w)))
    x, w = _rand(1, k), _rand(n, k)
    _close(_run(target, mod, [x], [w]), x @ w.T)
    opt = pipeline.optimize(mod, target)
    assert pipeline.TRANSFORM_PARAMS in [gv.name_hint for gv in opt.get_global_vars()]
    shapes = [tuple(int(d) for d in p.ty.shape) for p in opt["main"].params[1:]]
    assert (n // 64, k, 64) in shapes


def test_batched_matmul_symbolic(target):
    nb = tirx.Var("N", "int64")
    mod = _module([_var("a", (nb, 4, 33, 40)), _var("b", (nb, 4, 40, 48))], [],
                  lambda bb, a, b: bb.emit(relax.op.matmul(a, b)))
    a, b = _rand(2, 4, 33, 40), _rand(2, 4, 40, 48)
    _close(_run(target, mod, [a, b], []), a @ b)


def test_matmul_transposed_b(target):
    """q @ k^T (attention scores): B read along its rows."""
    mod = _module([_var("q", (2, 24, 32)), _var("k", (2, 20, 32))], [],
                  lambda bb, q, k: bb.emit(relax.op.matmul(q, relax.op.permute_dims(k, [0, 2, 1]))))
    q, k = _rand(2, 24, 32), _rand(2, 20, 32)
    _close(_run(target, mod, [q, k], []), q @ k.transpose(0, 2, 1))


# ---------------------------------------------------------------- conv

CONVS = [
    # name, (n, c, h, w), (o, k, stride, pad, groups), epilogue
    ("3x3", (1, 16, 14, 14), (32, 3, 1, 1, 1), "bn_relu"),
    ("3x3_s2_residual", (2, 32, 14, 14), (32, 3, 2, 1, 1), "bn_res_relu"),
    ("1x1_wide", (1, 64, 8, 8), (160, 1, 1, 0, 1), "bias"),
    ("stem_7x7_s2", (1, 3, 30, 30), (64, 7, 2, 3, 1), "bn_relu"),
    ("grouped", (1, 16, 9, 9), (24, 3, 1, 1, 4), "relu6"),
    ("depthwise", (2, 32, 15, 15), (32, 3, 1, 1, 32), "bn_relu6"),
    ("depthwise_s2_96ch", (1, 96, 16, 16), (96, 3, 2, 1, 96), "bias"),
]


def _conv_module(shape, o, k, stride, pad, groups, epi, batch=None):
    n, c, h, w = shape
    nvar = batch if batch is not None else n
    ho = (h + 2 * pad - k) // stride + 1

    def body(bb, x, wt, scale, shift, res):
        y = bb.emit(relax.op.nn.conv2d(x, wt, (stride, stride), (pad, pad), (1, 1), groups,
                                       "NCHW", "OIHW"))
        if epi == "bias":
            return relax.op.add(y, relax.op.reshape(shift, (1, o, 1, 1)))
        if epi.startswith("bn"):
            y = bb.emit(relax.op.add(relax.op.multiply(y, relax.op.reshape(scale, (1, o, 1, 1))),
                                     relax.op.reshape(shift, (1, o, 1, 1))))
        if "res" in epi:
            y = bb.emit(relax.op.add(y, res))
        if epi.endswith("relu6"):
            return relax.op.minimum(relax.op.maximum(y, relax.const(0.0, "float32")),
                                    relax.const(6.0, "float32"))
        return relax.op.nn.relu(y)

    return _module([_var("x", (nvar, c, h, w)), _var("res", (nvar, o, ho, ho))],
                   [_var("w", (o, c // groups, k, k)), _var("scale", (o,)), _var("shift", (o,))],
                   lambda bb, x, res, wt, scale, shift: body(bb, x, wt, scale, shift, res))


def _conv_expected(x, w, scale, shift, res, stride, pad, groups, epi):
    y = _conv_ref(x, w, stride, pad, groups)
    o = w.shape[0]
    if epi == "bias":
        return y + shift.reshape(1, o, 1, 1)
    if epi.startswith("bn"):
        y = y * scale.reshape(1, o, 1, 1) + shift.reshape(1, o, 1, 1)
    if "res" in epi:
        y = y + res
    return np.clip(y, 0, 6) if epi.endswith("relu6") else np.maximum(y, 0)


@pytest.mark.parametrize("name,shape,conv,epi", CONVS, ids=[c[0] for c in CONVS])
def test_conv2d(target, name, shape, conv, epi):
    o, k, stride, pad, groups = conv
    n, c, h, _ = shape
    ho = (h + 2 * pad - k) // stride + 1
    symbolic = name == "3x3_s2_residual"
    mod = _conv_module(shape, o, k, stride, pad, groups, epi,
                       batch=tirx.Var("N", "int64") if symbolic else None)
    x = _rand(*shape)
    w = _rand(o, c // groups, k, k, scale=1 / np.sqrt(c // groups * k * k))
    scale, shift, res = 1 + 0.1 * _rand(o), _rand(o), _rand(n, o, ho, ho)
    got = _run(target, mod, [x, res], [w, scale, shift])
    _close(got, _conv_expected(x, w, scale, shift, res, stride, pad, groups, epi))


# ---------------------------------------------------------------- pooling, norms, reductions

def test_pooling_after_conv(target):
    """max/avg/adaptive pooling in NHWC (they follow the conv's layout)."""
    def body(bb, x, w):
        y = bb.emit(relax.op.nn.relu(relax.op.nn.conv2d(x, w, (1, 1), (1, 1), (1, 1), 1,
                                                          "NCHW", "OIHW")))
        a = bb.emit(relax.op.nn.max_pool2d(y, (3, 3), (2, 2), (1, 1)))
        b = bb.emit(relax.op.nn.avg_pool2d(y, (2, 2), (2, 2)))
        c = bb.emit(relax.op.nn.adaptive_avg_pool2d(y, (1, 1)))
        return relax.Tuple([a, b, c])

    mod = _module([_var("x", (2, 8, 12, 12))], [_var("w", (32, 8, 3, 3))], body)
    x, w = _rand(2, 8, 12, 12), _rand(32, 8, 3, 3)
    got = _run(target, mod, [x], [w])
    y = np.maximum(_conv_ref(x, w, 1, 1), 0)
    yp = np.pad(y, ((0, 0), (0, 0), (1, 1), (1, 1)), constant_values=-np.inf)
    mx = np.max([yp[:, :, i:i + 11:2, j:j + 11:2] for i in range(3) for j in range(3)], axis=0)
    av = y.reshape(2, 32, 6, 2, 6, 2).mean(axis=(3, 5))
    _close(got[0], mx)
    _close(got[1], av)
    _close(got[2], y.mean(axis=(2, 3), keepdims=True))


def test_softmax_layernorm_reductions(target):
    n = tirx.Var("N", "int64")

    def body(bb, x, g, b):
        s = bb.emit(relax.op.nn.softmax(x, axis=-1))
        ls = bb.emit(relax.op.nn.log_softmax(x, axis=-1))
        ln = bb.emit(relax.op.nn.layer_norm(x, g, b, axes=[-1], epsilon=1e-5))
        r1 = bb.emit(relax.op.sum(x, axis=[2]))
        r2 = bb.emit(relax.op.mean(x, axis=[1]))
        r3 = bb.emit(relax.op.max(x, axis=[1, 2]))
        return relax.Tuple([s, ls, ln, r1, r2, r3])

    mod = _module([_var("x", (n, 17, 96))], [_var("g", (96,)), _var("b", (96,))], body)
    x, g, b = _rand(3, 17, 96), _rand(96), _rand(96)
    s, ls, ln, r1, r2, r3 = _run(target, mod, [x], [g, b])
    e = np.exp(x - x.max(-1, keepdims=True))
    _close(s, e / e.sum(-1, keepdims=True))
    _close(ls, np.log(e / e.sum(-1, keepdims=True)))
    mu, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
    _close(ln, (x - mu) / np.sqrt(var + 1e-5) * g + b)
    _close(r1, x.sum(2))
    _close(r2, x.mean(1))
    _close(r3, x.max(axis=(1, 2)))


def test_elementwise_and_take(target):
    def body(bb, x, idx, emb):
        t = bb.emit(relax.op.take(emb, idx, axis=0))
        y = bb.emit(relax.op.tanh(relax.op.add(t, x)))
        z = bb.emit(relax.op.multiply(relax.op.sigmoid(y), relax.op.nn.gelu(x)))
        return relax.op.permute_dims(z, [0, 2, 1])

    mod = _module([_var("x", (2, 7, 64)), _var("idx", (2, 7), "int64")], [_var("emb", (50, 64))],
                  body)
    x, idx, emb = _rand(2, 7, 64), rng.integers(0, 50, (2, 7)).astype("int64"), _rand(50, 64)
    got = _run(target, mod, [x, idx], [emb])
    from math import erf
    y = np.tanh(emb[idx] + x)
    gelu = 0.5 * x * (1 + np.vectorize(erf)(x / np.sqrt(2)))
    _close(got, ((1 / (1 + np.exp(-y))) * gelu).transpose(0, 2, 1))


# ---------------------------------------------------------------- the schedules themselves

def _prim_funcs(mod):
    return {gv.name_hint: f for gv, f in mod.functions_items() if isinstance(f, tirx.PrimFunc)}


def test_kernels_parallel_vectorized_and_lifted(target):
    """matmul and conv kernels are tiled (parallel, vectorized, unrolled);
    every kernel is scheduled; weight transforms live in main_transform_params."""
    def body(bb, x, w, scale, shift, fw, fb):
        y = bb.emit(relax.op.nn.conv2d(x, w, (1, 1), (1, 1), (1, 1), 1, "NCHW", "OIHW"))
        y = bb.emit(relax.op.nn.relu(relax.op.add(
            relax.op.multiply(y, relax.op.reshape(scale, (1, 128, 1, 1))),
            relax.op.reshape(shift, (1, 128, 1, 1)))))
        y = bb.emit(relax.op.nn.adaptive_avg_pool2d(y, (1, 1)))
        y = bb.emit(relax.op.reshape(y, (x.ty.shape[0], 128)))
        return relax.op.nn.relu(relax.op.linear(y, fw, fb))

    n = tirx.Var("N", "int64")
    mod = _module([_var("x", (n, 64, 14, 14))],
                  [_var("w", (128, 64, 3, 3)), _var("scale", (128,)), _var("shift", (128,)),
                   _var("fw", (256, 128)), _var("fb", (256,))], body)
    opt = pipeline.optimize(mod, target)
    funcs = _prim_funcs(opt)
    names = [gv.name_hint for gv in opt.get_global_vars()]
    assert pipeline.TRANSFORM_PARAMS in names
    assert int(opt["main"].attrs["num_input"]) == 1
    conv = [f for k, f in funcs.items() if "conv2d" in k]
    mm = [f for k, f in funcs.items() if "matmul" in k]
    assert len(conv) == 1 and len(mm) == 1
    for f in conv + mm:
        text = f.script()
        assert "T.parallel" in text and "T.vectorized" in text and "T.unroll" in text
        assert 'scope="local"' in text  # register-tile accumulator
    # the epilogue (scale, shift, relu) is fused into the conv kernel
    assert any("multiply" in k and "conv2d" in k and "relu" in k for k in funcs)
    for name, f in funcs.items():
        assert f.attrs is not None and f.attrs.get("tirx.is_scheduled"), name
    # weights arrive packed: conv [O // 64, KH, KW, I, 64], linear [N // 64, K, 64]
    shapes = [tuple(int(d) for d in p.ty.shape) for p in opt["main"].params[1:]]
    assert (2, 3, 3, 64, 64) in shapes and (4, 128, 64) in shapes
    # and it runs, with the transform-params contract
    x = _rand(2, 64, 14, 14)
    w, scale, shift = _rand(128, 64, 3, 3, scale=0.05), 1 + 0.1 * _rand(128), _rand(128)
    fw, fb = _rand(256, 128, scale=0.1), _rand(256)
    got = _run(target, mod, [x], [w, scale, shift, fw, fb])
    y = np.maximum(_conv_ref(x, w, 1, 1) * scale.reshape(1, -1, 1, 1) + shift.reshape(1, -1, 1, 1), 0)
    want = np.maximum(y.mean(axis=(2, 3)) @ fw.T + fb, 0)
    _close(got, want)


def test_nothing_to_lift(target):
    """num_input == all parameters (training modules): main takes everything."""
    mod = _module([_var("x", (8, 32)), _var("w", (64, 32))], [],
                  lambda bb, x, w: bb.emit(relax.op.linear(x, w)))
    ex = pipeline.build(mod, target)
    vm = relax.VirtualMachine(ex, tvm.cpu())
    assert pipeline.run_transform_params(vm, []) == []
    x, w = _rand(8, 32), _rand(64, 32)
    got = vm["main"](tvm.runtime.tensor(x), tvm.runtime.tensor(w)).numpy()
    _close(got, x @ w.T)


def test_cross_targets_compile():
    """aarch64 (NEON, 4 lanes) with the CPU rules, CUDA with dlight's GPU rules."""
    n = tirx.Var("N", "int64")
    mod = _conv_module((1, 16, 10, 10), 32, 3, 1, 1, 1, "bn_relu", batch=n)
    arm = {"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mattr": ["+neon"]}
    opt = pipeline.optimize(mod, arm)
    assert all(f.attrs.get("tirx.is_scheduled") for f in _prim_funcs(opt).values())
    pipeline.build(mod, arm)
    pipeline.build(mod, {"kind": "cuda", "arch": "sm_90"})


def test_conv1d(target):
    """conv1d goes to NWC/WIO and gets the tiled schedule too."""
    n = tirx.Var("N", "int64")
    mod = _module([_var("x", (n, 16, 50))], [_var("w", (96, 16, 3)), _var("b", (96,))],
                  lambda bb, x, w, b: relax.op.nn.relu(relax.op.add(
                      bb.emit(relax.op.nn.conv1d(x, w, 1, 1)), relax.op.reshape(b, (1, 96, 1)))))
    x, w, b = _rand(2, 16, 50), _rand(96, 16, 3), _rand(96)
    got = _run(target, mod, [x], [w, b])
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1)))
    want = sum(np.einsum("ncl,oc->nol", xp[:, :, i:i + 50], w[:, :, i]) for i in range(3))
    _close(got, np.maximum(want + b.reshape(1, 96, 1), 0))
    funcs = _prim_funcs(pipeline.optimize(mod, target))
    conv = [f for k, f in funcs.items() if "conv1d" in k]
    assert conv and "T.vectorized" in conv[0].script() and "T.parallel" in conv[0].script()


def test_tile_shapes():
    """Column tiles are power-of-two vector counts dividing the extent (LLVM
    handles <48 x float> badly); rows fill the 28 accumulator registers."""
    from dlc.backends.tvm.schedules.cpu import col_tile, row_tile
    assert col_tile(512, 16) == 64 and col_tile(96, 16) == 32 and col_tile(48, 16) == 16
    assert col_tile(1000, 16) == 8 and col_tile(10, 16) == 10 and col_tile(130, 16) == 64
    assert col_tile(96, 4) == 16  # NEON
    assert row_tile(64, 16) == 7 and row_tile(32, 16) == 8 and row_tile(16, 4) == 7
