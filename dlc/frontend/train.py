"""The `train` section: parsed and checked here, executed by `dlc train`.

    train LeNet5 on digits {
        loss      = cross_entropy(output, label)
        optimizer = adam(lr=1e-3, weight_decay=1e-4)
        schedule  = cosine(T_max=20)
        epochs    = 20
        batch     = 64
    }

Checked: known keys, known optimizers/schedules/datasets with their argument
names, positive sizes, and that the loss only names model outputs, inputs,
`label`, models and functions.  Several `step` sections declare alternating
updates (a GAN's discriminator and generator).
"""
from __future__ import annotations

from ..errors import DlcNameError, DlcTypeError, DlcValueError
from . import ast as A
from .trainloss import children
from .values import BlockValue

# One definition each: the optimizer and schedule tables (names, arguments,
# torch's defaults) live beside their implementations in the compiler, and the
# data-set names beside their loaders in the runtime.
from ..compiler.optim import DEFAULTS as OPTIMIZERS  # noqa: E402
from ..compiler.schedules import DEFAULTS as SCHEDULES  # noqa: E402
from ..runtime.data import DATASETS as _DATASET_NAMES  # noqa: E402

DATASETS = set(_DATASET_NAMES)
AUGMENTS = {"random_crop": {"size": None, "padding": 0}, "hflip": {"p": 0.5}}
INT_KEYS = {"epochs", "batch", "steps", "seed", "patience", "every"}
FLOAT_KEYS = {"l1", "l2", "weight_decay", "clip_grad_norm", "clip_grad_value", "split", "val_split"}
BOOL_KEYS = {"shuffle", "drop_last", "freeze_bn"}
OTHER_KEYS = {"loss", "optimizer", "schedule", "metrics", "augment", "params", "early_stopping", "data",
              "weights", "freeze", "param_groups"}
KEYS = INT_KEYS | FLOAT_KEYS | BOOL_KEYS | OTHER_KEYS


def check_train(mod, t: A.TrainDef) -> None:
    model = mod.defs.get(t.model)
    if not isinstance(model, BlockValue) or model.has_cparams:
        raise DlcNameError(f"train names an unknown model '{t.model}'", t.span,
                           "models: " + (", ".join(mod.models) or "none"))
    if t.dataset is not None and t.dataset not in DATASETS:
        raise DlcNameError(f"unknown data set '{t.dataset}'", t.span, "data sets: " + ", ".join(sorted(DATASETS)))
    allowed = {"output", "label", "target", "input"} | {p.name for p in model.defn.params}
    allowed |= set(mod.defs) | {n for n in mod.models} | set(mod.consts)  # file constants are in scope
    for s in model.defn.body:
        if isinstance(s, A.Return):
            allowed |= {v.id for v in s.values if isinstance(v, A.Name)}
    _check_body(mod, t.body, allowed, top=True, span=t.span)


def _check_body(mod, body, allowed: set, top: bool, span=None) -> None:
    seen: set[str] = set()
    local = set(allowed)
    has_steps = any(isinstance(s, A.Step) for s in body)
    for s in body:
        if isinstance(s, A.Step):
            if not top:
                raise DlcTypeError("steps cannot be nested", s.span, "put every step directly in the train section")
            _check_body(mod, s.body, local, top=False, span=s.span)
            continue
        if not isinstance(s, A.Assign) or len(s.targets) != 1 or s.targets[0].name is None:
            raise DlcTypeError("a train section holds `key = value` settings and `step` sections", s.span,
                               "e.g. `epochs = 10` or `optimizer = adam(lr=1e-3)`")
        key = s.targets[0].name
        if key in seen:
            raise DlcNameError(f"'{key}' is set twice", s.span, "remove one of the settings")
        seen.add(key)
        if key not in KEYS:
            # a local helper binding (e.g. z = randn(batch, 100)) usable in losses
            _check_names(s.value, local)
            local.add(key)
            continue
        _check_setting(key, s.value, local)
    if not has_steps and "loss" not in seen:
        raise DlcTypeError("the train section declares no loss", body[0].span if body else span,
                           "add e.g. `loss = cross_entropy(output, label)`")


def _literal(e):
    if isinstance(e, A.Literal):
        return e.value
    if isinstance(e, A.Neg) and isinstance(e.operand, A.Literal) and isinstance(e.operand.value, (int, float)):
        return -e.operand.value
    if isinstance(e, (A.TupleLit, A.ListLit)):
        return tuple(_literal(x) for x in e.items)
    return e


def _check_setting(key: str, e, names: set) -> None:
    v = _literal(e)
    if key in INT_KEYS:
        if isinstance(v, bool) or not isinstance(v, int):
            raise DlcTypeError(f"{key} must be an integer", e.span, f"write e.g. `{key} = 10`")
        if v <= 0 and key != "seed":
            raise DlcValueError(f"{key} must be positive, got {v}", e.span, f"write e.g. `{key} = 10`")
    elif key in FLOAT_KEYS:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0:
            raise DlcTypeError(f"{key} must be a non-negative number", e.span, f"write e.g. `{key} = 0.1`")
    elif key in BOOL_KEYS:
        if not isinstance(v, bool):
            raise DlcTypeError(f"{key} must be true or false", e.span, f"write `{key} = true` or `{key} = false`")
    elif key == "optimizer":
        _check_call(e, OPTIMIZERS, "optimizer")
    elif key == "schedule":
        _check_call(e, SCHEDULES, "schedule")
    elif key == "augment":
        items = e.items if isinstance(e, A.ListLit) else [e]
        for it in items:
            _check_call(it, AUGMENTS, "augmentation")
    elif key == "loss":
        _check_names(e, names)
    elif key == "early_stopping":
        if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
            raise DlcTypeError("early_stopping is a patience in epochs (a positive int)", e.span,
                               "write e.g. `early_stopping = 5`")
    elif key == "params":
        items = e.items if isinstance(e, (A.ListLit, A.TupleLit)) else [e]
        for it in items:
            if not isinstance(it, A.Name) and not (isinstance(it, A.Literal) and isinstance(it.value, str)):
                raise DlcTypeError("params names models or parameter-name patterns", it.span,
                                   "e.g. `params = [Generator]` or `params = [\"fc.*\"]`")
    elif key in ("weights", "freeze", "param_groups"):
        from .train_transfer import check_transfer_setting
        check_transfer_setting(key, e)
    elif key == "metrics":
        items = e.items if isinstance(e, A.ListLit) else [e]
        for it in items:
            if not (isinstance(it, A.Literal) and it.value in ("accuracy", "loss", "mse", "mae")):
                raise DlcValueError("metrics are \"accuracy\", \"loss\", \"mse\", \"mae\"", it.span,
                                    "e.g. `metrics = [\"accuracy\"]`")


def _check_call(e, table: dict, what: str) -> None:
    if isinstance(e, A.Name):
        name, kwargs, args = e.id, [], []
    elif isinstance(e, A.Call) and isinstance(e.func, A.Name):
        name, kwargs, args = e.func.id, e.kwargs, e.args
    else:
        raise DlcTypeError(f"the {what} must be a call like {next(iter(table))}(...)", e.span,
                           f"{what}s: " + ", ".join(table))
    if name not in table:
        raise DlcNameError(f"unknown {what} '{name}'", e.span, f"{what}s: " + ", ".join(table))
    schema = table[name]
    if len(args) > len(schema):
        raise DlcTypeError(f"{name} takes at most {len(schema)} arguments", e.span,
                           f"its arguments: {', '.join(schema) or 'none'}")
    given = set(list(schema)[:len(args)])
    for kw in kwargs:
        if kw.name not in schema:
            raise DlcNameError(f"{name} has no argument '{kw.name}'", kw.span,
                               f"its arguments: {', '.join(schema) or 'none'}")
        given.add(kw.name)
        v = _literal(kw.value)
        if kw.name in ("lr", "max_lr", "eps") and isinstance(v, (int, float)) and not isinstance(v, bool) and v <= 0:
            raise DlcValueError(f"{kw.name} must be positive, got {v}", kw.value.span,
                                f"a typical value is {kw.name}=1e-3")
    for k, d in schema.items():
        if d is None and k not in given and not (name == "onecycle" and k == "total_steps") \
                and not (name == "cosine" and k == "T_max"):
            raise DlcTypeError(f"{name} needs the argument '{k}'", e.span, f"write e.g. {name}({k}=...)")


def _check_names(e, names: set) -> None:
    from .builtins import BUILTINS
    if isinstance(e, A.Name):
        if e.id not in names and e.id not in BUILTINS:
            raise DlcNameError(f"unknown name '{e.id}' in the train section", e.span,
                               "a loss may use the model's outputs (or `output`), `label`, inputs and models")
        return
    for child in children(e):
        _check_names(child, names)


# ------------------------------------------------------------------ settings
def train_settings(mod, t: A.TrainDef, bind: dict | None = None):
    """Check a train section and describe it for the compiler: a
    `compiler.trainspec.TrainSpec`, its losses elaborated to IR over the
    model as `bind` sizes it."""
    from ..compiler.ir import Graph
    from ..compiler.trainspec import TrainSpec
    from .blocks import elaborate_model
    from .elaborate import Context, Frame
    from .trainloss import loss_spec
    check_train(mod, t)
    ctx = Context(Graph("<train>"), "eval")
    ctx.overrides = {k: v for k, v in (bind or {}).items() if k in mod.consts}
    frame = Frame(ctx, mod, "", ctx.root, "<train>")
    s = TrainSpec(model=t.model, dataset=t.dataset, span=t.span)
    loss_expr, bindings = section_loss(t)
    steps = [st for st in t.body if isinstance(st, A.Step)]
    for st in t.body:
        if isinstance(st, A.Assign) and st.targets[0].name in KEYS and st.targets[0].name != "loss":
            _setting(s, frame, st.targets[0].name, st.value)
    if s.param_groups:
        from .train_transfer import check_group_args
        check_group_args(s)
    if loss_expr is not None:
        s.loss = loss_spec(mod, t.model, loss_expr, bind, bindings)
    if steps:
        main = elaborate_model(mod, t.model, "eval", bind)
        s.steps = [_step_spec(mod, frame, st, t.model, bindings, bind, main) for st in steps]
    return s


def section_loss(t: A.TrainDef):
    """(the `loss` expression or None, the helper bindings [(name, expr)]) of a train section."""
    loss, bindings = None, []
    for st in t.body:
        if isinstance(st, A.Assign) and st.targets[0].name is not None:
            key = st.targets[0].name
            if key == "loss":
                loss = st.value
            elif key not in KEYS:
                bindings.append((key, st.value))
    return loss, bindings


def _setting(s, frame, key: str, e) -> None:
    """Store one evaluated `key = value` setting in TrainSpec `s`."""
    if key in ("optimizer", "schedule"):
        name, kwargs = _call_parts(frame, e)
        if key == "optimizer":
            s.optimizer, s.optimizer_args = name, kwargs
        else:
            s.schedule, s.schedule_args = name, kwargs
    elif key == "augment":
        items = e.items if isinstance(e, A.ListLit) else [e]
        s.augment = [_call_parts(frame, it) for it in items]
    elif key == "metrics":
        items = e.items if isinstance(e, A.ListLit) else [e]
        s.metrics = [str(it.value) for it in items]
    elif key in ("epochs", "batch", "seed"):
        setattr(s, key, int(frame.eval(e)))
    elif key in ("shuffle", "drop_last", "freeze_bn"):
        setattr(s, key, bool(frame.eval(e)))
    elif key in ("weights", "freeze", "param_groups"):
        from .train_transfer import transfer_setting
        transfer_setting(s, frame, key, e)
    elif key in ("l1", "l2", "clip_grad_norm", "clip_grad_value"):
        setattr(s, key, float(frame.eval(e)))
    elif key == "weight_decay":
        s.optimizer_args.setdefault("weight_decay", float(frame.eval(e)))
    elif key == "early_stopping":
        s.early_stopping = int(frame.eval(e))


def _call_parts(frame, e):
    if isinstance(e, A.Name):
        return e.id, {}
    schema_args = [frame.eval(a) for a in e.args]
    kwargs = {k.name: frame.eval(k.value) for k in e.kwargs}
    name = e.func.id
    table = OPTIMIZERS.get(name) or SCHEDULES.get(name) or AUGMENTS.get(name) or {}
    for k, v in zip(table, schema_args):
        kwargs[k] = v
    kwargs = {k: (list(v) if isinstance(v, list) else v) for k, v in kwargs.items()}
    return name, kwargs


def _step_spec(mod, frame, st: A.Step, model: str, bindings: list, bind, main):
    from ..compiler.trainspec import StepSpec
    from .trainloss import step_graph
    loss, opt, opt_args, params = None, "adam", {}, []
    for a in st.body:
        if not isinstance(a, A.Assign):
            continue
        key, e = a.targets[0].name, a.value
        if key == "loss":
            loss = e
        elif key == "optimizer":
            opt, opt_args = _call_parts(frame, e)
        elif key == "params":
            items = e.items if isinstance(e, (A.ListLit, A.TupleLit)) else [e]
            params = [it.id if isinstance(it, A.Name) else it.value for it in items]
    if loss is None:
        raise DlcTypeError(f"step {st.name} declares no loss", st.span,
                           "add e.g. `loss = bce(output, label)`")
    if not params:
        raise DlcTypeError(f"step {st.name} does not say which parameters it updates", st.span,
                           "add e.g. `params = [Generator]`")
    graph = step_graph(mod, model, bindings, st.name, loss, st.span, bind, main)
    return StepSpec(st.name, graph, opt, opt_args, params, st.span)
