"""Accuracy of dlc's static int8 quantization (issue 12): fp32 against int8 on
the held-out digits split, for mlp and digits_cnn, every calibration method,
per-channel and per-tensor weights, and one accuracy-budget fallback.

    python bench/quant_accuracy.py [--out bench/results/quant_accuracy.md] [--seeds 0]

Each model is trained from scratch as its train section says (epochs, batch,
optimizer; the torch backend) with the given seed, then quantized with
`dlc.quantize` (calibration on the whole training split, 1437 examples;
evaluation of both models on the 360 validation examples by the NumPy backend,
whose int8 kernels are the exact integer reference).  The fallback example
calibrates on images at a tenth of their brightness (so the activations
clip and int8 loses accuracy) with a budget of half its plain int8 loss.
"""
from __future__ import annotations

import argparse
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import dlc  # noqa: E402
from dlc.quant_budget import BudgetError  # noqa: E402
from dlc.runtime.weights import save_weights  # noqa: E402

MODELS = ("mlp", "digits_cnn")
METHODS = ("minmax", "percentile", "entropy")


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    return platform.processor() or "unknown"


def train(name: str, seed: int, folder: Path) -> str:
    r = dlc.train(ROOT / "specs" / f"{name}.dln", backend="torch", seed=seed, progress=False)
    path = folder / f"{name}-seed{seed}.safetensors"
    save_weights(path, r.weights)
    return str(path)


def accuracy_rows(weights: dict, seed: int) -> list[str]:
    rows = []
    for name in MODELS:
        for per_channel in (True, False):
            for method in METHODS:
                t0 = time.perf_counter()
                res = dlc.quantize(str(ROOT / "specs" / f"{name}.dln"), weights[name], method=method,
                                   per_channel=per_channel, progress=False)
                loss = (res.fp32_accuracy - res.int8_accuracy) * 100
                rows.append(f"| {name} | {seed} | {method} | {'channel' if per_channel else 'tensor'} | "
                            f"{res.fp32_accuracy:.2%} | {res.int8_accuracy:.2%} | {loss:+.2f} | "
                            f"{time.perf_counter() - t0:.1f} |")
    return rows


def fallback_rows(weights: dict, folder: Path) -> list[str]:
    """The budget at work.  Entropy calibration of digits_cnn clips activations and loses accuracy;
    --budget 0.5% wins it back.  Calibration on training images at a tenth of their brightness
    (ranges far too small) loses much more: a budget of half that loss, and one of 0.5 points."""
    import numpy as np
    from dlc.quant_data import load_split
    dim = folder / "dim.npz"
    x = load_split("train", dlc.load(ROOT / "specs" / "mlp.dln").symbolic_graph(), "digits").x[:200]
    np.savez(dim, x=x * 0.1)
    cases = [("digits_cnn", dict(method="entropy"), "--method entropy", 0.5)]
    for name in MODELS:
        cases.append((name, dict(calib=str(dim)), "--calib dim.npz", None))
    cases.append(("digits_cnn", dict(calib=str(dim)), "--calib dim.npz", 0.5))
    out = ["dim.npz: the first 200 training images x 0.1 (`np.savez('dim.npz', x=x * 0.1)`).", ""]
    for name, kw, flags, budget in cases:
        out += fallback_case(name, weights[name], kw, flags, budget)
    return out


def fallback_case(name: str, weights: str, kw: dict, flags: str, budget) -> list[str]:
    spec = str(ROOT / "specs" / f"{name}.dln")
    plain = dlc.quantize(spec, weights, progress=False, **kw)
    loss = (plain.fp32_accuracy - plain.int8_accuracy) * 100
    budget = round(loss / 2, 2) if budget is None else budget
    out = [f"### {name} {flags}: plain int8 loses {loss:.2f} points; `--budget {budget:g}%`", "",
           f"`dlc quantize specs/{name}.dln --weights W {flags} --budget {budget:g}% -o {name}.int8.safetensors`", ""]
    try:
        b = dlc.quantize(spec, weights, budget=budget, progress=False, **kw).budget
        verdict = f"met: {', '.join(b.float_layers)} back in fp32, final loss {b.final.loss_pp:+.2f} points"
    except BudgetError as e:
        b, verdict = e.result, f"not met, `dlc quantize` exits 1: error: {e.message}"
    out += ["| layer | sensitivity (points regained in fp32) |", "|---|---|"]
    out += [f"| {k} | {v:+.2f} |" for k, v in b.sensitivity.items()]
    out += ["", "| step | fp32 layers | accuracy | loss (points) |", "|---|---|---|---|"]
    for s in b.steps:
        out.append(f"| {s.what} | {'all' if s.what == 'fp32' else ', '.join(s.float_layers) or '-'} | "
                   f"{s.accuracy:.2%} | {s.loss_pp:+.2f} |")
    return out + ["", f"Result: {verdict}.", ""]


def main() -> None:
    import torch
    torch.set_num_threads(1)        # the machine's cores are shared: one thread trains fastest under load
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "quant_accuracy.md"))
    ap.add_argument("--seeds", default="0", help="training seeds, comma-separated")
    args = ap.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    lines = ["# int8 accuracy: fp32 against static int8 on the digits validation split", "",
             f"`python bench/quant_accuracy.py --seeds {args.seeds}` on {cpu_model()}, "
             f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.", "",
             "Models trained with the torch backend as their train section says (seeded); quantized by "
             "`dlc.quantize` calibrating on the 1437 training examples; both evaluated on the 360 validation "
             "examples (one example = 0.28 points) by the NumPy backend's integer reference kernels. "
             "Activations per-tensor uint8, weights int8 per-channel or per-tensor.", "",
             "| model | seed | method | weights | fp32 | int8 | loss (points) | quantize s |",
             "|---|---|---|---|---|---|---|---|"]
    with tempfile.TemporaryDirectory() as d:
        first = None
        for seed in seeds:
            weights = {name: train(name, seed, Path(d)) for name in MODELS}
            first = first or weights
            lines += accuracy_rows(weights, seed)
        lines += ["", "## The budget fallback (seed %d)" % seeds[0], ""] + fallback_rows(first, Path(d))
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
