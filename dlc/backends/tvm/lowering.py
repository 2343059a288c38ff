"""Per-op lowering of the dlc IR to TVM Relax.

`LOWERING[op](low, node, args, env)` emits Relax for one node and returns its
result(s) as Relax expressions.  `low` is the `Lowerer` (block builder,
dimension variables), `args` the operands' Relax expressions (None for an
absent optional operand) and `env` the value map (scan bodies use it).

Conventions:
* results keep dlc's layouts (NCHW, OIHW); the pipeline converts layouts;
* the result dtype is always the one dlc's shape rule inferred
  (`node.outputs[i].type`), so operands are cast to it where dlc promotes;
* bfloat16 values are stored as float32 and rounded at casts, as in the
  NumPy reference;
* ops missing from `LOWERING` are listed in `UNSUPPORTED` with the reason.

Semantics follow the NumPy reference kernels (backends/numpy/kernels).  What
the two share lives with the ops in the compiler (`compiler.ops.conv`'s
`conv_pads` and `ntuple`, `compiler.ops.shape.sinusoidal_table`) or in the
runtime (`runtime.random`'s streams), so the backends cannot drift apart and
never import one another.

This module holds the registry, the helpers every lowering shares and the
random ops; the op families register themselves from their own modules:
`lowering_elementwise`, `lowering_reduce`, `lowering_shape`, `lowering_nn`,
`lowering_loss`, `lowering_seq` (recurrences, scan) and
`lowering_pool_indices` (max pooling's argmax).
"""
from __future__ import annotations

from .relaxgen import NeedsConcrete, Unsupported, storage_dtype  # noqa: F401 - re-exported

LOWERING: dict = {}

# ops with no TVM lowering, and why (a test crosses every op with every backend)
UNSUPPORTED: dict[str, str] = {}


def lowers(*names):
    def deco(fn):
        for n in names:
            LOWERING[n] = fn
        return fn
    return deco


def _R():
    from tvm import relax
    return relax


def _op():
    from tvm import relax
    return relax.op


def out_dtype(node, i=0) -> str:
    return storage_dtype(node.outputs[i].type)


def in_dtype(node, i) -> str:
    return storage_dtype(node.inputs[i].type)


def ndim(node, i=0, out=False) -> int:
    v = node.outputs[i] if out else node.inputs[i]
    return len(v.type.shape)


def cast(low, x, have: str, want: str):
    if have == want:
        return x
    return low.emit(_op().astype(x, want))


def arg_as(low, node, args, i, dtype):
    return cast(low, args[i], in_dtype(node, i), dtype)


def scalar(low, value, dtype):
    return low.const(value, dtype)


def norm_axis(axis, rank):
    axis = int(axis)
    return axis + rank if axis < 0 else axis


def out_shape(low, node, i=0):
    return low.shape(node.outputs[i].type.shape)



# ---------------------------------------------------------------------------
# random ops: drawn on the host (see relaxgen), here only consumed.  The
# tensors come from `runtime.random.draw_random`, the NumPy reference's streams.
# ---------------------------------------------------------------------------

def random_plan(node):
    """(kind, shape, dtype, attrs) of the host-drawn tensor `node` needs, or None."""
    name = node.op.name
    a = node.attrs
    if name == "dropout":
        if not a["training"] or a["p"] == 0 or a["p"] == 1:
            return None
        return ("dropout", list(node.inputs[0].type.shape), out_dtype(node),
                {"p": float(a["p"]), "seed": int(a["seed"])})
    if name == "randn":
        return ("randn", list(node.outputs[0].type.shape), out_dtype(node), {"seed": int(a["seed"])})
    if name == "uniform":
        return ("uniform", list(node.outputs[0].type.shape), out_dtype(node),
                {"seed": int(a["seed"]), "low": float(a["low"]), "high": float(a["high"])})
    return None


@lowers("dropout")
def _dropout(low, node, args, env):
    a = node.attrs
    dt = out_dtype(node)
    x = arg_as(low, node, args, 0, dt)
    if not a["training"] or a["p"] == 0:
        return x
    if a["p"] == 1:
        return low.emit(_op().multiply(x, scalar(low, 0, dt)))
    kind, shape, _, attrs = random_plan(node)
    noise = low.random_input(node, kind, shape, dt, attrs)
    return low.emit(_op().multiply(x, noise))


@lowers("randn", "uniform")
def _random(low, node, args, env):
    kind, shape, dt, attrs = random_plan(node)
    return low.random_input(node, kind, shape, dt, attrs)


# the op families register themselves; their shared helpers stay importable from here
from .lowering_elementwise import erf_f32, fast_sigmoid, round_bf16, softmax  # noqa: E402,F401
from .lowering_reduce import bessel_factor  # noqa: E402,F401
from . import lowering_shape, lowering_nn, lowering_loss, lowering_seq, lowering_pool_indices  # noqa: E402,F401,I001
from . import lowering_resample  # noqa: E402,F401
from . import int8_lowering  # noqa: E402,F401 - quantize/dequantize/qconv2d/qdense
