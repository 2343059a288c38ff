"""The generated module's `__init__`: which planned layer owns each parameter,
and the statements building dlc's module tree (`Scope` containers, torch
layers, parameters and buffers in dlc's parameter order, each initialised as
dlc's `Init` says)."""
from __future__ import annotations

from ...compiler.dims import Dim
from ...compiler.ir import Graph, Value
from ...compiler.types import DType
from .funcgen import _comment_text
from .lowering import render, torch_dtype
from .modgen_layers import _Layer
from .modgen_names import _last, _parent, _Paths, SCOPE_CLASS

_INITS = {
    "normal": ("nn.init.normal_", (("mean", 0.0), ("std", 1.0))),
    "uniform": ("nn.init.uniform_", (("low", 0.0, "a"), ("high", 1.0, "b"))),
    "trunc_normal": ("nn.init.trunc_normal_", (("mean", 0.0), ("std", 1.0), ("a", -2.0), ("b", 2.0))),
    "xavier_uniform": ("nn.init.xavier_uniform_", (("gain", 1.0),)),
    "xavier_normal": ("nn.init.xavier_normal_", (("gain", 1.0),)),
    "kaiming_uniform": ("nn.init.kaiming_uniform_", (("a", 0.0), ("mode", "fan_in"),
                                                     ("nonlinearity", "leaky_relu"))),
    "kaiming_normal": ("nn.init.kaiming_normal_", (("a", 0.0), ("mode", "fan_in"),
                                                   ("nonlinearity", "leaky_relu"))),
    "orthogonal": ("nn.init.orthogonal_", (("gain", 1.0),)),
}


def _init_expr(p: Value) -> str:
    """A tensor expression initialised as dlc's `Init` says (same distribution,
    torch's generator): ``nn.init.xavier_uniform_(torch.empty(256, 72))``."""
    shape = tuple(int(d) if not isinstance(d, Dim) else d for d in p.type.shape)
    size = render(shape)
    dt = "" if p.type.dtype == DType.f32 else f", dtype={torch_dtype(p.type.dtype)}"
    init = p.param.init if p.param is not None else None
    kind = init.kind if init is not None else "zeros"
    k = init.kwargs() if init is not None else {}
    if kind == "zeros" or (kind not in _INITS and kind not in ("ones", "constant")):
        return f"torch.zeros({size}{dt})"
    if kind == "ones":
        return f"torch.ones({size}{dt})"
    if kind == "constant":
        return f"torch.full({size}, {render(k.get('value', 0.0))}{dt})"
    fn, spec = _INITS[kind]
    kws = []
    for item in spec:
        key, default = item[0], item[1]
        name = item[2] if len(item) > 2 else key
        v = k.get(key, default)
        if v != default:
            kws.append(f"{name}={render(v)}")
    expr = f"{fn}(torch.empty({size}{dt}){''.join(', ' + s for s in kws)})"
    if k.get("padding_idx") is not None:
        expr = f"{expr}.index_fill(0, torch.tensor([{int(k['padding_idx'])}]), 0.0)"
    return expr



def _span_text(span) -> str:
    if span is None:
        return "?"
    return f"{_comment_text(span.file)}:{int(span.line)}"


def _owned_layers(g: Graph, plans: list[_Layer]) -> tuple[list[_Layer], dict[str, _Layer]]:
    """The planned layers that stay modules, and which of them owns each parameter.

    A layer whose path is also a container for something else (a shared
    prefix) stays functional; dropping it can free another, so this repeats
    until no path clashes."""
    while True:
        owner: dict[str, _Layer] = {}
        for plan in plans:
            for pname in plan.record.params:
                owner[pname] = plan
        layer_paths = {plan.name: plan for plan in plans}
        clash = set()
        for p in g.params:
            path = owner[p.name].name if p.name in owner else _parent(p.name)
            segs = path.split(".") if path else []
            for i in range(len(segs)):
                prefix = ".".join(segs[:i + 1])
                if prefix in layer_paths and (p.name not in owner or owner[p.name].name != prefix):
                    clash.add(prefix)
        for name, plan in layer_paths.items():
            if any(p.name == name for p in g.params):
                clash.add(name)
        if not clash:
            return plans, owner
        plans = [p for p in plans if p.name not in clash]


def _init_statements(g: Graph, paths: _Paths, owner: dict[str, _Layer]) -> tuple[list[str], dict[str, str]]:
    """__init__'s body (containers, layers and parameters in dlc's parameter
    order) and the source expression of every parameter and buffer."""
    init: list[str] = []
    made: set[str] = {""}
    done: set[str] = set()
    param_src: dict[str, str] = {}

    def ensure(path: str) -> None:
        if path in made:
            return
        ensure(_parent(path))
        init.append(paths.register(_parent(path), _last(path), f"{SCOPE_CLASS}()", "module"))
        made.add(path)

    for p in g.params:
        plan = owner.get(p.name)
        if plan is not None:
            param_src[p.name] = paths.expr(plan.name) + "".join(
                paths.step(s) for s in p.name[len(plan.name) + 1:].split("."))
            if plan.name in done:
                continue
            done.add(plan.name)
            ensure(_parent(plan.name))
            init.append(paths.register(_parent(plan.name), _last(plan.name), plan.ctor, "module")
                        + f"  # {_comment_text(plan.record.kind)} @ {_span_text(plan.record.span)}")
            made.add(plan.name)
            continue
        parent = _parent(p.name)
        ensure(parent)
        value = _init_expr(p)
        if p.kind == "buffer":
            init.append(paths.register(parent, _last(p.name), value, "buffer"))
        else:
            trainable = p.param is None or p.param.trainable
            value = f"nn.Parameter({value}{'' if trainable else ', requires_grad=False'})"
            init.append(paths.register(parent, _last(p.name), value, "param"))
        param_src[p.name] = paths.expr(p.name)
    return init, param_src
