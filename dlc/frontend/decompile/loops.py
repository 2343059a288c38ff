"""Consecutive applications of one block, each feeding the next, become a
`for` loop over the instance numbers (and over the arguments that change):

    for i, (planes, stride) in enumerate([(128, 2), (256, 2)], start=2) {
        x = Stage(planes, stride)(x, name="layer{i}")
    }
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from .body import Stmt
from .text import lit

_NUM = re.compile(r"(\d+)")


@dataclass
class LoopInfo:
    template: str     # the instance name with {i} where the number goes
    start: int


def name_pattern(names: list[str]) -> LoopInfo | None:
    """`layer1.0`, `layer1.1` -> `layer1.{i}` from 0; None unless exactly one number counts up by one."""
    split = [_NUM.split(n) for n in names]
    if any(len(s) != len(split[0]) for s in split):
        return None
    where = None
    for k in range(len(split[0])):
        vals = [s[k] for s in split]
        if len(set(vals)) == 1:
            continue
        if k % 2 == 0 or where is not None:
            return None
        where = k
    if where is None:
        return None
    nums = [int(s[where]) for s in split]
    if any(str(n) != s[where] for n, s in zip(nums, split)) or nums != list(range(nums[0], nums[0] + len(nums))):
        return None
    parts = list(split[0])       # instance names are words and dots: no braces to escape
    parts[where] = "{i}"
    return LoopInfo("".join(parts), nums[0])


def _links(a: Stmt, b: Stmt, uses: dict, outputs: set) -> bool:
    """`b` applies the same block to `a`'s result (and to the same other inputs: a decoder's memory)."""
    if a.app.block != b.app.block or len(b.app.outputs) != 1 or len(a.app.inputs) != len(b.app.inputs):
        return False
    v = a.app.outputs[0]
    same_rest = all(x is y for x, y in zip(a.app.inputs[1:], b.app.inputs[1:]))
    return b.app.inputs[0] is v and same_rest and uses.get(v.id, 0) == 1 and v.id not in outputs


def fold_loops(stmts: list, uses: dict, outputs: set) -> list:
    out, i = [], 0
    while i < len(stmts):
        st = stmts[i]
        j = i
        if st.app is not None and len(st.app.outputs) == 1:
            while j + 1 < len(stmts) and stmts[j + 1].app is not None and _links(stmts[j], stmts[j + 1], uses,
                                                                                   outputs):
                j += 1
        run = stmts[i:j + 1]
        info = name_pattern([s.app.rel for s in run]) if len(run) >= 2 else None
        if info is None:
            out.append(st)
            i += 1
            continue
        out.append(Stmt([], [], [run[-1].app.outputs[0]], app=info, loop=run))
        i = j + 1
    return out


def _fresh(alloc, base: str) -> str:
    """A compile-time loop variable: no tensor variable's name (loops may reuse `i`)."""
    nm, k = base, 1
    while nm in alloc.reserved or (nm in alloc.holder and alloc.holder[nm] is not None):
        nm, k = f"{base}{k}", k + 1
    alloc.holder[nm] = None
    return nm


def render_loop(st: Stmt, alloc, name, ind: str, at: int) -> list[str]:
    apps = [s.app for s in st.loop]
    first = apps[0]
    in_name = name(first.inputs[0])
    out = st.targets[0]
    out_name = alloc.bind(out.id, in_name, at)
    lines = [] if out_name == in_name else [f"{ind}{out_name} = {in_name}  # {first.inputs[0].type}"]
    info: LoopInfo = st.app
    idx = _fresh(alloc, "i")
    varying = [j for j in range(len(first.args)) if len({a.args[j] for a in apps}) > 1]
    vars_ = {j: _fresh(alloc, first.param_names[j]) for j in varying}
    k, n0 = len(apps), info.start
    if not varying:
        header = f"for {idx} in range({k})" if n0 == 0 else f"for {idx} in range({n0}, {n0 + k})"
    else:
        if len(varying) == 1:
            seq = "[" + ", ".join(a.args[varying[0]] for a in apps) + "]"
            target = vars_[varying[0]]
        else:
            seq = "[" + ", ".join("(" + ", ".join(a.args[j] for j in varying) + ")" for a in apps) + "]"
            target = "(" + ", ".join(vars_[j] for j in varying) + ")"
        start = f", start={n0}" if n0 else ""
        header = f"for {idx}, {target} in enumerate({seq}{start})"
    args = ", ".join(vars_.get(j, a) for j, a in enumerate(first.args))
    call = f"{first.block}({args})"
    nm = lit(info.template.replace("{i}", "\0")).replace("\0", "{" + idx + "}")
    lines.append(f"{ind}{header} {{")
    rest = "".join(f", {name(v)}" for v in first.inputs[1:])
    lines.append(f"{ind}    {out_name} = {call}({out_name}{rest}, name={nm})  # {out.type} after the last")
    lines.append(f"{ind}}}")
    return lines
