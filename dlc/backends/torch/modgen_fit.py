"""One class from the bodies generated for every instance of a `.dln` block.

Each instance of a block is generated on its own (`modgen_struct`), with its
sizes as literals: ``self.conv1 = nn.Conv2d(64, 128, 3, stride=2, ...)``.
This module turns those bodies into one class whose `__init__` takes the
block's compile-time parameters (and the input sizes its layers need, like
torchvision's `inplanes`) and is right for every instance *by construction*:

* every number (or bool) of an `__init__` statement becomes the literal, when
  all instances agree on it and no parameter says more, or the parameter
  (``planes``, ``stride``) or parameter multiple (``d * 4``) equal to it in
  every instance;
* a sub-module only some instances have (ResNet's ``downsample``) becomes a
  constructor flag (``downsample=False``, as torchvision passes its
  `downsample`), built under ``if downsample:`` and ``None`` otherwise; the
  forward methods of the two kinds of instance are merged line by line, the
  lines that differ under ``if self.downsample is not None:``.

When that is impossible (a size no parameter explains, forwards that differ
otherwise) the caller writes the block's instances out flat and says why.
"""
from __future__ import annotations

import ast
import difflib
import io
import keyword
import re
import tokenize
from dataclasses import dataclass, field

from .funcgen import _BUILTINS, sanitize
from .modgen_names import _RESERVED_GLOBALS

# keyword defaults of the torch constructors modgen_layers writes (it omits a
# keyword at its default): instances that differ only in writing one still align
_KW_DEFAULTS = {"stride": 1, "padding": 0, "dilation": 1, "groups": 1, "bias": True, "output_padding": 0,
                "affine": True, "causal": False, "elementwise_affine": True, "track_running_stats": True}


class FitError(Exception):
    """The instances of a block cannot share one class (the message says why)."""


@dataclass
class Body:
    """One instance's generated class body."""

    args: dict                 # compile-time arguments and input sizes by name
    init: list[str]            # __init__ statements, each with its `# kind @ file:line` comment
    forward: str               # the forward method (``def forward(self, ...):`` ...)


@dataclass
class ClassDef:
    name: str
    params: list[str]                           # __init__'s parameters, in order
    defaults: dict = field(default_factory=dict)   # parameter -> default value
    init: list[str] = field(default_factory=list)
    forward: str = ""
    flags: dict = field(default_factory=dict)   # flag parameter -> value per instance

    def ctor(self, i: int, args: dict) -> str:
        """The constructor call building instance `i` (its arguments `args`)."""
        vals = {**args, **{f: v[i] for f, v in self.flags.items()}}
        out = []
        for p in self.params:
            if p in self.defaults:
                if vals[p] != self.defaults[p]:
                    out.append(f"{p}={_lit(vals[p])}")
            else:
                out.append(_lit(vals[p]))
        return f"{self.name}({', '.join(out)})"


def _lit(v) -> str:
    return repr(v)


def _split(line: str) -> tuple[str, str]:
    """(code, comment) of one generated statement."""
    toks = list(tokenize.generate_tokens(io.StringIO(line).readline))
    for t in toks:
        if t.type == tokenize.COMMENT:
            return line[:t.start[1]].rstrip(), t.string
    return line.rstrip(), ""


def _key(code: str) -> str:
    """What a statement defines: ``self.conv1``, ``self.downsample[0]``."""
    stmt = ast.parse(code).body[0]
    if isinstance(stmt, ast.Assign):
        return ast.unparse(stmt.targets[0])
    call = stmt.value
    if isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute) and call.args \
            and isinstance(call.args[0], ast.Constant):
        return f"{ast.unparse(call.func.value)}[{call.args[0].value!r}]"
    return code


def _dotted(key: str) -> str:
    """``self.block[1]['x']`` as ``block.1.x`` (for comments)."""
    key = key.removeprefix("self.")
    return re.sub(r"\[['\"]?([^]'\"]+)['\"]?\]", r".\1", key).lstrip(".")


def _top(key: str) -> str:
    rest = key.removeprefix("self.")
    for i, c in enumerate(rest):
        if c in ".[":
            return rest[:i]
    return rest


def _holes(code: str) -> tuple[str, list]:
    """The statement with each number and bool replaced by a hole, and their values."""
    toks = list(tokenize.generate_tokens(io.StringIO(code).readline))
    lines = code.split("\n")
    parts, vals, last = [], [], (1, 0)
    for t in toks:
        if t.type == tokenize.NUMBER or (t.type == tokenize.NAME and t.string in ("True", "False")):
            if t.start[0] != 1 or last[0] != 1:
                raise FitError("multi-line statement")
            parts.append(lines[0][last[1]:t.start[1]])
            vals.append(ast.literal_eval(t.string))
            last = t.end
    parts.append(lines[0][last[1]:])
    return "\0".join(parts), vals


def _with_kwargs(code: str, wanted: list[list]) -> str:
    """`code` with each call's keywords in the order `wanted` gives (per call, in
    walk order), those it lacks at their defaults."""
    stmt = ast.parse(code).body[0]
    calls = [n for n in ast.walk(stmt) if isinstance(n, ast.Call)]
    for call, kws in zip(calls, wanted):
        have = {k.arg: k for k in call.keywords}
        for k in kws:
            if k not in have:
                if k not in _KW_DEFAULTS:
                    raise FitError(f"instances differ in the keyword {k}")
                have[k] = ast.keyword(arg=k, value=ast.Constant(_KW_DEFAULTS[k]))
        call.keywords = [have[k] for k in kws]
    return ast.unparse(stmt)


def _kwsets(code: str) -> list[list]:
    stmt = ast.parse(code).body[0]
    return [[k.arg for k in n.keywords] for n in ast.walk(stmt) if isinstance(n, ast.Call)]


def _kw_order(cols: tuple) -> list:
    """One order for the keywords the instances write at one call."""
    out = list(max(cols, key=len))
    for col in cols:
        for i, k in enumerate(col):
            if k not in out:
                prev = col[i - 1] if i else None
                out.insert(out.index(prev) + 1 if prev in out else 0, k)
    return out


def _fit_value(vals: list, params: list[str], args: list[dict], text: str) -> str:
    """The expression equal to `vals[i]` for instance i: a literal, a parameter or a multiple."""
    const = all(v == vals[0] and type(v) is type(vals[0]) for v in vals)
    if isinstance(vals[0], bool):
        for p in params:
            if all(isinstance(a.get(p), bool) and a[p] == v for a, v in zip(args, vals)):
                return p
        if const:
            return text
        raise FitError("a flag no parameter explains")
    small = const and isinstance(vals[0], (int, float)) and abs(vals[0]) <= 1
    if small or (const and isinstance(vals[0], float)):
        return text
    ints = [p for p in params if all(isinstance(a.get(p), int) and not isinstance(a.get(p), bool)
                                     for a in args)]
    floats = [p for p in params if all(isinstance(a.get(p), float) for a in args)]
    for p in ints + floats:
        if all(a[p] == v for a, v in zip(args, vals)):
            return p
    if all(isinstance(v, int) for v in vals):
        for p in ints:
            for k in range(2, 9):
                if all(a[p] * k == v for a, v in zip(args, vals)):
                    return f"{p} * {k}"
        for p in ints:     # "same" padding of an odd kernel, a reduction ratio
            if all((a[p] - 1) // 2 == v for a, v in zip(args, vals)):
                return f"({p} - 1) // 2"
            for k in range(2, 9):
                if all(a[p] % k == 0 and a[p] // k == v for a, v in zip(args, vals)):
                    return f"{p} // {k}"
    if const:
        return text
    raise FitError(f"sizes {' '.join(str(v) for v in sorted(set(vals)))} that no parameter explains")


def _fit_line(codes: list[str], params: list[str], args: list[dict]) -> str:
    """One __init__ statement right for every instance having it (`codes[i]` with `args[i]`)."""
    if len(set(codes)) > 1:
        kws = [_kwsets(c) for c in codes]
        if len({len(k) for k in kws}) != 1:
            raise FitError("instances build different layers")
        union = [_kw_order(col) for col in zip(*kws)]
        codes = [_with_kwargs(c, union) for c in codes]
    shapes = [_holes(c) for c in codes]
    if len({s for s, _ in shapes}) != 1:
        raise FitError("instances build different layers")
    skel = shapes[0][0].split("\0")
    toks = [t.string for t in tokenize.generate_tokens(io.StringIO(codes[0]).readline)
            if t.type == tokenize.NUMBER or (t.type == tokenize.NAME and t.string in ("True", "False"))]
    out = [skel[0]]
    for j in range(len(skel) - 1):
        out.append(_fit_value([v[j] for _, v in shapes], params, args, toks[j]))
        out.append(skel[j + 1])
    code = "".join(out)
    return _drop_defaults(code) if len(set(codes)) > 1 else code


def _drop_defaults(code: str) -> str:
    stmt = ast.parse(code).body[0]
    for call in (n for n in ast.walk(stmt) if isinstance(n, ast.Call)):
        call.keywords = [k for k in call.keywords
                         if not (isinstance(k.value, ast.Constant) and k.arg in _KW_DEFAULTS
                                 and k.value.value == _KW_DEFAULTS[k.arg]
                                 and type(k.value.value) is type(_KW_DEFAULTS[k.arg]))]
    return ast.unparse(stmt)


def _merged_keys(bodies: list[list[str]]) -> list[str]:
    """Every instance's statement keys in one order (a shortest common supersequence, greedily)."""
    merged = list(max(bodies, key=len))
    for keys in bodies:
        out, sm = [], difflib.SequenceMatcher(a=merged, b=keys, autojunk=False)
        for op, i1, i2, j1, j2 in sm.get_opcodes():
            out += merged[i1:i2]
            if op in ("insert", "replace"):
                out += [k for k in keys[j1:j2] if k not in merged[i1:i2]]
        merged = out
    if len(set(merged)) != len(merged):
        raise FitError("instances build their layers in different orders")
    return merged


def fit_class(name: str, bodies: list[Body], cparams: list[str], dims: list[str], defaults: dict) -> ClassDef:
    """The class of `bodies`' block: `__init__` takes the input sizes `dims` its
    layers need, then every compile-time parameter of `cparams` (`defaults`:
    their defaults where known), then the flags of optional parts."""
    order = cparams + dims
    parsed = []
    for b in bodies:
        rows = {}
        for line in b.init:
            code, comment = _split(line)
            rows[_key(code)] = (code, comment)
        parsed.append(rows)
    keys = _merged_keys([list(r) for r in parsed])
    present = {k: tuple(k in r for r in parsed) for k in keys}
    flags: dict[str, tuple] = {}
    flag_of: dict[str, str] = {}
    for k in keys:
        if all(present[k]):
            continue
        top = _top(k)
        if not top.isidentifier() or any(all(present[o]) for o in keys if _top(o) == top):
            raise FitError(f"only some instances build {_dotted(k)}")
        pattern = present[k]
        flag = next((f for f, v in flags.items() if v == pattern), None)
        if flag is None:
            flag = top if top not in order else f"has_{top}"
            flags[flag] = pattern
        flag_of[top] = flag
    if len(flags) > 1:
        raise FitError("instances differ in more than one optional part")
    args = [{**b.args, **{f: v[i] for f, v in flags.items()}} for i, b in enumerate(bodies)]
    params = [p for p in order if all(p in a for a in args)] + list(flags)
    init, guard = [], None
    for k in keys:
        have = [i for i, p in enumerate(present[k]) if p]
        code = _fit_line([parsed[i][k][0] for i in have], params, [args[i] for i in have])
        comment = parsed[have[0]][k][1]
        flag = flag_of.get(_top(k)) if not all(present[k]) else None
        if guard is not None and flag != guard[0]:
            init += ["else:", f"    self.{guard[1]} = None"]
            guard = None
        if flag is not None and guard is None:
            init.append(f"if {flag}:")
            guard = (flag, _top(k))
        init.append(("    " if guard else "") + code + (f"  {comment}" if comment else ""))
    if guard is not None:
        init += ["else:", f"    self.{guard[1]} = None"]
    forward, stmt = _merge_forwards(bodies, flags, flag_of, args, {_top(k) for k in keys})
    if stmt is not None:
        init.append(stmt)
    used = _names_in("\n".join(init))
    sig = ([d for d in dims if d in used and d in params] + [p for p in cparams if p in params]
           + list(flags))
    cls = ClassDef(name, sig, {}, init, forward, flags)
    cls.defaults = _defaults(sig, defaults, flags)
    return cls


def _names_in(src: str) -> set:
    out = set()
    for line in src.split("\n"):
        code = _split(line.strip())[0] if line.strip() else ""
        if code.endswith(":") or not code:
            continue
        out |= {n.id for n in ast.walk(ast.parse(code)) if isinstance(n, ast.Name)}
    return out


def _defaults(sig: list[str], defaults: dict, flags: dict) -> dict:
    """Defaults for a suffix of `sig` (Python allows no required parameter after one with a default)."""
    out = {}
    for p in reversed(sig):
        if p in flags:
            out[p] = False
        elif p in defaults:
            out[p] = defaults[p]
        else:
            break
    return out


def _switch(bodies: list[Body], flags: dict, flag_of: dict, args: list[dict], taken: set):
    """What tells the kinds of instance apart in forward: (condition, the kind
    of each instance, a statement __init__ needs), from the optional part's
    flag or else a bool compile-time parameter (``if self.act:``)."""
    if flags:
        (flag,) = flags
        attr = next(t for t, f in flag_of.items() if f == flag)
        return f"self.{attr} is not None", [v for v in flags[flag]], None
    forwards = [b.forward for b in bodies]
    for p in args[0]:
        if p in taken or not all(isinstance(a.get(p), bool) for a in args):
            continue
        seen: dict[bool, str] = {}
        if all(seen.setdefault(a[p], f) == f for a, f in zip(args, forwards)) and len(seen) == 2:
            return f"self.{p}", [a[p] for a in args], f"self.{p} = {p}"
    raise FitError("instances have different forward code and no flag tells them apart")


def _merge_forwards(bodies: list[Body], flags: dict, flag_of: dict, args: list[dict],
                    taken: set) -> tuple[str, str | None]:
    """One forward for every instance: identical, or two kinds merged line by
    line under an ``if``; and the statement __init__ needs for it, if any."""
    if len({b.forward for b in bodies}) == 1:
        return bodies[0].forward, None
    cond, kind, stmt = _switch(bodies, flags, flag_of, args, taken)
    kinds: dict[bool, str] = {}
    for k, b in zip(kind, bodies):
        if kinds.setdefault(k, b.forward) != b.forward:
            raise FitError("instances of one kind have different forward code")
    if len(kinds) != 2:
        return next(iter(kinds.values())), stmt
    with_ = kinds[True].rstrip("\n").split("\n")
    without = kinds[False].rstrip("\n").split("\n")
    if with_[0] != without[0]:
        raise FitError("the two kinds of instance take different arguments")
    out = [with_[0]]
    sm = difflib.SequenceMatcher(a=with_[1:], b=without[1:], autojunk=False)
    for op, i1, i2, j1, j2 in sm.get_opcodes():
        a, b = with_[1 + i1:1 + i2], without[1 + j1:1 + j2]
        if op == "equal":
            out += a
            continue
        for ln in a + b:
            if not ln.startswith("    ") or ln.startswith("     "):
                raise FitError("the two kinds of instance differ inside a loop")
        if a:
            out.append(f"    if {cond}:")
            out += ["    " + ln for ln in a]
            if b:
                out.append("    else:")
                out += ["    " + ln for ln in b]
        else:
            out.append(f"    if not ({cond}):" if " " in cond else f"    if not {cond}:")
            out += ["    " + ln for ln in b]
    src = "\n".join(out) + "\n"
    try:
        ast.parse(src)
    except SyntaxError:
        raise FitError("the merged forward does not parse") from None
    return src, stmt


def class_name(block: str, taken: set) -> str:
    """A class name for block `block` not in `taken` (which it joins)."""
    base = sanitize(block, "Block")
    if keyword.iskeyword(base) or keyword.issoftkeyword(base) or base in _BUILTINS or base in _RESERVED_GLOBALS:
        base += "_"
    name, i = base, 2
    while name in taken:
        name = f"{base}{i}"
        i += 1
    taken.add(name)
    return name
