"""VJP rules of reductions, shape ops, losses and attention: finite differences
(float64, max relative error <= 1e-6) and torch.autograd, plus second-order
checks (the backward is IR, so it can be differentiated again)."""
import numpy as np
import pytest

from dlc.compiler.autodiff import grad
from dlc.compiler.builder import Builder
from dlc.compiler.ir import Graph
from dlc.compiler.types import DType, TensorType
from vjp_harness import Arr, check_fd, check_torch, make_inputs, run

torch = pytest.importorskip("torch")
F = torch.nn.functional
pytestmark = pytest.mark.filterwarnings("ignore:reduction. 'mean' divides the total loss")
_rng = np.random.default_rng(11)


def U(shape, lo, hi, diff=True):
    return Arr(_rng.uniform(lo, hi, shape), diff)


def I(values):
    return Arr(np.array(values, dtype=np.int64))


def B(shape, p=0.5):
    return Arr(_rng.random(shape) < p)


# (op, operand specs, attrs, torch fn, options): options may hold "out" (the one
# result whose cotangent is non-zero: the others get None), "fixed" (operands
# torch cannot differentiate: compared with finite differences only) and
# "no_fd" (torch only: the op is not differentiable there, e.g. 3-way ties).
S = (3, 4)
TIES = Arr(np.array([[1.0, 3.0, 3.0, 0.5], [2.0, 2.0, 2.0, -1.0], [0.0, -4.0, 5.0, 5.0]]), True)
TIES2 = Arr(np.array([[1.0, 3.0, 3.0, 0.5], [2.0, -2.0, 2.0, -1.0], [0.0, -4.0, 5.0, 5.0]]), True)
ZERO1 = Arr(np.array([[1.5, 0.0, -2.0, 0.7], [0.3, 1.2, -0.8, 2.0], [0.0, 0.0, 1.1, -0.6]]), True)
PROBS = U(S, 0.1, 0.9)
TGT01 = U(S, 0.05, 0.95)
LOGP = Arr(np.log(_rng.dirichlet(np.ones(4), 3)), True)
KLT = Arr(np.array([[0.2, 0.0, 0.5, 0.3], [0.1, 0.4, 0.0, 0.5], [0.25, 0.25, 0.25, 0.25]]))
CT = I([1, 3, 0])              # class targets for (3, 4)
CT_IGN = I([1, -100, 3])
CT3 = Arr(np.array([[0, 2, 1, 2, 0], [1, 1, 2, 0, 7]], dtype=np.int64))   # (2, 5) for (2, 3, 5); 7 ignored
CT3_SAFE = Arr(np.array([[0, 2, 1, 2, 0], [1, 1, 2, 0, 1]], dtype=np.int64))
SOFT = Arr(_rng.dirichlet(np.ones(4), 3), True)
W4 = U((4,), 0.5, 2.0)
W3 = U((3,), 0.5, 2.0)


def _np_tril(L, S):
    return Arr(np.tril(np.ones((L, S), dtype=bool)))


MASK_ROW = Arr(np.array([[True, False, True, True], [False, False, False, False], [True, True, False, True]]))


def _ss(begin, end, strides):
    def f(x):
        import builtins
        idx = x
        for ax, (b, e, s) in enumerate(zip(begin, end, strides)):
            r = list(builtins.range(x.shape[ax]))[slice(b, e, s)]
            idx = torch.index_select(idx, ax, torch.tensor(r, dtype=torch.int64))
        return idx
    return f


def _sdpa(mask_pos=None, **kw):
    def f(q, k, v, m=None):
        return F.scaled_dot_product_attention(q, k, v, attn_mask=m, **kw)
    return f


CASES = [
    # reductions ---------------------------------------------------------------
    ("max", [S], {"axis": 1}, lambda x: torch.amax(x, 1), {}),
    ("max", [(2, 3, 4)], {"axis": (0, 2), "keepdims": True}, lambda x: torch.amax(x, (0, 2), keepdim=True), {}),
    ("max", [S], {"axis": None}, lambda x: torch.amax(x), {}),
    ("max", [TIES2], {"axis": 1}, lambda x: torch.amax(x, 1), {}),          # 2-way ties: FD sees 1/2 too
    ("max", [TIES], {"axis": 1}, lambda x: torch.amax(x, 1), {"no_fd": True}),
    ("max", [TIES], {"axis": None}, lambda x: torch.amax(x), {"no_fd": True}),
    ("min", [S], {"axis": 0}, lambda x: torch.amin(x, 0), {}),
    ("min", [Arr(-TIES.value, True)], {"axis": -1, "keepdims": True},
     lambda x: torch.amin(x, -1, keepdim=True), {"no_fd": True}),
    ("prod", [S], {"axis": 1}, lambda x: torch.prod(x, 1), {}),
    ("prod", [(2, 3, 2)], {"axis": (0, 2), "keepdims": True},
     lambda x: torch.prod(torch.prod(x, 2, keepdim=True), 0, keepdim=True), {}),
    ("prod", [ZERO1], {"axis": 1}, lambda x: torch.prod(x, 1), {}),        # rows with 0, 1 and 2 zeros
    ("prod", [ZERO1], {"axis": 0}, lambda x: torch.prod(x, 0), {}),
    ("prod", [Arr(np.array([[1.5, 0.0, -2.0], [0.5, 1.3, 0.9]]), True)], {"axis": None}, torch.prod, {}),
    ("prod", [Arr(np.array(1.7), True)], {"axis": None}, torch.prod, {}),
    ("logsumexp", [S], {"axis": 1}, lambda x: torch.logsumexp(x, 1), {}),
    ("logsumexp", [(2, 3, 4)], {"axis": None, "keepdims": True},
     lambda x: torch.logsumexp(x.reshape(-1), 0).reshape(1, 1, 1), {}),
    ("var", [S], {"axis": 1}, lambda x: torch.var(x, 1), {}),
    ("var", [(2, 3, 4)], {"axis": (0, 2), "correction": 0, "keepdims": True},
     lambda x: torch.var(x, (0, 2), correction=0, keepdim=True), {}),
    ("var", [S], {"axis": None, "correction": 2}, lambda x: torch.var(x, correction=2), {}),
    ("std", [S], {"axis": 0}, lambda x: torch.std(x, 0), {}),
    ("std", [(2, 3, 4)], {"axis": -1, "correction": 0, "keepdims": True},
     lambda x: torch.std(x, -1, correction=0, keepdim=True), {}),
    ("std", [S], {"axis": None, "correction": 1.5}, lambda x: torch.std(x, correction=1.5), {}),
    # shape ops ----------------------------------------------------------------
    ("concat", [(2, 3), (1, 3), (3, 3)], {"axis": 0}, lambda *xs: torch.cat(xs, 0), {}),
    ("concat", [(2, 3), (2, 1)], {"axis": -1}, lambda *xs: torch.cat(xs, -1), {}),
    ("concat", [(2, 3)], {"axis": 1}, lambda x: torch.cat([x], 1), {}),
    ("split", [(2, 6)], {"sections": 3, "axis": 1}, lambda x: torch.split(x, 2, 1), {}),
    ("split", [(4, 3)], {"sections": [1, 3], "axis": 0}, lambda x: torch.split(x, [1, 3], 0), {"out": 0}),
    ("split", [(4, 3)], {"sections": [1, 2, 1], "axis": 0}, lambda x: torch.split(x, [1, 2, 1], 0), {"out": 1}),
    ("strided_slice", [(7,)], {"begin": [1], "end": [6], "strides": [2]}, _ss([1], [6], [2]), {}),
    ("strided_slice", [(7,)], {"begin": [None], "end": [None], "strides": [-1]}, _ss([None], [None], [-1]), {}),
    ("strided_slice", [(7,)], {"begin": [5], "end": [0], "strides": [-2]}, _ss([5], [0], [-2]), {}),
    ("strided_slice", [(8,)], {"begin": [-1], "end": [-7], "strides": [-3]}, _ss([-1], [-7], [-3]), {}),
    ("strided_slice", [(8,)], {"begin": [2], "end": [100], "strides": [3]}, _ss([2], [100], [3]), {}),
    ("strided_slice", [(4, 6)], {"begin": [1, None], "end": [None, 1], "strides": [None, -2]},
     _ss([1, None], [None, 1], [None, -2]), {}),
    ("strided_slice", [(3, 5, 4)], {"begin": [None, -2, 0], "end": [2, None, 4], "strides": [1, 1, 3]},
     _ss([None, -2, 0], [2, None, 4], [1, 1, 3]), {}),
    ("strided_slice", [(3, 4)], {"begin": [2, 0], "end": [1, 4], "strides": None}, _ss([2, 0], [1, 4], [1, 1]), {}),
    ("pad", [(2, 3)], {"pad": [1, 2]}, lambda x: F.pad(x, [1, 2]), {}),
    ("pad", [(2, 3)], {"pad": [2, 0, 1, 1], "value": 3.5}, lambda x: F.pad(x, [2, 0, 1, 1], value=3.5), {}),
    ("pad", [(3, 4)], {"pad": [-1, 2, 1, -2]}, lambda x: F.pad(x, [-1, 2, 1, -2]), {}),
    ("pad", [(2, 5)], {"pad": [2, 3], "mode": "reflect"}, lambda x: F.pad(x, [2, 3], mode="reflect"), {}),
    ("pad", [(1, 3, 4)], {"pad": [3, 1, 2, 2], "mode": "reflect"},
     lambda x: F.pad(x, [3, 1, 2, 2], mode="reflect"), {}),
    ("pad", [(2, 4)], {"pad": [2, 3], "mode": "replicate"}, lambda x: F.pad(x, [2, 3], mode="replicate"), {}),
    ("pad", [(1, 3, 4)], {"pad": [1, 0, 2, 3], "mode": "replicate"},
     lambda x: F.pad(x, [1, 0, 2, 3], mode="replicate"), {}),
    ("pad", [(2, 4)], {"pad": [2, 4], "mode": "circular"}, lambda x: F.pad(x, [2, 4], mode="circular"), {}),
    ("pad", [(1, 3, 4)], {"pad": [1, 3, 3, 0], "mode": "circular"},
     lambda x: F.pad(x, [1, 3, 3, 0], mode="circular"), {}),
    ("gather", [S, I([[0, 2, 2, 1], [2, 2, 0, 0]])], {"axis": 0}, lambda x, i: torch.gather(x, 0, i), {}),
    ("gather", [(3, 4, 2), Arr(_rng.integers(0, 4, (2, 6, 2)))], {"axis": 1},
     lambda x, i: torch.gather(x, 1, i), {}),
    ("gather", [S, I([[3, 3, 0], [1, 1, 1]])], {"axis": -1}, lambda x, i: torch.gather(x, -1, i), {}),
    ("index_select", [S, I([2, 0, 2, 2])], {"axis": 0}, lambda x, i: torch.index_select(x, 0, i), {}),
    ("index_select", [(2, 3, 4), I([3, 3, 1])], {"axis": -1}, lambda x, i: torch.index_select(x, -1, i), {}),
    ("index_select", [S, I(1)], {"axis": 1}, lambda x, i: torch.index_select(x, 1, i), {}),
    ("scatter_add", [S, I([[0, 2, 2, 1], [2, 2, 0, 0]]), (2, 4)], {"axis": 0},
     lambda x, i, s: x.scatter_add(0, i, s), {}),
    ("scatter_add", [(3, 5), I([[4, 4], [0, 1]]), (2, 2)], {"axis": 1},
     lambda x, i, s: x.scatter_add(1, i, s), {}),
    ("tril", [(2, 3, 4)], {"k": 0}, torch.tril, {}),
    ("tril", [(4, 3)], {"k": -1}, lambda x: torch.tril(x, -1), {}),
    ("triu", [(3, 4)], {"k": 1}, lambda x: torch.triu(x, 1), {}),
    # losses -------------------------------------------------------------------
    *[("mse_loss", [S, S], {"reduction": r}, lambda x, t, r=r: F.mse_loss(x, t, reduction=r), {})
      for r in ("mean", "sum", "none")],
    *[("l1_loss", [S, S], {"reduction": r}, lambda x, t, r=r: F.l1_loss(x, t, reduction=r), {})
      for r in ("mean", "sum", "none")],
    ("smooth_l1_loss", [S, S], {"beta": 0.7}, lambda x, t: F.smooth_l1_loss(x, t, beta=0.7), {}),
    ("smooth_l1_loss", [S, S], {"beta": 1.0, "reduction": "none"},
     lambda x, t: F.smooth_l1_loss(x, t, reduction="none"), {}),
    ("smooth_l1_loss", [S, S], {"beta": 0.0, "reduction": "sum"},
     lambda x, t: F.smooth_l1_loss(x, t, beta=0.0, reduction="sum"), {}),
    *[("binary_cross_entropy", [PROBS, TGT01], {"reduction": r},
       lambda x, t, r=r: F.binary_cross_entropy(x, t, reduction=r), {}) for r in ("mean", "sum", "none")],
    ("binary_cross_entropy", [PROBS, TGT01, W4], {},
     lambda x, t, w: F.binary_cross_entropy(x, t, weight=w), {"fixed": (2,)}),
    ("binary_cross_entropy", [PROBS, TGT01, U(S, 0.5, 2.0)], {"reduction": "none"},
     lambda x, t, w: F.binary_cross_entropy(x, t, weight=w, reduction="none"), {"fixed": (2,)}),
    *[("binary_cross_entropy_with_logits", [S, TGT01], {"reduction": r},
       lambda x, t, r=r: F.binary_cross_entropy_with_logits(x, t, reduction=r), {}) for r in ("mean", "sum", "none")],
    ("binary_cross_entropy_with_logits", [S, TGT01, W4, U((4,), 0.3, 3.0)], {},
     lambda x, t, w, pw: F.binary_cross_entropy_with_logits(x, t, weight=w, pos_weight=pw), {"fixed": (2, 3)}),
    ("binary_cross_entropy_with_logits", [S, TGT01, None, U((4,), 0.3, 3.0)], {"reduction": "sum"},
     lambda x, t, w, pw: F.binary_cross_entropy_with_logits(x, t, pos_weight=pw, reduction="sum"),
     {"fixed": (3,)}),
    ("binary_cross_entropy_with_logits", [(2, 3, 4), U((2, 3, 4), 0, 1), U((3, 1), 0.5, 2.0)], {"reduction": "none"},
     lambda x, t, w: F.binary_cross_entropy_with_logits(x, t, weight=w, reduction="none"), {"fixed": (2,)}),
    *[("kl_div", [LOGP, U(S, 0.05, 1.0)], {"reduction": r},
       lambda x, t, r=r: F.kl_div(x, t, reduction=r), {}) for r in ("mean", "sum", "none", "batchmean")],
    ("kl_div", [LOGP, KLT], {"reduction": "batchmean"}, lambda x, t: F.kl_div(x, t, reduction="batchmean"), {}),
    ("kl_div", [LOGP, U(S, -3.0, 0.0)], {"reduction": "sum", "log_target": True},
     lambda x, t: F.kl_div(x, t, reduction="sum", log_target=True), {}),
    ("kl_div", [LOGP, U(S, -3.0, 0.0)], {"reduction": "batchmean", "log_target": True},
     lambda x, t: F.kl_div(x, t, reduction="batchmean", log_target=True), {}),
    *[("nll_loss", [S, CT], {"reduction": r}, lambda x, t, r=r: F.nll_loss(x, t, reduction=r), {})
      for r in ("mean", "sum", "none")],
    ("nll_loss", [S, CT_IGN, W4], {}, lambda x, t, w: F.nll_loss(x, t, weight=w), {"fixed": (2,)}),
    ("nll_loss", [S, I([1, 2, 2]), W4], {"ignore_index": 2, "reduction": "sum"},
     lambda x, t, w: F.nll_loss(x, t, weight=w, ignore_index=2, reduction="sum"), {"fixed": (2,)}),
    ("nll_loss", [(2, 3, 5), CT3, W3], {"ignore_index": 7},
     lambda x, t, w: F.nll_loss(x, t, weight=w, ignore_index=7), {"fixed": (2,)}),
    ("nll_loss", [(4,), I(2)], {}, lambda x, t: F.nll_loss(x, t), {}),
    ("nll_loss", [(2, 3, 5), CT3, W3], {"ignore_index": 7, "reduction": "none"},
     lambda x, t, w: F.nll_loss(x, t, weight=w, ignore_index=7, reduction="none"), {"fixed": (2,)}),
    *[("cross_entropy", [S, CT], {"reduction": r}, lambda x, t, r=r: F.cross_entropy(x, t, reduction=r), {})
      for r in ("mean", "sum", "none")],
    ("cross_entropy", [S, CT_IGN, W4], {}, lambda x, t, w: F.cross_entropy(x, t, weight=w), {"fixed": (2,)}),
    ("cross_entropy", [S, CT_IGN], {"label_smoothing": 0.2},
     lambda x, t: F.cross_entropy(x, t, label_smoothing=0.2), {}),
    ("cross_entropy", [S, CT_IGN, W4], {"label_smoothing": 0.3},
     lambda x, t, w: F.cross_entropy(x, t, weight=w, label_smoothing=0.3), {"fixed": (2,)}),
    ("cross_entropy", [(2, 3, 5), CT3, W3], {"ignore_index": 7, "label_smoothing": 0.1, "reduction": "sum"},
     lambda x, t, w: F.cross_entropy(x, t, weight=w, ignore_index=7, label_smoothing=0.1, reduction="sum"),
     {"fixed": (2,)}),
    ("cross_entropy", [(2, 3, 5), CT3, W3], {"ignore_index": 7, "label_smoothing": 0.4, "reduction": "none"},
     lambda x, t, w: F.cross_entropy(x, t, weight=w, ignore_index=7, label_smoothing=0.4, reduction="none"),
     {"fixed": (2,)}),
    ("cross_entropy", [(2, 3, 5), CT3_SAFE], {"label_smoothing": 0.1, "reduction": "none"},
     lambda x, t: F.cross_entropy(x, t, label_smoothing=0.1, reduction="none"), {}),
    ("cross_entropy", [(4,), I(3)], {"label_smoothing": 0.25}, lambda x, t: F.cross_entropy(x, t, label_smoothing=0.25), {}),
    ("cross_entropy", [S, SOFT], {}, lambda x, t: F.cross_entropy(x, t), {}),
    ("cross_entropy", [S, SOFT, W4], {"label_smoothing": 0.2, "reduction": "sum"},
     lambda x, t, w: F.cross_entropy(x, t, weight=w, label_smoothing=0.2, reduction="sum"), {}),
    ("cross_entropy", [(2, 3, 5), Arr(_rng.dirichlet(np.ones(3), (2, 5)).transpose(0, 2, 1).copy(), True)],
     {"reduction": "none", "label_smoothing": 0.1},
     lambda x, t: F.cross_entropy(x, t, reduction="none", label_smoothing=0.1), {}),
    ("cross_entropy", [(4,), Arr(_rng.dirichlet(np.ones(4)), True)], {}, lambda x, t: F.cross_entropy(x, t), {}),
    # attention ------------------------------------------------------------------
    ("scaled_dot_product_attention", [(2, 3, 4), (2, 5, 4), (2, 5, 3)], {}, _sdpa(), {}),
    ("scaled_dot_product_attention", [(2, 3, 4), (2, 4, 4), (2, 4, 2)], {"is_causal": True, "scale": 0.7},
     _sdpa(is_causal=True, scale=0.7), {}),
    ("scaled_dot_product_attention", [(4, 3), (5, 3), (5, 2)], {"is_causal": True}, _sdpa(is_causal=True), {}),
    ("scaled_dot_product_attention", [(2, 1, 3, 4), (3, 5, 4), (1, 3, 5, 2)], {}, _sdpa(), {}),
    ("scaled_dot_product_attention", [(2, 3, 4), (2, 4, 4), (2, 4, 3), B((2, 3, 4), 0.7)], {}, _sdpa(), {}),
    ("scaled_dot_product_attention", [(2, 3, 4), (2, 4, 4), (2, 4, 3), MASK_ROW], {}, _sdpa(), {}),
    ("scaled_dot_product_attention", [(2, 3, 4), (2, 4, 4), (2, 4, 3), (2, 3, 4)], {}, _sdpa(), {}),
    ("scaled_dot_product_attention", [(2, 3, 4), (2, 4, 4), (2, 4, 3), (4,)], {"scale": 0.3}, _sdpa(scale=0.3), {}),
    ("scaled_dot_product_attention", [(2, 2, 3, 4), (2, 4, 4), (2, 4, 3), (2, 1, 3, 1)], {}, _sdpa(), {}),
]
IDS = [f"{c[0]}-{i}" for i, c in enumerate(CASES)]


@pytest.mark.parametrize("case", [c for c in CASES if not c[4].get("no_fd")],
                         ids=[i for i, c in zip(IDS, CASES) if not c[4].get("no_fd")])
def test_vjp_matches_finite_differences(case):
    op, specs, attrs, _, opts = case
    check_fd(op, make_inputs(specs), attrs, output_index=opts.get("out"))


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_vjp_matches_torch_autograd(case):
    op, specs, attrs, fn, opts = case
    ins = make_inputs(specs)
    for i in opts.get("fixed", ()):
        ins[i] = Arr(ins[i].value, False)
    check_torch(op, ins, attrs, fn, output_index=opts.get("out"))


def test_no_gradient_through_integer_targets_and_bool_masks():
    g = Graph("t")
    b = Builder(g)
    x = b.input("x", TensorType(DType.f64, (3, 4)))
    t = b.input("t", TensorType(DType.i64, (3,)))
    m = b.input("m", TensorType(DType.bool, (3, 3)))
    loss = b.op("cross_entropy", x, t)
    att = b.op("scaled_dot_product_attention", x, x, x, m)
    total = b.op("add", loss, b.op("sum", att, axis=None, keepdims=False))
    gx, gt, gm = grad(g, total, [x, t, m])
    assert gx is not None and gt is None and gm is None


# second order: differentiate the backward again ---------------------------------
SECOND = [
    ("logsumexp", [S], {"axis": 1}),
    ("var", [S], {"axis": 0, "correction": 1}),
    ("std", [S], {"axis": None}),
    ("prod", [U(S, 0.5, 1.5)], {"axis": 1}),
    ("max", [S], {"axis": 1}),
    ("pad", [(2, 5)], {"pad": [2, 3], "mode": "reflect"}),
    ("strided_slice", [(7,)], {"begin": [5], "end": [0], "strides": [-2]}),
    ("gather", [S, I([[0, 2, 2, 1], [2, 2, 0, 0]])], {"axis": 0}),
    ("index_select", [S, I([2, 0, 2])], {"axis": 0}),
    ("binary_cross_entropy", [PROBS, TGT01, W4], {}),
    ("binary_cross_entropy_with_logits", [S, TGT01, W4, U((4,), 0.3, 3.0)], {}),
    ("kl_div", [LOGP, U(S, 0.05, 1.0)], {"reduction": "batchmean"}),
    ("cross_entropy", [S, CT_IGN, W4], {"label_smoothing": 0.3}),
    ("cross_entropy", [S, SOFT, W4], {"label_smoothing": 0.2}),
    ("scaled_dot_product_attention", [(2, 3, 4), (2, 4, 4), (2, 4, 3), (2, 3, 4)], {}),
    ("scaled_dot_product_attention", [(2, 3, 4), (2, 4, 4), (2, 4, 3), MASK_ROW], {}),
]


@pytest.mark.parametrize("case", SECOND, ids=[f"{c[0]}-{i}" for i, c in enumerate(SECOND)])
def test_second_order_matches_finite_differences(case):
    """h = d/dx <grad_x loss, R2>, checked against finite differences of <grad_x loss, R2>."""
    op, specs, attrs = case
    ops = make_inputs(specs)
    g = Graph("hvp")
    b = Builder(g)
    vals = [None if a is None else b.input(f"in{i}", TensorType(DType.from_numpy(a.value.dtype), a.value.shape))
            for i, a in enumerate(ops)]
    out = b.op(op, *vals, **attrs)
    rng = np.random.default_rng(3)
    r = b.input("r0", out.type)
    weights = {"r0": rng.standard_normal(tuple(out.type.shape))}
    loss = b.op("sum", b.op("mul", out, r), axis=None, keepdims=False)
    wrt = [v for v, a in zip(vals, ops) if a is not None and a.diff]
    grads = grad(g, loss, wrt)
    loss2 = None
    for k, gr in enumerate(grads):
        rk = b.input(f"r2_{k}", gr.type)
        weights[f"r2_{k}"] = rng.standard_normal(tuple(gr.type.shape))
        term = b.op("sum", b.op("mul", gr, rk), axis=None, keepdims=False)
        loss2 = term if loss2 is None else b.op("add", loss2, term)
    hs = grad(g, loss2, wrt)
    g.outputs = [loss2] + [h if h is not None else loss2 for h in hs]
    g.output_names = ["loss"] + [f"g{i}" for i in range(len(hs))]
    res = run(g, ops, weights)
    diff_idx = [i for i, a in enumerate(ops) if a is not None and a.diff]
    eps = 1e-6
    for k, i in enumerate(diff_idx):
        x0 = ops[i].value
        analytic = res[f"g{k}"] if hs[k] is not None else np.zeros_like(x0)
        numeric = np.zeros_like(x0)
        for idx in np.ndindex(x0.shape):
            vals_pm = []
            for sgn in (1, -1):
                xp = x0.copy()
                xp[idx] += sgn * eps
                o = list(ops)
                o[i] = Arr(xp, True)
                vals_pm.append(run(g, o, weights)["loss"])
            numeric[idx] = (vals_pm[0] - vals_pm[1]) / (2 * eps)
        err = float(np.abs(analytic - numeric).max()) / max(1.0, float(np.abs(numeric).max()))
        assert err <= 1e-5, f"{op} operand {i}: second-order relative error {err:.2e}"


# symbolic dimensions: the rules build the same gradients when sizes are symbols ---------
def _sym_graph(op, specs, attrs, n):
    from dlc.compiler.ir import check_types
    g = Graph("sym")
    b = Builder(g)
    vals = []
    for i, (dt, shape) in enumerate(specs):
        shape = tuple(n if d == "N" else d for d in shape)
        vals.append(b.input(f"in{i}", TensorType(DType.parse(dt), shape)))
    out = b.op(op, *vals, **attrs)
    r = b.input("r", out.type)
    loss = b.op("sum", b.op("mul", out, r), axis=None, keepdims=False)
    gs = grad(g, loss, [v for v in vals if v.type.dtype.is_float])
    for node in g.nodes:
        check_types(node)
    g.outputs, g.output_names = gs, [f"g{i}" for i in range(len(gs))]
    return g


SYMBOLIC = [
    ("cross_entropy", [("f64", ("N", 4)), ("i64", ("N",)), ("f64", (4,))], {"label_smoothing": 0.2},
     [(3, 4), np.array([0, 3, 1]), (4,), ()]),
    ("cross_entropy", [("f64", (2, 4, "N")), ("f64", (2, 4, "N"))], {}, [(2, 4, 3), (2, 4, 3), ()]),
    ("nll_loss", [("f64", (2, 4, "N")), ("i64", (2, "N"))], {}, [(2, 4, 3), np.array([[0, 1, 3], [2, 2, 1]]), ()]),
    ("kl_div", [("f64", ("N", 3)), ("f64", ("N", 3))], {"reduction": "batchmean"}, [(3, 3), (3, 3), ()]),
    ("var", [("f64", ("N", 3))], {"axis": 0}, [(3, 3), (3,)]),
    ("max", [("f64", (2, "N"))], {"axis": 1}, [(2, 3), (2,)]),
    ("strided_slice", [("f64", ("N", 5))], {"begin": [1, None], "end": [2, None]}, [(3, 5), (1, 5)]),
    ("strided_slice", [("f64", ("N", 5))], {"begin": [-2, 1], "end": [None, None], "strides": [1, 2]},
     [(3, 5), (2, 2)]),
    ("pad", [("f64", (2, "N"))], {"pad": [2, 1], "mode": "reflect"}, [(2, 3), (2, 6)]),
    ("pad", [("f64", (2, "N"))], {"pad": [2, 1], "mode": "replicate"}, [(2, 3), (2, 6)]),
    ("pad", [("f64", (2, "N"))], {"pad": [3, 1], "mode": "circular"}, [(2, 3), (2, 7)]),
    ("concat", [("f64", ("N", 2)), ("f64", (2, 2))], {"axis": 0}, [(3, 2), (2, 2), (5, 2)]),
    ("scaled_dot_product_attention", [("f64", (2, "N", 4)), ("f64", (2, "N", 4)), ("f64", (2, "N", 3))],
     {"is_causal": True}, [(2, 3, 4), (2, 3, 4), (2, 3, 3), (2, 3, 3)]),
]


@pytest.mark.parametrize("case", SYMBOLIC, ids=[f"{c[0]}-{i}" for i, c in enumerate(SYMBOLIC)])
def test_symbolic_shapes_give_the_concrete_gradients(case):
    from dlc.backends.numpy.interpreter import Interpreter
    from dlc.compiler.dims import Dim
    op, specs, attrs, arrays = case
    rng = np.random.default_rng(7)
    feed = {}
    for i, a in enumerate(arrays):
        name = "r" if i == len(arrays) - 1 else f"in{i}"
        feed[name] = a if isinstance(a, np.ndarray) else rng.uniform(0.1, 1.0, a)
    sym = Interpreter(_sym_graph(op, specs, attrs, Dim.symbol("N")), dims={"N": 3}).run(feed, {})[0]
    conc = Interpreter(_sym_graph(op, specs, attrs, 3)).run(feed, {})[0]
    assert sym.keys() == conc.keys()
    for k in conc:
        np.testing.assert_allclose(sym[k], conc[k], rtol=1e-12, atol=1e-12)
