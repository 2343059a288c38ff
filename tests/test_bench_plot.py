"""`dlc bench --plot`: bars proportional to the ratio to torch-eager, and rows
that were not timed drawn as their status, never as a bar."""
import io

import pytest
from click.testing import CliRunner

from dlc.bench_plot import _COLOURS, plot_series, render_png
from dlc.cli import main

PIL = pytest.importorskip("PIL.Image")


def _report(rows):
    return {"kind": "models", "model": "MLP", "repeat": 5, "threads": {"threads": 1},
            "machine": {"cpu": {"model": "test cpu"}, "date": "2026-12-07T20:00:00"}, "rows": rows}


def _row(name, ratio, status="ok"):
    return {"name": name, "batch": 1, "mode": "eval", "status": status, "median_ms": 2.0 * (ratio or 1),
            "ratio_to_torch_eager": ratio if status == "ok" else None}


def _bar_length(img, colour) -> int:
    """The longest horizontal run of `colour` (a bar; anti-aliased text gives stray pixels, not runs)."""
    px, best = img.convert("RGB").load(), 0
    for y in range(img.height):
        run = 0
        for x in range(img.width):
            run = run + 1 if px[x, y] == colour else 0
            best = max(best, run)
    return best


def test_bars_are_proportional_to_the_ratio_and_untimed_rows_have_none():
    rep = _report([_row("torch-eager", 1.0), _row("tvm", 0.5), _row("numpy", 2.0), _row("torch", None, "wrong")])
    img = PIL.open(io.BytesIO(render_png(rep)))
    eager, tvm, numpy = (_bar_length(img, _COLOURS[n]) for n in ("torch-eager", "tvm", "numpy"))
    assert tvm == pytest.approx(eager / 2, abs=2) and numpy == pytest.approx(2 * eager, abs=2)
    assert _bar_length(img, _COLOURS["torch"]) == 0
    (label, bars), = plot_series(rep)[1]
    assert label == "eval batch 1" and ("torch", None, "wrong") in bars


def test_the_command_writes_the_png(tmp_path):
    out = tmp_path / "r.png"
    r = CliRunner().invoke(main, ["bench", "specs/mlp.dln", "--backends", "numpy", "--baselines", "torch-eager",
                                  "--repeat", "2", "--warmup", "0", "--threads", "1", "--plot", str(out)])
    assert r.exit_code == 0, r.output
    img = PIL.open(out)
    assert img.format == "PNG" and _bar_length(img, _COLOURS["numpy"]) > 0
