"""The state of one export: ONNX nodes and initializers being built from dlc IR.

`Emitter.op("Add", [a, b])` appends an ONNX node and returns its output
name(s); the IR node being translated (`Emitter.node`) gives every ONNX node
its `doc_string` and `metadata_props` (the `.dln` span and layer scope), so an
ONNX node can always be traced back to the spec line it came from.

Symbolic dimensions (`N`, `T`, `N*T`) stay symbolic: `Emitter.dim(d)` builds
their value at run time from `Shape` of a graph input that carries the symbol.
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ...compiler.dims import Dim, FloorDiv
from ...compiler.types import DType
from ...errors import DlcError

ONNX_DTYPE = {
    DType.f16: TensorProto.FLOAT16, DType.bf16: TensorProto.BFLOAT16, DType.f32: TensorProto.FLOAT,
    DType.f64: TensorProto.DOUBLE, DType.i8: TensorProto.INT8, DType.u8: TensorProto.UINT8,
    DType.i32: TensorProto.INT32, DType.i64: TensorProto.INT64, DType.bool: TensorProto.BOOL,
}


def onnx_dtype(name) -> int:
    """The ONNX element type of a dlc dtype (a `DType` or a name such as "float32")."""
    d = name if isinstance(name, DType) else DType.parse(str(name))
    return ONNX_DTYPE[d]


class Emitter:
    """Builds one ONNX graph (the main graph, or a Loop/Scan body whose
    constants go to the main graph's initializers)."""

    def __init__(self, opset: int, root: Emitter | None = None):
        self.opset = opset
        self.root = root or self
        self.nodes: list[onnx.NodeProto] = []
        self.node = None                    # the IR node being exported
        self.symbols: dict[str, tuple[str, int]] = {} if root is None else root.symbols
        if root is None:
            self.initializers: list[onnx.TensorProto] = []
            self._used: set[str] = set()
            self._consts: dict[tuple, str] = {}
            self._count = 0

    # names --------------------------------------------------------------
    def fresh(self, hint: str) -> str:
        r = self.root
        base = hint.replace(":", "_") or "t"
        name = base
        while name in r._used:
            r._count += 1
            name = f"{base}_{r._count}"
        r._used.add(name)
        return name

    def taken(self, name: str) -> bool:
        return name in self.root._used

    def reserve(self, name: str) -> str:
        """Claim `name` exactly (a parameter, an input, an output name)."""
        if name in self.root._used:
            raise DlcError(f"two ONNX values would be named '{name}'")
        self.root._used.add(name)
        return name

    # nodes --------------------------------------------------------------
    def op(self, op_type: str, inputs, n_out: int = 1, domain: str = "", **attrs):
        """Append an ONNX node; returns its output name (a list when n_out > 1)."""
        hint = op_type.lower()
        if self.node is not None:
            hint = f"{self.node.scope or self.node.op.name}.{op_type}".lstrip(".")
        outs = [self.fresh(hint) for _ in range(n_out)]
        ins = ["" if i is None else i for i in inputs]
        while ins and ins[-1] == "":
            ins.pop()
        n = helper.make_node(op_type, ins, outs, name=self.fresh(f"n.{hint}"), domain=domain or None,
                             **{k: v for k, v in attrs.items() if v is not None})
        if self.node is not None:
            span, scope = self.node.span, self.node.scope
            where = str(span) if span is not None else "?"
            n.doc_string = f"{where} {self.node.op.name}" + (f" in {scope}" if scope else "")
            for k, v in (("dlc.span", where), ("dlc.op", self.node.op.name), ("dlc.scope", scope)):
                if v:
                    n.metadata_props.add(key=k, value=v)
        self.nodes.append(n)
        return outs[0] if n_out == 1 else outs

    # constants ----------------------------------------------------------
    def const(self, value, dtype=None, hint: str = "const") -> str:
        """An initializer holding `value` (shared between identical small constants)."""
        arr = np.asarray(value, dtype=dtype)
        r = self.root
        key = (arr.dtype.str, arr.shape, arr.tobytes()) if arr.size <= 64 else None
        if key is not None and key in r._consts:
            return r._consts[key]
        name = self.fresh(hint)
        r.initializers.append(numpy_helper.from_array(arr, name))
        if key is not None:
            r._consts[key] = name
        return name

    def ints(self, values) -> str:
        """A 1-D int64 tensor of `values` (ints and symbolic `Dim`s)."""
        values = [int(v) if not isinstance(v, Dim) else (v.value if v.is_const else v) for v in values]
        if all(isinstance(v, int) for v in values):
            return self.const(np.array(values, dtype=np.int64), hint="ints")
        parts = [self.dim(v) for v in values]
        return self.op("Concat", parts, axis=0)

    def scalar(self, value, dtype) -> str:
        return self.const(np.array(value, dtype=dtype), hint="scalar")

    # symbolic dimensions ------------------------------------------------
    def bind_symbols(self, inputs) -> None:
        """Remember, for each plain symbol of the inputs' shapes, an (input, axis) holding it."""
        for name, type_ in inputs:
            for axis, d in enumerate(type_.shape):
                if isinstance(d, Dim) and not d.is_const and len(d.terms) == 1:
                    ((mono, coeff),) = d.terms.items()
                    if coeff == 1 and len(mono) == 1 and isinstance(mono[0], str):
                        self.symbols.setdefault(mono[0], (name, axis))

    def dim(self, d) -> str:
        """An int64 [1] tensor holding the dimension `d` at run time."""
        if not isinstance(d, Dim) or d.is_const:
            return self.ints([int(d) if not isinstance(d, Dim) else d.value])
        total = None
        for mono, coeff in sorted(d.terms.items(), key=lambda t: str(t[0])):
            term = self.ints([coeff]) if coeff != 1 or not mono else None
            for atom in mono:
                f = self._atom(atom)
                term = f if term is None else self.op("Mul", [term, f])
            total = term if total is None else self.op("Add", [total, term])
        return total

    def _atom(self, atom) -> str:
        if isinstance(atom, FloorDiv):
            # dims are non-negative: ONNX integer Div truncates, which floors here
            return self.op("Div", [self.dim(atom.num), self.ints([atom.den])])
        if atom not in self.symbols:
            raise DlcError(f"the symbolic dimension '{atom}' appears in no model input, so the ONNX graph "
                           "cannot compute it", self.node.span if self.node is not None else None,
                           f"bind it: dlc export ... --bind {atom}=1")
        src, axis = self.symbols[atom]
        return self.op("Shape", [src], start=axis, end=axis + 1)

    # random ops ---------------------------------------------------------
    def noise_input(self, node) -> str | None:
        """With noise inputs on, a graph input standing for `node`'s random result."""
        r = self.root
        if getattr(r, "noise", None) is None:
            return None
        from .lower import value_info
        name = self.fresh(f"noise.{node.scope or node.op.name}")
        r.noise.append(value_info(name, node.outputs[0].type))
        return name
