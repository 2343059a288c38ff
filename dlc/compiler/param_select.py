"""Which parameters train, and how: `freeze` patterns, `param_groups` and
`freeze_bn` of a train section, resolved against a model's parameter names.

Patterns are fnmatch patterns over dlc's parameter names (``"features.*"``,
``"layer1.*"``, ``"fc.weight"``), the names of the weights file and of
torch's ``named_parameters()``.  A pattern that matches nothing is an error
(a typo would otherwise silently train or freeze the wrong layers), and so
is a parameter matched by two groups (torch.optim refuses it too).

    resolve(spec, [p.name for p in g.trainable_params()])   # fills spec.frozen, spec.group_of
    freeze_batchnorms(g, spec)    # before build_train_step: frozen blocks' batch norms in eval mode
"""
from __future__ import annotations

from fnmatch import fnmatchcase

from ..errors import DlcValueError
from .ir import Graph
from .trainspec import TrainSpec

# what a group may set besides `match`: any optimizer argument but these
NOT_PER_GROUP = {"nesterov", "amsgrad", "centered"}


def matching(names: list[str], pattern: str) -> list[str]:
    return [n for n in names if fnmatchcase(n, pattern)]


def resolve(spec: TrainSpec, names: list[str], extra_freeze: tuple = ()) -> None:
    """Fill `spec.frozen` and `spec.group_of` from the patterns, for the
    trainable parameters `names`; `extra_freeze` are --freeze patterns."""
    patterns = list(spec.freeze) + [p for p in extra_freeze if p not in spec.freeze]
    spec.freeze = patterns
    frozen: set[str] = set()
    for pat in patterns:
        hit = matching(names, pat)
        if not hit:
            raise DlcValueError(f"freeze pattern \"{pat}\" matches no parameter", spec.span,
                                _names_hint(names))
        frozen.update(hit)
    spec.frozen = frozen
    group_of: dict[str, int] = {}
    for k, grp in enumerate(spec.param_groups, start=1):
        hit = matching(names, grp.match)
        if not hit:
            raise DlcValueError(f"param_groups: \"{grp.match}\" matches no parameter", grp.span or spec.span,
                                _names_hint(names))
        for n in hit:
            if n in group_of:
                first = spec.param_groups[group_of[n] - 1].match
                raise DlcValueError(f"param_groups: parameter '{n}' is matched by \"{first}\" and by "
                                    f"\"{grp.match}\"", grp.span or spec.span,
                                    "make the patterns disjoint: a parameter belongs to one group")
            group_of[n] = k
    spec.group_of = group_of


def _names_hint(names: list[str]) -> str:
    shown = ", ".join(names[:8]) + (", ..." if len(names) > 8 else "")
    return f"parameters: {shown} (fnmatch patterns, e.g. \"features.*\")"


def frozen_batchnorms(g: Graph, spec: TrainSpec) -> list[str]:
    """Layer names (``features.1``) of the batch norms whose parameters are all
    frozen (for one without affine parameters: whose name a freeze pattern
    matches as ``<layer>.*``)."""
    out = []
    for node in g.nodes:
        if node.op.name != "batch_norm" or node.inputs[1] is None:
            continue
        layer = node.inputs[1].name.rsplit(".", 1)[0]
        affine = [v.name for v in node.inputs[3:5] if v is not None]
        if affine:
            if all(spec.is_frozen(n) for n in affine):
                out.append(layer)
        elif any(fnmatchcase(layer + ".weight", p) for p in spec.freeze):
            out.append(layer)
    return out


def freeze_batchnorms(g: Graph, spec: TrainSpec) -> list[str]:
    """With `freeze_bn`: the frozen blocks' batch norms of train-mode graph
    `g` normalise by their running statistics and leave them unchanged (as
    ``module.eval()`` on them in a torch fine-tuning recipe).  Returns their
    layer names."""
    if not spec.freeze_bn:
        return []
    layers = set(frozen_batchnorms(g, spec))
    for node in g.nodes:
        if node.op.name == "batch_norm" and node.inputs[1] is not None \
                and node.inputs[1].name.rsplit(".", 1)[0] in layers and node.attrs.get("training"):
            node.attrs = {**node.attrs, "training": False}
            for buf in ("running_mean", "running_var", "num_batches_tracked"):
                g.state_updates.pop(f"{node.inputs[1].name.rsplit('.', 1)[0]}.{buf}", None)
    return sorted(layers)


__all__ = ["NOT_PER_GROUP", "matching", "resolve", "frozen_batchnorms", "freeze_batchnorms"]
