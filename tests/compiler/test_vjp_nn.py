"""VJP rules of convolutions, pooling, normalisation, dropout and embedding:
finite differences (float64) and torch.autograd, plus second-order checks."""
import numpy as np
import pytest
from dlc.backends.numpy.interpreter import Interpreter
from dlc.backends.numpy.kernels import nn as nnk
from dlc.compiler.autodiff import grad
from dlc.compiler.builder import Builder
from dlc.compiler.ir import Graph
from dlc.compiler.types import DType, TensorType
from pool_reference import avg_pool_dilated_ref
from vjp_harness import Arr, build, check_fd, check_torch, make_inputs, run

torch = pytest.importorskip("torch")
F = torch.nn.functional

# torch warns that "same" padding with an even kernel copies its input
pytestmark = pytest.mark.filterwarnings("ignore:Using padding='same':UserWarning")

_rng = np.random.default_rng(11)


def pos(*shape):
    """Positive float64 data (running variances), differentiated."""
    return Arr(_rng.uniform(0.5, 2.0, shape), True)


def fixed(a):
    return Arr(np.asarray(a), False)


def ties(shape, seed=3):
    """Small integers: many tied maxima in every pooling window."""
    return Arr(np.random.default_rng(seed).integers(-2, 3, shape).astype(np.float64), True)


def tt(a):
    return None if a is None else torch.from_numpy(np.array(a))


RM, RV = _rng.standard_normal(3), _rng.uniform(0.5, 2.0, 3)
IDX = np.array([[1, 3, 1], [0, 3, 3]], np.int64)      # repeated indices, and the padding row
DROP_MASK = nnk.dropout_mask((4, 5), 0.3, (0, 7))     # the interpreter seeds dropout with (0, seed)

# (id, op, operand specs, attrs, torch function, options)
#   options: output_index (differentiate one result only), fd=False (torch only:
#   finite differences are undefined at ties), torch_specs (operands for the
#   torch check where torch treats an operand as non-differentiable).  padding_idx
#   is torch's convention, not the derivative of the forward: torch only.
CASES = [
    # conv1d
    ("conv1d-stride-pad-groups", "conv1d", [(2, 4, 7), (6, 2, 3), (6,)], {"stride": 2, "padding": 1, "groups": 2},
     lambda x, w, b: F.conv1d(x, w, b, stride=2, padding=1, groups=2), {}),
    ("conv1d-same-even-dilated", "conv1d", [(1, 2, 6), (3, 2, 2), None], {"padding": "same", "dilation": 2},
     lambda x, w, b: F.conv1d(x, w, b, padding="same", dilation=2), {}),
    ("conv1d-depthwise", "conv1d", [(2, 3, 9), (3, 1, 3), (3,)], {"stride": 3, "dilation": 2, "groups": 3},
     lambda x, w, b: F.conv1d(x, w, b, stride=3, dilation=2, groups=3), {}),
    # conv2d
    ("conv2d-plain", "conv2d", [(2, 3, 5, 5), (4, 3, 3, 3), (4,)], {}, F.conv2d, {}),
    ("conv2d-stride-pad", "conv2d", [(1, 2, 7, 6), (3, 2, 3, 2), (3,)], {"stride": (2, 3), "padding": (1, 0)},
     lambda x, w, b: F.conv2d(x, w, b, stride=(2, 3), padding=(1, 0)), {}),
    ("conv2d-same-even", "conv2d", [(1, 2, 5, 6), (2, 2, 2, 4), None], {"padding": "same", "dilation": (1, 2)},
     lambda x, w, b: F.conv2d(x, w, b, padding="same", dilation=(1, 2)), {}),
    ("conv2d-valid", "conv2d", [(2, 1, 4, 5), (2, 1, 2, 2)], {"padding": "valid"},
     lambda x, w: F.conv2d(x, w, padding="valid"), {}),
    ("conv2d-dilation-groups", "conv2d", [(2, 4, 7, 7), (4, 2, 2, 3), (4,)],
     {"dilation": 2, "groups": 2, "stride": 2, "padding": 1},
     lambda x, w, b: F.conv2d(x, w, b, dilation=2, groups=2, stride=2, padding=1), {}),
    ("conv2d-depthwise", "conv2d", [(2, 3, 6, 6), (6, 1, 3, 3), (6,)], {"groups": 3, "stride": 2, "padding": 1},
     lambda x, w, b: F.conv2d(x, w, b, groups=3, stride=2, padding=1), {}),
    # conv_transpose2d
    ("convT-stride-outpad", "conv_transpose2d", [(2, 3, 3, 4), (3, 2, 3, 3), (2,)],
     {"stride": 2, "padding": 1, "output_padding": 1},
     lambda x, w, b: F.conv_transpose2d(x, w, b, stride=2, padding=1, output_padding=1), {}),
    ("convT-groups-dilation", "conv_transpose2d", [(1, 4, 3, 3), (4, 3, 2, 3), (6,)],
     {"stride": (2, 1), "groups": 2, "dilation": (1, 2), "padding": (0, 1)},
     lambda x, w, b: F.conv_transpose2d(x, w, b, stride=(2, 1), groups=2, dilation=(1, 2), padding=(0, 1)), {}),
    ("convT-outpad-from-dilation", "conv_transpose2d", [(1, 2, 3, 3), (2, 2, 3, 3), None],
     {"dilation": 2, "output_padding": 1},
     lambda x, w, b: F.conv_transpose2d(x, w, b, dilation=2, output_padding=1), {}),
    # 3-D convolutions
    ("conv3d-stride-pad-groups", "conv3d", [(2, 4, 4, 5, 3), (4, 2, 2, 3, 2), (4,)],
     {"stride": (1, 2, 1), "padding": (1, 0, 1), "dilation": (1, 1, 2), "groups": 2},
     lambda x, w, b: F.conv3d(x, w, b, stride=(1, 2, 1), padding=(1, 0, 1), dilation=(1, 1, 2), groups=2), {}),
    ("convT3d-stride-outpad", "conv_transpose3d", [(1, 2, 3, 2, 3), (2, 3, 2, 3, 2), (3,)],
     {"stride": 2, "padding": (0, 1, 0), "output_padding": (1, 0, 1)},
     lambda x, w, b: F.conv_transpose3d(x, w, b, stride=2, padding=(0, 1, 0), output_padding=(1, 0, 1)), {}),
    # max pooling
    ("max_pool3d-ceil-pad-dilation", "max_pool3d", [(1, 2, 5, 6, 5)],
     {"kernel_size": (2, 3, 2), "stride": 2, "padding": (1, 1, 0), "dilation": (1, 1, 2), "ceil_mode": True},
     lambda x: F.max_pool3d(x, (2, 3, 2), 2, (1, 1, 0), dilation=(1, 1, 2), ceil_mode=True), {}),
    ("max_pool3d-ties", "max_pool3d", [ties((2, 1, 4, 4, 4))], {"kernel_size": 2, "stride": 1},
     lambda x: F.max_pool3d(x, 2, 1), {"fd": False}),
    ("max_pool1d-pad", "max_pool1d", [(2, 3, 9)], {"kernel_size": 3, "stride": 2, "padding": 1},
     lambda x: F.max_pool1d(x, 3, 2, 1), {}),
    ("max_pool1d-ceil-dilation", "max_pool1d", [(2, 2, 10)],
     {"kernel_size": 2, "stride": 3, "dilation": 2, "ceil_mode": True},
     lambda x: F.max_pool1d(x, 2, 3, dilation=2, ceil_mode=True), {}),
    ("max_pool2d-plain", "max_pool2d", [(2, 2, 6, 7)], {"kernel_size": 2}, lambda x: F.max_pool2d(x, 2), {}),
    ("max_pool2d-ceil-pad", "max_pool2d", [(1, 2, 6, 7)], {"kernel_size": 3, "stride": 2, "padding": 1,
                                                           "ceil_mode": True},
     lambda x: F.max_pool2d(x, 3, 2, 1, ceil_mode=True), {}),
    ("max_pool2d-dilation-overlap", "max_pool2d", [(3, 7, 6)], {"kernel_size": (2, 3), "stride": 1,
                                                                "dilation": (2, 1)},
     lambda x: F.max_pool2d(x, (2, 3), 1, dilation=(2, 1)), {}),
    ("max_pool2d-ties", "max_pool2d", [ties((2, 2, 6, 6))], {"kernel_size": 3, "stride": 1, "padding": 1},
     lambda x: F.max_pool2d(x, 3, 1, 1), {"fd": False}),
    ("max_pool1d-ties", "max_pool1d", [ties((2, 2, 9))], {"kernel_size": 3, "stride": 2, "ceil_mode": True},
     lambda x: F.max_pool1d(x, 3, 2, ceil_mode=True), {"fd": False}),
    # average pooling
    ("avg_pool1d-pad-exclude", "avg_pool1d", [(2, 3, 8)],
     {"kernel_size": 3, "stride": 2, "padding": 1, "count_include_pad": False},
     lambda x: F.avg_pool1d(x, 3, 2, 1, count_include_pad=False), {}),
    ("avg_pool1d-ceil", "avg_pool1d", [(2, 2, 8)], {"kernel_size": 3, "stride": 2, "ceil_mode": True},
     lambda x: F.avg_pool1d(x, 3, 2, ceil_mode=True), {}),
    ("avg_pool2d-plain", "avg_pool2d", [(2, 2, 6, 4)], {"kernel_size": 2}, lambda x: F.avg_pool2d(x, 2), {}),
    ("avg_pool2d-ceil-include", "avg_pool2d", [(1, 2, 7, 6)],
     {"kernel_size": 3, "stride": 2, "padding": 1, "ceil_mode": True},
     lambda x: F.avg_pool2d(x, 3, 2, 1, ceil_mode=True), {}),
    ("avg_pool2d-ceil-exclude", "avg_pool2d", [(1, 2, 7, 6)],
     {"kernel_size": (3, 2), "stride": 2, "padding": (1, 1), "ceil_mode": True, "count_include_pad": False},
     lambda x: F.avg_pool2d(x, (3, 2), 2, (1, 1), ceil_mode=True, count_include_pad=False), {}),
    ("avg_pool2d-divisor", "avg_pool2d", [(3, 5, 5)],
     {"kernel_size": 2, "stride": 1, "padding": 1, "divisor_override": 3},
     lambda x: F.avg_pool2d(x, 2, 1, 1, divisor_override=3), {}),
    ("avg_pool3d-ceil-exclude", "avg_pool3d", [(1, 2, 5, 6, 5)],
     {"kernel_size": (3, 2, 3), "stride": 2, "padding": (1, 1, 1), "ceil_mode": True, "count_include_pad": False},
     lambda x: F.avg_pool3d(x, (3, 2, 3), 2, (1, 1, 1), ceil_mode=True, count_include_pad=False), {}),
    ("avg_pool3d-plain", "avg_pool3d", [(2, 1, 4, 4, 6)], {"kernel_size": 2},
     lambda x: F.avg_pool3d(x, 2), {}),
    ("avg_pool2d-dilation-ceil-exclude", "avg_pool2d", [(1, 2, 8, 9)],
     {"kernel_size": (2, 3), "stride": 2, "padding": 1, "dilation": (3, 2), "ceil_mode": True,
      "count_include_pad": False},
     lambda x: avg_pool_dilated_ref(x, (2, 3), (2, 2), (1, 1), (3, 2), True, False), {}),
    ("avg_pool3d-dilation-include", "avg_pool3d", [(1, 1, 6, 5, 7)],
     {"kernel_size": 2, "stride": (1, 2, 2), "padding": 1, "dilation": 2},
     lambda x: avg_pool_dilated_ref(x, (2, 2, 2), (1, 2, 2), (1, 1, 1), (2, 2, 2)), {}),
    ("avg_pool1d-dilation", "avg_pool1d", [(2, 3, 9)], {"kernel_size": 3, "stride": 2, "dilation": 2},
     lambda x: avg_pool_dilated_ref(x, (3,), (2,), (0,), (2,)), {}),
    # adaptive pooling (non-divisible bins overlap)
    ("adaptive_avg_pool1d", "adaptive_avg_pool1d", [(2, 3, 7)], {"output_size": 3},
     lambda x: F.adaptive_avg_pool1d(x, 3), {}),
    ("adaptive_avg_pool1d-global", "adaptive_avg_pool1d", [(2, 5)], {"output_size": 1},
     lambda x: F.adaptive_avg_pool1d(x, 1), {}),
    ("adaptive_avg_pool2d", "adaptive_avg_pool2d", [(2, 2, 7, 5)], {"output_size": (3, 2)},
     lambda x: F.adaptive_avg_pool2d(x, (3, 2)), {}),
    ("adaptive_avg_pool2d-none", "adaptive_avg_pool2d", [(2, 5, 6)], {"output_size": (4, None)},
     lambda x: F.adaptive_avg_pool2d(x, (4, None)), {}),
    ("adaptive_max_pool2d", "adaptive_max_pool2d", [(2, 2, 7, 5)], {"output_size": (3, 2)},
     lambda x: F.adaptive_max_pool2d(x, (3, 2)), {}),
    ("adaptive_max_pool2d-up", "adaptive_max_pool2d", [(2, 5, 3)], {"output_size": (3, 4)},
     lambda x: F.adaptive_max_pool2d(x, (3, 4)), {}),
    ("adaptive_max_pool2d-ties", "adaptive_max_pool2d", [ties((2, 2, 7, 5))], {"output_size": (3, 2)},
     lambda x: F.adaptive_max_pool2d(x, (3, 2)), {"fd": False}),
    # batch norm
    ("batch_norm-train", "batch_norm", [(4, 3, 2, 2), fixed(RM), fixed(RV), (3,), (3,)],
     {"training": True, "momentum": 0.2},
     lambda x, rm, rv, w, b: F.batch_norm(x, rm.clone(), rv.clone(), w, b, training=True, momentum=0.2),
     {"output_index": 0}),
    ("batch_norm-train-plain", "batch_norm", [(5, 2), None, None, None, None], {"training": True, "eps": 1e-3},
     lambda x, rm, rv, w, b: F.batch_norm(x, None, None, training=True, eps=1e-3), {"output_index": 0}),
    ("batch_norm-eval", "batch_norm", [(3, 3, 4), Arr(RM, True), pos(3), (3,), (3,)], {"training": False},
     lambda x, rm, rv, w, b: F.batch_norm(x, rm, rv, w, b, training=False),
     {"output_index": 0, "torch_specs": [(3, 3, 4), fixed(RM), fixed(RV), (3,), (3,)]}),
    # layer / group / local response norm
    ("layer_norm-1", "layer_norm", [(2, 3, 4), (4,), (4,)], {"normalized_shape": (4,)},
     lambda x, w, b: F.layer_norm(x, (4,), w, b), {}),
    ("layer_norm-2", "layer_norm", [(2, 3, 4), (3, 4), (3, 4)], {"normalized_shape": (3, 4), "eps": 1e-3},
     lambda x, w, b: F.layer_norm(x, (3, 4), w, b, eps=1e-3), {}),
    ("layer_norm-plain", "layer_norm", [(5, 6)], {"normalized_shape": 6}, lambda x: F.layer_norm(x, (6,)), {}),
    ("group_norm", "group_norm", [(2, 4, 3, 2), (4,), (4,)], {"num_groups": 2},
     lambda x, w, b: F.group_norm(x, 2, w, b), {}),
    ("group_norm-2d", "group_norm", [(3, 6), (6,), (6,)], {"num_groups": 3},
     lambda x, w, b: F.group_norm(x, 3, w, b), {}),
    ("group_norm-plain", "group_norm", [(2, 3, 5)], {"num_groups": 1}, lambda x: F.group_norm(x, 1), {}),
    ("lrn-odd", "local_response_norm", [(2, 5, 3)], {"size": 3, "alpha": 0.5, "beta": 0.75, "k": 2.0},
     lambda x: F.local_response_norm(x, 3, 0.5, 0.75, 2.0), {}),
    ("lrn-even", "local_response_norm", [(1, 6, 2, 3)], {"size": 4, "alpha": 0.8, "beta": 0.6, "k": 1.5},
     lambda x: F.local_response_norm(x, 4, 0.8, 0.6, 1.5), {}),
    ("lrn-wide", "local_response_norm", [(2, 3, 4)], {"size": 6, "alpha": 0.3, "beta": 1.2, "k": 1.0},
     lambda x: F.local_response_norm(x, 6, 0.3, 1.2, 1.0), {}),
    # dropout (same mask as the forward) and embedding
    ("dropout", "dropout", [(4, 5)], {"p": 0.3, "seed": 7},
     lambda x: x * torch.from_numpy(DROP_MASK.astype(np.float64) / 0.7), {}),
    ("dropout-eval", "dropout", [(4, 5)], {"p": 0.3, "training": False}, lambda x: x, {}),
    ("dropout-p1", "dropout", [(4, 5)], {"p": 1.0}, lambda x: x * 0, {}),
    ("embedding", "embedding", [fixed(IDX), (5, 4)], {}, lambda i, w: F.embedding(i, w), {}),
    ("embedding-padding", "embedding", [fixed(IDX), (5, 4)], {"padding_idx": 3},
     lambda i, w: F.embedding(i, w, padding_idx=3), {"fd": False}),
    ("embedding-padding-neg", "embedding", [fixed(IDX[0]), (5, 2)], {"padding_idx": -4},
     lambda i, w: F.embedding(i, w, padding_idx=-4), {"fd": False}),
]
IDS = [c[0] for c in CASES]


@pytest.mark.parametrize("case", [c for c in CASES if c[5].get("fd", True)],
                         ids=[c[0] for c in CASES if c[5].get("fd", True)])
def test_vjp_matches_finite_differences(case):
    _, op, specs, attrs, _, opts = case
    check_fd(op, make_inputs(specs), attrs, output_index=opts.get("output_index"))


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_vjp_matches_torch_autograd(case):
    _, op, specs, attrs, fn, opts = case
    check_torch(op, make_inputs(opts.get("torch_specs", specs)), attrs, fn, output_index=opts.get("output_index"))


def test_every_nn_op_has_a_vjp_rule():
    from dlc.compiler.ops import OPS
    names = ["conv1d", "conv2d", "conv3d", "conv_transpose2d", "conv_transpose3d", "max_pool1d", "max_pool2d",
             "max_pool3d", "avg_pool1d", "avg_pool2d", "avg_pool3d", "adaptive_avg_pool1d", "adaptive_avg_pool2d", "adaptive_max_pool2d", "batch_norm", "layer_norm", "group_norm", "local_response_norm", "dropout", "embedding", "scatter_add_rows"]
    assert [n for n in names if OPS[n].vjp is None] == []
    assert OPS["max_pool2d_indices"].nondiff and OPS["adaptive_max_pool2d_indices"].nondiff
    assert OPS["max_pool3d_indices"].nondiff


@pytest.mark.parametrize("attrs", [{"kernel_size": 3, "stride": 2, "padding": 1, "ceil_mode": True},
                                   {"kernel_size": (2, 3), "stride": 1, "dilation": (2, 1)}])
def test_max_pool_indices_kernel_matches_torch(attrs):
    x = np.random.default_rng(0).integers(-2, 3, (2, 3, 7, 6)).astype(np.float64)
    x[0, 0, 1, 1] = np.nan
    x[1, 1] = -np.inf
    ref = F.max_pool2d(torch.from_numpy(x), return_indices=True, **attrs)[1].numpy()
    np.testing.assert_array_equal(nnk.max_pool2d_indices(x, **attrs), ref)


@pytest.mark.parametrize("attrs", [{"kernel_size": 3, "stride": 2, "padding": 1, "ceil_mode": True},
                                   {"kernel_size": (2, 3, 2), "stride": 1, "dilation": (2, 1, 2)}])
def test_max_pool3d_indices_kernel_matches_torch(attrs):
    x = np.random.default_rng(2).integers(-2, 3, (2, 2, 6, 7, 5)).astype(np.float64)
    x[0, 0, 1, 1, 1] = np.nan
    x[0, 0, 3, 3, 3] = np.nan
    x[1, 1] = -np.inf
    ref = F.max_pool3d(torch.from_numpy(x), return_indices=True, **attrs)[1].numpy()
    np.testing.assert_array_equal(nnk.max_pool3d_indices(x, **attrs), ref)


def test_adaptive_max_pool_indices_kernel_matches_torch():
    x = np.random.default_rng(1).integers(-2, 3, (2, 3, 7, 5)).astype(np.float64)
    ref = F.adaptive_max_pool2d(torch.from_numpy(x), (3, 4), return_indices=True)[1].numpy()
    np.testing.assert_array_equal(nnk.adaptive_max_pool2d_indices(x, output_size=(3, 4)), ref)


def test_scatter_add_rows_kernel():
    upd = np.arange(12.0).reshape(2, 3, 2)
    out = nnk.scatter_add_rows(IDX, upd, num_rows=5)
    ref = torch.zeros(5, 2, dtype=torch.float64).index_add_(0, torch.from_numpy(IDX.ravel()),
                                                            torch.from_numpy(upd.reshape(-1, 2)))
    np.testing.assert_array_equal(out, ref.numpy())


def test_dropout_vjp_reuses_the_forward_mask():
    g, _, weights = build("dropout", make_inputs([(4, 5)]), {"p": 0.3, "seed": 7})
    res = run(g, make_inputs([(4, 5)]), weights)
    np.testing.assert_allclose(res["g0"], weights["r0"] * DROP_MASK / 0.7, rtol=1e-12)


# ---------------------------------------------------------------- second order
def _second_order(op, specs, attrs, seed=0):
    """loss = sum(op(xs)^2 * R); h = sum_i <d loss/d x_i, S_i>; compare dh/dx with finite differences."""
    operands = make_inputs(specs, seed)
    rng = np.random.default_rng(seed + 1)
    g = Graph("second_order")
    b = Builder(g)
    vals = [None if a is None else b.input(f"in{i}", TensorType(DType.from_numpy(a.value.dtype), a.value.shape))
            for i, a in enumerate(operands)]
    y = b.op(op, *vals, **attrs)
    y = y[0] if isinstance(y, tuple) else y
    feed = {f"in{i}": a.value for i, a in enumerate(operands) if a is not None}
    r = b.input("R", y.type)
    feed["R"] = rng.standard_normal(tuple(y.type.shape))
    loss = b.op("sum", b.op("mul", b.op("square", y), r), axis=None, keepdims=False)
    wrt = [v for v, a in zip(vals, operands) if a is not None and a.diff]
    g1 = grad(g, loss, wrt)
    h = None
    for k, (v, gv) in enumerate(zip(wrt, g1)):
        s = b.input(f"S{k}", v.type)
        feed[f"S{k}"] = rng.standard_normal(tuple(v.type.shape))
        t = b.op("sum", b.op("mul", gv, s), axis=None, keepdims=False)
        h = t if h is None else b.op("add", h, t)
    g2 = grad(g, h, wrt)
    g.outputs = [h] + [x if x is not None else h for x in g2]
    g.output_names = ["h"] + [f"d{k}" for k in range(len(g2))]
    names = [f"in{i}" for i, a in enumerate(operands) if a is not None and a.diff]
    out = Interpreter(g).run(feed, {})[0]
    eps = 1e-6
    for k, name in enumerate(names):
        x0 = feed[name]
        num = np.zeros_like(x0)
        for idx in np.ndindex(*x0.shape):
            for sign in (1, -1):
                f = dict(feed)
                f[name] = x0.copy()
                f[name][idx] += sign * eps
                num[idx] += sign * Interpreter(g).run(f, {})[0]["h"] / (2 * eps)
        ana = out[f"d{k}"] if g2[k] is not None else np.zeros_like(x0)
        err = float(np.abs(ana - num).max()) / max(1.0, float(np.abs(num).max()))
        assert err <= 1e-6, f"{op}: second-order error {err:.2e} for operand {name}"


SECOND_ORDER = [
    ("conv2d", [(1, 2, 4, 4), (2, 2, 3, 3), (2,)], {"padding": 1}),
    ("conv2d", [(1, 2, 5, 5), (4, 1, 2, 2), None], {"stride": 2, "groups": 2, "dilation": 2}),
    ("conv1d", [(2, 2, 5), (2, 2, 3), (2,)], {"dilation": 2}),
    ("conv_transpose2d", [(1, 2, 3, 3), (2, 2, 2, 2), (2,)], {"stride": 2}),
    ("max_pool2d", [(1, 2, 4, 4)], {"kernel_size": 2}),
    ("adaptive_max_pool2d", [(1, 2, 5, 4)], {"output_size": (2, 3)}),
    ("avg_pool2d", [(1, 2, 4, 4)], {"kernel_size": 2}),
    ("adaptive_avg_pool2d", [(1, 2, 5, 4)], {"output_size": (2, 3)}),
    ("batch_norm", [(3, 2, 2), None, None, (2,), (2,)], {"training": True}),
    ("layer_norm", [(2, 4), (4,), (4,)], {"normalized_shape": 4}),
    ("group_norm", [(2, 4, 2), (4,), (4,)], {"num_groups": 2}),
    ("local_response_norm", [(1, 4, 2)], {"size": 3, "alpha": 0.5, "k": 2.0}),
    ("embedding", [fixed(IDX), (5, 3)], {"padding_idx": 1}),
]


@pytest.mark.parametrize("case", SECOND_ORDER, ids=[f"{c[0]}-{i}" for i, c in enumerate(SECOND_ORDER)])
def test_second_order(case):
    _second_order(*case)


# These rules crop or zero-extend a differentiated value with `pad` (strided
# weight gradients, asymmetric "same" padding, output_padding >= stride,
# ceil_mode overhang): their second order needs pad's own VJP.
SECOND_ORDER_PAD = [
    ("conv2d", [(1, 2, 4, 4), (2, 2, 3, 3), (2,)], {"padding": 1, "stride": 2}),
    ("conv2d", [(1, 2, 4, 5), (2, 2, 2, 2), None], {"padding": "same"}),
    ("conv1d", [(1, 2, 6), (2, 2, 3), None], {"padding": 1, "stride": 2}),
    ("conv_transpose2d", [(1, 2, 3, 3), (2, 2, 3, 3), None], {"stride": 2, "padding": 1, "output_padding": 1}),
    ("conv_transpose2d", [(1, 2, 3, 3), (2, 2, 3, 3), None], {"dilation": 2, "output_padding": 1}),
    ("avg_pool2d", [(1, 2, 5, 5)], {"kernel_size": 3, "stride": 2, "padding": 1, "ceil_mode": True,
                                    "count_include_pad": False}),
]


def _pad_has_vjp():
    from dlc.compiler.ops import OPS
    return OPS["pad"].vjp is not None


@pytest.mark.skipif(not _pad_has_vjp(), reason="pad has no VJP rule yet")
@pytest.mark.parametrize("case", SECOND_ORDER_PAD, ids=[f"{c[0]}-{i}" for i, c in enumerate(SECOND_ORDER_PAD)])
def test_second_order_through_pad(case):
    _second_order(*case)


# ---- the quantized ops: not differentiable, with an error at the node's .dln line
def _quant_nodes():
    from dlc.errors import Span
    g = Graph("q")
    span = Span("q.dln", 3, 5)
    b = Builder(g, span)
    x = g.add_input("x", TensorType(DType.f32, (1, 2, 4, 4)))
    s, zp = b.const(0.1), b.const(3, "uint8")
    xq = b.op("quantize_linear", x, s, zp)
    m, sh = b.op("requant_multiplier", s, b.const(0.02, shape=(3,)), b.const(0.5))
    bq = b.op("cast", b.const(0.0, shape=(3,)), dtype="int32")
    wq = b.op("cast", b.const(1.0, shape=(3, 2, 3, 3)), dtype="int8")
    conv = b.op("qconv2d", xq, wq, bq, m, sh, x_zero_point=3)
    dense = b.op("qdense", xq, b.op("cast", b.const(1.0, shape=(3, 4)), dtype="int8"), bq, m, sh)
    out = b.op("dequantize_linear", conv, b.const(0.5), b.const(0, "uint8"))
    nodes = {v.producer.op.name: v.producer for v in (xq, m, conv, dense, out)}
    return g, nodes, out, span


@pytest.mark.parametrize("op", ["quantize_linear", "dequantize_linear", "requant_multiplier", "qconv2d", "qdense"])
def test_quantized_ops_refuse_autodiff(op):
    from dlc.compiler.ops.quant import NotDifferentiable
    g, nodes, _, span = _quant_nodes()
    node = nodes[op]
    with pytest.raises(NotDifferentiable) as e:
        node.op.vjp(Builder(g), node, list(node.outputs))
    assert e.value.message.startswith(f"{op} is not differentiable") and e.value.span == span


def test_grad_through_a_quantized_graph_is_a_located_error():
    from dlc.compiler.ops.quant import NotDifferentiable
    g, _, out, span = _quant_nodes()
    with pytest.raises(NotDifferentiable, match="not differentiable") as e:
        grad(g, Builder(g).op("sum", out), [g.inputs[0]])
    assert e.value.span == span
