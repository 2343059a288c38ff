"""The op registry: one `OpDef` per primitive, with all its rules beside it.

An op is defined once, in `compiler/ops/<family>.py`: its attributes and
defaults, its shape/dtype rule, its MAC count, its VJP rule (`defvjp`) and,
for a composite, its decomposition into other ops (`defdecomp`).  Backends key
their lowering tables by op name; passes ask `op in ELEMENTWISE`, never
compare strings.  A backend without a kernel for an op lowers the op's
decomposition instead (`compiler/decompose.py`), and autodiff differentiates
through it when the op has no VJP rule of its own.

>>> from dlc.compiler.ops import OPS
>>> OPS["relu"].groups >= {"elementwise", "unary"}
True
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from ...errors import ShapeError
from ..dims import DimLike
from ..types import TensorType

InferFn = Callable[[list, dict], list]
MacsFn = Callable[[list, list, dict], DimLike]

# Named groups of ops, as tinygrad's GroupOp: passes test membership.
ELEMENTWISE = "elementwise"
UNARY = "unary"
BINARY = "binary"
COMPARISON = "comparison"
REDUCTION = "reduction"
ACTIVATION = "activation"
SHAPE = "shape"
CONV = "conv"
POOL = "pool"
NORM = "norm"
MATMUL = "matmul"
LOSS = "loss"
# losses whose target holds class indices along the input's axis 1 (a training
# label for them is i64 shaped like the input without that axis)
CLASS_INDEX_TARGET = "class_index_target"
RANDOM = "random"
RECURRENT = "recurrent"
ATTENTION = "attention"
CONSTANT = "constant"
CONTROL = "control"
RESAMPLE = "resample"

OPS: dict[str, "OpDef"] = {}

_REQUIRED = object()


@dataclass(eq=False)
class OpDef:
    """A primitive op.

    `infer(in_types, attrs)` returns the result types or raises `ShapeError`
    naming both shapes.  `macs(in_types, out_types, attrs)` counts multiply-
    accumulates the way torchvision does (convolutions and matrix products
    only).  `nondiff` documents an op as not differentiable (argmax, integer
    and comparison ops, sampling).  `variadic` ops take any number of tensor
    operands; otherwise `operands` names them (a trailing `?` marks optional).
    """

    name: str
    operands: tuple[str, ...]
    infer_fn: Callable
    attrs: dict[str, Any] = field(default_factory=dict)
    macs_fn: MacsFn | None = None
    groups: frozenset = frozenset()
    nondiff: bool = False
    variadic: bool = False
    doc: str = ""
    wants_node: bool = False
    # vjp(b: Builder, node: Node, cotangents: list[Value | None]) -> list[Value | None]
    # (one entry per operand; None means zero).  Set with @defvjp beside the op.
    vjp: Callable | None = None
    # decompose(b: Builder, inputs: list[Value | None], attrs) -> Value | list[Value]:
    # the op's results built from other ops, with the same types.  Set with @defdecomp.
    decompose: Callable | None = None
    # the `.dln` builtin: None (the default) makes a plain functional builtin from
    # this entry (tensor operands, then the attributes with their defaults);
    # otherwise the reason the op has no builtin of its own, or a hand-written one
    builtin: str | None = None

    def __hash__(self) -> int:
        return hash(self.name)

    def __reduce__(self):
        # an op is a registry singleton: it pickles as its name (graphs cross
        # process boundaries, e.g. to data-parallel workers)
        return (_op_named, (self.name,))

    def normalize_attrs(self, attrs: dict) -> dict:
        unknown = set(attrs) - set(self.attrs)
        if unknown:
            raise ShapeError(f"{self.name} has no attribute {', '.join(sorted(unknown))}",
                             f"its attributes are: {', '.join(self.attrs) or 'none'}")
        out = {}
        for k, default in self.attrs.items():
            if k in attrs:
                out[k] = attrs[k]
            elif default is _REQUIRED:
                raise ShapeError(f"{self.name} needs the attribute '{k}'")
            else:
                out[k] = default
        return out

    def infer(self, in_types: list, attrs: dict, node=None) -> list[TensorType]:
        if not self.variadic:
            required = sum(1 for o in self.operands if not o.endswith("?"))
            if not (required <= len(in_types) <= len(self.operands)):
                raise ShapeError(f"{self.name} takes {required} tensor operand(s), got {len(in_types)}")
            for name, t in zip(self.operands, in_types):
                if t is None and not name.endswith("?"):
                    raise ShapeError(f"{self.name}: operand '{name}' is required")
        out = self.infer_fn(node, in_types, attrs) if self.wants_node else self.infer_fn(in_types, attrs)
        return list(out) if isinstance(out, (list, tuple)) else [out]

    def macs(self, in_types: list, out_types: list, attrs: dict) -> DimLike:
        return self.macs_fn(in_types, out_types, attrs) if self.macs_fn else 0

    def __repr__(self) -> str:
        return f"OpDef({self.name})"


def _op_named(name: str) -> "OpDef":
    from .. import ops  # noqa: F401  (registers every op family)
    return OPS[name]


def required():
    """Marks an attribute without a default."""
    return _REQUIRED


def defop(name: str, operands, infer, *, attrs=None, macs=None, groups=(), nondiff=False,
          variadic=False, doc="", wants_node=False, builtin: str | None = None) -> OpDef:
    if name in OPS:
        raise RuntimeError(f"op {name} defined twice")
    if isinstance(operands, str):
        operands = tuple(operands.split()) if operands else ()
    op = OpDef(name, tuple(operands), infer, dict(attrs or {}), macs, frozenset(groups), nondiff,
               variadic, doc, wants_node, builtin=builtin)
    OPS[name] = op
    return op


def defvjp(*names: str):
    """Register a VJP rule for one or more ops (JAX's `defvjp`):

        @defvjp("tanh")
        def _(b, node, g):
            (y,) = node.outputs
            return [b.op("mul", g[0], b.op("sub", b.scalar_like(1.0, y), b.op("square", y)))]
    """
    def deco(fn):
        for n in names:
            OPS[n].vjp = fn
        return fn
    return deco


def defdecomp(*names: str):
    """Register a decomposition for one or more ops: their results built from
    other ops, for backends without a kernel of their own:

        @defdecomp("relu6")
        def _(b, inputs, attrs):
            return b.op("hardtanh", inputs[0], min_val=0.0, max_val=6.0)

    `inputs` are the node's operands (None for an absent optional one) and
    `attrs` its normalised attributes; return the result Value(s).
    """
    def deco(fn):
        for n in names:
            OPS[n].decompose = fn
        return fn
    return deco


def in_group(group: str) -> set[OpDef]:
    return {op for op in OPS.values() if group in op.groups}
