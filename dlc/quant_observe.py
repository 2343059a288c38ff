"""Calibration runs: the float model on the calibration examples, with an
observer on every quantization site's input and output.

The graph observed is the one the `quantize` pass will see
(`passes.quantize.calibration_graph`: the eval graph after the pipeline's
passes before `quantize`, fold_batchnorm included), so a convolution's ranges
are those of the folded convolution and a site's output is observed after
its relu epilogue, as the pass quantizes it.  Each site's input, output and
weight become extra outputs of that graph, which the NumPy reference
interpreter runs `BATCH` examples at a time; the observers
(`compiler.quant.calibrate`: minmax, percentile, entropy) stream over the
batches.
"""
from __future__ import annotations

import numpy as np

BATCH = 256


def observed_graph(model):
    """(eval graph with every site's input, output and weight as extra outputs
    named "<layer>:in", "<layer>:out", "<layer>:weight", the sites)."""
    from .compiler.passes.quantize import calibration_graph
    from .compiler.quant import quant_sites
    from .errors import DlcValueError
    g = calibration_graph(model.symbolic_graph("eval"), model.opt, backend="numpy")
    sites = quant_sites(g)
    if not sites:
        raise DlcValueError(f"{model.name} has no layer dlc quantizes (conv2d or dense on float weights)",
                            g.span)
    for s in sites:
        g.outputs += [s.input, s.output, s.weight]
        g.output_names += [s.in_key, s.out_key, f"{s.name}:weight"]
    return g, sites


def calibrate_observers(model, weights: dict, x: np.ndarray, method: str = "minmax", *,
                        progress: bool = True, **options) -> tuple[dict, dict, list]:
    """Run the float model on `x`: ({range key: observer}, {layer: weight as the
    site sees it}, sites).  `options` go to the observers (percentile=99.99)."""
    from .backends import get_backend
    from .compiler.quant import make_observer
    g, sites = observed_graph(model)
    exe = get_backend("numpy").compile(g)
    obs = {k: make_observer(method, **options) for s in sites for k in (s.in_key, s.out_key)}
    seen_weights: dict = {}
    feed_name = g.inputs[0].name
    with StepProgress("calibrating", -(-len(x) // BATCH), enabled=progress) as bar:
        for i in range(0, len(x), BATCH):
            xb = x[i:i + BATCH]
            outs, _ = exe.run({feed_name: xb}, weights)
            for key, o in obs.items():
                o.update(outs[key])
            bar.advance(len(xb))
    for s in sites:
        seen_weights[s.name] = np.asarray(outs[f"{s.name}:weight"])
    return obs, seen_weights, sites


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
