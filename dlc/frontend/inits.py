"""Initialisers usable in `param` declarations."""
from __future__ import annotations

from ..compiler.ir import Init
from ..errors import DlcNameError, DlcTypeError
from . import ast as A

# name in .dln -> (Init kind, allowed keyword arguments with defaults, positional order)
INITS = {
    "zeros": ("zeros", {}),
    "ones": ("ones", {}),
    "constant": ("constant", {"value": None}),
    "normal": ("normal", {"mean": 0.0, "std": 1.0}),
    "uniform": ("uniform", {"low": 0.0, "high": 1.0}),
    "trunc_normal": ("trunc_normal", {"mean": 0.0, "std": 1.0, "a": -2.0, "b": 2.0}),
    "xavier": ("xavier_uniform", {"gain": 1.0}),
    "glorot": ("xavier_uniform", {"gain": 1.0}),
    "xavier_uniform": ("xavier_uniform", {"gain": 1.0}),
    "xavier_normal": ("xavier_normal", {"gain": 1.0}),
    "kaiming": ("kaiming_normal", {"a": 0.0, "mode": "fan_in", "nonlinearity": "relu"}),
    "he": ("kaiming_normal", {"a": 0.0, "mode": "fan_in", "nonlinearity": "relu"}),
    "kaiming_normal": ("kaiming_normal", {"a": 0.0, "mode": "fan_in", "nonlinearity": "relu"}),
    "kaiming_uniform": ("kaiming_uniform", {"a": 0.0, "mode": "fan_in", "nonlinearity": "relu"}),
    "orthogonal": ("orthogonal", {"gain": 1.0}),
}


def init_from_expr(e, frame) -> Init:
    if isinstance(e, A.Name):
        name, args, kwargs, span = e.id, [], [], e.span
    elif isinstance(e, A.Call) and isinstance(e.func, A.Name):
        name, args, kwargs, span = e.func.id, e.args, e.kwargs, e.span
    else:
        raise DlcTypeError("a parameter initialiser must be a name like xavier or a call like "
                           "normal(std=0.02)", e.span, "initialisers: " + ", ".join(INITS))
    if name not in INITS:
        raise DlcNameError(f"unknown initialiser '{name}'", span, "initialisers: " + ", ".join(INITS))
    kind, schema = INITS[name]
    values = dict(schema)
    order = list(schema)
    if len(args) > len(order):
        raise DlcTypeError(f"{name} takes at most {len(order)} positional arguments", span,
                           f"its arguments are: {', '.join(schema) or 'none'}")
    for key, a in zip(order, args):
        values[key] = frame.eval(a)
    for kw in kwargs:
        if kw.name not in schema:
            raise DlcTypeError(f"{name} has no argument '{kw.name}'", kw.span,
                               f"its arguments are: {', '.join(schema) or 'none'}")
        values[kw.name] = frame.eval(kw.value)
    for k, v in values.items():
        if v is None:
            raise DlcTypeError(f"{name} needs the argument '{k}'", span, f"write e.g. {name}({k}=...)")
        if k in ("mode", "nonlinearity"):
            if not isinstance(v, str):
                raise DlcTypeError(f"{name}: {k} must be a string", span, f'e.g. {k}="relu"' if k == "nonlinearity" else f'e.g. {k}="fan_in"')
        elif isinstance(v, bool) or not isinstance(v, (int, float)):
            raise DlcTypeError(f"{name}: {k} must be a number", span, f"e.g. {name}({k}=0.02)")
        else:
            values[k] = float(v)
    return Init.make(kind, **values)
