"""Calibration observers: run the float model on the calibration examples and
collect, for every quantization site, what its input and output hold.

The graph observed is the one the `quantize` pass will see: the eval graph
after the pipeline's passes up to `fold_affine` (with `fold_batchnorm`
always, as the quantize pass folds batch norms first), so a convolution's
output range is that of the folded convolution.  Each site's input and output
values become extra outputs of that graph, which the NumPy reference
interpreter runs batch by batch.

Per key ("<layer>:in", "<layer>:out") an observer keeps the exact minimum and
maximum and a seeded, uniform sample of the values (at most `SAMPLE_CAP`),
which percentile and entropy calibration read: a sample of a million values
places the 99.99th percentile within a few hundredths of a percentile.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .errors import DlcValueError

SAMPLE_CAP = 1 << 20
BATCH = 256


@dataclass
class Observer:
    """What one IR value held over the calibration set."""

    key: str
    lo: float = np.inf
    hi: float = -np.inf
    count: int = 0
    rate: float = 1.0                            # fraction of values sampled
    parts: list = field(default_factory=list)
    weight: np.ndarray | None = None             # "<layer>:weight": the weight as the site sees it

    def add(self, a: np.ndarray, rng: np.random.Generator) -> None:
        a = np.asarray(a, dtype=np.float32).ravel()
        if not a.size:
            return
        if not np.isfinite(a).all():
            raise DlcValueError(f"{self.key} holds NaN or inf on the calibration data", None,
                                "check the weights and the calibration data")
        self.lo, self.hi = min(self.lo, float(a.min())), max(self.hi, float(a.max()))
        self.count += a.size
        self.parts.append(a if self.rate >= 1.0 else a[rng.random(a.size) < self.rate])

    @property
    def sample(self) -> np.ndarray:
        return np.concatenate(self.parts) if self.parts else np.zeros(0, np.float32)


def pipeline_prefix(opt) -> tuple[str, ...]:
    """The passes that run before `quantize` at `opt`'s level, fold_batchnorm included."""
    from .compiler.passes import PIPELINE, selected_passes
    stop = PIPELINE.index("fold_affine") + 1
    chosen = {p.name for p in selected_passes(_plain(opt), "eval")} | {"fold_batchnorm"}
    return tuple(n for n in PIPELINE[:stop] if n in chosen)


def _plain(opt):
    """`opt` without quantization (the observed graph is the float one)."""
    import dataclasses
    from .compiler.passes import PipelineOptions
    opt = opt or PipelineOptions()
    return dataclasses.replace(opt, quant=None) if hasattr(opt, "quant") else opt


def observed_graph(model):
    """(eval graph with every site's input and output as extra outputs, the sites)."""
    import dataclasses
    from .compiler.passes import run_pipeline
    from .quant_sites import list_sites
    g = model.symbolic_graph("eval")
    opts = dataclasses.replace(_plain(model.opt), passes=pipeline_prefix(model.opt), disable=())
    run_pipeline(g, opts, backend="numpy")
    sites = list_sites(g)
    if not sites:
        raise DlcValueError(f"{model.name} has no layer dlc quantizes (conv2d or dense with a weight)", g.span)
    for s in sites:
        g.outputs += [s.input, s.output, s.weight]
        g.output_names += [f"{s.name}:in", f"{s.name}:out", f"{s.name}:weight"]
    return g, sites


def calibrate_observers(model, weights: dict, x: np.ndarray, *, progress: bool = True,
                        seed: int = 0) -> tuple[dict[str, Observer], list]:
    """Run the float model on `x` and return ({key: Observer}, sites); keys
    "<layer>:in" and "<layer>:out" observe values, "<layer>:weight" holds the weight."""
    from .backends import get_backend
    g, sites = observed_graph(model)
    exe = get_backend("numpy").compile(g)
    keys = g.output_names[len(g.output_names) - 3 * len(sites):]
    obs = {k: Observer(k) for k in keys}
    rng = np.random.default_rng([seed, 17])
    feed_name = g.inputs[0].name
    with StepProgress("calibrating", -(-len(x) // BATCH), enabled=progress) as bar:
        for i in range(0, len(x), BATCH):
            outs, _ = exe.run({feed_name: x[i:i + BATCH]}, weights)
            for k in keys:
                o = obs[k]
                if k.endswith(":weight"):
                    o.weight = np.asarray(outs[k])
                    continue
                if o.count == 0:      # the first batch sizes the sampling rate for the whole set
                    per_example = outs[k].size / max(1, len(x[i:i + BATCH]))
                    o.rate = min(1.0, SAMPLE_CAP / max(1.0, per_example * len(x)))
                o.add(outs[k], rng)
            bar.advance(len(x[i:i + BATCH]))
    return obs, sites


class StepProgress:
    """A rich progress bar on a terminal (stderr); silent elsewhere."""

    def __init__(self, what: str, total: int, enabled: bool = True):
        from rich.console import Console
        self.what, self.total = what, max(1, int(total))
        console = Console(stderr=True)
        self.enabled = enabled and console.is_terminal and not console.is_dumb_terminal
        self.console, self._progress, self._task = console, None, None

    def __enter__(self) -> StepProgress:
        if self.enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
            self._progress = Progress(TextColumn(f"[bold]{self.what}"), BarColumn(), MofNCompleteColumn(),
                                      TextColumn("{task.fields[examples]} examples"), TimeRemainingColumn(),
                                      console=self.console, transient=True)
            self._progress.start()
            self._task = self._progress.add_task(self.what, total=self.total, examples=0)
        return self

    def advance(self, examples: int) -> None:
        if self._progress is not None:
            done = self._progress.tasks[0].fields["examples"] + examples
            self._progress.update(self._task, advance=1, examples=done)

    def __exit__(self, *exc) -> None:
        if self._progress is not None:
            self._progress.stop()
