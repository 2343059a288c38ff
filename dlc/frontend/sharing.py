"""Explicit weight sharing: `share="enc"` applies a layer or block with the
parameters of the instance `enc` made earlier in the same body.

    a = Encoder(64)(left, name="enc")
    b = Encoder(64)(right, share="enc")     # a Siamese twin: the same weights

The shared application elaborates as usual, under the shared instance's name;
every parameter it asks for must already exist there with the same type, and
it must use all of them (it is the same layer applied again, as calling one
`nn.Module` twice).  Buffers are read in their latest state: in train mode a
shared batch norm updates its running statistics once per application, in
order, as PyTorch does.
"""
from __future__ import annotations

import re
from contextlib import contextmanager
from dataclasses import dataclass, field

from ..errors import DlcNameError, DlcTypeError, DlcValueError, Span

_NAME = re.compile(r"[A-Za-z0-9_]+(\.[A-Za-z0-9_]+)*")


@dataclass
class Sharing:
    """One shared application in progress."""

    prefix: str
    share: str
    used: set = field(default_factory=set)


def _under(name: str, prefix: str) -> bool:
    return not prefix or name == prefix or name.startswith(prefix + ".")


def shared_instance(frame, share, explicit, span: Span) -> str:
    """The full name of the instance `share=` names; a located error when there is none."""
    if explicit is not None:
        raise DlcTypeError("give either name= or share=, not both", span,
                           "share= reuses an existing instance and its name")
    if not isinstance(share, str) or not _NAME.fullmatch(share):
        from .values import describe
        shown = repr(share) if isinstance(share, str) else describe(share)
        raise DlcValueError(f"share= must name an instance of this block, got {shown}", span,
                            "e.g. share=\"enc\" after enc = dense(x, 64) or name=\"enc\"")
    full = f"{frame.prefix}.{share}" if frame.prefix else share
    if not any(_under(p.name, full) for p in frame.ctx.root.params):
        here = sorted(n for n in frame.used if not n.startswith("<"))
        raise DlcNameError(f"share=\"{share}\": no instance '{share}' with parameters was made before this "
                           "line in this block", span,
                           ("instances so far: " + ", ".join(here)) if here else
                           "create the instance first (a = dense(x, 8)), then share it (share=\"a\")")
    if frame.binding is not None:   # keep nn.Sequential-style numbering of the other instances
        frame.binding[2] += 1
    return full


@contextmanager
def sharing(frame, full: str, share: str, span: Span):
    """Elaborate one shared application; afterwards, check it used every shared parameter."""
    ctx = frame.ctx
    entry = Sharing(full, share)
    ctx.sharing.append(entry)
    try:
        yield entry
    finally:
        ctx.sharing.pop()
    owned = [p.name for p in ctx.root.params if _under(p.name, full)]
    unused = [n for n in owned if n not in entry.used]
    if unused:
        raise DlcTypeError(f"share=\"{share}\": this application does not use {', '.join(unused[:4])}"
                           f"{' ...' if len(unused) > 4 else ''} of '{share}'", span,
                           "a shared application is the same layer again: give it the same arguments")


def shared_param(ctx, name: str, type, buffer: bool, span: Span):
    """The existing parameter a shared application asks for, or None when none is being shared."""
    if not ctx.sharing:
        return None
    entry = ctx.sharing[-1]
    if not _under(name, entry.prefix):
        return None
    for p in ctx.root.params:
        if p.name == name:
            break
    else:
        raise DlcNameError(f"share=\"{entry.share}\": '{entry.share}' has no parameter '{name}'", span,
                           "a shared application is the same layer again: give it the same arguments")
    if p.type != type or (p.kind == "buffer") != buffer:
        raise DlcTypeError(f"share=\"{entry.share}\": {name} is {p.type}, but this application needs {type}",
                           span, "the shared instance was made for inputs of another size")
    entry.used.add(name)
    # a buffer is read in its latest state (train mode: after the previous application's update)
    return ctx.root.state_updates.get(name, p) if buffer else p
