"""The pass manager: named passes, optimisation levels and the pipeline.

A pass is a function `(graph, ctx) -> None` that rewrites the graph in place,
registered once in its own module with `@register_pass`:

    @register_pass("dce", level=1, summary="drop nodes nothing needs")
    def dce(g: Graph, ctx: PassContext) -> None: ...

`PIPELINE` (in `compiler/passes/__init__.py`) orders the registered passes;
`-O<n>` runs those whose level is at most n, `--passes` runs exactly the
named ones (in pipeline order), `--disable-pass` drops some.

A pass that fails is reported by name, at the `.dln` line of the node it was
working on (`ctx.node`, which a pass sets as it goes), with a hint to turn it
off.  With `verify=True` (the tests set `DLC_VERIFY_PASSES=1`) the IR
verifier runs after every pass and a broken invariant is reported the same
way.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

from ...errors import DlcError, Span
from ..ir import Graph, Node

if TYPE_CHECKING:
    from ..quant.plan import QuantPlan

LEVELS = (0, 1, 2, 3)
PRECISIONS = ("fp32", "bf16", "fp16")
DEFAULT_LEVEL = 2


class PassError(DlcError):
    """A pass failed: names the pass and the `.dln` line of the node."""


@dataclass
class PassContext:
    """What a pass may know about the compilation it is part of.

    `backend` is the backend the graph goes to ("numpy", "torch", "tvm") and
    `target` its target ("cpu", "cuda", "aarch64"...); passes that only pay
    off on some backends (layout) read them.  `dims` holds the sizes bound so
    far.  `stats` is where a pass reports what it did (`ctx.count("folded")`),
    shown by `dlc ir --stats` and the pass report.  `node` is the node the
    pass is working on, for error attribution."""

    backend: str = "numpy"
    target: str = "cpu"
    level: int = DEFAULT_LEVEL
    dims: dict = field(default_factory=dict)
    stats: dict = field(default_factory=dict)
    node: Node | None = None
    current: str = ""
    quant: "QuantPlan | None" = None     # PipelineOptions.quant: the quantize/lower_int8 passes read it
    precision: str = "fp32"          # PipelineOptions.precision: what `autocast` narrows to

    def count(self, what: str, n: int = 1) -> None:
        key = f"{self.current}.{what}" if self.current else what
        self.stats[key] = self.stats.get(key, 0) + n


@dataclass
class PassDef:
    name: str
    fn: Callable[[Graph, PassContext], None]
    level: int
    summary: str
    modes: tuple[str, ...] = ("eval", "train")
    # an option-driven pass (quantize, autocast) runs, at any level, exactly when when(opts) holds
    when: Callable[["PipelineOptions"], bool] | None = None
    # passes that must run (earlier, in pipeline order) whenever this one does
    requires: tuple[str, ...] = ()


PASSES: dict[str, PassDef] = {}


def register_pass(name: str, *, level: int, summary: str, modes=("eval", "train"), when=None,
                  requires: tuple[str, ...] = ()):
    def deco(fn):
        if name in PASSES:
            raise RuntimeError(f"pass {name} registered twice")
        PASSES[name] = PassDef(name, fn, level, summary, tuple(modes), when, tuple(requires))
        return fn
    return deco


@dataclass
class PassRecord:
    name: str
    nodes_before: int
    nodes_after: int
    seconds: float


@dataclass
class PipelineOptions:
    """What the user asked for: `-O<level>`, `--passes`, `--disable-pass`."""

    level: int = DEFAULT_LEVEL
    passes: tuple[str, ...] | None = None      # exactly these (pipeline order)
    disable: tuple[str, ...] = ()
    # int8 quantization (compiler/quant/plan.py): runs fold_batchnorm, quantize and lower_int8 in eval
    quant: "QuantPlan | None" = None
    precision: str = "fp32"                    # --precision: fp32, bf16 or fp16 (the autocast pass)

    def __post_init__(self):
        if self.quant is not None:
            from ..quant.plan import QuantPlan
            if not isinstance(self.quant, QuantPlan):
                raise DlcError(f"PipelineOptions.quant must be a QuantPlan, got {type(self.quant).__name__}")
        if self.level not in LEVELS:
            raise DlcError(f"unknown optimisation level -O{self.level}", hint="use -O0, -O1, -O2 or -O3")
        if self.precision not in PRECISIONS:
            raise DlcError(f"unknown precision '{self.precision}'", hint="use --precision fp32, bf16 or fp16")
        for name in tuple(self.passes or ()) + tuple(self.disable):
            check_pass_name(name)


def check_pass_name(name: str) -> None:
    from . import PIPELINE
    if name not in PASSES:
        raise DlcError(f"unknown pass '{name}'", hint="the passes are: " + ", ".join(PIPELINE))


def selected_passes(opts: PipelineOptions, mode: str) -> list[PassDef]:
    from . import PIPELINE
    if opts.passes is not None:
        chosen = {n for n in PIPELINE if n in opts.passes}
    else:
        chosen = {n for n in PIPELINE if PASSES[n].level <= opts.level}
    # option-driven passes follow their option alone, and bring the passes they require
    chosen = {n for n in chosen if PASSES[n].when is None}
    chosen |= {n for n in PIPELINE if PASSES[n].when is not None and PASSES[n].when(opts)
               and mode in PASSES[n].modes}
    for n in list(chosen):
        chosen |= set(PASSES[n].requires)
    return [PASSES[n] for n in PIPELINE if n in chosen and n not in opts.disable and mode in PASSES[n].modes]


def _verify_by_default() -> bool:
    return os.environ.get("DLC_VERIFY_PASSES", "0") not in ("", "0")


def run_pipeline(g: Graph, opts: PipelineOptions | None = None, *, backend: str = "numpy", target: str = "cpu",
                 dims: dict | None = None, verify: bool | None = None,
                 after: Callable[[str, Graph], None] | None = None,
                 stop_after: str | None = None) -> tuple[Graph, list[PassRecord], PassContext]:
    """Run the selected passes over `g` in place; returns (g, records, ctx).

    `after(name, g)` is called after each pass (`dlc ir --after`); with
    `stop_after`, the pipeline stops after that pass."""
    from ..verify import VerifyError, verify as verify_ir
    opts = opts or PipelineOptions()
    verify = _verify_by_default() if verify is None else verify
    ctx = PassContext(backend=backend, target=target, level=opts.level, dims=dict(dims or {}), quant=opts.quant,
                      precision=opts.precision)
    records = []
    if stop_after is not None:
        check_pass_name(stop_after)
    for p in selected_passes(opts, g.mode):
        ctx.current, ctx.node = p.name, None
        before = sum(1 for _ in g.walk())
        t0 = time.perf_counter()
        try:
            p.fn(g, ctx)
        except PassError:
            raise
        except DlcError as e:
            raise PassError(f"pass '{p.name}': {e.message}", e.span or _span(ctx, g),
                            e.hint or _hint(p.name)) from None
        except Exception as e:  # a bug in a pass: say which pass, where, and how to get past it
            raise PassError(f"pass '{p.name}' failed: {type(e).__name__}: {e}", _span(ctx, g), _hint(p.name)) from e
        if verify:
            try:
                verify_ir(g)
            except VerifyError as e:
                raise PassError(f"pass '{p.name}' broke the IR: {e}", _span(ctx, g), _hint(p.name)) from None
        records.append(PassRecord(p.name, before, sum(1 for _ in g.walk()), time.perf_counter() - t0))
        if after is not None:
            after(p.name, g)
        if stop_after == p.name:
            break
    ctx.current, ctx.node = "", None
    return g, records, ctx


def _span(ctx: PassContext, g: Graph) -> Span | None:
    return ctx.node.span if ctx.node is not None and ctx.node.span is not None else g.span


def _hint(name: str) -> str:
    return f"compile with --disable-pass {name} (or -O0) to go on without it"
