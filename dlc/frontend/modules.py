"""Loading `.dln` files, resolving imports and file-level constants."""
from __future__ import annotations

import errno
import os
from pathlib import Path

from ..errors import DlcLimitError, DlcNameError, DlcSyntaxError, Span
from . import ast as A
from .limits import MAX_IMPORT_PATH
from .parser import SourceError, parse, parse_file
from .search_path import candidates, env_path, trusted_roots
from .values import BlockValue, ModuleEnv

_CACHE: dict[str, ModuleEnv] = {}


def load_module(path: str | Path, text: str | None = None, _importing: tuple = (),
                _root: Path | None = None, include: tuple = ()) -> ModuleEnv:
    """Parse a file and collect its definitions; imports load recursively.

    Imports must stay inside the project: the folder of the file loaded first
    (`_root`), the folders of the search path (`include`, then `DLC_PATH`) and
    the zoo (`search_path`), so that a spec cannot read, and echo, any file on
    the machine."""
    path = Path(path)
    include = tuple(str(d) for d in include)
    try:
        key = (str(path.resolve()) if text is None else f"<text>{path}") + "\0" + "\0".join(
            include + env_path())
        missing = text is None and not path.exists()
    except (OSError, RuntimeError, ValueError) as e:  # a link loop, a NUL, a name too long
        raise SourceError(f"cannot read {str(path)[:200]!r}: {e}", hint="check the path") from None
    if text is None and key in _CACHE and _CACHE[key].file == str(path):
        return _CACHE[key]
    if missing:
        raise DlcNameError(f"no such file: {path}", None, "check the path")
    root = _root if _root is not None else Path(os.path.abspath(path)).parent.resolve()
    ast = parse(text, str(path)) if text is not None else parse_file(path)
    mod = ModuleEnv(str(path), ast)
    for item in ast.items:
        if isinstance(item, A.Import):
            target = _resolve_import(path, item, root, include)
            if str(target) in _importing or target == path.resolve():
                raise DlcNameError(f"circular import of {item.path}", item.span,
                                   "two files may not import each other")
            try:
                sub = load_module(target, None, _importing + (str(path.resolve()),), root, include)
            except SourceError as e:  # unreadable, too large: blame the import line
                raise DlcNameError(f"cannot import {_shown(item.path)}: {e.message}", item.span, e.hint) from None
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


def _shown(p: str) -> str:
    return p if len(p) <= 60 else p[:40] + "..." + p[-12:]


def _resolve_import(importer: Path, item: A.Import, root: Path, include: tuple = ()) -> Path:
    """The real path of an import, or a located error that says why not."""
    p, span = item.path, item.span
    if len(p) > MAX_IMPORT_PATH:
        raise DlcLimitError(f"the import path is {len(p):,} characters long", span,
                            f"import paths are limited to {MAX_IMPORT_PATH} characters")
    if "\x00" in p:
        raise DlcNameError(f"cannot import {_shown(p)!r}: the path contains a NUL character", span,
                           "remove the \\x00 from the path")
    try:
        p.encode("utf-8")
    except UnicodeEncodeError:
        raise DlcNameError(f"cannot import {_shown(p)!r}: the path is not valid Unicode", span,
                           "remove the lone surrogate escape (\\ud800-\\udfff) from the path") from None
    tries, where = candidates(importer, p, include)
    target = None
    for cand in tries:
        try:
            target = cand.resolve(strict=True)
            break
        except FileNotFoundError:
            continue
        except RuntimeError:  # Python < 3.13 reports a symlink loop so
            raise DlcNameError(f"cannot import {_shown(p)}: a symbolic link loop", span,
                               "fix the links") from None
        except OSError as e:
            why = {errno.ELOOP: "a symbolic link loop", errno.ENAMETOOLONG: "the path is too long"}.get(
                e.errno, e.strerror or str(e))
            raise DlcNameError(f"cannot import {_shown(p)}: {why}", span, "check the path") from None
    if target is None:
        raise DlcNameError(f"cannot import {_shown(p)}: no such file (looked in {where})", span,
                           "paths are relative to the importing file; `zoo:blocks/...` names the zoo's "
                           "files; DLC_PATH or `dlc --include DIR` add folders to look in") from None
    roots = trusted_roots(root, include)
    if not any(target.is_relative_to(r) for r in roots):
        raise DlcNameError(f"cannot import {_shown(p)}: it is outside the project folder {root}", span,
                           "imports must stay inside the folder of the file being compiled, the zoo "
                           "(zoo:...) or a folder of the search path (DLC_PATH, dlc --include DIR)")
    if target.is_dir() or not target.is_file():
        raise DlcNameError(f"cannot import {_shown(p)}: not a file", span, "import a .dln file")
    if target.suffix != ".dln":
        raise DlcNameError(f"cannot import {_shown(p)}: not a .dln file", span, "import a .dln file")
    return target


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
