"""The training program: forward, loss, backward and optimizer update as one
IR graph, built from a model and its `train` section.

    step = build_train_step(module, "MLP", settings)
    # inputs : model inputs, `label`, optimizer state "<state>.<param>", `lr`, `step`
    # params : the model's parameters and buffers
    # outputs: loss, the model outputs, "param:<name>" and "state:<state>.<param>"
    # state_updates: batch-norm running statistics

Because the whole step is IR it runs on whichever backend runs IR.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..errors import DlcError, DlcTypeError, Span
from .autodiff import grad
from .builder import Builder
from .ir import Graph, Value
from .types import DType, TensorType


@dataclass
class TrainSettings:
    """What a `train` section declares (command-line flags may override)."""

    loss: Any = None                       # AST expression
    optimizer: str = "adam"
    optimizer_args: dict = field(default_factory=dict)
    schedule: str = "constant"
    schedule_args: dict = field(default_factory=dict)
    epochs: int = 10
    batch: int = 32
    seed: int = 0
    shuffle: bool = True
    drop_last: bool = False                # skip a short last batch, as torch's DataLoader(drop_last=True)
    l1: float = 0.0
    l2: float = 0.0
    clip_grad_norm: float | None = None
    clip_grad_value: float | None = None
    early_stopping: int | None = None
    dataset: str | None = None
    augment: list = field(default_factory=list)
    steps: list = field(default_factory=list)       # StepSpec, for alternating updates
    bindings: list = field(default_factory=list)    # (name, AST) helper assignments
    span: Span | None = None


@dataclass
class TrainStep:
    graph: Graph
    loss: Value
    label: Value | None
    outputs: list[str]
    params: list[Value]
    state_names: dict[str, list[str]]   # param name -> its optimizer state names


def label_type(loss_expr, outputs: dict[str, Value]) -> TensorType:
    """The type of `label`: class indices when it feeds a classification loss,
    otherwise the type of the first output."""
    from ..frontend import ast as A
    first = next(iter(outputs.values()))
    stack = [loss_expr]
    while stack:
        e = stack.pop()
        if isinstance(e, A.Call):
            fname = e.func.id if isinstance(e.func, A.Name) else None
            if fname in ("cross_entropy", "nll_loss") and len(e.args) > 1 and \
                    isinstance(e.args[1], A.Name) and e.args[1].id in ("label", "target"):
                shape = (first.type.shape[0],) + tuple(first.type.shape[2:])
                return TensorType(DType.i64, shape)
            stack.extend(e.args)
            stack.extend(k.value for k in e.kwargs)
        elif hasattr(e, "__dict__"):
            for v in vars(e).values():
                if isinstance(v, list):
                    stack.extend(v)
                elif hasattr(v, "span"):
                    stack.append(v)
    return first.type


def _mentions(expr, names) -> bool:
    from ..frontend import ast as A
    stack = [expr]
    while stack:
        e = stack.pop()
        if isinstance(e, A.Name) and e.id in names:
            return True
        if hasattr(e, "__dataclass_fields__"):
            for v in vars(e).values():
                if isinstance(v, list):
                    stack.extend(x for x in v if hasattr(x, "__dataclass_fields__"))
                elif hasattr(v, "__dataclass_fields__"):
                    stack.append(v)
    return False


def build_loss(module, model: str, loss_expr, mode: str = "train", bind: dict | None = None):
    """Elaborate the model and its loss expression into one graph."""
    from ..frontend.blocks import elaborate_model
    from ..frontend.elaborate import Context, Frame
    g = elaborate_model(module, model, mode, bind)
    outputs = dict(zip(g.output_names, g.outputs))
    ctx = Context(g, mode)
    frame = Frame(ctx, module, "", g, model)
    frame.env.update(outputs)
    frame.env["output"] = g.outputs[0]
    for v in g.inputs:
        frame.env[v.name] = v
    frame.env["input"] = g.inputs[0]
    label = None
    if _mentions(loss_expr, ("label", "target")):
        label = g.add_input("label", label_type(loss_expr, outputs))
        frame.env["label"] = frame.env["target"] = label
    loss = frame.eval(loss_expr)
    if not isinstance(loss, Value):
        raise DlcTypeError("the loss must be a tensor expression", loss_expr.span)
    if loss.type.shape != ():
        raise DlcTypeError(f"the loss must be a scalar, got {loss.type}", loss_expr.span,
                           "use a reduction, e.g. reduction=\"mean\", or mean(...)")
    return g, loss, label


def build_train_step(module, model: str, settings: TrainSettings, bind: dict | None = None) -> TrainStep:
    from .optim import make_optimizer
    g, loss, label = build_loss(module, model, settings.loss, "train", bind)
    b = Builder(g, settings.span)
    params = g.trainable_params()
    total = loss
    for p in params:
        if not p.name.endswith("weight") and p.kind != "param":
            continue
        if settings.l2 and p.name.endswith("weight"):
            pen = b.op("sum", b.op("square", p), axis=None, keepdims=False)
            total = b.op("add", total, b.op("mul", pen, b.const(settings.l2, p.type.dtype)))
        if settings.l1 and p.name.endswith("weight"):
            pen = b.op("sum", b.op("abs", p), axis=None, keepdims=False)
            total = b.op("add", total, b.op("mul", pen, b.const(settings.l1, p.type.dtype)))
    grads = grad(g, total, params, settings.span)
    grads = [gr if gr is not None else b.op("full", shape=p.type.shape, value=0.0, dtype=p.type.dtype.numpy_name)
             for gr, p in zip(grads, params)]
    if settings.clip_grad_value is not None:
        c = settings.clip_grad_value
        grads = [b.op("maximum", b.op("minimum", gr, b.const(c, gr.type.dtype)), b.const(-c, gr.type.dtype))
                 for gr in grads]
    if settings.clip_grad_norm is not None and grads:
        # torch.nn.utils.clip_grad_norm_: scale by min(1, max_norm / (norm + 1e-6))
        dt = grads[0].type.dtype
        sq = None
        for gr in grads:
            s = b.op("sum", b.op("square", gr), axis=None, keepdims=False)
            sq = s if sq is None else b.op("add", sq, s)
        norm = b.op("sqrt", sq)
        coef = b.op("div", b.const(settings.clip_grad_norm, dt), b.op("add", norm, b.const(1e-6, dt)))
        coef = b.op("minimum", coef, b.const(1.0, dt))
        grads = [b.op("mul", gr, coef) for gr in grads]
    opt = make_optimizer(settings.optimizer, **settings.optimizer_args)
    dt = params[0].type.dtype if params else DType.f32
    lr = g.add_input("lr", TensorType(dt, ()))
    step = g.add_input("step", TensorType(dt, ()))
    outs, names = [loss] + list(g.outputs), ["loss"] + list(g.output_names)
    state_names: dict[str, list[str]] = {}
    for p, gr in zip(params, grads):
        state = {}
        state_names[p.name] = []
        for sname, stype, _fill in opt.state_specs(p.type):
            full = f"{sname}.{p.name}"
            state[sname] = g.add_input(full, stype)
            state_names[p.name].append(full)
        new_p, new_state = opt.update(b.at(p.param.span), p, gr, state, lr, step)
        outs.append(new_p)
        names.append(f"param:{p.name}")
        for sname, v in new_state.items():
            outs.append(v)
            names.append(f"state:{sname}.{p.name}")
    g.outputs, g.output_names = outs, names
    # VJP rules build cotangents for every operand; drop those nothing uses
    # (e.g. the gradient with respect to the input images)
    from .clone import prune
    prune(g)
    return TrainStep(g, loss, label, names, params, state_names)


def state_fill(settings: TrainSettings, params: list[Value]) -> dict[str, tuple]:
    """Initial optimizer state: name -> (shape, dtype, fill value)."""
    from .optim import make_optimizer
    opt = make_optimizer(settings.optimizer, **settings.optimizer_args)
    out = {}
    for p in params:
        for sname, stype, fill in opt.state_specs(p.type):
            out[f"{sname}.{p.name}"] = (stype, fill)
    return out


__all__ = ["TrainSettings", "TrainStep", "build_loss", "build_train_step", "state_fill", "DlcError"]


# ------------------------------------------------------------ alternating steps
@dataclass
class StepSpec:
    """One `step name { loss = ...; optimizer = ...; params = [Model] }` section."""

    name: str
    loss: Any
    optimizer: str
    optimizer_args: dict
    params: list[str]            # model names (or parameter-name prefixes) updated by this step
    span: Span | None = None


def build_alternating(module, main_model: str, bindings: list, steps: list[StepSpec], bind: dict | None = None):
    """One training graph per step of a multi-model train section (a GAN).

    Every model called in the section is applied by name and shares one set of
    weights across calls and steps: parameters are named `<Model>.<param>`.
    `bindings` are the section's helper assignments (z = randn(...)), evaluated
    in each step's graph.  `input` is the main model's first input.
    """
    from ..frontend.blocks import elaborate_model
    from ..frontend.elaborate import Context, Frame
    from .optim import make_optimizer
    main = elaborate_model(module, main_model, "eval", bind)
    out = []
    for st in steps:
        g = Graph(f"{main_model}.{st.name}", mode="train", span=st.span)
        ctx = Context(g, "train")
        ctx.share_models = True
        ctx.overrides = {k: v for k, v in (bind or {}).items() if k in module.consts}
        frame = Frame(ctx, module, "", g, f"<step {st.name}>")
        for v in main.inputs:
            x = g.add_input(v.name, v.type)
            frame.env[v.name] = x
        frame.env["input"] = g.inputs[0]
        for k, d in main.dims.items():
            from .dims import Dim
            frame.env.setdefault(k, Dim.symbol(k))
        for name, expr in bindings:
            frame.env[name] = frame.eval(expr)
        loss = frame.eval(st.loss)
        if not isinstance(loss, Value) or loss.type.shape != ():
            raise DlcError("a step's loss must be a scalar tensor", st.loss.span)
        chosen = [p for p in g.trainable_params() if any(p.name.startswith(m + ".") for m in st.params)]
        if not chosen:
            raise DlcError(f"step {st.name}: no parameters of {', '.join(st.params)} take part in its loss", st.span)
        grads = grad(g, loss, chosen, st.span)
        b = Builder(g, st.span)
        opt = make_optimizer(st.optimizer, **st.optimizer_args)
        dt = chosen[0].type.dtype
        lr = g.add_input("lr", TensorType(dt, ()))
        step = g.add_input("step", TensorType(dt, ()))
        outs, names, state_names = [loss], ["loss"], {}
        for p, gr in zip(chosen, grads):
            gr = gr if gr is not None else b.op("full", shape=p.type.shape, value=0.0, dtype=p.type.dtype.numpy_name)
            state, state_names[p.name] = {}, []
            for sname, stype, _ in opt.state_specs(p.type):
                full = f"{st.name}/{sname}.{p.name}"
                state[sname] = g.add_input(full, stype)
                state_names[p.name].append(full)
            new_p, new_state = opt.update(b, p, gr, state, lr, step)
            outs.append(new_p)
            names.append(f"param:{p.name}")
            for sname, v in new_state.items():
                outs.append(v)
                names.append(f"state:{st.name}/{sname}.{p.name}")
        g.outputs, g.output_names = outs, names
        from .clone import prune
        prune(g)
        out.append((st, TrainStep(g, loss, None, names, chosen, state_names), opt))
    return out


def build_loss_only(module, model: str, loss_expr, bind: dict | None = None) -> Graph:
    """The loss alone, as a graph over the model's outputs (by name), its inputs and
    `label`: what a framework backend evaluates after its own forward pass."""
    from ..frontend.blocks import elaborate_model
    from ..frontend.elaborate import Context, Frame
    fwd = elaborate_model(module, model, "train", bind)
    g = Graph(f"{model}.loss", mode="train", span=getattr(loss_expr, "span", None))
    ctx = Context(g, "train")
    frame = Frame(ctx, module, "", g, model)
    for name, v in zip(fwd.output_names, fwd.outputs):
        frame.env[name] = g.add_input(f"out:{name}", v.type)
    frame.env["output"] = frame.env[fwd.output_names[0]]
    for v in fwd.inputs:
        frame.env[v.name] = g.add_input(v.name, v.type)
    frame.env["input"] = frame.env[fwd.inputs[0].name]
    if _mentions(loss_expr, ("label", "target")):
        outs = dict(zip(fwd.output_names, fwd.outputs))
        frame.env["label"] = frame.env["target"] = g.add_input("label", label_type(loss_expr, outs))
    loss = frame.eval(loss_expr)
    g.outputs, g.output_names = [loss], ["loss"]
    return g
