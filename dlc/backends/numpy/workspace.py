"""The scratch memory the NumPy interpreter allocates inside one node.

The memory plan (`compiler.memory_plan`) counts the values a graph keeps
alive between nodes; a kernel also allocates arrays it drops before it
returns.  This module says how many bytes, per node, so that
`plan_memory(g, dims, workspace_bytes).workspace_peak` is what a run of the
interpreter allocates at its peak (beyond the inputs and weights):

- a convolution's zero-padded copy of its input and its im2col columns (a
  1x1, stride-1, unpadded convolution multiplies the input in place);
- pooling's padded copy and its one-axis-at-a-time partial reductions;
- attention's score matrix; a norm's scaled copy of its input; erf's
  float64 working arrays (a bound: their size depends on the data);
- a scan or an op run through its decomposition: the most its body keeps
  alive at once, besides the node's own results; a scan also holds its
  per-step outputs before stacking them;
- a fused region, run in place (`fused.run_fused`): only the arrays its
  chain cannot write into a dead operand.

Every other kernel writes its result without a temporary of the result's
size (ufuncs with `out=`), so its scratch is small and counted as 0.
"""
from __future__ import annotations

import numpy as np

from ...compiler.decompose import decomposition
from ...compiler.dims import Dim
from ...compiler.ir import Graph, Node
from ...compiler.memory import tensor_bytes
from ...compiler.memory_plan import last_uses, live_bytes, storages
from ...compiler.ops.conv import conv_pads, ntuple
from .fused import FRESH_KERNELS, UFUNCS
from .kernels import KERNELS

_CONV_ND = {"conv1d": 1, "conv2d": 2}


def _shape(v, dims) -> tuple[int, ...] | None:
    try:
        return tuple(int(d.evaluate(dims)) if isinstance(d, Dim) else int(d) for d in v.type.shape)
    except KeyError:
        return None


def _conv_scratch(node: Node, dims: dict) -> int:
    nd = _CONV_ND[node.op.name]
    x, w = _shape(node.inputs[0], dims), _shape(node.inputs[1], dims)
    out = _shape(node.outputs[0], dims)
    if x is None or w is None or out is None:
        return 0
    item = node.outputs[0].type.dtype.itemsize
    kernel = w[2:]
    stride = ntuple(node.attrs.get("stride", 1), nd, "stride")
    dilation = ntuple(node.attrs.get("dilation", 1), nd, "dilation")
    pads = conv_pads(node.attrs.get("padding", 0), nd, kernel, dilation, stride)
    padded = 0
    if any(p != (0, 0) for p in pads):
        padded = x[0] * x[1] * int(np.prod([s + lo + hi for s, (lo, hi) in zip(x[2:], pads)])) * item
    if w[1] == 1 and node.attrs.get("groups", 1) > 1:          # depthwise: one tap product at a time
        return padded + tensor_bytes(node.outputs[0].type, dims)
    if all(k == 1 for k in kernel) and all(s == 1 for s in stride) and not padded:
        return 0                                                  # the input is the column matrix
    groups = node.attrs.get("groups", 1)
    positions = int(np.prod(out[2:]))
    cols = x[0] * w[1] * groups * int(np.prod(kernel)) * positions * item
    # one GEMM over the whole batch gives (O, N, *o): moved to (N, O, *o) by a copy
    batch_major = int(np.prod(out)) * item if groups == 1 and x[0] > 1 and positions * x[0] <= 1 << 22 else 0
    return padded + cols + batch_major


def body_scratch(g: Graph, dims: dict) -> int:
    """The most bytes `g` keeps alive at once (workspace included), its results excepted."""
    results = {v.id for v in g.outputs}
    inner = [s for s in storages(g, dims) if s.value.id not in results]
    live = live_bytes(inner, len(g.nodes))
    ws = [workspace_bytes(n, dims) for n in g.nodes] + [0]
    return max((a + b for a, b in zip(live, ws)), default=0)


def workspace_bytes(node: Node, dims: dict) -> int:
    """Bytes the interpreter allocates while running `node` and frees before it returns."""
    name = node.op.name
    if name in _CONV_ND:
        return _conv_scratch(node, dims)
    if name in _POOL_ND:
        return _pool_scratch(node, dims)
    if name == "erf" or (name == "gelu" and node.attrs.get("approximate") == "none"):
        return _erf_scratch(node, dims)
    if name == "scaled_dot_product_attention":
        return _attention_scratch(node, dims)
    if name in ("layer_norm", "group_norm") or (name == "batch_norm" and node.attrs.get("training")):
        # the power-of-two scaled copy of x the moments are taken on, and one temporary
        return 2 * tensor_bytes(node.inputs[0].type, dims)
    if name == "scan":
        nc = node.attrs["num_carry"]
        per_step = sum(tensor_bytes(v.type, dims) for v in node.body.inputs[nc:])
        stacked = sum(tensor_bytes(v.type, dims) for v in node.outputs[nc:])
        return body_scratch(node.body, dims) + per_step + stacked
    if name == "fused":
        return _fused_scratch(node.body, dims)
    if name not in KERNELS and node.op.decompose is not None:
        return body_scratch(decomposition(node), dims)
    return 0


def _fused_scratch(body: Graph, dims: dict) -> int:
    """What `fused.run_fused` allocates besides the region's results: an
    in-place step (the same test as run_fused's, on types) takes no new bytes,
    its result owning the bytes of the operand it overwrote."""
    dead = last_uses(body)
    size: dict[int, int] = {}
    fresh: set[int] = set()
    live = peak = 0
    for i, n in enumerate(body.nodes):
        out = n.outputs[0].type
        exact = n.op.name in UFUNCS and out.dtype.is_float and all(
            v is not None and v.type.dtype == out.dtype for v in n.inputs)
        donor = next((v for v in n.inputs if exact and v.id in fresh and v in dead[i]
                      and v.type.shape == out.shape), None)
        for v in n.outputs:
            size[v.id] = tensor_bytes(v.type, dims)
            live += 0 if donor is not None else size[v.id]
        if exact or n.op.name in FRESH_KERNELS:
            fresh.add(n.outputs[0].id)
        peak = max(peak, live + workspace_bytes(n, dims))
        for v in dead[i]:
            if v is not donor:
                live -= size[v.id]
    return max(0, peak - sum(tensor_bytes(v.type, dims) for v in body.outputs))


_POOL_ND = {"max_pool1d": 1, "max_pool2d": 2, "max_pool3d": 3, "avg_pool1d": 1, "avg_pool2d": 2, "avg_pool3d": 3}


def _pool_scratch(node: Node, dims: dict) -> int:
    """Pooling pads its input (when padded) and reduces one axis at a time,
    each axis into a new array; the last one is the result."""
    nd = _POOL_ND[node.op.name]
    x, out = _shape(node.inputs[0], dims), _shape(node.outputs[0], dims)
    if x is None or out is None:
        return 0
    a = node.attrs
    k = ntuple(a["kernel_size"], nd, "kernel_size")
    s = k if a.get("stride") in (None, [], ()) else ntuple(a["stride"], nd, "stride")
    p = ntuple(a.get("padding", 0), nd, "padding")
    d = ntuple(a.get("dilation", 1), nd, "dilation")
    shape = list(x)
    sp = x[-nd:]
    for i in range(nd):
        hi = max(0, (out[-nd + i] - 1) * s[i] + d[i] * (k[i] - 1) + 1 - (sp[i] + p[i]))
        shape[len(x) - nd + i] = sp[i] + p[i] + hi
    item = node.outputs[0].type.dtype.itemsize
    prev = int(np.prod(shape)) * item if tuple(shape) != x else 0
    peak = prev
    for i in reversed(range(nd)):
        shape[len(x) - nd + i] = out[-nd + i]
        acc = int(np.prod(shape)) * item if i else 0      # the last is the result, already counted
        peak, prev = max(peak, prev + acc), acc
    return peak


def _attention_scratch(node: Node, dims: dict) -> int:
    """The (..., L, S) scores, worked on in place; a bool or causal mask
    selects into a second array for a moment."""
    q, k = _shape(node.inputs[0], dims), _shape(node.inputs[1], dims)
    if q is None or k is None:
        return 0
    scores = int(np.prod(q[:-1])) * k[-2] * node.outputs[0].type.dtype.itemsize
    mask = node.inputs[3] if len(node.inputs) > 3 else None
    two = node.attrs.get("is_causal") or (mask is not None and not mask.type.dtype.is_float)
    return scores * (2 if two else 1)


def _erf_scratch(node: Node, dims: dict) -> int:
    """`unary._erf_f64` works in float64 through masks: x, the result and |x|
    (8 bytes each per element), three bool masks (1 each), and within the
    branch that holds the elements its subset, z, term, s and one temporary
    (8 each): 67 bytes per element when one branch holds them all, the bound
    counted here.  gelu adds x * sqrt(1/2) in the input's dtype."""
    n = tensor_bytes(node.inputs[0].type, dims) // node.inputs[0].type.dtype.itemsize
    extra = node.inputs[0].type.dtype.itemsize if node.op.name == "gelu" else 0
    return n * (8 * 3 + 3 + 8 * 5 + extra)
