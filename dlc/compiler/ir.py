"""The typed graph IR.

A `Graph` is a list of `Node`s in SSA form.  Every `Value` has a `TensorType`
(dtype and shape with symbolic dimensions); every `Node` names its `OpDef`,
its attributes, the `.dln` span it came from and the layer scope it belongs to.

Parameters and buffers are values too (`kind="param"` / `"buffer"`), carrying
a `ParamInfo` with their hierarchical name and initialiser.  Training-mode
side effects (batch-norm running statistics) are explicit: `state_updates`
maps a buffer's name to the value that replaces it after a step, so the graph
itself stays pure.

A `scan` node owns a `body` graph; the body may use values of the enclosing
graphs directly (implicit capture, as in MLIR regions).
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import ShapeError, Span
from .dims import Dim, DimLike, prod
from .types import TensorType

if TYPE_CHECKING:
    from .ops.registry import OpDef

_ids = itertools.count()


@dataclass(frozen=True)
class Init:
    """How a parameter is initialised: a kind and its arguments.

    Kinds: zeros, ones, constant(value), normal(mean, std), uniform(low, high),
    xavier_uniform/xavier_normal(gain), kaiming_uniform/kaiming_normal(a, mode,
    nonlinearity), truncated_normal(std).  Fans are computed from the shape
    the way PyTorch does.
    """

    kind: str
    args: tuple[tuple[str, Any], ...] = ()

    @staticmethod
    def make(kind: str, **args) -> "Init":
        return Init(kind, tuple(sorted(args.items())))

    def kwargs(self) -> dict:
        return dict(self.args)

    def __str__(self) -> str:
        if not self.args:
            return self.kind
        return f"{self.kind}({', '.join(f'{k}={v:g}' if isinstance(v, float) else f'{k}={v}' for k, v in self.args)})"


@dataclass
class ParamInfo:
    name: str
    init: Init
    trainable: bool = True
    span: Span | None = None


@dataclass
class Layer:
    """One layer instance of the model, as the spec wrote it: a row of `dlc
    info` and what module code generation maps to a framework layer.

    `name` is its hierarchical instance name (`layer1.0.conv1`), the scope of
    its nodes (`Node.scope`) and the prefix of its parameters; `kind` is the
    layer function the spec called (`conv2d`, `batchnorm`, `dense`...);
    `span` is the call's place in the `.dln` file; `params` are the names of
    the parameters and buffers it created, in creation order (their shapes
    are those of `Graph.params`, see `Graph.layer_params`); `outputs` are the
    values it returned.
    """

    name: str
    kind: str
    span: Span | None
    params: list[str] = field(default_factory=list)
    outputs: list["Value"] = field(default_factory=list)


@dataclass
class BlockCall:
    """One application of a `.dln` block, as the frontend elaborated it: what
    code generation needs to write the block back as a class (the torch
    backend's one `nn.Module` class per block) without reading the frontend.

    `scope` is the instance's hierarchical name (`layer1.0`): the prefix of its
    nodes' scopes and of its parameters' names; `block` is the definition's
    name (`BasicBlock`); `args` are the compile-time arguments it was applied
    with, in the definition's order (defaults filled in), and `defaults` the
    names of those that took their default; `dims` are the sizes the block's
    declared input types bound (`C` of `x: f32[N, C, H, W]`), in binding
    order, for those that are plain integers; `span` is the application's
    place in the `.dln` file; `inputs` are its tensor arguments as
    (declared name, value of the graph it was applied in), a tuple argument
    flattened as name.0, name.1....  Compile-time values are plain Python data (ints, floats,
    bools, strings, tuples of them); anything else (a block passed as an
    argument) is recorded as its name in a `BlockRef`.
    """

    scope: str
    block: str
    args: tuple[tuple[str, Any], ...] = ()
    defaults: frozenset = frozenset()
    dims: tuple[tuple[str, int], ...] = ()
    span: Span | None = None
    inputs: tuple[tuple[str, "Value"], ...] = ()


@dataclass(frozen=True)
class BlockRef:
    """A block passed as a compile-time argument (`ResLayer(BasicBlock, ...)`)."""

    name: str


class Value:
    """An SSA value.  `kind` is input, param, buffer or node (a node result)."""

    __slots__ = ("id", "type", "name", "kind", "producer", "index", "param")

    def __init__(self, type: TensorType, name: str = "", kind: str = "node",
                 producer: "Node | None" = None, index: int = 0, param: ParamInfo | None = None):
        self.id = next(_ids)
        self.type = type
        self.name = name
        self.kind = kind
        self.producer = producer
        self.index = index
        self.param = param

    def __getstate__(self):
        return {k: getattr(self, k) for k in self.__slots__ if k != "id"}

    def __setstate__(self, state):
        # ids key value maps within a process: an unpickled value takes a fresh one
        self.id = next(_ids)
        for k, v in state.items():
            setattr(self, k, v)

    @property
    def span(self) -> Span | None:
        if self.producer is not None:
            return self.producer.span
        if self.param is not None:
            return self.param.span
        return None

    def __repr__(self) -> str:
        return f"Value({self.name or self.id}: {self.type})"


class Node:
    __slots__ = ("op", "inputs", "attrs", "outputs", "span", "scope", "body")

    def __init__(self, op: "OpDef", inputs, attrs: dict, span: Span | None, scope: str = "",
                 body: "Graph | None" = None):
        self.op = op
        self.inputs: tuple[Value | None, ...] = tuple(inputs)
        self.attrs = dict(attrs)
        self.outputs: list[Value] = []
        self.span = span
        self.scope = scope
        self.body = body

    def __repr__(self) -> str:
        return f"Node({self.op.name} @ {self.span})"


@dataclass
class Graph:
    """A model (or a scan body) as typed SSA."""

    name: str
    mode: str = "eval"  # "eval" or "train": dropout and batch-norm follow it
    inputs: list[Value] = field(default_factory=list)
    params: list[Value] = field(default_factory=list)
    nodes: list[Node] = field(default_factory=list)
    outputs: list[Value] = field(default_factory=list)
    output_names: list[str] = field(default_factory=list)
    state_updates: dict[str, Value] = field(default_factory=dict)
    # symbolic dimension name -> example size (None when the model gives none)
    dims: dict[str, int | None] = field(default_factory=dict)
    span: Span | None = None
    parent: "Graph | None" = None
    # the model's layer instances in call order (filled by the frontend); a
    # layer applied in a loop body appears once per application
    layers: list[Layer] = field(default_factory=list)
    # the block applications in call order, outermost first (filled by the
    # frontend; `BlockCall`); a block applied inside a scan body appears once
    blocks: list[BlockCall] = field(default_factory=list)

    # building ------------------------------------------------------------
    def add_input(self, name: str, type: TensorType) -> Value:
        v = Value(type, name, "input")
        self.inputs.append(v)
        return v

    def add_param(self, info: ParamInfo, type: TensorType, buffer: bool = False) -> Value:
        v = Value(type, info.name, "buffer" if buffer else "param", param=info)
        self.params.append(v)
        return v

    def add_node(self, op: "OpDef", inputs, attrs: dict | None = None, span: Span | None = None,
                 scope: str = "", body: "Graph | None" = None) -> list[Value]:
        """Append a node, inferring its result types with the op's shape rule.

        Raises `ShapeError` (without a span; the caller adds it) when the op's
        rule rejects the operands.
        """
        attrs = op.normalize_attrs(attrs or {})
        node = Node(op, inputs, attrs, span, scope, body)
        types = op.infer([v.type if v is not None else None for v in node.inputs], attrs, node)
        for i, t in enumerate(types):
            node.outputs.append(Value(t, "", "node", node, i))
        self.nodes.append(node)
        return node.outputs

    # queries -------------------------------------------------------------
    def trainable_params(self) -> list[Value]:
        return [p for p in self.params if p.kind == "param" and p.param.trainable]

    def param_count(self) -> DimLike:
        total: DimLike = 0
        for p in self.trainable_params():
            total = total + prod(p.type.shape)
        return total

    def param_by_name(self) -> dict[str, Value]:
        return {p.name: p for p in self.params}

    def layer_params(self, layer: Layer) -> list[Value]:
        """The parameters and buffers of `layer`, with their types."""
        by_name = self.param_by_name()
        return [by_name[n] for n in layer.params if n in by_name]

    def walk(self):
        """Every node, descending into scan bodies."""
        for n in self.nodes:
            yield n
            if n.body is not None:
                yield from n.body.walk()

    def __str__(self) -> str:
        from .printer import print_graph
        return print_graph(self)


def check_types(node: Node) -> None:
    """Re-run the shape rule; used by the verifier."""
    try:
        types = node.op.infer([v.type if v is not None else None for v in node.inputs], node.attrs, node)
    except ShapeError as e:
        raise AssertionError(f"{node.op.name}: shape rule rejects its own operands: {e.message}")
    got = [v.type for v in node.outputs]
    if list(types) != got:
        raise AssertionError(f"{node.op.name}: result types {got} differ from the rule's {types}")


def defined_values(g: Graph) -> set[int]:
    """Ids of the values defined inside `g`: its inputs, node results and nested bodies' inputs."""
    ids = {v.id for v in g.inputs}
    for n in g.walk():
        ids.update(o.id for o in n.outputs)
        if n.body is not None:
            ids.update(v.id for v in n.body.inputs)
    return ids


def free_values(g: Graph) -> list[Value]:
    """Values `g` (a scan body, with its nested bodies) uses from enclosing graphs, in first-use order.

    These are a scan's implicit operands (its captures): autodiff differentiates
    them, cloning keeps them shared, and a backend passes them to the body's
    function as extra arguments.
    """
    inner = defined_values(g)
    out, seen = [], set()

    def see(v):
        if v is not None and v.id not in inner and v.id not in seen:
            seen.add(v.id)
            out.append(v)

    def visit(h: Graph):
        for n in h.nodes:
            for v in n.inputs:
                see(v)
            if n.body is not None:
                visit(n.body)
        for v in h.outputs:
            see(v)
    visit(g)
    return out


__all__ = ["BlockCall", "BlockRef", "Graph", "Layer", "Node", "Value", "ParamInfo", "Init", "Dim", "check_types",
           "defined_values", "free_values"]
