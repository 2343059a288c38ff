"""An independent reference for dilated average pooling (torch's avg_pool has no
dilation; ONNX's AveragePool does): every window tap as a strided slice of the
padded input, summed and divided by the number of taps that count.  Written from
the definition (ONNX's reference `pool`), with torch ops so autograd can check
the VJP rule."""
from __future__ import annotations

import itertools


def avg_pool_dilated_ref(x, kernel_size, stride, padding, dilation, ceil_mode=False, count_include_pad=True):
    import torch
    nd = len(kernel_size)
    sizes = x.shape[-nd:]
    outs = []
    for n, k, s, p, d in zip(sizes, kernel_size, stride, padding, dilation):
        num = n + 2 * p - d * (k - 1) - 1
        o = (num + (s - 1 if ceil_mode else 0)) // s + 1
        if ceil_mode and (o - 1) * s >= n + p:
            o -= 1
        outs.append(o)
    # pad generously: low p, high enough for every tap of every window
    hi = [max(0, (o - 1) * s + d * (k - 1) + 1 - n - p) for o, s, d, k, n, p in
          zip(outs, stride, dilation, kernel_size, sizes, padding)]
    pad = []
    for p, h in reversed(list(zip(padding, hi))):
        pad += [p, h]
    xp = torch.nn.functional.pad(x, pad)
    total = 0
    count = 1
    for taps in itertools.product(*[range(k) for k in kernel_size]):
        sel = tuple(slice(t * d, t * d + (o - 1) * s + 1, s) for t, d, o, s in zip(taps, dilation, outs, stride))
        total = total + xp[(Ellipsis,) + sel]
    for i, (n, k, s, p, d, o) in enumerate(zip(sizes, kernel_size, stride, padding, dilation, outs)):
        pos = torch.arange(o)[:, None] * s - p + torch.arange(k)[None, :] * d
        ok = pos < n + p if count_include_pad else (pos >= 0) & (pos < n)
        c = ok.sum(1).to(x.dtype).reshape((-1,) + (1,) * (nd - 1 - i))
        count = count * c
    return total / count


# 3-D pooling and dilated average pooling, (op, input shape, attrs): the cases the torch and TVM
# lowering tests both check against the NumPy kernels
POOL_ND_CASES = [
    ("max_pool3d", (1, 2, 7, 6, 8), {"kernel_size": (3, 2, 3), "stride": (2, 1, 2), "padding": (1, 0, 1),
                                     "dilation": (1, 2, 2), "ceil_mode": True}),
    ("avg_pool3d", (1, 2, 7, 6, 5), {"kernel_size": 3, "stride": 2, "padding": 1, "ceil_mode": True,
                                     "count_include_pad": False}),
    ("avg_pool3d", (2, 5, 4, 6), {"kernel_size": (2, 3, 3), "padding": 1, "divisor_override": 7}),
    # dilated average pooling (ONNX's; torch's avg_pool has no dilation)
    ("avg_pool1d", (2, 3, 11), {"kernel_size": 3, "stride": 2, "padding": 1, "dilation": 2,
                                "count_include_pad": False}),
    ("avg_pool2d", (2, 3, 9, 8), {"kernel_size": (3, 2), "stride": (2, 1), "padding": 1, "dilation": (2, 3),
                                  "ceil_mode": True, "count_include_pad": False}),
    ("avg_pool2d", (1, 2, 9, 8), {"kernel_size": 2, "stride": 2, "padding": 1, "dilation": 2, "ceil_mode": True}),
    ("avg_pool3d", (1, 2, 8, 7, 9), {"kernel_size": 2, "stride": 2, "padding": 1, "dilation": (2, 2, 3),
                                     "ceil_mode": True, "divisor_override": 3}),
]
