"""The converter table: (domain, op_type) -> converters, each valid for a range of opset versions.

    @converter("Relu", since=6)
    def relu(cx, node):
        return cx.op("relu", cx.val(node.input[0]))

A converter gets the import context (`context.Ctx`) and the `onnx.NodeProto`
and returns the IR value(s) of the node's outputs, in order (a NumPy array for
an output known at import time, such as a folded shape).  Version ranges
follow the ONNX operator changelog: a converter registered `since=13`
handles opset 13 and later until another converter for the same op takes over
(`until`).  An op or version outside the table is a `DlcError` naming the node.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

DEFAULT_DOMAIN = ""


@dataclass(frozen=True)
class Converter:
    op_type: str
    domain: str
    since: int
    until: int | None   # exclusive; None: every later version
    fn: Callable

    def covers(self, version: int) -> bool:
        return self.since <= version and (self.until is None or version < self.until)


CONVERTERS: dict[tuple[str, str], list[Converter]] = {}


def converter(*op_types: str, since: int = 1, until: int | None = None, domain: str = DEFAULT_DOMAIN):
    def deco(fn):
        for op in op_types:
            CONVERTERS.setdefault((domain, op), []).append(Converter(op, domain, since, until, fn))
        return fn
    return deco


def normalize_domain(domain: str) -> str:
    return DEFAULT_DOMAIN if domain in ("", "ai.onnx") else domain


def lookup(domain: str, op_type: str, version: int | None) -> Converter | None | list[Converter]:
    """The converter for `op_type` at `version`; the list of versioned ones when
    none covers it; None when the op is not in the table at all."""
    entries = CONVERTERS.get((normalize_domain(domain), op_type))
    if not entries:
        return None
    for c in entries:
        if version is not None and c.covers(version):
            return c
    return entries


def supported_ops() -> list[tuple[str, str, str]]:
    """(domain, op_type, versions) for every entry: what the docs list."""
    out = []
    for (dom, op), entries in sorted(CONVERTERS.items()):
        ranges = ", ".join(f"{c.since}+" if c.until is None else f"{c.since}-{c.until - 1}"
                           for c in sorted(entries, key=lambda c: c.since))
        out.append((dom or "ai.onnx", op, ranges))
    return out
