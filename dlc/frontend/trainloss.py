"""The losses of a `train` section, elaborated to IR.

A section's `loss = ...` becomes a loss graph (`compiler.trainspec.LossSpec`)
over the model's outputs (``out:<name>``), its inputs and ``label``; each
`step` of a section with alternating updates becomes a graph of its own that
applies the models it calls.  The compiler builds the training programs from
these graphs and never sees the syntax.

`label` is typed here, from the call that consumes it: a loss whose OpDef is
in the `CLASS_INDEX_TARGET` group (cross_entropy, nll_loss) takes class
indices, so `label` is i64 shaped like the first output without its class
axis; otherwise `label` has the first output's type.
"""
from __future__ import annotations

from ..compiler.dims import Dim
from ..compiler.ir import Graph, Value
from ..compiler.ops import OPS
from ..compiler.ops.registry import CLASS_INDEX_TARGET
from ..compiler.trainspec import LossSpec
from ..compiler.types import DType, TensorType
from ..errors import DlcTypeError
from . import ast as A
from .ast import children  # noqa: F401 - the walker train.py imports from here

LABEL_NAMES = ("label", "target")


def _walk(e):
    stack = [e]
    while stack:
        x = stack.pop()
        yield x
        stack.extend(children(x))


def mentions(expr, names) -> bool:
    return any(isinstance(e, A.Name) and e.id in names for e in _walk(expr))


def _op_called(call: A.Call):
    """The OpDef a call of a builtin applies (None for anything else)."""
    from .builtins import BUILTINS
    if not isinstance(call.func, A.Name):
        return None
    b = BUILTINS.get(call.func.id)
    return OPS.get(b.name) if b is not None else None


def label_type(loss_expr, first_output: Value) -> TensorType:
    """The type of `label` in `loss_expr` (see the module docstring)."""
    for e in _walk(loss_expr):
        if not isinstance(e, A.Call) or len(e.args) < 2:
            continue
        target = e.args[1]
        op = _op_called(e)
        if op is None or CLASS_INDEX_TARGET not in op.groups:
            continue
        shape = first_output.type.shape
        if isinstance(target, A.Name) and target.id in LABEL_NAMES:
            return TensorType(DType.i64, (shape[0],) + tuple(shape[2:]))
        class_axis = _flattened_class_axis(e.args[0], target, len(shape))
        if class_axis is not None:
            return TensorType(DType.i64, tuple(shape[:class_axis]) + tuple(shape[class_axis + 1:]))
    return first_output.type


def _flattened_class_axis(input_expr, target, rank: int) -> int | None:
    """The sequence-model form `loss(flatten(logits, 0, k), flatten(label, 0))`:
    the input's leading axes 0..k are flattened into one, so its class axis 1
    is the output's axis k+1, and `label` is the output without that axis (the
    label of a language model is i64 [N, T] for logits [N, T, V]).  None for
    any other form."""
    def flatten_args(x):
        if isinstance(x, A.Call) and isinstance(x.func, A.Name) and x.func.id == "flatten" and not x.kwargs \
                and x.args and all(isinstance(a, A.Literal) and isinstance(a.value, int) for a in x.args[1:]):
            return x.args[0], [a.value for a in x.args[1:]]
        return None
    t, i = flatten_args(target), flatten_args(input_expr)
    if t is None or i is None or not (isinstance(t[0], A.Name) and t[0].id in LABEL_NAMES):
        return None
    if t[1] != [0] or len(i[1]) != 2 or i[1][0] != 0:
        return None
    k = i[1][1] % rank if i[1][1] < 0 else i[1][1]
    return k + 1 if 0 <= k < rank - 1 else None


def _frame(module, graph: Graph, mode: str, bind: dict | None, block: str):
    from . import blocks  # noqa: F401  (module import order: blocks registers the elaborator's helpers)
    from .elaborate import Context, Frame
    ctx = Context(graph, mode)
    ctx.overrides = {k: v for k, v in (bind or {}).items() if k in module.consts}
    return ctx, Frame(ctx, module, "", graph, block)


def _scalar_loss(value, expr, what: str = "the loss") -> Value:
    if not isinstance(value, Value):
        raise DlcTypeError(f"{what} must be a tensor expression", expr.span)
    if value.type.shape != ():
        raise DlcTypeError(f"{what} must be a scalar, got {value.type}", expr.span,
                           "use a reduction, e.g. reduction=\"mean\", or mean(...)")
    return value


def loss_graph(module, model: str, loss_expr, forward: Graph, mode: str, bind: dict | None = None,
               bindings: list = ()) -> Graph:
    """The loss as a graph over `forward`'s outputs (``out:<name>``; `output`
    is the first), its inputs (`input` is the first) and `label`/`target`
    when the loss names one.  `bindings` are the section's helper
    assignments, evaluated first."""
    g = Graph(f"{model}.loss", mode=mode, span=loss_expr.span)
    ctx, frame = _frame(module, g, mode, bind, model)
    for name, v in zip(forward.output_names, forward.outputs):
        frame.env[name] = g.add_input(f"out:{name}", v.type)
    frame.env["output"] = frame.env[forward.output_names[0]]
    for v in forward.inputs:
        frame.env[v.name] = g.add_input(v.name, v.type)
    frame.env["input"] = frame.env[forward.inputs[0].name]
    if mentions(loss_expr, LABEL_NAMES):
        frame.env["label"] = frame.env["target"] = g.add_input("label", label_type(loss_expr, forward.outputs[0]))
    for name, expr in bindings:
        frame.env[name] = frame.eval(expr)
    loss = _scalar_loss(frame.eval(loss_expr), loss_expr)
    g.outputs, g.output_names = [loss], ["loss"]
    g.layers = ctx.layers
    return g


def loss_spec(module, model: str, loss_expr, bind: dict | None = None, bindings: list = ()) -> LossSpec:
    """The section's loss in both modes, over the model elaborated with `bind`."""
    from .blocks import elaborate_model
    forward = elaborate_model(module, model, "eval", bind)
    return LossSpec(*(loss_graph(module, model, loss_expr, forward, mode, bind, bindings)
                      for mode in ("train", "eval")))


def step_graph(module, main_model: str, bindings: list, step_name: str, loss_expr, span, bind: dict | None = None,
               main: Graph | None = None) -> Graph:
    """The loss of one `step` of a multi-model section (a GAN), in train mode.

    Every model called in the section is applied by name and shares one set
    of weights across calls and steps: parameters are named
    `<Model>.<param>`.  `bindings` (z = randn(...)) are evaluated in the
    step's graph; `input` is the main model's first input."""
    from .blocks import elaborate_model
    main = main if main is not None else elaborate_model(module, main_model, "eval", bind)
    g = Graph(f"{main_model}.{step_name}", mode="train", span=span)
    ctx, frame = _frame(module, g, "train", bind, f"<step {step_name}>")
    ctx.share_models = True
    for v in main.inputs:
        frame.env[v.name] = g.add_input(v.name, v.type)
    frame.env["input"] = g.inputs[0]
    for k in main.dims:
        frame.env.setdefault(k, Dim.symbol(k))
    for name, expr in bindings:
        frame.env[name] = frame.eval(expr)
    loss = _scalar_loss(frame.eval(loss_expr), loss_expr, "a step's loss")
    g.outputs, g.output_names = [loss], ["loss"]
    g.layers = ctx.layers
    return g


__all__ = ["loss_graph", "loss_spec", "step_graph", "label_type", "mentions", "children"]
