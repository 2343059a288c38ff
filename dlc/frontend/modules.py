"""Loading `.dln` files, resolving imports and file-level constants."""
from __future__ import annotations

from pathlib import Path

from ..errors import DlcNameError, DlcSyntaxError, Span
from . import ast as A
from .parser import parse, parse_file
from .values import BlockValue, ModuleEnv

_CACHE: dict[str, ModuleEnv] = {}


def load_module(path: str | Path, text: str | None = None, _importing: tuple = ()) -> ModuleEnv:
    """Parse a file and collect its definitions; imports load recursively."""
    path = Path(path)
    key = str(path.resolve()) if text is None else f"<text>{path}"
    if text is None and key in _CACHE and _CACHE[key].file == str(path):
        return _CACHE[key]
    if text is None and not path.exists():
        raise DlcNameError(f"no such file: {path}", None, "check the path")
    ast = parse(text, str(path)) if text is not None else parse_file(path)
    mod = ModuleEnv(str(path), ast)
    for item in ast.items:
        if isinstance(item, A.Import):
            target = (path.parent / item.path)
            if str(target.resolve()) in _importing or target.resolve() == path.resolve():
                raise DlcNameError(f"circular import of {item.path}", item.span,
                                   "two files may not import each other")
            if not target.exists():
                raise DlcNameError(f"cannot import {item.path}: no such file", item.span,
                                   f"paths are relative to {path.parent or '.'}")
            if not target.is_file():
                raise DlcNameError(f"cannot import {item.path}: not a file", item.span,
                                   "import a .dln file")
            sub = load_module(target, None, _importing + (str(path.resolve()),))
            if item.alias:
                _define(mod, item.alias, sub, item.span)
            else:
                for name, value in sub.defs.items():
                    if not isinstance(value, ModuleEnv):
                        _define(mod, name, value, item.span)
                mod.consts.update(sub.consts)
        elif isinstance(item, A.ModelDef):
            seen_params: set[str] = set()
            for p in list(item.cparams) + list(item.params):
                if p.name in seen_params:
                    raise DlcNameError(f"parameter '{p.name}' of {item.name} is declared twice", p.span,
                                       "give each parameter its own name")
                seen_params.add(p.name)
            _define(mod, item.name, BlockValue(item, mod), item.span)
            if not item.is_block:
                mod.models.append(item.name)
        elif isinstance(item, A.Const):
            if item.name in mod.consts or item.name in mod.defs:
                raise DlcNameError(f"'{item.name}' is defined twice", item.span, "rename one of the definitions")
            mod.consts[item.name] = item
        elif isinstance(item, A.TrainDef):
            mod.trains.append(item)
    if text is None:
        _CACHE[key] = mod
    return mod


def _define(mod: ModuleEnv, name: str, value, span: Span) -> None:
    if name in mod.defs:
        raise DlcNameError(f"'{name}' is defined twice", span, "rename one of the definitions")
    mod.defs[name] = value


def module_lookup(mod: ModuleEnv, name: str, ctx):
    """(found, value) for a definition or constant of `mod`."""
    if name in mod.defs:
        return True, mod.defs[name]
    if name in mod.consts:
        overrides = getattr(ctx, "overrides", {})
        if name in overrides:
            return True, overrides[name]
        cache = ctx.const_values.setdefault(mod.file, {})
        if name not in cache:
            if name in ctx.const_stack:
                raise DlcNameError(f"constant '{name}' depends on itself", mod.consts[name].span,
                                   "define it from other constants or numbers")
            ctx.const_stack.append(name)
            from .elaborate import Frame
            f = Frame(ctx, mod, "", ctx.root, "<const>")
            cache[name] = f.eval(mod.consts[name].value)
            ctx.const_stack.pop()
        return True, cache[name]
    return False, None


def clear_cache() -> None:
    _CACHE.clear()


__all__ = ["load_module", "module_lookup", "DlcSyntaxError"]
