"""The import context: ONNX value names -> IR values or import-time constants.

A value the importer can know without running the model (an initializer, a
`Constant`, a shape, anything folded from those) stays a NumPy array until an
op needs it as a tensor: shape-like operands (Reshape's shape, Slice's bounds)
then become attributes, as the `.dln` frontend writes them, and only weights
used as tensors become `param`s.  A shape with symbolic dimensions is an
object array of `Dim`s.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from ...compiler.dims import Dim
from ...compiler.ir import Graph, Init, Layer, ParamInfo, Value
from ...compiler.ops import OPS
from ...compiler.types import DType, TensorType
from ...errors import (
    DlcError,
    DlcLimitError,
    DlcNameError,
    DlcTypeError,
    DlcValueError,
    ShapeError,
    Span,
)

# IR element types by NumPy dtype name
NP_TO_DTYPE = {"float16": DType.f16, "float32": DType.f32, "float64": DType.f64, "int8": DType.i8,
               "uint8": DType.u8, "int32": DType.i32, "int64": DType.i64, "bool": DType.bool}
# narrower or unsigned integer constants widen to a type the IR has
_WIDEN = {"int16": "int32", "uint16": "int32", "uint32": "int64", "uint64": "int64"}

MAX_SUBGRAPH_DEPTH = 16

LAYER_KINDS = {"conv1d": "conv1d", "conv2d": "conv2d", "batch_norm": "batchnorm", "linear": "dense",
               "layer_norm": "layernorm", "embedding": "embedding", "group_norm": "groupnorm",
               "conv_transpose2d": "conv_transpose2d", "prelu": "prelu", "lstm": "lstm", "gru": "gru", "rnn": "rnn"}


def f32(v: float) -> float:
    """A float32 value as the shortest decimal that reads back as it."""
    return float(str(np.float32(v)))


def scope_from_node_name(name: str) -> str:
    """torch.onnx names nodes by module path, `/layer1/layer1.0/conv1/Conv`: the scope is `layer1.0.conv1`."""
    parts = [p for p in name.split("/") if p][:-1]
    scope = ""
    for p in parts:
        if not re.fullmatch(r"[A-Za-z_][\w.]*|\d+", p):
            break
        scope = p if (not scope or p.startswith(scope + ".")) else f"{scope}.{p}"
    return scope


class Ctx:
    def __init__(self, graph: Graph, base_dir: Path | None, opsets: dict[str, int], label: str):
        self.g = graph
        self.base_dir = base_dir
        self.opsets = opsets
        self.label = label
        self.env: dict[str, Value | np.ndarray] = {}
        self.initializers: dict[str, np.ndarray] = {}
        self.materialized: dict[str, Value] = {}
        self.alias: dict[str, str] = {}              # Identity of an initializer: the same weight
        self.transposed: dict[str, str] = {}         # Transpose(initializer W) -> W
        self.bias_free_linear: dict[str, object] = {}  # output of linear(x, W) -> its node
        self.uses: dict[str, int] = {}
        self.frozen: dict[str, np.ndarray] = {}     # graph inputs given a value at import time
        self.frozen_used: set[str] = set()
        self.frozen_as_tensor: set[str] = set()
        self.weights: dict[str, np.ndarray] = {}
        self.node = None
        self.node_index = 0
        self.span: Span | None = None
        self.scope = ""
        self._names: set[str] = set()
        self.root = self          # the model's context: parameters live in its graph
        self.depth = 0            # subgraph nesting (If branches, Loop bodies)
        self.producers: dict = {}  # ONNX value name -> (node, output index, context): const_eval
        self.evaluated: dict[str, np.ndarray] = {}

    def child(self, graph: Graph) -> Ctx:
        """A context for a subgraph (If branch, Loop body) building into `graph`: it sees every
        value of this one (ONNX subgraphs capture outer names; dlc's scan bodies capture values)."""
        c = Ctx(graph, self.base_dir, self.opsets, self.label)
        c.env = dict(self.env)
        for k in ("initializers", "materialized", "alias", "transposed", "bias_free_linear", "uses", "weights",
                  "frozen", "frozen_used", "frozen_as_tensor", "_names", "bind"):
            if hasattr(self, k):
                setattr(c, k, getattr(self, k))
        c.materialized = dict(self.materialized) if graph is not self.g else self.materialized
        c.root = self.root
        c.depth = self.depth + 1
        if c.depth > MAX_SUBGRAPH_DEPTH:
            raise self.error(f"subgraphs nested more than {MAX_SUBGRAPH_DEPTH} deep", kind=DlcLimitError)
        return c

    # errors -----------------------------------------------------------------------------
    def where(self) -> str:
        n = self.node
        if n is None:
            return self.label
        return f"node {self.node_index} {n.name!r} ({n.op_type})" if n.name else f"node {self.node_index} ({n.op_type})"

    def error(self, msg: str, hint: str | None = None, kind=DlcValueError) -> DlcError:
        return kind(f"{self.where()}: {msg}", self.span, hint)

    # values ---------------------------------------------------------------------------
    def has(self, name: str) -> bool:
        return bool(name) and (name in self.env or name in self.frozen)

    def const(self, name: str) -> np.ndarray | None:
        """The value of `name` if it is known at import time."""
        if not name:
            return None
        v = self.env.get(name)
        return v if isinstance(v, np.ndarray) else None

    def known(self, name: str) -> np.ndarray | None:
        """The value of `name` if the import can know it: a constant, a graph input given a value, or
        computed from those by the ONNX nodes that produce it (`const_eval`); None otherwise."""
        v = self.const(name)
        if v is None and name in self.frozen:
            self.frozen_used.add(name)
            v = self.frozen[name]
        if v is None and name:
            from .const_eval import evaluate
            v = evaluate(self, name)
        return v

    def need_const(self, name: str, what: str) -> np.ndarray:
        """A shape-like operand: known at import time, or a graph input given a value (`input_values`)."""
        v = self.known(name)
        if v is None:
            raise self.error(f"{what} ('{name}') must be known when the model is imported; here it is computed "
                             "at run time", "dlc compiles static shapes: give the input's value at import "
                             "time (input_values=) or export the model with constant shapes")
        return v

    def ints(self, name: str, what: str) -> list:
        """A known 1-D (or scalar) integer operand as a list of ints / `Dim`s."""
        v = self.need_const(name, what)
        return [x if isinstance(x, Dim) else int(x) for x in np.asarray(v).reshape(-1).tolist()]

    def val(self, name: str, buffer: bool = False) -> Value:
        """`name` as an IR value (materializing a known constant; `buffer`: a
        non-trainable weight such as batch norm's running statistics)."""
        if not name:
            raise self.error("a required operand is missing")
        name = self.alias.get(name, name)
        v = self.env.get(name)
        if isinstance(v, Value):
            if name in self.frozen:
                self.frozen_as_tensor.add(name)
            return v
        if name in self.materialized:
            return self.materialized[name]
        arr = self.const(name)
        if arr is None:
            raise self.error(f"operand '{name}' is not defined before it is used",
                             "the graph is not topologically sorted or refers to a missing value",
                             DlcNameError)
        out = self.materialize(arr, name, buffer)
        if out.kind != "node" or out.type.rank:     # a scalar is made at each use, as a literal is written
            self.materialized[name] = out
        return out

    def opt(self, node, i: int) -> Value | None:
        return self.val(node.input[i]) if len(node.input) > i and node.input[i] else None

    def materialize(self, arr: np.ndarray, name: str, buffer: bool = False) -> Value:
        arr = self.plain(arr, name)
        dt = NP_TO_DTYPE[str(arr.dtype)]
        if arr.ndim == 0 or (arr.size == 1 and name not in self.initializers):
            v = self.op("full", shape=arr.shape, value=arr.reshape(-1)[0].item(), dtype=dt.numpy_name)
            return v
        if name not in self.initializers and arr.size > 1 and (arr == arr.reshape(-1)[0]).all():
            # a constant computed at import time (ConstantOfShape...), not a weight: `full`, as written
            return self.op("full", shape=arr.shape, value=arr.reshape(-1)[0].item(), dtype=dt.numpy_name)
        # an integer range (an initializer too: integers are never trained) is `arange`, as written
        if arr.ndim == 1 and arr.dtype.kind == "i" and arr.size > 1:
            step = int(arr[1] - arr[0])
            if step != 0 and np.array_equal(arr, np.arange(int(arr[0]), int(arr[0]) + step * arr.size, step)):
                return self.op("arange", start=int(arr[0]), stop=int(arr[0]) + step * arr.size, step=step,
                               dtype=str(arr.dtype))
        pname = self.unique(name)
        trainable = name in self.initializers and dt.is_float and not buffer
        info = ParamInfo(pname, Init.make("zeros"), trainable=trainable, span=self.span)
        p = self.root.g.add_param(info, TensorType(dt, arr.shape), buffer=not trainable)
        self.weights[pname] = np.array(arr)     # writable, owned
        return p

    def plain(self, arr: np.ndarray, name: str) -> np.ndarray:
        if arr.dtype == object:
            if not all(isinstance(x, (int, np.integer)) for x in arr.reshape(-1).tolist()):
                raise self.error(f"'{name}' is a shape with symbolic dimensions ({arr.tolist()}) used as a "
                                 "tensor", "bind the dimension to a size when importing (bind=)")
            return arr.astype(np.int64)
        w = _WIDEN.get(str(arr.dtype))
        if w:
            return arr.astype(w)
        if str(arr.dtype) not in NP_TO_DTYPE:
            raise self.error(f"'{name}' has element type {arr.dtype}, which dlc's IR does not have")
        return arr

    def unique(self, name: str) -> str:
        base = name or "const"
        out, i = base, 1
        while out in self._names:
            out, i = f"{base}_{i}", i + 1
        self._names.add(out)
        return out

    def set(self, name: str, v) -> None:
        if name:
            self.env[name] = v

    # building -------------------------------------------------------------------------
    def op(self, opname: str, *inputs, **attrs):
        try:
            outs = self.g.add_node(OPS[opname], list(inputs), attrs, self.span, self.scope)
        except ShapeError as e:
            raise self.error(e.message if hasattr(e, "message") else str(e), getattr(e, "hint", None),
                             DlcTypeError) from None
        return outs[0] if len(outs) == 1 else tuple(outs)

    def layer(self, opname: str, *inputs, **attrs):
        """An op whose weights are parameters: recorded as a layer of the graph, scoped by its weights' names."""
        params = [v for v in inputs if isinstance(v, Value) and v.kind in ("param", "buffer")]
        scope = self.scope
        if params:
            prefixes = {p.name.rsplit(".", 1)[0] for p in params if "." in p.name}
            if len(prefixes) == 1:
                scope = prefixes.pop()
        saved, self.scope = self.scope, scope
        try:
            out = self.op(opname, *inputs, **attrs)
        finally:
            self.scope = saved
        if params and opname in LAYER_KINDS:
            outs = list(out) if isinstance(out, tuple) else [out]
            self.g.layers.append(Layer(scope or params[0].name, LAYER_KINDS[opname], self.span,
                                       [p.name for p in params], outs))
        return out

    def scalar(self, value, like: Value) -> Value:
        return self.op("full", shape=(), value=value, dtype=like.type.dtype.numpy_name)

    @staticmethod
    def attrs(node) -> dict:
        from onnx import helper
        out = {}
        for a in node.attribute:
            try:
                v = helper.get_attribute_value(a)
                # float attributes are float32 in ONNX: their shortest float32 text (1e-05, not 9.99999974e-06)
                out[a.name] = f32(v) if isinstance(v, float) else v
            except Exception:  # noqa: BLE001  (a malformed attribute: the converter reports it missing)
                out[a.name] = None
        return out
