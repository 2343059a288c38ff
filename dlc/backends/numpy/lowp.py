"""bf16 and fp16 on the NumPy reference (`--precision`, the `autocast` pass).

A node whose result or operand is bf16/fp16 runs its fp32 kernel on its
operands widened to fp32 (exact: every bf16/fp16 value is an fp32 value) and
its result is rounded once to the node's type.  That is the policy's
"low-precision operands, fp32 accumulation" for convolutions and matmuls, and
for an elementwise op it is exactly what a bf16/fp16 kernel computes (the
op in fp32, one rounding), as `ml_dtypes` and NumPy's own float16 loops do.

Storage: fp16 is NumPy's float16; bf16 is float32 storage holding values
rounded to bf16 (`runtime.floats.round_to_bf16`, bit-identical to
`ml_dtypes.bfloat16` round-to-nearest-even; a test checks it).
"""
from __future__ import annotations

import numpy as np

from ...compiler.ir import Node
from ...compiler.types import DType
from ...runtime.floats import round_to_bf16

LOW = (DType.bf16, DType.f16)


def is_low(node: Node) -> bool:
    """Whether `node` reads or makes a bf16/fp16 value (and so runs widened)."""
    return any(v is not None and v.type.dtype in LOW for v in node.inputs) or \
        any(v.type.dtype in LOW for v in node.outputs)


def widen(args: list) -> list:
    return [a.astype(np.float32) if isinstance(a, np.ndarray) and a.dtype == np.float16 else a for a in args]


def narrow(node: Node, outs: tuple) -> tuple:
    """Each result rounded once to its IR type."""
    res = []
    for v, a in zip(node.outputs, outs):
        if v.type.dtype == DType.bf16 and isinstance(a, np.ndarray) and a.dtype.kind == "f":
            a = round_to_bf16(a)
        elif v.type.dtype == DType.f16 and isinstance(a, np.ndarray) and a.dtype.kind == "f":
            with np.errstate(over="ignore"):        # overflow to inf is the conversion's result
                a = a.astype(np.float16)
        res.append(a)
    return tuple(res)
