"""Elaboration: AST to typed IR.

The elaborator is an interpreter over the AST.  Compile-time values (ints,
symbolic dims, tuples, blocks) are computed on the spot; tensor operations
append typed nodes to the IR graph, so every shape is checked as the graph is
built and every error points at the `.dln` span responsible.

Blocks are inlined: each application elaborates the block's body in a new
`Frame` whose parameter prefix is the instance name (`layer2.0`), which is how
parameter names become hierarchical.
"""
from __future__ import annotations

import inspect
import math
import re
from dataclasses import dataclass, field
from typing import Any

from ..compiler.dims import Dim, as_dim, dim, floordiv, known_equal
from ..compiler.ir import Graph, Init, Layer, ParamInfo, Value
from ..compiler.ops import OPS
from ..compiler.types import DType, TensorType
from ..errors import (DlcError, DlcLimitError, DlcNameError, DlcTypeError, DlcValueError, ShapeError,
                      Span)
from . import ast as A
from .callctx import CallCtx
from .values import (BlockValue, Builtin, InitValue, ModuleEnv, PartialBlock, describe, flatten,
                     is_int, is_tensor, unflatten)

from .limits import (MAX_DEPTH, MAX_DIM_DEPTH, MAX_ITERATIONS, MAX_NODES, MAX_PARAMS,  # noqa: F401
                     MAX_STEPS, MAX_TENSOR_BYTES, CALL_STEPS, OP_STEPS)


class _Return(Exception):
    def __init__(self, value, span: Span | None = None):
        self.value = value
        self.span = span


@dataclass
class Context:
    """State shared by every frame of one elaboration."""

    root: Graph
    mode: str
    examples: dict[str, int] = field(default_factory=dict)
    layers: list[Layer] = field(default_factory=list)
    stack: list[str] = field(default_factory=list)
    streams: int = 0
    nodes: int = 0
    overrides: dict[str, Any] = field(default_factory=dict)  # --bind of file constants
    # in train sections, every call of a model uses that model's one set of weights
    share_models: bool = False
    const_values: dict[str, dict] = field(default_factory=dict)
    const_stack: list[str] = field(default_factory=list)
    param_names: set = field(default_factory=set)
    steps: int = 0                        # elaboration work done so far (see charge)
    outer_loop: Span | None = None        # the outermost `for` being run, if any
    sharing: list = field(default_factory=list)   # share="..." applications in progress (sharing.py)

    def charge(self, n: int, span: Span) -> None:
        """Count `n` units of elaboration work; too much is a located error at
        the outermost loop (nested loops multiply, so that is the one to shrink)."""
        self.steps += n
        if self.steps > MAX_STEPS:
            where = self.outer_loop or span
            raise DlcLimitError(f"elaboration takes more than {MAX_STEPS:,} steps", where,
                                "a step is a statement, a loop iteration or a sequence element; a call "
                                f"counts {CALL_STEPS} and an operation {OP_STEPS}; nested compile-time "
                                "loops multiply: reduce the loop bounds")

    def next_stream(self) -> int:
        self.streams += 1
        return self.streams

    def add_param(self, name: str, type: TensorType, init: Init, buffer: bool, trainable: bool,
                  span: Span) -> Value:
        from .sharing import shared_param
        shared = shared_param(self, name, type, buffer, span)
        if shared is not None:
            return shared
        if self.share_models:
            for p in self.root.params:
                if p.name == name and p.type == type:
                    return p  # a model called again in a train section: the same weights
        if name in self.param_names or (len(self.param_names) != len(self.root.params)
                                        and any(p.name == name for p in self.root.params)):
            raise DlcNameError(f"parameter name '{name}' is used twice", span,
                               "give one of the layers another name with name=\"...\"")
        if len(self.root.params) >= MAX_PARAMS:
            raise DlcLimitError(f"the model has more than {MAX_PARAMS} parameter tensors", span,
                                "a loop bound or a layer count is probably far too large")
        self.param_names.add(name)
        check_size(type, span, self.examples, f"parameter {name}")
        return self.root.add_param(ParamInfo(name, init, trainable and not buffer, span), type, buffer)


def check_size(t: TensorType, span: Span, examples: dict, what: str = "tensor") -> None:
    """Reject absurd sizes (terabytes) and non-positive dims as early as possible."""
    total = t.dtype.itemsize
    for d in t.shape:
        if isinstance(d, Dim):
            if d.depth > MAX_DIM_DEPTH:
                raise DlcLimitError(f"{what} has a symbolic size with {d.depth} nested divisions", span,
                                    f"sizes may nest at most {MAX_DIM_DEPTH} divisions (strided layers on "
                                    "a symbolic size); give the size a value, or use fewer strided layers")
            try:
                d = d.evaluate(examples)
            except KeyError:
                continue
        if d <= 0:
            raise DlcValueError(f"{what} has a dimension of size {d}: {t}", span,
                                "every dimension must be positive")
        total *= d
    if total > MAX_TENSOR_BYTES:
        # a size past what a float holds (2**1024) is still a number to print
        size = f"{total / 2**40:.1f} TiB" if total.bit_length() < 1000 else f"more than 2**{total.bit_length() - 1} bytes"
        raise DlcLimitError(f"{what} {_short(t)} would take {size}", span,
                            "that is almost certainly a typo in a size")


def _short(t: TensorType, width: int = 80) -> str:
    """A type for a message, cut short if a dimension is a 400-digit number."""
    s = str(t)
    return s if len(s) <= width else s[:width - 4] + " ...]"


class Frame:
    """One block or model instance being elaborated."""

    def __init__(self, ctx: Context, module: ModuleEnv, prefix: str, graph: Graph, block: str):
        self.ctx = ctx
        self.module = module
        self.prefix = prefix
        self.graph = graph
        self.block = block
        self.env: dict[str, Any] = {}
        self.used: set[str] = set()
        self.suffixes: dict[str, int] = {}  # next `_k` to try for a repeated layer name
        self.binding: list | None = None  # [target name, count, index]

    # names ------------------------------------------------------------------
    def lookup(self, name: str, span: Span):
        if name in self.env:
            return self.env[name]
        from .modules import module_lookup
        found, value = module_lookup(self.module, name, self.ctx)
        if found:
            return value
        from .builtins import BUILTINS
        if name in BUILTINS:
            return BUILTINS[name]
        raise DlcNameError(f"unknown name '{name}'", span, _suggest(name, self))

    def instance_name(self, kind: str, explicit, span: Span) -> str:
        """The hierarchical name of a layer or block instance."""
        if self.ctx.share_models and explicit is None and kind in self.module.models and not self.prefix:
            return kind
        from .values import SELF
        if explicit is SELF:
            # parameters at the enclosing instance's own name (PyTorch's subclass pattern)
            if "<self>" in self.used:
                raise DlcNameError("name=self is already used in this block", span,
                                   "only one layer or block application can take the block's own name")
            self.used.add("<self>")
            if self.binding is not None:
                self.binding[2] += 1
            return self.prefix
        if explicit is not None:
            if not isinstance(explicit, str) or not re.fullmatch(r"[A-Za-z0-9_]+(\.[A-Za-z0-9_]+)*", explicit):
                msg, hint = _bad_name(explicit)
                raise DlcValueError(msg, span, hint)
            if explicit in self.used:
                raise DlcNameError(f"the name '{explicit}' is already used in this block", span,
                                   "give each layer its own name")
            base = explicit
        else:
            if self.binding is not None:
                target, count, index = self.binding
                base = target if count <= 1 else f"{target}.{index}"
                self.binding[2] += 1
            else:
                base = kind
            if base in self.used:
                # the first free `root_k`; the search resumes where the last one for this
                # base stopped (names are only ever added), so n layers cost O(n), not O(n**2)
                root, _, rest = base.partition(".")
                k = self.suffixes.get(base, 1)
                while True:
                    cand = f"{root}_{k}" + (f".{rest}" if rest else "")
                    if cand not in self.used:
                        break
                    k += 1
                self.suffixes[base] = k + 1
                base = cand
        self.used.add(base)
        return f"{self.prefix}.{base}" if self.prefix else base

    # emitting ---------------------------------------------------------------
    def emit(self, opname: str, inputs: list, attrs: dict, span: Span, scope: str | None = None):
        op = OPS[opname]
        for v in inputs:
            if v is not None and not is_tensor(v):
                raise DlcTypeError(f"{opname}: expected a tensor operand, got {describe(v)}", span,
                                   "pass a tensor here")
        self.ctx.nodes += 1
        self.ctx.charge(OP_STEPS, span)
        if self.ctx.nodes > MAX_NODES:
            raise DlcLimitError(f"the model has more than {MAX_NODES} operations", span,
                                "a loop bound is probably far too large")
        try:
            outs = self.graph.add_node(op, inputs, attrs, span, scope if scope is not None else self.prefix)
        except ShapeError as e:
            raise DlcTypeError(e.message, span, e.hint or (f"{opname}: {op.doc}" if op.doc else None)) from None
        for o in outs:
            check_size(o.type, span, self.ctx.examples, f"the result of {opname}")
        return outs[0] if len(outs) == 1 else tuple(outs)

    def const(self, value, like: Value, span: Span) -> Value:
        return self.emit("full", [], {"shape": (), "value": value, "dtype": like.type.dtype.numpy_name}, span)

    # statements ---------------------------------------------------------------
    def run(self, stmts: list):
        for s in stmts:
            self.ctx.charge(1, s.span)
            try:
                self.exec(s)
            except RecursionError:
                raise DlcLimitError("this statement nests too deeply to compile", s.span,
                                    "split the expression into several statements") from None

    def exec(self, s):
        if isinstance(s, A.Assign):
            self.binding = None
            if len(s.targets) >= 1 and s.targets[0].name is not None:
                from .naming import count_instances
                n = count_instances(s.value, self)
                self.binding = [s.targets[0].name, n, 0]
            try:
                value = self.eval(s.value)
            finally:
                self.binding = None
            try:
                self.assign(s.targets, value, s.span)
            except DlcTypeError as e:
                if isinstance(value, tuple) and len(s.targets) != len(value):
                    from .teach import split_unpack_hint
                    e.hint = split_unpack_hint(self, s.value, value, len(s.targets)) or e.hint
                raise
        elif isinstance(s, A.ParamStmt):
            self.exec_param(s)
        elif isinstance(s, A.For):
            self.exec_for(s)
        elif isinstance(s, A.If):
            for cond, body in s.branches:
                if self.truth(self.eval(cond), cond.span):
                    self.run(body)
                    return
            if s.orelse is not None:
                self.run(s.orelse)
        elif isinstance(s, A.Return):
            vals = [self.eval(v) for v in s.values]
            raise _Return(vals[0] if len(vals) == 1 else tuple(vals), s.span)
        elif isinstance(s, A.Assert):
            ok = self.truth(self.eval(s.cond), s.cond.span)
            if not ok:
                msg = self.eval(s.message) if s.message is not None else "assertion failed"
                raise DlcValueError(str(msg), s.span, "the block's requirements are not met")
        elif isinstance(s, A.Example):
            if self.block != self.ctx.root.name or self.prefix:
                # a model applied inside another model (BertBase(ids, name="bert")) keeps its
                # example sizes to itself: they only apply when it is the model elaborated
                d = self.module.defs.get(self.block)
                if not (isinstance(d, BlockValue) and not d.has_cparams):
                    raise DlcTypeError("'example' sizes belong in a model, not a block", s.span,
                               "move the example line into the model that uses this block")
            # examples were applied before elaboration (see elaborate_model)
        elif isinstance(s, A.Step):
            raise DlcTypeError("'step' is only allowed in a train section", s.span,
                               "move it into `train Model { ... }`")
        else:  # pragma: no cover - the grammar produces nothing else
            raise DlcTypeError(f"unsupported statement {type(s).__name__}", s.span, "see docs/language.md")

    def assign(self, targets: list, value, span: Span):
        if len(targets) == 1 and targets[0].name is not None:
            self.env[targets[0].name] = value
            _name_value(value, targets[0].name)
            return
        if not isinstance(value, (tuple, list)):
            raise DlcTypeError(f"cannot unpack {describe(value)} into {len(targets)} names", span,
                               "the right-hand side must be a tuple")
        if len(value) != len(targets):
            raise DlcTypeError(f"cannot unpack a tuple of {len(value)} into {len(targets)} names", span,
                               "the number of names must match the number of values")
        for t, v in zip(targets, value):
            if t.name is not None:
                self.env[t.name] = v
                _name_value(v, t.name)
            else:
                self.assign(t.items, v, t.span)

    def exec_param(self, s: A.ParamStmt):
        t = self.eval_type(s.type, None)
        init = self.eval_init(s.init) if s.init is not None else Init("zeros")
        name = f"{self.prefix}.{s.name}" if self.prefix else s.name
        v = self.ctx.add_param(name, t, init, s.kind == "buffer", True, s.span)
        self.env[s.name] = v

    def exec_for(self, s: A.For):
        it = self.eval(s.iter)
        if is_tensor(it):
            raise DlcTypeError("for loops run at compile time over ranges, lists and tuples, not tensors",
                               s.iter.span, "use scan(...) to iterate over a tensor's axis")
        if not isinstance(it, (list, tuple, range)):
            raise DlcTypeError(f"cannot iterate over {describe(it)}", s.iter.span,
                               "iterate over range(n), a list or a tuple")
        if len(it) > MAX_ITERATIONS:
            raise DlcLimitError(f"a loop of {len(it)} iterations", s.iter.span,
                                f"compile-time loops are limited to {MAX_ITERATIONS}")
        outermost = self.ctx.outer_loop is None
        if outermost:
            self.ctx.outer_loop = s.span
        try:
            for item in it:
                self.ctx.charge(1, s.span)
                if len(s.targets) == 1 and s.targets[0].name is not None:
                    self.env[s.targets[0].name] = item
                else:
                    self.assign(s.targets, item, s.span)
                self.run(s.body)
        finally:
            if outermost:
                self.ctx.outer_loop = None

    def truth(self, v, span: Span) -> bool:
        if is_tensor(v):
            raise DlcTypeError("a condition must be known at compile time, but this is a tensor", span,
                               "select between tensors with where(cond, a, b)")
        if isinstance(v, Dim):
            raise DlcTypeError(f"cannot decide at compile time: depends on the symbolic {v}", span,
                               "bind the dimension with --bind, or compare known sizes")
        if not isinstance(v, (bool, int, float, str, tuple, list)) and v is not None:
            raise DlcTypeError(f"{describe(v)} has no truth value", span,
                               "conditions are bools, numbers, strings, tuples or lists")
        return bool(v)

    # types and initialisers ------------------------------------------------------
    def eval_type(self, t, bind: dict | None):
        """Evaluate a type expression; with `bind`, unknown dim names become symbols
        recorded in `bind` (model inputs) instead of errors."""
        if isinstance(t, A.TupleTypeExpr):
            return tuple(self.eval_type(x, bind) for x in t.items)
        try:
            dtype = DType.parse(t.dtype)
        except KeyError:
            raise DlcTypeError(f"unknown dtype '{t.dtype}'", t.span,
                               "dtypes are f16, bf16, f32, f64, i8, i32, i64, bool") from None
        dims = []
        for d in t.dims:
            # a file constant (`const size = 224`) in an input type is its value, not a new symbol
            if bind is not None and isinstance(d, A.Name) and d.id not in self.env \
                    and d.id not in self.module.consts:
                if d.id not in bind:
                    bind[d.id] = Dim.symbol(d.id)
                    self.env[d.id] = bind[d.id]
                v = bind[d.id]
            else:
                v = self.eval(d)
            if isinstance(v, bool) or not is_int(v):
                raise DlcTypeError(f"a dimension must be an int, got {describe(v)}", d.span,
                                   "dimensions are positive ints or names like N")
            v = dim(v)
            if isinstance(v, int) and v <= 0:
                raise DlcValueError(f"dimension {v} is not positive", d.span,
                                    "every dimension must be at least 1")
            dims.append(v)
        tt = TensorType(dtype, tuple(dims))
        check_size(tt, t.span, self.ctx.examples)
        return tt

    def eval_init(self, e) -> Init:
        from .inits import init_from_expr
        return init_from_expr(e, self)

    # expressions -------------------------------------------------------------
    def eval(self, e):
        from .expressions import eval_expr
        return eval_expr(self, e)


def _name_value(v, name: str) -> None:
    """Remember the first .dln name a node result is bound to: generated code
    (the PyTorch backend) names its variables after the user's bindings."""
    if isinstance(v, Value) and v.kind == "node" and not v.name:
        v.name = name


def _bad_name(name) -> tuple[str, str]:
    """The message and hint for a `name=` that is not a layer name."""
    allowed = ("a name is words of letters, digits and _ separated by dots, like \"conv1\" or "
               "\"layer1.0\"")
    if name == "":
        return ("a layer name cannot be empty", allowed + "; name=self puts the layer's parameters at the "
                "enclosing block's own name; leave name= out to name the layer after the variable it is "
                "assigned to")
    if not isinstance(name, str):
        from .values import describe
        return f"a layer name must be a string, got {describe(name)}", allowed
    bad = sorted({c for c in name if not ((c.isascii() and c.isalnum()) or c in "_.")})
    why = (f"it contains {', '.join(repr(c) for c in bad)}" if bad else
           "a dot must separate two words (no leading, trailing or double dots)")
    return f"invalid layer name {name!r}: {why}", allowed


def _suggest(name: str, frame: Frame) -> str:
    import difflib
    from .builtins import BUILTINS
    pool = list(frame.env) + list(frame.module.defs) + list(BUILTINS)
    close = difflib.get_close_matches(name, pool, n=3, cutoff=0.7)
    if close:
        return "did you mean " + " or ".join(f"'{c}'" for c in close) + "?"
    return "define it before use, import it, or check the spelling (see docs/language.md)"
