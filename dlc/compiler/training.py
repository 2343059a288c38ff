"""The training program: forward, loss, backward and optimizer update as one
IR graph, built from a model graph and a `TrainSpec` (`compiler.trainspec`,
filled by the frontend from a `train` section).

    step = build_train_step(model_graph, spec)   # model_graph in train mode
    # inputs : model inputs, `label`, optimizer state "<state>.<param>", `lr`, `step`
    # params : the model's parameters and buffers
    # outputs: loss, the model outputs, "param:<name>" and "state:<state>.<param>"
    # state_updates: batch-norm running statistics

Because the whole step is IR it runs on whichever backend runs IR.  Nothing
here reads syntax: the loss arrives as a graph.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import DlcError, DlcNameError, DlcTypeError
from .autodiff import grad
from .builder import Builder
from .clone import clone_into, prune
from .ir import Graph, Value
from .trainspec import LossSpec, StepSpec, TrainSpec
from .types import DType, TensorType

# the name callers have used for a train section's settings
TrainSettings = TrainSpec


@dataclass
class TrainStep:
    graph: Graph
    loss: Value
    label: Value | None
    outputs: list[str]
    params: list[Value]
    state_names: dict[str, list[str]]   # param name -> its optimizer state names


def build_loss(model: Graph, loss: Graph) -> tuple[Graph, Value, Value | None]:
    """`model` with the loss graph `loss` (`LossSpec.graph(mode)`) applied to
    its outputs: one graph, extended in place.  Returns (graph, the loss
    value, the `label` input or None).

    The loss graph's inputs are bound by name: ``out:<name>`` to the model's
    outputs, the others to the model's inputs; ``label`` becomes a new input.
    Parameters the loss creates (a model called inside the loss) join the
    model's; a name both use is an error, as in one elaboration."""
    outs = dict(zip(model.output_names, model.outputs))
    ins = {v.name: v for v in model.inputs}
    vmap: dict[int, Value] = {}
    label = None
    for v in loss.inputs:
        if v.name == "label":
            src = label = model.add_input("label", v.type)
        elif v.name.startswith("out:"):
            src = outs.get(v.name[4:])
        else:
            src = ins.get(v.name)
        if src is None or src.type != v.type:
            what = f"output '{v.name[4:]}'" if v.name.startswith("out:") else f"input '{v.name}'"
            got = "none" if src is None else str(src.type)
            raise DlcTypeError(f"the loss reads the model's {what} as {v.type}, the model gives {got}",
                               loss.span, "build the loss and the model with the same --bind")
        vmap[v.id] = src
    taken = {p.name for p in model.params}
    for p in loss.params:
        if p.name in taken:
            raise DlcNameError(f"parameter name '{p.name}' is used twice", p.param.span if p.param else loss.span,
                               "give one of the layers another name with name=\"...\"")
        model.params.append(p)
    (value,) = clone_into(loss, model, vmap)
    for name, v in loss.state_updates.items():
        model.state_updates[name] = vmap.get(v.id, v)
    model.layers.extend(loss.layers)
    return model, value, label


def build_train_step(model: Graph, settings: TrainSpec, loss_scaling: bool = False) -> TrainStep:
    """The training step of `model` (its graph in train mode, extended in
    place) under `settings`: loss, penalties, gradients, clipping and the
    optimizer update.  `loss_scaling`: dynamic loss scaling for fp16
    (`compiler.loss_scale`: a `loss_scale` input, a skipped non-finite step)."""
    from . import loss_scale as ls
    from .optim import make_optimizer
    if settings.loss is None:
        raise DlcError("this train section has no single loss (it declares steps)", settings.span)
    from .param_select import freeze_batchnorms
    freeze_batchnorms(model, settings)
    g, loss, label = build_loss(model, settings.loss.graph("train"))
    b = Builder(g, settings.span)
    # frozen parameters are no inputs of the differentiation: the backward
    # work that only fed their gradients is never built
    params = [p for p in g.trainable_params() if not settings.is_frozen(p.name)]
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
    scale = ls.scale_input(g) if loss_scaling else None
    grads = grad(g, total if scale is None else b.op("mul", total, scale), params, settings.span)
    grads = [gr if gr is not None else b.op("full", shape=p.type.shape, value=0.0, dtype=p.type.dtype.numpy_name)
             for gr, p in zip(grads, params)]
    if scale is not None:
        grads, nonfinite = ls.unscale(b, grads, scale)
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
    dt = params[0].type.dtype if params else DType.f32
    lr = g.add_input("lr", TensorType(dt, ()))
    step = g.add_input("step", TensorType(dt, ()))
    # one learning-rate input per parameter group (`lr_g<k>`), each scheduled by the trainer
    lrs = [lr] + [g.add_input(group_lr_name(k), TensorType(dt, ())) for k in range(1, len(settings.param_groups) + 1)]
    opts = [make_optimizer(settings.optimizer, **settings.optimizer_args)]
    opts += [make_optimizer(settings.optimizer, **{**settings.optimizer_args, **grp.args})
             for grp in settings.param_groups]
    outs, names = [loss] + list(g.outputs), ["loss"] + list(g.output_names)
    state_names: dict[str, list[str]] = {}
    for p, gr in zip(params, grads):
        state = {}
        state_names[p.name] = []
        k = settings.group_of.get(p.name, 0)
        opt = opts[k]
        for sname, stype, _fill in opt.state_specs(p.type):
            full = f"{sname}.{p.name}"
            state[sname] = g.add_input(full, stype)
            state_names[p.name].append(full)
        new_p, new_state = opt.update(b.at(p.param.span), p, gr, state, lrs[k], step)
        outs.append(new_p)
        names.append(f"param:{p.name}")
        for sname, v in new_state.items():
            outs.append(v)
            names.append(f"state:{sname}.{p.name}")
    if scale is not None:
        ls.skip_if_nonfinite(g, b, nonfinite, outs, names)
    g.outputs, g.output_names = outs, names
    # VJP rules build cotangents for every operand; drop those nothing uses
    # (e.g. the gradient with respect to the input images)
    prune(g)
    return TrainStep(g, loss, label, names, params, state_names)


def state_fill(settings: TrainSpec, params: list[Value]) -> dict[str, tuple]:
    """Initial optimizer state: name -> (shape, dtype, fill value)."""
    from .optim import make_optimizer
    out = {}
    for p in params:
        opt = make_optimizer(settings.optimizer, **settings.optimizer_args_for(p.name))
        for sname, stype, fill in opt.state_specs(p.type):
            out[f"{sname}.{p.name}"] = (stype, fill)
    return out


def group_lr_name(k: int) -> str:
    """The step graph's learning-rate input of parameter group `k` (1-based; group 0 is `lr`)."""
    return f"lr_g{k}"


__all__ = ["group_lr_name", "TrainSpec", "TrainSettings", "LossSpec", "StepSpec", "TrainStep", "build_loss", "build_train_step",
           "build_alternating", "state_fill"]


# ------------------------------------------------------------ alternating steps
def build_alternating(steps: list[StepSpec]):
    """One training graph per step of a multi-model train section (a GAN):
    [(step, TrainStep, optimizer)].  Each step's graph (`StepSpec.graph`,
    extended in place) gets the gradients of its loss with respect to the
    parameters of the models it names, and their optimizer update."""
    from .optim import make_optimizer
    out = []
    for st in steps:
        g = st.graph
        loss = g.outputs[0]
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
        prune(g)
        out.append((st, TrainStep(g, loss, None, names, chosen, state_names), opt))
    return out
