"""`dlc prune --structured channel`: a smaller, dense model.

For every convolution whose output channels can be removed (see
`compiler.prune.channel_groups`: not tied by a residual add, not grouped,
not the model's output), the floor(sparsity * C) channels with the smallest
L1 norm of their weight rows are removed, as torch.nn.utils.prune's
`ln_structured(n=1, dim=0)` ranks them (ties by position).  Every parameter
axis sized by those channels is cut: the conv's weight rows and bias, the
following batch norm's parameters and running statistics, the next conv's
input channels and a dense layer's columns after a flatten.  The spec's conv
widths are rewritten (`dlc.prune_spec`), so the result is a `.dln` file dlc
compiles plus its weights.

The pruned model computes exactly what the original computes once the
removed channels' contributions to their consumers are zeroed (tested in
float64).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np

from .errors import DlcValueError


@dataclass
class ChannelReport:
    sparsity: float
    layers: dict[str, tuple[int, int]] = field(default_factory=dict)   # layer -> (channels, kept)
    skipped: dict[str, str] = field(default_factory=dict)              # layer -> why it was left as is
    params_before: int = 0
    params_after: int = 0


def _fraction(sparsity: float) -> Fraction:
    from .prune import check_sparsity
    return Fraction(str(check_sparsity(sparsity))).limit_denominator(10_000)


def _select(groups, layers, report: ChannelReport):
    """The groups to prune: `layers` by name (a blocked one is an error), or
    every prunable group whose call site has only prunable instances."""
    by_name = {grp.layer: grp for grp in groups}
    if layers:
        unknown = [n for n in layers if n not in by_name]
        if unknown:
            raise DlcValueError(f"no convolution named {', '.join(unknown)}", None,
                                "convolutions: " + ", ".join(by_name) if by_name else "the model has none")
        chosen = [by_name[n] for n in layers]
        for grp in chosen:
            if not grp.prunable:
                raise DlcValueError(f"cannot prune the channels of {grp.layer}: {grp.blocked}",
                                    grp.blocked_span or grp.span, "leave this layer out of --layers")
    else:
        chosen = [grp for grp in groups if grp.prunable]
    for grp in groups:
        if not grp.prunable:
            report.skipped[grp.layer] = grp.blocked
    # one call site, one rewrite: all its instances are pruned or none
    site = lambda grp: (grp.span.file, grp.span.line, grp.span.col) if grp.span else grp.layer   # noqa: E731
    chosen_names = {grp.layer for grp in chosen}
    out = []
    for grp in chosen:
        others = [o for o in groups if site(o) == site(grp) and o.layer not in chosen_names]
        if others:
            if layers:
                raise DlcValueError(f"cannot prune {grp.layer} alone: its .dln call also makes "
                                    f"{', '.join(o.layer for o in others)}", grp.span,
                                    "name every layer of that call in --layers, or none")
            report.skipped[grp.layer] = f"its call site also makes {others[0].layer}, which cannot be pruned"
            continue
        out.append(grp)
    return out


def channel_scores(w: np.ndarray) -> np.ndarray:
    """L1 norm of each output channel's weights (float64)."""
    return np.abs(np.asarray(w, dtype=np.float64)).reshape(w.shape[0], -1).sum(axis=1)


def kept_count(c: int, frac: Fraction, round_to: int = 1) -> int:
    """How many of `c` channels stay: c - floor(frac * c), rounded to the
    nearest multiple of `round_to` (halves up; vector units like widths that
    are multiples of 4 or 8), at least one multiple and at most c."""
    keep = c - c * frac.numerator // frac.denominator
    keep = (keep + round_to // 2) // round_to * round_to
    return min(c, max(keep, round_to, 1))


def kept_channels(w: np.ndarray, keep: int) -> np.ndarray:
    """Sorted indices of the `keep` channels with the largest L1 norms (ties: the first stay)."""
    c = w.shape[0]
    gone = np.argsort(channel_scores(w), kind="stable")[:c - keep]
    return np.setdiff1d(np.arange(c), gone)


def _cut(w: np.ndarray, axis: int, keep: np.ndarray, block: int) -> np.ndarray:
    idx = (keep[:, None] * block + np.arange(block)[None, :]).ravel() if block > 1 else keep
    return np.take(w, idx, axis=axis)


def prune_channels(model, weights: dict, sparsity: float, layers=None, round_to: int = 1):
    """(spec texts by file, pruned weights, kept channels by layer, ChannelReport)."""
    from .compiler.prune import channel_groups
    from .prune import check_weights
    from .prune_spec import rewrite_files
    frac = _fraction(sparsity)
    g = model._elaborate("eval")
    check_weights(g, weights)
    groups = channel_groups(g)
    if not groups:
        raise DlcValueError(f"{g.name} has no 2-D convolution to prune channels of", g.span)
    report = ChannelReport(float(sparsity), params_before=int(g.param_count()))
    chosen = _select(groups, list(layers or []), report)
    if round_to < 1:
        raise DlcValueError(f"round_to {round_to} must be at least 1")
    if not chosen:
        why = "; ".join(f"{k}: {v}" for k, v in list(report.skipped.items())[:3])
        raise DlcValueError(f"no convolution of {g.name} can lose channels ({why})", g.span)
    out, kept, edits = dict(weights), {}, {}
    for grp in chosen:
        keep = kept_channels(np.asarray(weights[grp.weight]), kept_count(grp.channels, frac, round_to))
        kept[grp.layer] = keep
        report.layers[grp.layer] = (grp.channels, len(keep))
        for ax in grp.axes:
            out[ax.param] = _cut(np.asarray(out[ax.param]), ax.axis, keep, ax.block)
        key = (grp.span.line, grp.span.col)
        sites = edits.setdefault(grp.span.file, {})
        sites.setdefault(key, (grp.span, [], frac, round_to))[1].append((grp.layer, grp.channels, len(keep)))
    texts = rewrite_files({f: list(s.values()) for f, s in edits.items()})
    return texts, out, kept, report


def check_pruned(path, weights: dict, report: ChannelReport, name: str | None = None):
    """Load the written spec, check it and its weights; the report gets the new count."""
    from .api import load
    from .prune import check_weights
    m = load(path, name)
    g = m._elaborate("eval")
    check_weights(g, weights, "the pruned weights")
    report.params_after = int(g.param_count())
    return m
