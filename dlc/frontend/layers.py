"""Layers: builtins that own parameters.

Each layer creates its parameters under its instance name with PyTorch's
names and default initialisers (so a spec's weights line up with the
equivalent `torch.nn` module), then decomposes into primitive ops.
"""
from __future__ import annotations

import math

from ..compiler.ir import Init
from ..compiler.types import DType
from ..errors import DlcLimitError, DlcValueError
from .builtins import builtin


def _weight_init() -> Init:
    # nn.Linear / nn.ConvNd: kaiming_uniform_(a=sqrt(5)) = U(-1/sqrt(fan_in), 1/sqrt(fan_in))
    return Init.make("kaiming_uniform", a=math.sqrt(5.0), mode="fan_in", nonlinearity="leaky_relu")


def _bias_init(fan_in: int) -> Init:
    bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
    return Init.make("uniform", low=-bound, high=bound)


def _in_features(F, x, axis: int, what: str) -> int:
    d = x.type.shape[axis]
    if not isinstance(d, int):
        F.fail(f"{F.fname}: the {what} of {x.type} must be known at compile time, it is {d}",
               "only batch and sequence dimensions may stay symbolic")
    return d


@builtin(kind="layer", aliases=("linear_layer",))
def dense(F, x, units, bias=True):
    """Fully connected layer on the last axis (nn.Linear): weight [units, in]."""
    x = F.float_tensor(x)
    if x.type.rank < 1:
        F.fail(f"dense needs an input of rank >= 1, got {x.type}")
    units = F.int(units, "units")
    fin = _in_features(F, x, -1, "feature dimension")
    w = F.param("weight", (units, fin), _weight_init(), x.type.dtype)
    b = F.param("bias", (units,), _bias_init(fin), x.type.dtype) if F.boolean(bias, "bias") else None
    return F.op("linear", x, w, b)


def _conv(F, x, channels, kernel, stride, padding, dilation, groups, bias, nd):
    x = F.float_tensor(x)
    if x.type.rank != nd + 2:
        dims = "N, C, L" if nd == 1 else "N, C, H, W"
        F.fail(f"conv{nd}d expects a rank-{nd + 2} input [{dims}], got {x.type}")
    cin = _in_features(F, x, 1, "channel dimension")
    cout = F.int(channels, "channels")
    groups = F.int(groups, "groups")
    k = F.ints(kernel, nd, "kernel")
    s = F.ints(stride, nd, "stride")
    dl = F.ints(dilation, nd, "dilation")
    if isinstance(padding, str):
        p = F.choice(padding, ("same", "valid"), "padding")
        if p == "same" and any(v != 1 for v in s):
            F.fail(f"conv{nd}d: padding='same' needs stride 1", "give explicit padding for strided convs")
    else:
        p = F.ints(padding, nd, "padding", minimum=0)
        p = p if nd > 1 else p[0]
    if cin % groups or cout % groups:
        F.fail(f"conv{nd}d: groups={groups} must divide both the input channels ({cin}) and the output "
               f"channels ({cout})", "depthwise convolution uses groups equal to the input channels")
    fan_in = cin // groups * math.prod(k)
    w = F.param("weight", (cout, cin // groups) + k, _weight_init(), x.type.dtype)
    b = F.param("bias", (cout,), _bias_init(fan_in), x.type.dtype) if F.boolean(bias, "bias") else None
    one = (lambda t: t) if nd > 1 else (lambda t: t[0])
    return F.op(f"conv{nd}d", x, w, b, stride=one(s), padding=p, dilation=one(dl), groups=groups)


@builtin(kind="layer")
def conv2d(F, x, channels, kernel, stride=1, padding=0, dilation=1, groups=1, bias=True):
    """2-D convolution (nn.Conv2d): weight [channels, C/groups, kh, kw]."""
    return _conv(F, x, channels, kernel, stride, padding, dilation, groups, bias, 2)


@builtin(kind="layer")
def conv1d(F, x, channels, kernel, stride=1, padding=0, dilation=1, groups=1, bias=True):
    """1-D convolution (nn.Conv1d) over [N, C, L]."""
    return _conv(F, x, channels, kernel, stride, padding, dilation, groups, bias, 1)


@builtin(kind="layer")
def conv_transpose2d(F, x, channels, kernel, stride=1, padding=0, output_padding=0, groups=1, dilation=1,
                     bias=True):
    """Transposed 2-D convolution (nn.ConvTranspose2d): weight [C, channels/groups, kh, kw]."""
    x = F.float_tensor(x)
    if x.type.rank != 4:
        F.fail(f"conv_transpose2d expects [N, C, H, W], got {x.type}")
    cin = _in_features(F, x, 1, "channel dimension")
    cout, groups = F.int(channels, "channels"), F.int(groups, "groups")
    k = F.ints(kernel, 2, "kernel")
    if cin % groups or cout % groups:
        F.fail(f"conv_transpose2d: groups={groups} must divide {cin} and {cout}")
    w = F.param("weight", (cin, cout // groups) + k, _weight_init(), x.type.dtype)
    fan_in = cout // groups * math.prod(k)  # torch computes the fan from weight.size(1)
    b = F.param("bias", (cout,), _bias_init(fan_in), x.type.dtype) if F.boolean(bias, "bias") else None
    return F.op("conv_transpose2d", x, w, b, stride=F.ints(stride, 2, "stride"),
                padding=F.ints(padding, 2, "padding", 0), output_padding=F.ints(output_padding, 2, "output_padding", 0),
                groups=groups, dilation=F.ints(dilation, 2, "dilation"))


@builtin(kind="layer", aliases=("batchnorm1d", "batchnorm2d", "batch_norm"))
def batchnorm(F, x, eps=1e-5, momentum=0.1, affine=True):
    """Batch normalisation over axis 1 (nn.BatchNorm1d/2d); batch statistics
    and running-stat updates in train mode, running stats in eval mode."""
    x = F.float_tensor(x)
    if x.type.rank < 2:
        F.fail(f"batchnorm needs [N, C, ...], got {x.type}")
    c = _in_features(F, x, 1, "channel dimension")
    dt = x.type.dtype
    w = b = None
    if F.boolean(affine, "affine"):
        w = F.param("weight", (c,), Init("ones"), dt)
        b = F.param("bias", (c,), Init("zeros"), dt)
    rm = F.param("running_mean", (c,), Init("zeros"), dt, buffer=True)
    rv = F.param("running_var", (c,), Init("ones"), dt, buffer=True)
    nbt = F.param("num_batches_tracked", (), Init("zeros"), DType.i64, buffer=True)
    eps, momentum = F.number(eps, "eps"), F.number(momentum, "momentum")
    if F.training and F.frame.graph is not F.frame.ctx.root:
        F.fail("batchnorm in training mode inside a scan cell is not supported",
               "normalise outside the cell, or use layernorm inside recurrent cells")
    y, new_mean, new_var = F.op("batch_norm", x, rm, rv, w, b, training=F.training, momentum=momentum, eps=eps)
    if F.training:
        g = F.frame.ctx.root
        # keyed by name: a shared batch norm reads its buffers as updated (sharing.py)
        g.state_updates[F.full_name("running_mean")] = new_mean
        g.state_updates[F.full_name("running_var")] = new_var
        g.state_updates[F.full_name("num_batches_tracked")] = F.op("add", nbt, F.op("full", shape=(), value=1,
                                                                                   dtype="int64"))
    return y


@builtin(kind="layer", aliases=("layer_norm",))
def layernorm(F, x, eps=1e-5, affine=True, dims=1, axis=None):
    """Layer normalisation (nn.LayerNorm) over `dims` axes: the last ones, or
    those from `axis` on (`axis=1` on NCHW is ConvNeXt's LayerNorm2d)."""
    x = F.float_tensor(x)
    k = F.int(dims, "dims")
    r = x.type.rank
    if k > r:
        F.fail(f"layernorm over {k} axes of {x.type}")
    first = r - k if axis is None else F.axis(axis, x)
    if first + k > r:
        F.fail(f"layernorm: {k} axes from axis {first} run past the last axis of {x.type}",
               f"axis must be at most {r - k} for dims={k}")
    axes = tuple(range(first, first + k))
    shape = tuple(_in_features(F, x, i, "normalised dimension") for i in axes)
    w = b = None
    if F.boolean(affine, "affine"):
        w = F.param("weight", shape, Init("ones"), x.type.dtype)
        b = F.param("bias", shape, Init("zeros"), x.type.dtype)
    eps = F.number(eps, "eps")
    if first + k == r:
        return F.op("layer_norm", x, w, b, normalized_shape=shape, eps=eps)
    # normalise inner axes as torchvision's LayerNorm2d does: move them last, normalise, move them back
    order = tuple(i for i in range(r) if i not in axes) + axes
    back = tuple(order.index(i) for i in range(r))
    y = F.op("layer_norm", F.op("transpose", x, axes=order), w, b, normalized_shape=shape, eps=eps)
    return F.op("transpose", y, axes=back)


@builtin(kind="layer")
def layernorm2d(F, x, eps=1e-5, affine=True):
    """Channel layer normalisation of [N, C, H, W] (torchvision's LayerNorm2d):
    layernorm(x, axis=1), parameters `weight`, `bias` of shape [C]."""
    x = F.float_tensor(x)
    if x.type.rank != 4:
        F.fail(f"layernorm2d expects [N, C, H, W], got {x.type}", "for other ranks use layernorm(x, axis=1)")
    return layernorm(F, x, eps, affine, 1, 1)


@builtin(kind="layer", aliases=("group_norm",))
def groupnorm(F, x, groups, eps=1e-5, affine=True):
    """Group normalisation (nn.GroupNorm) over [N, C, ...]."""
    x = F.float_tensor(x)
    c = _in_features(F, x, 1, "channel dimension")
    g = F.int(groups, "groups")
    if c % g:
        F.fail(f"groupnorm: {g} groups do not divide {c} channels of {x.type}")
    w = b = None
    if F.boolean(affine, "affine"):
        w = F.param("weight", (c,), Init("ones"), x.type.dtype)
        b = F.param("bias", (c,), Init("zeros"), x.type.dtype)
    return F.op("group_norm", x, w, b, num_groups=g, eps=F.number(eps, "eps"))


@builtin(kind="layer")
def embedding(F, indices, num, dim, padding_idx=None, dtype=DType.f32):
    """Lookup table (nn.Embedding): weight [num, dim] ~ N(0, 1)."""
    idx = F.tensor(indices, "indices")
    if not idx.type.dtype.is_int:
        F.fail(f"embedding indices must be integers, got {idx.type}", "declare the input as i64[...]")
    num, d = F.int(num, "num"), F.int(dim, "dim")
    if padding_idx is not None:
        padding_idx = F.int(padding_idx, "padding_idx", None)
        if not -num <= padding_idx < num:
            F.fail(f"embedding: padding_idx {padding_idx} outside [0, {num})", cls=DlcValueError)
        padding_idx %= num
        init = Init.make("normal", mean=0.0, std=1.0, padding_idx=padding_idx)
    else:
        init = Init.make("normal", mean=0.0, std=1.0)
    from .builtins import _dtype
    w = F.param("weight", (num, d), init, _dtype(F, dtype))
    return F.op("embedding", idx, w, padding_idx=padding_idx)


@builtin(kind="layer")
def prelu(F, x, channels=1):
    """PReLU with one learnt slope (or one per channel), initialised to 0.25."""
    x = F.float_tensor(x)
    c = F.int(channels, "channels")
    w = F.param("weight", (c,), Init.make("constant", value=0.25), x.type.dtype)
    return F.op("prelu", x, w)


def _recurrent(F, kind, x, hidden, layers, bidirectional, batch_first, bias, state, nonlinearity="tanh"):
    x = F.float_tensor(x)
    if x.type.rank != 3:
        F.fail(f"{kind} expects a rank-3 input ({'[N, T, I]' if batch_first else '[T, N, I]'}), got {x.type}")
    h = F.int(hidden, "hidden")
    L = F.int(layers, "layers")
    if L > 1000:
        F.fail(f"{kind}: {L} stacked layers is far too many", "a typical value is 1 to 4", cls=DlcLimitError)
    bidir = F.boolean(bidirectional, "bidirectional")
    bf = F.boolean(batch_first, "batch_first")
    has_bias = F.boolean(bias, "bias")
    gates = {"rnn": 1, "lstm": 4, "gru": 3}[kind]
    isz = _in_features(F, x, 2, "input feature dimension")
    dirs = 2 if bidir else 1
    bound = 1.0 / math.sqrt(h)
    init = Init.make("uniform", low=-bound, high=bound)
    weights = []
    for layer in range(L):
        fin = isz if layer == 0 else h * dirs
        for d in range(dirs):
            sfx = f"_l{layer}" + ("_reverse" if d else "")
            weights.append(F.param("weight_ih" + sfx, (gates * h, fin), init, x.type.dtype))
            weights.append(F.param("weight_hh" + sfx, (gates * h, h), init, x.type.dtype))
            if has_bias:
                weights.append(F.param("bias_ih" + sfx, (gates * h,), init, x.type.dtype))
                weights.append(F.param("bias_hh" + sfx, (gates * h,), init, x.type.dtype))
    attrs = dict(num_layers=L, bias=has_bias, bidirectional=bidir, batch_first=bf)
    if kind == "rnn":
        attrs["nonlinearity"] = F.choice(nonlinearity, ("tanh", "relu"), "nonlinearity")
    if kind == "lstm":
        h0, c0 = (None, None)
        if state is not None:
            if not isinstance(state, tuple) or len(state) != 2:
                F.fail("lstm: state must be a tuple (h0, c0)")
            h0, c0 = F.tensor(state[0], "h0"), F.tensor(state[1], "c0")
        y, hn, cn = F.op("lstm", x, h0, c0, *weights, **attrs)
        return y, (hn, cn)
    h0 = F.tensor(state, "state") if state is not None else None
    y, hn = F.op(kind, x, h0, *weights, **attrs)
    return y, hn


@builtin(kind="layer")
def rnn(F, x, hidden, layers=1, bidirectional=False, batch_first=False, bias=True, nonlinearity="tanh", state=None):
    """Elman RNN (nn.RNN); returns (outputs, h_n)."""
    return _recurrent(F, "rnn", x, hidden, layers, bidirectional, batch_first, bias, state, nonlinearity)


@builtin(kind="layer")
def lstm(F, x, hidden, layers=1, bidirectional=False, batch_first=False, bias=True, state=None):
    """LSTM (nn.LSTM); returns (outputs, (h_n, c_n))."""
    return _recurrent(F, "lstm", x, hidden, layers, bidirectional, batch_first, bias, state)


@builtin(kind="layer")
def gru(F, x, hidden, layers=1, bidirectional=False, batch_first=False, bias=True, state=None):
    """GRU (nn.GRU); returns (outputs, h_n)."""
    return _recurrent(F, "gru", x, hidden, layers, bidirectional, batch_first, bias, state)


@builtin(kind="layer", aliases=("mha",))
def multihead_attention(F, query, key=None, value=None, heads=1, mask=None, causal=False, bias=True):
    """Multi-head attention over batch-first [N, L, E] inputs.

    Parameters q_proj, k_proj, v_proj (xavier-uniform, zero bias) and out_proj
    (nn.Linear default, zero bias), as nn.MultiheadAttention initialises them.
    """
    q_in = F.float_tensor(query, "query")
    k_in = F.float_tensor(key, "key") if key is not None else q_in
    v_in = F.float_tensor(value, "value") if value is not None else k_in
    for t, nm in ((q_in, "query"), (k_in, "key"), (v_in, "value")):
        if t.type.rank != 3:
            F.fail(f"multihead_attention: {nm} must be [N, L, E], got {t.type}")
    E = _in_features(F, q_in, 2, "embedding dimension")
    h = F.int(heads, "heads")
    if E % h:
        F.fail(f"multihead_attention: {h} heads do not divide the width {E} of {q_in.type}",
               f"choose heads among the divisors of {E}, e.g. {', '.join(str(d) for d in range(1, min(E, 64) + 1) if E % d == 0)}")
    d = E // h
    has_bias = F.boolean(bias, "bias")
    dt = q_in.type.dtype
    base = F.name

    def proj(t, nm, winit):
        fin = _in_features(F, t, 2, "embedding dimension")
        F.name = f"{base}.{nm}"
        w = F.param("weight", (E, fin), winit, dt)
        b = F.param("bias", (E,), Init("zeros"), dt) if has_bias else None
        out = F.op("linear", t, w, b)
        F.name = base
        return out

    xavier = Init.make("xavier_uniform", gain=1.0)
    q, k, v = proj(q_in, "q_proj", xavier), proj(k_in, "k_proj", xavier), proj(v_in, "v_proj", xavier)

    def heads_first(t):
        N, L = t.type.shape[0], t.type.shape[1]
        return F.op("transpose", F.op("reshape", t, shape=(N, L, h, d)), axes=(0, 2, 1, 3))

    m = F.tensor(mask, "mask") if mask is not None else None
    o = F.op("scaled_dot_product_attention", heads_first(q), heads_first(k), heads_first(v), m,
             is_causal=F.boolean(causal, "causal"), scale=None)
    N, L = q.type.shape[0], q.type.shape[1]
    o = F.op("reshape", F.op("transpose", o, axes=(0, 2, 1, 3)), shape=(N, L, E))
    F.name = f"{base}.out_proj"
    w = F.param("weight", (E, E), _weight_init(), dt)
    b = F.param("bias", (E,), Init("zeros"), dt) if has_bias else None
    out = F.op("linear", o, w, b)
    F.name = base
    return out

from . import layers_norm  # noqa: E402,F401  (instance norm, drop_path, the functional forms)
