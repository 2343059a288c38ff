"""Running a fused region as a chain of `out=` ufuncs.

A `fused` node's body (`compiler/ops/fused.py`) is closed: its inputs are the
node's operands.  Run op by op through the kernels, every step of an
elementwise chain allocates a new array.  Here an elementwise step whose
operand is a body intermediate that dies at that step, with the result's
shape and dtype, writes its result into that operand's array instead
(`np.add(t, u, out=t)`): a chain `relu(x * w + b)` allocates one array.

Only arrays made inside the region are overwritten (by a ufunc step or a
kernel in `FRESH_KERNELS`; never the operands the region received, which
belong to the caller), and only where every operand
already has the result's float dtype, so the values are exactly those of the
kernels (which compute the same ufunc in that dtype).  Any other body node
runs through the interpreter as usual.
"""
from __future__ import annotations

import numpy as np

from ...compiler.ir import Graph, Node


def _relu(x, out=None):
    return np.maximum(x, x.dtype.type(0), out=out)    # as the relu kernel: NaN propagates


# kernels whose result is always a new array of their own (never a view of an
# operand), so a later step of the region may overwrite it: a conv or matmul
# epilogue (bias, activation, residual add) then runs in the product's array
FRESH_KERNELS = frozenset({"conv1d", "conv2d", "conv3d", "conv_transpose2d", "conv_transpose3d", "matmul", "linear"})

UFUNCS = {"add": np.add, "sub": np.subtract, "mul": np.multiply, "div": np.true_divide,
          "maximum": np.maximum, "minimum": np.minimum, "neg": np.negative, "exp": np.exp,
          "tanh": np.tanh, "sqrt": np.sqrt, "square": np.square, "relu": _relu}


def _same_float(args, dtype) -> bool:
    return dtype.kind == "f" and all(isinstance(a, np.ndarray) and a.dtype == dtype for a in args)


def run_fused(interp, node: Node, env: dict, dead_after) -> tuple:
    """The results of fused `node`, its body run with in-place ufuncs where
    exact; `dead_after(graph)` gives, per body node, the values that die there."""
    body: Graph = node.body
    benv = {v.id: env[u.id] for v, u in zip(body.inputs, node.inputs)}
    dead = dead_after(body)
    fresh: set[int] = set()        # body values whose arrays this run allocated
    for i, n in enumerate(body.nodes):
        fn = UFUNCS.get(n.op.name)
        args = [None if v is None else benv[v.id] for v in n.inputs]   # (a conv without bias: None)
        out_t = n.outputs[0].type
        # (bf16/fp16 steps go through the interpreter, which rounds each result once)
        if fn is not None and out_t.dtype.itemsize > 2 and _same_float(args, np.dtype(out_t.dtype.numpy_name)):
            shape = np.broadcast_shapes(*(a.shape for a in args))
            target = next((v.id for v in n.inputs if v is not None and v.id in fresh and v.id in dead[i]
                           and benv[v.id].shape == shape), None)
            benv[n.outputs[0].id] = fn(*args, out=benv[target]) if target is not None else fn(*args)
            fresh.add(n.outputs[0].id)
        else:
            for v, a in zip(n.outputs, interp.run_node(n, benv)):
                benv[v.id] = a
            if n.op.name in FRESH_KERNELS:
                fresh.add(n.outputs[0].id)
        for vid in dead[i]:
            del benv[vid]
    return tuple(benv[v.id] for v in body.outputs)

