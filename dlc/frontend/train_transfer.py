"""The transfer-learning settings of a `train` section:

    weights      = "pretrained.safetensors"        # relative to the spec
    freeze       = ["features.*", "layer1.*"]      # fnmatch patterns of parameter names
    freeze_bn    = true                            # frozen blocks' batch norms in eval mode
    param_groups = [{match = "features.*", lr = 1e-4}, {match = "fc.*", lr = 1e-2, weight_decay = 0}]

Checked here for their form; the patterns are resolved against the model's
parameters by `compiler.param_select` when the run starts.
"""
from __future__ import annotations

from pathlib import Path

from ..compiler.optim import DEFAULTS as OPTIMIZERS
from ..compiler.param_select import NOT_PER_GROUP
from ..compiler.trainspec import ParamGroup
from ..errors import DlcNameError, DlcTypeError, DlcValueError
from . import ast as A

_GROUP_EXAMPLE = '`param_groups = [{match = "features.*", lr = 1e-4}, {match = "fc.*", lr = 1e-2}]`'


def _string(e) -> str | None:
    return e.value if isinstance(e, A.Literal) and isinstance(e.value, str) else None


def check_transfer_setting(key: str, e) -> None:
    if key == "weights":
        if _string(e) is None or not _string(e):
            raise DlcTypeError("weights is the path of a .safetensors file", e.span,
                               'write e.g. `weights = "pretrained.safetensors"` (relative to this spec)')
    elif key == "freeze":
        items = e.items if isinstance(e, (A.ListLit, A.TupleLit)) else [e]
        for it in items:
            if not _string(it):
                raise DlcTypeError("freeze lists parameter-name patterns", it.span,
                                   'write e.g. `freeze = ["features.*", "layer1.*"]`')
    elif key == "param_groups":
        items = e.items if isinstance(e, A.ListLit) else [e]
        for it in items:
            if not isinstance(it, A.RecordLit):
                raise DlcTypeError("param_groups lists groups like {match = \"fc.*\", lr = 1e-2}", it.span,
                                   f"write e.g. {_GROUP_EXAMPLE}")
            _check_group(it)


def _check_group(r: A.RecordLit) -> None:
    seen = set()
    for name, value, span in r.items:
        if name in seen:
            raise DlcNameError(f"'{name}' is set twice in this group", span, "remove one of them")
        seen.add(name)
        if name == "match":
            if not _string(value):
                raise DlcTypeError("match is a parameter-name pattern (a string)", value.span,
                                   'write e.g. `match = "features.*"`')
        elif name == "betas":
            if not (isinstance(value, (A.TupleLit, A.ListLit)) and len(value.items) == 2):
                raise DlcTypeError("betas is a pair of numbers", value.span, "write e.g. `betas = (0.9, 0.999)`")
        elif name in NOT_PER_GROUP:
            raise DlcValueError(f"{name} is set for the whole optimizer, not per group", span,
                                f"set it in `optimizer = ...({name}=...)`")
    if "match" not in seen:
        raise DlcTypeError("a param group needs `match = \"pattern\"`", r.span, f"write e.g. {_GROUP_EXAMPLE}")


def transfer_setting(s, frame, key: str, e) -> None:
    """Store one evaluated transfer setting in TrainSpec `s`."""
    if key == "weights":
        path = Path(_string(e))
        if not path.is_absolute() and s.span is not None and s.span.file:
            path = Path(s.span.file).parent / path
        s.weights = str(path)
    elif key == "freeze":
        items = e.items if isinstance(e, (A.ListLit, A.TupleLit)) else [e]
        s.freeze = [_string(it) for it in items]
    else:
        items = e.items if isinstance(e, A.ListLit) else [e]
        groups = []
        for r in items:
            args = {}
            for name, value, _span in r.items:
                v = frame.eval(value)
                args[name] = tuple(v) if isinstance(v, (list, tuple)) else v
            groups.append(ParamGroup(args.pop("match"), args, r.span))
        s.param_groups = groups


def check_group_args(s) -> None:
    """Each group's arguments are the chosen optimizer's (known once the whole section is read)."""
    from ..compiler.optim import make_optimizer
    schema = OPTIMIZERS[s.optimizer]
    for grp in s.param_groups:
        for name in grp.args:
            if name not in schema:
                raise DlcNameError(f"param_groups: {s.optimizer} has no argument '{name}'", grp.span,
                                   f"its arguments: {', '.join(schema)}")
        try:
            make_optimizer(s.optimizer, **{**s.optimizer_args, **grp.args})
        except ValueError as err:
            raise DlcValueError(f"param_groups: {err}", grp.span) from None
