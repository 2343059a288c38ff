"""The op table: dlc op name -> the function that writes it as ONNX nodes.

    @onnx_op("relu")
    def _relu(e: Emitter, node: Node, x: list[str | None]) -> list[str]: ...

`x` holds the ONNX names of the node's operands (None for an absent optional
one); the function returns one ONNX name per result of the node.  An op
missing here is exported through its decomposition (`OpDef.decompose`, e.g.
gelu, silu, a fused region's body); an op with neither is an error naming the
op and its `.dln` line (`missing_ops` lists them for the coverage test).
"""
from __future__ import annotations

from collections.abc import Callable

TABLE: dict[str, Callable] = {}


def onnx_op(*names: str):
    def deco(fn):
        for n in names:
            if n in TABLE:
                raise RuntimeError(f"two ONNX mappings for op '{n}'")
            TABLE[n] = fn
        return fn
    return deco


def simple(mapping: dict[str, str], **attrs) -> None:
    """Register ops that are one ONNX op on the same operands."""
    for name, op_type in mapping.items():
        def fn(e, node, x, _t=op_type):
            return [e.op(_t, x, **attrs)]
        onnx_op(name)(fn)


def missing_ops() -> list[str]:
    """Every registered dlc op with neither an ONNX mapping nor a decomposition."""
    from ...compiler.ops import OPS
    load_all()
    return sorted(n for n, op in OPS.items() if n not in TABLE and op.decompose is None)


def load_all() -> None:
    from . import (  # noqa: F401
        ops_elementwise,
        ops_nn,
        ops_quant,
        ops_recurrent,
        ops_resize,
        ops_shape,
        ops_train,
    )
