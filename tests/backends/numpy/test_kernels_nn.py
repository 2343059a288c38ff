"""Table-driven check of the NumPy nn / recurrent kernels against PyTorch.

Each case names an op, how to build its positional inputs, its attributes and
(optionally) a torch reference.  The default reference is
``torch.nn.functional.<op>(*inputs, **attrs)``.  Every case runs in float32
and float64, with torch computing in the same dtype.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as F
from dlc.backends.numpy.kernels import nn as nnk
from dlc.backends.numpy.kernels import recurrent as rk
from pool_reference import avg_pool_dilated_ref

pytestmark = [
    pytest.mark.torch,
    # torch warns that "same" padding with an even kernel copies its input
    pytest.mark.filterwarnings("ignore:Using padding='same':UserWarning"),
    pytest.mark.filterwarnings("ignore:LSTM with projections:UserWarning"),
]

KERNELS = {**nnk.KERNELS, **rk.KERNELS}

# --------------------------------------------------------------------------
# input constructors: a shape tuple means standard-normal data in the test
# dtype; None is passed through; a callable(rng, dtype) builds anything else
# and may return a list (spliced into the positional inputs).
# --------------------------------------------------------------------------


def positive(*shape):
    """Strictly positive data (running variances)."""
    return lambda rng, dt: (rng.random(shape) + 0.5).astype(dt)


def ints(high, *shape):
    """Integer indices in [0, high)."""
    return lambda rng, dt: rng.integers(0, high, size=shape).astype(np.int64)


def fixed(values):
    """A fixed integer array (e.g. indices with deliberate repeats)."""
    return lambda rng, dt: np.asarray(values, dtype=np.int64)


def bool_mask(*shape, p=0.3):
    """Bool attention mask with about p masked positions; column 0 always visible."""

    def make(rng, dt):
        m = rng.random(shape) >= p
        m[..., 0] = True
        return m

    return make


def float_mask(*shape):
    """Additive float mask mixing finite values and -inf (column 0 always finite)."""

    def make(rng, dt):
        m = rng.standard_normal(shape)
        m[rng.random(shape) < 0.25] = -np.inf
        m[..., 0] = 0.0
        return m.astype(dt)

    return make


def rnn_weights(kind, input_size, hidden, **mod_kw):
    """The _flat_weights of a freshly initialised torch module, as numpy arrays."""

    def make(rng, dt):
        torch.manual_seed(int(rng.integers(1 << 30)))
        mod = getattr(torch.nn, kind)(input_size, hidden, **mod_kw)
        return [w.detach().numpy().astype(dt) for w in mod._flat_weights]

    return make


def torch_recurrent(kind, input_size, hidden, **mod_kw):
    """Reference: build the torch module, load the given flat weights, run it."""

    def ref(x, *states_and_weights, **attrs):
        n_states = 2 if kind == "LSTM" else 1
        states, weights = states_and_weights[:n_states], states_and_weights[n_states:]
        mod = getattr(torch.nn, kind)(input_size, hidden, **mod_kw).to(x.dtype)
        with torch.no_grad():
            for p, w in zip(mod._flat_weights, weights, strict=True):
                p.copy_(w)
        if kind == "LSTM":
            hc = None if states[0] is None else tuple(states)
            y, (h, c) = mod(x, hc)
            return y, h, c
        y, h = mod(x, states[0])
        return y, h

    return ref


def bn_ref(x, rm, rv, w, b, *, training, momentum=0.1, eps=1e-5):
    """torch updates running stats in place; return them alongside y."""
    rm = None if rm is None else rm.clone()
    rv = None if rv is None else rv.clone()
    y = F.batch_norm(x, rm, rv, w, b, training=training, momentum=momentum, eps=eps)
    return y, rm, rv


def ln_ref(x, w, b, *, normalized_shape, eps=1e-5):
    # F.layer_norm wants a tuple; the kernel also takes an int, like nn.LayerNorm
    if isinstance(normalized_shape, int):
        normalized_shape = (normalized_shape,)
    return F.layer_norm(x, normalized_shape, w, b, eps)


def gn_ref(x, w, b, *, num_groups, eps=1e-5):
    return F.group_norm(x, num_groups, w, b, eps)


@dataclass
class Case:
    id: str
    op: str
    inputs: tuple
    attrs: dict = field(default_factory=dict)
    ref: Callable[..., Any] | None = None
    tol: float = 1.0  # multiplier on the default tolerances


def rnn_case(
    id,
    kind,
    op,
    *,
    T=5,
    N=3,
    I=4,
    H=6,
    layers=1,
    bidir=False,
    bias=True,
    batch_first=False,
    with_state=True,
    nonlinearity=None,
    proj=0,
    tol=1.0,
):
    """A recurrent case: x, initial state(s) (None = zeros), then the flat weights."""
    mod_kw = {
        "num_layers": layers,
        "bias": bias,
        "bidirectional": bidir,
        "batch_first": batch_first,
    }
    if nonlinearity:
        mod_kw["nonlinearity"] = nonlinearity
    if proj:
        mod_kw["proj_size"] = proj
    D = 2 if bidir else 1
    x = (N, T, I) if batch_first else (T, N, I)
    h_size = proj or H
    states = [(layers * D, N, h_size) if with_state else None]
    if kind == "LSTM":
        states.append((layers * D, N, H) if with_state else None)
    attrs = dict(mod_kw)  # the kernels take the module's own keyword names
    ref = torch_recurrent(kind, I, H, **mod_kw)
    return Case(
        id,
        op,
        (x, *states, rnn_weights(kind, I, H, **mod_kw)),
        attrs,
        lambda *a, **k: ref(*a),
        tol,
    )



def _avg_dilated(x, nd, *, kernel_size, stride, padding, dilation, ceil_mode=False, count_include_pad=True):
    def t(v):
        return (v,) * nd if isinstance(v, int) else tuple(v)
    return avg_pool_dilated_ref(x, t(kernel_size), t(stride), t(padding), t(dilation), ceil_mode, count_include_pad)


CASES = [
    # ---- conv1d
    Case("conv1d-basic", "conv1d", ((2, 3, 11), (4, 3, 3), (4,))),
    Case(
        "conv1d-stride-pad-dil",
        "conv1d",
        ((2, 4, 17), (6, 4, 3), (6,)),
        {"stride": 2, "padding": 2, "dilation": 2},
    ),
    Case(
        "conv1d-same-even-k",
        "conv1d",
        ((1, 3, 10), (2, 3, 4), None),
        {"padding": "same"},
    ),
    Case(
        "conv1d-valid-groups",
        "conv1d",
        ((2, 6, 9), (4, 3, 3), None),
        {"padding": "valid", "groups": 2},
    ),
    Case(
        "conv1d-depthwise",
        "conv1d",
        ((2, 4, 9), (8, 1, 3), (8,)),
        {"groups": 4, "padding": 1},
    ),
    # ---- conv2d
    Case("conv2d-basic", "conv2d", ((2, 3, 8, 7), (5, 3, 3, 3), (5,))),
    Case("conv2d-nobias", "conv2d", ((1, 3, 8, 8), (4, 3, 3, 3), None)),
    Case(
        "conv2d-stride-pad",
        "conv2d",
        ((2, 3, 9, 10), (4, 3, 3, 3), (4,)),
        {"stride": 2, "padding": 1},
    ),
    Case(
        "conv2d-asym",
        "conv2d",
        ((1, 2, 9, 11), (3, 2, 3, 2), (3,)),
        {"stride": (2, 1), "padding": (1, 2), "dilation": (1, 2)},
    ),
    Case(
        "conv2d-dilation",
        "conv2d",
        ((1, 3, 12, 12), (4, 3, 3, 3), None),
        {"dilation": 2, "padding": 2},
    ),
    Case(
        "conv2d-same",
        "conv2d",
        ((2, 3, 7, 8), (4, 3, 4, 3), (4,)),
        {"padding": "same", "dilation": (1, 2)},
    ),
    Case(
        "conv2d-valid",
        "conv2d",
        ((1, 3, 6, 6), (2, 3, 3, 3), None),
        {"padding": "valid"},
    ),
    Case(
        "conv2d-groups",
        "conv2d",
        ((2, 6, 7, 7), (9, 2, 3, 3), (9,)),
        {"groups": 3, "padding": 1},
    ),
    Case(
        "conv2d-depthwise",
        "conv2d",
        ((2, 5, 8, 8), (5, 1, 3, 3), (5,)),
        {"groups": 5, "padding": 1, "stride": 2},
    ),
    Case(
        "conv2d-depthwise-mult",
        "conv2d",
        ((1, 3, 7, 6), (6, 1, 3, 3), None),
        {"groups": 3, "dilation": 2, "padding": (2, 1)},
    ),
    Case("conv2d-1x1", "conv2d", ((2, 8, 5, 5), (4, 8, 1, 1), (4,))),
    Case("conv3d-basic", "conv3d", ((2, 3, 5, 6, 4), (4, 3, 3, 2, 3), (4,))),
    Case(
        "conv3d-stride-pad-dil-groups",
        "conv3d",
        ((1, 4, 7, 6, 8), (6, 2, 2, 3, 2), None),
        {"stride": (1, 2, 2), "padding": (1, 0, 2), "dilation": (2, 1, 2), "groups": 2},
    ),
    # ---- conv_transpose2d
    Case("convT2d-basic", "conv_transpose2d", ((2, 3, 5, 4), (3, 4, 3, 3), (4,))),
    Case(
        "convT2d-stride-pad-outpad",
        "conv_transpose2d",
        ((1, 4, 5, 5), (4, 3, 3, 3), (3,)),
        {"stride": 2, "padding": 1, "output_padding": 1},
    ),
    Case(
        "convT2d-asym",
        "conv_transpose2d",
        ((2, 2, 4, 6), (2, 3, 2, 3), None),
        {"stride": (3, 2), "padding": (0, 1), "output_padding": (2, 0)},
    ),
    Case(
        "convT2d-groups-dil",
        "conv_transpose2d",
        ((1, 6, 5, 5), (6, 2, 3, 3), (6,)),
        {"stride": 2, "groups": 3, "dilation": 2, "padding": 2, "output_padding": 1},
    ),
    Case(
        "convT3d-stride-pad-outpad",
        "conv_transpose3d",
        ((1, 4, 3, 4, 3), (4, 3, 3, 2, 3), (3,)),
        {"stride": (2, 1, 2), "padding": 1, "output_padding": (1, 0, 1), "dilation": (1, 2, 1)},
    ),
    Case(
        "convT3d-groups",
        "conv_transpose3d",
        ((2, 4, 3, 3, 2), (4, 1, 2, 2, 2), None),
        {"groups": 2, "stride": 2},
    ),
    Case(
        "convT2d-depthwise",
        "conv_transpose2d",
        ((1, 4, 4, 4), (4, 1, 3, 3), None),
        {"groups": 4, "stride": 2, "padding": 1},
    ),
    # ---- pooling
    Case("maxpool1d-basic", "max_pool1d", ((2, 3, 11),), {"kernel_size": 3}),
    Case(
        "maxpool1d-all",
        "max_pool1d",
        ((2, 3, 12),),
        {"kernel_size": 3, "stride": 2, "padding": 1, "dilation": 2, "ceil_mode": True},
    ),
    Case("maxpool2d-basic", "max_pool2d", ((2, 3, 8, 8),), {"kernel_size": 2}),
    Case(
        "maxpool2d-stride-pad",
        "max_pool2d",
        ((1, 2, 9, 7),),
        {"kernel_size": 3, "stride": 2, "padding": 1},
    ),
    Case(
        "maxpool2d-ceil",
        "max_pool2d",
        ((1, 2, 10, 9),),
        {"kernel_size": (3, 2), "stride": (2, 2), "ceil_mode": True},
    ),
    Case(
        "maxpool2d-ceil-pad-dil",
        "max_pool2d",
        ((2, 2, 11, 12),),
        {
            "kernel_size": 3,
            "stride": 2,
            "padding": 1,
            "dilation": (2, 1),
            "ceil_mode": True,
        },
    ),
    Case(
        "maxpool2d-unbatched",
        "max_pool2d",
        ((3, 7, 7),),
        {"kernel_size": 2, "stride": 1},
    ),
    Case(
        "avgpool1d-basic", "avg_pool1d", ((2, 3, 10),), {"kernel_size": 3, "stride": 2}
    ),
    Case(
        "avgpool1d-pad-excl-ceil",
        "avg_pool1d",
        ((2, 3, 10),),
        {
            "kernel_size": 3,
            "stride": 2,
            "padding": 1,
            "ceil_mode": True,
            "count_include_pad": False,
        },
    ),
    Case("avgpool2d-basic", "avg_pool2d", ((2, 3, 8, 8),), {"kernel_size": 2}),
    Case(
        "avgpool2d-pad-incl",
        "avg_pool2d",
        ((1, 2, 7, 9),),
        {"kernel_size": 3, "stride": 2, "padding": 1},
    ),
    Case(
        "avgpool2d-pad-excl",
        "avg_pool2d",
        ((1, 2, 7, 9),),
        {"kernel_size": 3, "stride": 2, "padding": 1, "count_include_pad": False},
    ),
    Case(
        "avgpool2d-ceil-incl",
        "avg_pool2d",
        ((1, 2, 10, 11),),
        {"kernel_size": 3, "stride": 2, "padding": 1, "ceil_mode": True},
    ),
    Case(
        "avgpool2d-ceil-excl",
        "avg_pool2d",
        ((1, 2, 10, 11),),
        {
            "kernel_size": (3, 2),
            "stride": (2, 3),
            "padding": (1, 1),
            "ceil_mode": True,
            "count_include_pad": False,
        },
    ),
    Case(
        "avgpool2d-divisor",
        "avg_pool2d",
        ((1, 2, 6, 6),),
        {"kernel_size": 3, "padding": 1, "divisor_override": 5},
    ),
    Case("maxpool3d-basic", "max_pool3d", ((2, 3, 6, 5, 4),), {"kernel_size": 2}),
    Case(
        "maxpool3d-all",
        "max_pool3d",
        ((1, 2, 7, 6, 8),),
        {"kernel_size": (3, 2, 3), "stride": (2, 1, 2), "padding": (1, 0, 1), "dilation": (1, 2, 2),
         "ceil_mode": True},
    ),
    Case("avgpool3d-basic", "avg_pool3d", ((2, 3, 6, 5, 4),), {"kernel_size": 2}),
    Case(
        "avgpool3d-ceil-exclude",
        "avg_pool3d",
        ((1, 2, 7, 6, 5),),
        {"kernel_size": 3, "stride": 2, "padding": 1, "ceil_mode": True, "count_include_pad": False},
    ),
    Case(
        "avgpool3d-divisor",
        "avg_pool3d",
        ((1, 2, 5, 4, 6),),
        {"kernel_size": (2, 3, 3), "padding": 1, "divisor_override": 7},
    ),
    Case(
        "avgpool2d-dilation-exclude",
        "avg_pool2d",
        ((2, 3, 9, 8),),
        {"kernel_size": (3, 2), "stride": (2, 1), "padding": 1, "dilation": (2, 3), "ceil_mode": True,
         "count_include_pad": False},
        ref=lambda x, **a: _avg_dilated(x, 2, **a),
    ),
    Case(
        "avgpool3d-dilation-include",
        "avg_pool3d",
        ((1, 2, 8, 7, 9),),
        {"kernel_size": 2, "stride": 2, "padding": 1, "dilation": (2, 2, 3), "ceil_mode": True},
        ref=lambda x, **a: _avg_dilated(x, 3, **a),
    ),
    Case(
        "adaptive-avg1d-div", "adaptive_avg_pool1d", ((2, 3, 12),), {"output_size": 4}
    ),
    Case(
        "adaptive-avg1d-nondiv",
        "adaptive_avg_pool1d",
        ((2, 3, 13),),
        {"output_size": 6},
    ),
    Case(
        "adaptive-avg2d-div",
        "adaptive_avg_pool2d",
        ((2, 3, 8, 12),),
        {"output_size": (4, 3)},
    ),
    Case(
        "adaptive-avg2d-nondiv",
        "adaptive_avg_pool2d",
        ((2, 3, 13, 10),),
        {"output_size": (6, 7)},
    ),
    Case(
        "adaptive-avg2d-global",
        "adaptive_avg_pool2d",
        ((2, 3, 7, 5),),
        {"output_size": 1},
    ),
    Case(
        "adaptive-avg2d-upsample-none",
        "adaptive_avg_pool2d",
        ((1, 2, 3, 5),),
        {"output_size": (5, None)},
    ),
    Case(
        "adaptive-max2d-div", "adaptive_max_pool2d", ((2, 3, 8, 8),), {"output_size": 2}
    ),
    Case(
        "adaptive-max2d-nondiv",
        "adaptive_max_pool2d",
        ((2, 3, 13, 11),),
        {"output_size": (6, 4)},
    ),
    # ---- batch norm: (N,C), (N,C,L), (N,C,H,W); train and eval
    *[
        Case(
            f"batchnorm-{mode}-{len(shape)}d{'-affine' if affine else ''}",
            "batch_norm",
            (
                shape,
                (shape[1],),
                positive(shape[1]),
                (shape[1],) if affine else None,
                (shape[1],) if affine else None,
            ),
            {"training": mode == "train", "momentum": 0.3, "eps": 1e-3},
            bn_ref,
        )
        for mode in ("train", "eval")
        for shape in ((6, 4), (3, 4, 5), (2, 4, 3, 5))
        for affine in (True, False)
    ],
    Case(
        "batchnorm-train-nostats",
        "batch_norm",
        ((4, 3, 5), None, None, (3,), (3,)),
        {"training": True},
        bn_ref,
    ),
    # ---- layer / group / local response norm
    Case(
        "layernorm-1",
        "layer_norm",
        ((3, 4, 7), (7,), (7,)),
        {"normalized_shape": 7},
        ln_ref,
    ),
    Case(
        "layernorm-2",
        "layer_norm",
        ((3, 4, 7), (4, 7), (4, 7)),
        {"normalized_shape": (4, 7), "eps": 1e-3},
        ln_ref,
    ),
    Case(
        "layernorm-noaffine",
        "layer_norm",
        ((5, 6), None, None),
        {"normalized_shape": (6,)},
        ln_ref,
    ),
    Case(
        "groupnorm-4d",
        "group_norm",
        ((2, 6, 4, 5), (6,), (6,)),
        {"num_groups": 3},
        gn_ref,
    ),
    Case(
        "groupnorm-3d-noaffine",
        "group_norm",
        ((3, 8, 5), None, None),
        {"num_groups": 2, "eps": 1e-3},
        gn_ref,
    ),
    Case(
        "groupnorm-instance",
        "group_norm",
        ((2, 4, 3, 3), (4,), (4,)),
        {"num_groups": 4},
        gn_ref,
    ),
    Case(
        "lrn-4d-odd",
        "local_response_norm",
        ((2, 7, 4, 5),),
        {"size": 5, "alpha": 1e-2, "beta": 0.75, "k": 2.0},
    ),
    Case(
        "lrn-3d-even",
        "local_response_norm",
        ((2, 6, 5),),
        {"size": 4, "alpha": 0.1, "beta": 0.5},
    ),
    Case("lrn-5d", "local_response_norm", ((1, 5, 2, 3, 4),), {"size": 3}),
    # ---- embedding
    Case("embedding", "embedding", (fixed([[1, 3, 3], [0, 9, 1]]), (10, 4))),
    Case(
        "embedding-padding",
        "embedding",
        (fixed([2, 0, 2, 5, 0]), (6, 3)),
        {"padding_idx": 0},
    ),
    Case(
        "embedding-random", "embedding", (ints(7, 2, 3, 4), (7, 5)), {"padding_idx": -1}
    ),
    # ---- scaled dot product attention
    Case(
        "sdpa-basic", "scaled_dot_product_attention", ((2, 5, 8), (2, 5, 8), (2, 5, 8))
    ),
    Case(
        "sdpa-L-ne-S-Ev",
        "scaled_dot_product_attention",
        ((2, 3, 4, 8), (2, 3, 6, 8), (2, 3, 6, 5)),
    ),
    Case(
        "sdpa-bool-mask",
        "scaled_dot_product_attention",
        ((2, 2, 4, 8), (2, 2, 6, 8), (2, 2, 6, 8), bool_mask(2, 2, 4, 6)),
    ),
    Case(
        "sdpa-bool-mask-bcast",
        "scaled_dot_product_attention",
        ((2, 3, 4, 8), (2, 3, 6, 8), (2, 3, 6, 8), bool_mask(4, 6)),
    ),
    Case(
        "sdpa-float-mask",
        "scaled_dot_product_attention",
        ((2, 3, 5, 4), (2, 3, 5, 4), (2, 3, 5, 4), float_mask(2, 3, 5, 5)),
    ),
    Case(
        "sdpa-float-mask-bcast",
        "scaled_dot_product_attention",
        ((2, 3, 5, 4), (2, 3, 7, 4), (2, 3, 7, 4), float_mask(2, 1, 5, 7)),
    ),
    Case(
        "sdpa-fully-masked-row",
        "scaled_dot_product_attention",
        (
            (1, 4, 8),
            (1, 5, 8),
            (1, 5, 3),
            lambda rng, dt: np.array(
                [[1, 1, 0, 0, 1], [0] * 5, [1] * 5, [0, 0, 0, 0, 1]], bool
            ),
        ),
    ),
    Case(
        "sdpa-causal",
        "scaled_dot_product_attention",
        ((2, 2, 6, 4), (2, 2, 6, 4), (2, 2, 6, 4)),
        {"is_causal": True},
    ),
    Case(
        "sdpa-causal-L-lt-S",
        "scaled_dot_product_attention",
        ((2, 3, 8), (2, 5, 8), (2, 5, 8)),
        {"is_causal": True},
    ),
    Case(
        "sdpa-scale",
        "scaled_dot_product_attention",
        ((2, 4, 8), (2, 6, 8), (2, 6, 3), bool_mask(4, 6)),
        {"scale": 0.7},
    ),
    # ---- recurrent
    rnn_case("rnn-tanh", "RNN", "rnn"),
    rnn_case("rnn-relu-nostate", "RNN", "rnn", nonlinearity="relu", with_state=False),
    rnn_case("rnn-2layer-bidir", "RNN", "rnn", layers=2, bidir=True),
    rnn_case(
        "rnn-relu-2layer-bf-nobias",
        "RNN",
        "rnn",
        layers=2,
        nonlinearity="relu",
        batch_first=True,
        bias=False,
    ),
    rnn_case("lstm", "LSTM", "lstm"),
    rnn_case("lstm-nostate", "LSTM", "lstm", with_state=False),
    rnn_case(
        "lstm-2layer-bidir-bf", "LSTM", "lstm", layers=2, bidir=True, batch_first=True
    ),
    rnn_case("lstm-nobias", "LSTM", "lstm", bias=False, layers=2),
    rnn_case("lstm-proj-bidir", "LSTM", "lstm", proj=3, bidir=True, layers=2),
    rnn_case("gru", "GRU", "gru"),
    rnn_case("gru-nostate-bf", "GRU", "gru", with_state=False, batch_first=True),
    rnn_case("gru-2layer-bidir", "GRU", "gru", layers=2, bidir=True),
    rnn_case("gru-2layer-nobias", "GRU", "gru", layers=2, bias=False, with_state=False),
]

DTYPES = [np.float32, np.float64]


def _build(spec, rng, dtype):
    if spec is None:
        return [None]
    if callable(spec):
        out = spec(rng, dtype)
        return list(out) if isinstance(out, list) else [out]
    return [rng.standard_normal(spec).astype(dtype)]


def _to_torch(a):
    return None if a is None else torch.from_numpy(np.ascontiguousarray(a))


def _as_tuple(out):
    return tuple(out) if isinstance(out, (tuple, list)) else (out,)


def _check(got, ref, dtype, tol):
    ref = ref.detach().numpy() if isinstance(ref, torch.Tensor) else np.asarray(ref)
    assert isinstance(got, np.ndarray), type(got)
    assert got.shape == ref.shape, (got.shape, ref.shape)
    assert got.dtype == dtype, (got.dtype, dtype)
    finite = ref[np.isfinite(ref)]
    scale = max(1.0, float(np.abs(finite).max())) if finite.size else 1.0
    if dtype == np.float32:
        rtol, atol = 1e-5 * tol, 1e-6 * tol * scale
    else:
        rtol, atol = 1e-10 * tol, 1e-12 * tol * scale
    np.testing.assert_allclose(got, ref, rtol=rtol, atol=atol)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_kernel_matches_torch(case, dtype):
    rng = np.random.default_rng(1234)
    inputs = [a for spec in case.inputs for a in _build(spec, rng, dtype)]
    got = _as_tuple(KERNELS[case.op](*inputs, **case.attrs))
    ref_fn = case.ref or getattr(F, case.op)
    with torch.no_grad():
        ref = _as_tuple(ref_fn(*map(_to_torch, inputs), **case.attrs))
    assert len(got) == len(ref)
    for g, r in zip(got, ref):
        if r is None:
            assert g is None
        else:
            _check(g, r, np.dtype(dtype), case.tol)


def test_every_kernel_is_covered():
    # dropout: semantics tested separately (its RNG differs from torch's); the
    # backward-pass helpers are tested against torch in tests/compiler/test_vjp_nn.py
    backward_helpers = {"max_pool2d_indices", "max_pool3d_indices", "adaptive_max_pool2d_indices",
                        "scatter_add_rows"}
    assert set(KERNELS) - {c.op for c in CASES} == {"dropout"} | backward_helpers


def test_batch_norm_eval_returns_stats_unchanged():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 3, 5)).astype(np.float32)
    rm = rng.standard_normal(3).astype(np.float32)
    rv = rng.random(3).astype(np.float32) + 0.5
    _, m, v = nnk.batch_norm(x, rm, rv, training=False)
    np.testing.assert_array_equal(m, rm)
    np.testing.assert_array_equal(v, rv)
    # training never mutates its arguments
    rm0, rv0 = rm.copy(), rv.copy()
    nnk.batch_norm(x, rm, rv, training=True)
    np.testing.assert_array_equal(rm, rm0)
    np.testing.assert_array_equal(rv, rv0)


# --------------------------------------------------------------------------
# dropout: torch's RNG stream is not reproduced, so test the semantics
# --------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_dropout_semantics(dtype):
    x = np.random.default_rng(0).standard_normal((64, 128)).astype(dtype) + 3.0
    # identity when not training or p == 0
    assert nnk.dropout(x, p=0.5, training=False) is x
    np.testing.assert_array_equal(nnk.dropout(x, p=0.0, seed=3), x)
    # p == 1 drops everything
    y1 = nnk.dropout(x, p=1.0)
    assert y1.dtype == dtype and not y1.any()
    for p in (0.1, 0.5, 0.8):
        y = nnk.dropout(x, p=p, seed=7)
        assert y.dtype == dtype and y.shape == x.shape
        kept = y != 0
        assert abs(kept.mean() - (1 - p)) < 0.03
        # survivors are scaled by 1/(1-p)
        np.testing.assert_allclose(y[kept], x[kept] / (1 - p), rtol=1e-6)
        # the mask is exactly the exported one, so other code can regenerate it
        np.testing.assert_array_equal(kept, nnk.dropout_mask(x.shape, p, 7))
    # deterministic per seed (int or tuple), different across seeds
    np.testing.assert_array_equal(
        nnk.dropout(x, seed=(1, 2)), nnk.dropout(x, seed=(1, 2))
    )
    np.testing.assert_array_equal(nnk.dropout(x, seed=5), nnk.dropout(x, seed=5))
    assert not np.array_equal(nnk.dropout(x, seed=5), nnk.dropout(x, seed=6))
    with pytest.raises(ValueError):
        nnk.dropout(x, p=1.5)


def test_dropout_expectation_matches_torch():
    """Same distribution as torch: the mean is preserved in expectation."""
    x = np.ones((200, 200), np.float32)
    ours = nnk.dropout(x, p=0.3, seed=11)
    theirs = F.dropout(torch.from_numpy(x), p=0.3, training=True).numpy()
    assert abs(ours.mean() - 1) < 0.02 and abs(theirs.mean() - 1) < 0.02
    assert set(np.unique(ours)) == set(np.unique(theirs))


# --------------------------------------------------------------------------
# error handling mirrors torch where torch raises
# --------------------------------------------------------------------------


def test_errors():
    x = np.zeros((1, 2, 5, 5), np.float32)
    with pytest.raises(ValueError):
        nnk.conv2d(x, np.zeros((2, 2, 3, 3), np.float32), stride=2, padding="same")
    with pytest.raises(ValueError):
        nnk.conv2d(x, np.zeros((2, 3, 3, 3), np.float32))
    with pytest.raises(ValueError):
        nnk.max_pool2d(x, kernel_size=2, padding=2)
    with pytest.raises(IndexError):
        nnk.embedding(np.array([0, 4]), np.zeros((4, 2)))
    with pytest.raises(ValueError):
        nnk.batch_norm(np.zeros((1, 3)), None, None, training=True)
    with pytest.raises(ValueError):
        nnk.scaled_dot_product_attention(x, x, x, np.ones((5, 5), bool), is_causal=True)
    with pytest.raises(ValueError):
        rk.lstm(np.zeros((2, 1, 3)), None, None, np.zeros((8, 3)))


# --------------------------------------------------------------------------
# randomised geometry: conv / transposed conv / pooling attribute combinations
# --------------------------------------------------------------------------

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

_fast = settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)


@_fast
@given(
    groups=st.sampled_from([1, 2, 3]),
    cg=st.integers(1, 3),
    og=st.integers(1, 2),
    k=st.tuples(st.integers(1, 4), st.integers(1, 4)),
    stride=st.tuples(st.integers(1, 3), st.integers(1, 3)),
    dilation=st.tuples(st.integers(1, 2), st.integers(1, 2)),
    padding=st.tuples(st.integers(0, 2), st.integers(0, 2)),
    size=st.tuples(st.integers(1, 9), st.integers(1, 9)),
    transpose=st.booleans(),
    bias=st.booleans(),
)
def test_conv2d_geometry(
    groups, cg, og, k, stride, dilation, padding, size, transpose, bias
):
    rng = np.random.default_rng(0)
    c, o = groups * cg, groups * og
    x = rng.standard_normal((2, c) + size)
    b = rng.standard_normal(o) if bias else None
    if transpose:
        # output_padding must stay below max(stride, dilation)
        op = tuple(min(s, d) - 1 for s, d in zip(stride, dilation))
        w = rng.standard_normal((c, og) + k)
        attrs = {
            "stride": stride,
            "padding": padding,
            "dilation": dilation,
            "groups": groups,
            "output_padding": op,
        }
        out_sp = [
            (i - 1) * s - 2 * p + d * (kk - 1) + q + 1
            for i, s, p, d, kk, q in zip(size, stride, padding, dilation, k, op)
        ]
        op_name, ref = "conv_transpose2d", F.conv_transpose2d
    else:
        w = rng.standard_normal((o, cg) + k)
        attrs = {
            "stride": stride,
            "padding": padding,
            "dilation": dilation,
            "groups": groups,
        }
        out_sp = [
            (i + 2 * p - d * (kk - 1) - 1) // s + 1
            for i, s, p, d, kk in zip(size, stride, padding, dilation, k)
        ]
        op_name, ref = "conv2d", F.conv2d
    if min(out_sp) < 1:
        return  # torch rejects these shapes too
    got = KERNELS[op_name](x, w, b, **attrs)
    _check(got, ref(*map(_to_torch, (x, w, b)), **attrs), np.dtype(np.float64), 1.0)


@_fast
@given(
    kind=st.sampled_from(["max", "avg"]),
    k=st.tuples(st.integers(1, 4), st.integers(1, 4)),
    stride=st.tuples(st.integers(1, 3), st.integers(1, 3)),
    dilation=st.tuples(st.integers(1, 2), st.integers(1, 2)),
    pad_frac=st.tuples(st.floats(0, 1), st.floats(0, 1)),
    size=st.tuples(st.integers(1, 10), st.integers(1, 10)),
    ceil_mode=st.booleans(),
    count_include_pad=st.booleans(),
)
def test_pool2d_geometry(
    kind, k, stride, dilation, pad_frac, size, ceil_mode, count_include_pad
):
    padding = tuple(int(f * (kk // 2)) for f, kk in zip(pad_frac, k))
    x = np.random.default_rng(0).standard_normal((2, 3) + size)
    attrs = {
        "kernel_size": k,
        "stride": stride,
        "padding": padding,
        "ceil_mode": ceil_mode,
    }
    if kind == "max":
        attrs["dilation"] = dilation
    else:
        attrs["count_include_pad"] = count_include_pad
    try:
        ref = getattr(F, f"{kind}_pool2d")(torch.from_numpy(x), **attrs)
    except RuntimeError:
        with pytest.raises(ValueError):
            KERNELS[f"{kind}_pool2d"](x, **attrs)
        return
    _check(KERNELS[f"{kind}_pool2d"](x, **attrs), ref, np.dtype(np.float64), 1.0)


@_fast
@given(
    size=st.tuples(st.integers(1, 14), st.integers(1, 14)),
    out=st.tuples(st.integers(1, 8), st.integers(1, 8)),
    kind=st.sampled_from(["avg", "max"]),
)
def test_adaptive_pool2d_geometry(size, out, kind):
    x = np.random.default_rng(0).standard_normal((2, 3) + size)
    ref = getattr(F, f"adaptive_{kind}_pool2d")(torch.from_numpy(x), out)
    _check(
        KERNELS[f"adaptive_{kind}_pool2d"](x, output_size=out),
        ref,
        np.dtype(np.float64),
        1.0,
    )
