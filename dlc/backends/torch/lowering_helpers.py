"""Helper functions the generated PyTorch source defines once when it uses them
(`HELPERS`: name -> source), and `helpers_used` to find them in a source."""
from __future__ import annotations

import re

HELPERS: dict[str, str] = {
    "_generator": '''\
def _generator(seed, key, device):
    """A generator seeded from the run seed and an op's own seed (the NumPy backend's (seed, key))."""
    return torch.Generator(device=device).manual_seed(hash((int(seed), int(key))) & 0x7FFF_FFFF_FFFF_FFFF)
''',
    "_dropout": '''\
def _dropout(x, p, generator):
    """Inverted dropout whose mask comes from `generator`: the same seed drops the same elements."""
    keep = torch.rand(x.shape, generator=generator, device=x.device) >= p
    return x * (keep.to(x.dtype) * (1.0 / (1.0 - p)))
''',
    "_pad": '''\
def _pad(x, pad, mode):
    """F.pad in reflect/replicate/circular mode for any rank: leading dims are folded into one."""
    k = len(pad) // 2
    if x.dim() in (k + 1, k + 2):
        return F.pad(x, pad, mode=mode)
    lead = x.shape[:x.dim() - k]
    y = F.pad(x.reshape(1, -1, *x.shape[x.dim() - k:]), pad, mode=mode)
    return y.reshape(*lead, *y.shape[2:])
''',
    "_avg_pool_dilated": '''\
def _avg_pool_dilated(x, kernel, stride, padding, dilation, ceil_mode, count_include_pad, divisor_override):
    """Average pooling with a dilation (torch's avg_pool has none; ONNX's AveragePool has): the window
    sums as a convolution of each plane with a dilated ones kernel, divided by the same convolution of a
    mask of the taps that count (the input, and the padding with count_include_pad; never the
    ceil_mode overhang) or by divisor_override."""
    nd = len(kernel)
    lead, sizes = x.shape[:x.dim() - nd], x.shape[x.dim() - nd:]
    outs, hi = [], []
    for n, k, s, p, d in zip(sizes, kernel, stride, padding, dilation):
        o = (n + 2 * p - d * (k - 1) - 1 + (s - 1 if ceil_mode else 0)) // s + 1
        if ceil_mode and (o - 1) * s >= n + p:
            o -= 1
        outs.append(o)
        hi.append(max(0, (o - 1) * s + d * (k - 1) + 1 - n - 2 * p))
    conv = (F.conv1d, F.conv2d, F.conv3d)[nd - 1]
    ones = torch.ones([1, 1] + list(kernel), dtype=x.dtype, device=x.device)

    def padded(t, inner):
        """t with the pooling padding (value `inner`), then the ceil_mode overhang (zeros)."""
        t = F.pad(t, [q for p in reversed(padding) for q in (p, p)], value=inner)
        return F.pad(t, [q for h in reversed(hi) for q in (0, h)])

    total = conv(padded(x.reshape([-1, 1] + list(sizes)), 0.0), ones, stride=stride, dilation=dilation)
    if divisor_override:
        total = total / divisor_override
    else:
        mask = torch.ones([1, 1] + list(sizes), dtype=x.dtype, device=x.device)
        mask = padded(mask, 1.0 if count_include_pad else 0.0)
        total = total / conv(mask, ones, stride=stride, dilation=dilation)
    return total.reshape(list(lead) + outs)
''',
    "_sinusoidal_positions": '''\
def _sinusoidal_positions(length, dim, dtype, device):
    """The Transformer's sin/cos position table (Vaswani et al., 2017), computed in float64."""
    pos = torch.arange(length, dtype=torch.float64, device=device)[:, None]
    angle = pos / 10000.0 ** (torch.arange(0, dim, 2, dtype=torch.float64, device=device) / dim)
    pe = torch.zeros(length, dim, dtype=torch.float64, device=device)
    pe[:, 0::2] = torch.sin(angle)
    pe[:, 1::2] = torch.cos(angle[:, :dim // 2])
    return pe.to(dtype)
''',
    "_overflowed": """\
def _overflowed(rstd):
    \"\"\"Whether a norm kernel's 1/sqrt(var + eps) shows a variance that overflowed (0) or a NaN: torch's
    kernels then give NaN or 0 (layer_norm([1e30, 0, 0, 0, 0])) where dlc gives [2, -0.5, ...].
    One look at the per-slice statistics, not at the data.\"\"\"
    return bool(((rstd == 0) | torch.isnan(rstd)).any())
""",
    "_scaled_normalize": """\
def _scaled_normalize(x, dims, eps):
    \"\"\"(x - mean) / sqrt(var + eps) over `dims`, computed on x / s with s a power of two per slice
    (exact; the squares stay finite) and a two-pass variance; also the scaled mean, variance and s.\"\"\"
    amax = x.detach().abs().amax(dim=dims, keepdim=True)
    one = torch.ones_like(amax)
    s = torch.where((amax > 1) & torch.isfinite(amax), torch.ldexp(one, torch.frexp(amax)[1] - 1), one)
    xs = x / s
    m = xs.mean(dims, keepdim=True)
    d = xs - m
    v = (d * d).mean(dims, keepdim=True)
    return d * torch.rsqrt(v + eps / (s * s)), m, v, s
""",
    "_layer_norm": """\
def _layer_norm(x, shape, weight=None, bias=None, eps=1e-5):
    \"\"\"F.layer_norm(x, shape, weight, bias, eps), through its kernel (torch.native_layer_norm), which
    also returns 1/sqrt(var + eps) per slice; where that shows an overflow, recomputed exactly.\"\"\"
    y, _, rstd = torch.native_layer_norm(x, shape, weight, bias, eps)
    if x.numel() == 0 or not _overflowed(rstd):
        return y
    y = _scaled_normalize(x, tuple(range(-len(shape), 0)), eps)[0]
    y = y if weight is None else y * weight
    return y if bias is None else y + bias
""",
    "_group_norm": """\
def _group_norm(x, groups, weight=None, bias=None, eps=1e-5):
    \"\"\"F.group_norm(x, groups, weight, bias, eps), through its kernel (torch.native_group_norm), which
    also returns 1/sqrt(var + eps) per slice; where that shows an overflow, recomputed exactly.
    The kernel needs a contiguous input (an expanded one is not).\"\"\"
    x = x.contiguous()
    n, c = x.shape[0], x.shape[1]
    y, _, rstd = torch.native_group_norm(x, weight, bias, n, c, x[0, 0].numel(), groups, eps)
    if x.numel() == 0 or not _overflowed(rstd):
        return y
    y = _scaled_normalize(x.reshape(n, groups, -1), (2,), eps)[0].reshape(x.shape)
    view = (1, -1) + (1,) * (x.dim() - 2)
    y = y if weight is None else y * weight.reshape(view)
    return y if bias is None else y + bias.reshape(view)
""",
    "_batch_norm": """\
def _batch_norm(x, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1, eps=1e-5):
    \"\"\"F.batch_norm; in training, where the batch variance overflows, the statistics are recomputed
    exactly by _scaled_normalize and the running statistics updated from them, in place as F.batch_norm.\"\"\"
    n = x.numel() // max(x.shape[1], 1)
    if not training or n <= 1:
        return F.batch_norm(x, running_mean, running_var, weight, bias, training, momentum, eps)
    before = [None if t is None else t.clone() for t in (running_mean, running_var)]
    y, _, invstd = torch.native_batch_norm(x, weight, bias, running_mean, running_var, True, momentum, eps)
    if not _overflowed(invstd):
        return y
    y, m, v, s = _scaled_normalize(x, (0,) + tuple(range(2, x.dim())), eps)
    view = (1, -1) + (1,) * (x.dim() - 2)
    y = y if weight is None else y * weight.reshape(view)
    y = y if bias is None else y + bias.reshape(view)
    with torch.no_grad():
        if running_mean is not None:
            new = before[0] * (1 - momentum) + (m * s).flatten().to(before[0].dtype) * momentum
            running_mean.copy_(new)
        if running_var is not None:
            unbiased = (v * s * s).flatten() * (n / (n - 1))
            running_var.copy_(before[1] * (1 - momentum) + unbiased.to(before[1].dtype) * momentum)
    return y
""",
    "_norm_module": """\
def _norm_module(mod, x):
    \"\"\"mod(x) for an nn.LayerNorm, nn.GroupNorm or nn.BatchNorm*, through the helpers above: where
    torch's kernel overflows (NaN or 0), the true answer.\"\"\"
    if isinstance(mod, nn.LayerNorm):
        return _layer_norm(x, mod.normalized_shape, mod.weight, mod.bias, mod.eps)
    if isinstance(mod, nn.GroupNorm):
        return _group_norm(x, mod.num_groups, mod.weight, mod.bias, mod.eps)
    if not (mod.training and mod.track_running_stats):
        return mod(x)
    mod.num_batches_tracked.add_(1)     # nn.BatchNorm's own bookkeeping in training
    factor = 1.0 / float(mod.num_batches_tracked) if mod.momentum is None else mod.momentum
    return _batch_norm(x, mod.running_mean, mod.running_var, mod.weight, mod.bias, True, factor, mod.eps)
""",
    "_rnn": '''\
def _rnn(x, h0, weights, *, nonlinearity="tanh", num_layers=1, bias=True, bidirectional=False,
         batch_first=False):
    """torch.nn.RNN on flat weights (w_ih, w_hh[, b_ih, b_hh] per layer and direction); (y, h_n)."""
    if h0 is None:
        batch = x.shape[0] if batch_first else x.shape[1]
        h0 = x.new_zeros(num_layers * (2 if bidirectional else 1), batch, weights[1].shape[1])
    rnn = torch.rnn_tanh if nonlinearity == "tanh" else torch.rnn_relu
    return rnn(x, h0, weights, bias, num_layers, 0.0, False, bidirectional, batch_first)
''',
    "_lstm": '''\
def _lstm(x, h0, c0, weights, *, num_layers=1, bias=True, bidirectional=False, batch_first=False):
    """torch.nn.LSTM on flat weights (w_ih, w_hh[, b_ih, b_hh][, w_hr] per layer and direction);
    (y, h_n, c_n).  A projected LSTM is recognised by h0 being narrower than c0."""
    batch = x.shape[0] if batch_first else x.shape[1]
    layers = num_layers * (2 if bidirectional else 1)
    if h0 is None:
        h0 = x.new_zeros(layers, batch, weights[1].shape[1])
    if c0 is None:
        c0 = x.new_zeros(layers, batch, weights[1].shape[0] // 4)
    return torch.lstm(x, (h0, c0), weights, bias, num_layers, 0.0, False, bidirectional, batch_first)
''',
    "_gru": '''\
def _gru(x, h0, weights, *, num_layers=1, bias=True, bidirectional=False, batch_first=False):
    """torch.nn.GRU on flat weights (w_ih, w_hh[, b_ih, b_hh] per layer and direction); (y, h_n)."""
    if h0 is None:
        batch = x.shape[0] if batch_first else x.shape[1]
        h0 = x.new_zeros(num_layers * (2 if bidirectional else 1), batch, weights[1].shape[1])
    return torch.gru(x, h0, weights, bias, num_layers, 0.0, False, bidirectional, batch_first)
''',
}


def helpers_used(source: str) -> list[str]:
    """The helpers `source` calls (directly or through another helper), in `HELPERS` order."""
    need: set[str] = set()
    todo = [source]
    while todo:
        text = todo.pop()
        for name, src in HELPERS.items():
            if name not in need and re.search(r"(?<![A-Za-z0-9_])" + name + r"\(", text):
                need.add(name)
                todo.append(src)
    return [n for n in HELPERS if n in need]
