"""Hints that say how to fix a mistake, not only what it was.

`input_size_hint` explains an input array of the wrong size by the part of
the model's declared input type that fixed the size (a file constant and its
`--bind`, a literal, a dimension bound by `--bind`, an example or another
input); `split_unpack_hint` explains `a, b = split(x, 58, axis=1)` written in
PyTorch's sense (torch.split takes a part size, dlc's split a number of
parts).
"""
from __future__ import annotations

from . import ast as A
from .values import BlockValue


def _model_input_type(module, model: str, input_name: str):
    value = module.defs.get(model)
    if not isinstance(value, BlockValue):
        return None
    for p in value.defn.params:
        if p.name == input_name and isinstance(p.type, A.TensorTypeExpr):
            return p.type
    return None


def _source(e) -> str:
    if isinstance(e, A.Name):
        return e.id
    if isinstance(e, A.Literal):
        return str(e.value)
    if isinstance(e, A.BinOp):
        return f"{_source(e.left)} {e.op} {_source(e.right)}"
    return "an expression"


def input_size_hint(module, model: str, input_name: str, got: tuple, want: tuple, bind: dict,
                    examples: dict) -> str | None:
    """Which constant, `--bind` or literal sets each axis of `input_name` whose size differs."""
    t = _model_input_type(module, model, input_name)
    if t is None or len(t.dims) != len(got) or len(got) != len(want):
        return None
    notes: dict[str, list[int]] = {}     # one note per cause, with every axis it explains
    for axis, (de, g, w) in enumerate(zip(t.dims, got, want)):
        if g != w:
            notes.setdefault(_axis_note(module, de, g, w, bind, examples), []).append(axis)
    parts = []
    for note, axes in notes.items():
        where = f"axis {axes[0]}" if len(axes) == 1 else "axes " + ", ".join(map(str, axes))
        parts.append(f"{where}: {note}")
    return "; ".join(parts) or None


def _axis_note(module, de, got: int, want: int, bind: dict, examples: dict) -> str:
    if isinstance(de, A.Name) and de.id in module.consts:
        c = module.consts[de.id]
        where = "--bind" if de.id in bind else f"const {de.id} (line {c.span.line})"
        return (f"the constant {de.id} = {want}, set by {where}: to run at {got}, "
                f"pass --bind {de.id}={got} (Python: dlc.load(..., bind={{'{de.id}': {got}}}))")
    if isinstance(de, A.Name):
        if de.id in bind:
            return f"the dimension {de.id}, bound to {want} by --bind {de.id}={want}: drop it " \
                   f"or pass --bind {de.id}={got}"
        if de.id in examples:
            return f"the dimension {de.id} = {want} (its example size, or the size another " \
                   f"input gave it): pass --bind {de.id}={got}, or give every input the same {de.id}"
        return f"the dimension {de.id}, which another input sized {want}: give every " \
               f"input the same {de.id}"
    if isinstance(de, A.Literal):
        return f"fixed at {want} by the spec's input type: edit it, or make it a constant " \
               f"that --bind can change"
    return f"{_source(de)} = {want} in the spec's input type: --bind the names in it to " \
           f"change it"


def split_unpack_hint(frame, call, parts: tuple, n_targets: int) -> str | None:
    """`a, b = split(x, 58, axis=1)`: 58 parts were made, 2 were wanted."""
    from .builtins import BUILTINS
    if not isinstance(call, A.Call) or not isinstance(call.func, A.Name) or len(call.args) < 2:
        return None
    try:
        f = frame.lookup(call.func.id, call.span)
    except Exception:  # noqa: BLE001 - only a hint: a name that does not resolve gives none
        return None
    if f is not BUILTINS.get("split") or not isinstance(call.args[1], A.Literal):
        return None
    n = call.args[1].value
    if not isinstance(n, int) or isinstance(n, bool) or len(parts) != n:
        return None
    axis_src = next((_source(k.value) for k in call.kwargs if k.name == "axis"),
                    _source(call.args[2]) if len(call.args) > 2 else "0")
    x_src = _source(call.args[0])
    return (f"dlc's split(x, {n}) cuts {n} equal parts, like torch.chunk; torch.split(x, {n}) cuts parts of "
            f"size {n}. For {n_targets} parts write split({x_src}, {n_targets}, axis={axis_src}), or give "
            f"the sizes as a list: split({x_src}, [{', '.join([str(n)] * n_targets)}], axis={axis_src})")
