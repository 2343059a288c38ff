"""Accuracy of dlc's static int8 quantization (issue 12): fp32 against int8 on
the held-out digits split, for mlp and digits_cnn, every calibration method,
per-channel and per-tensor weights, and one accuracy-budget fallback.

    python bench/quant_accuracy.py [--out bench/results/quant_accuracy.md] [--seeds 0]

Each model is trained from scratch as its train section says (epochs, batch,
optimizer; the torch backend) with the given seed, then quantized with
`dlc.quantize` (calibration on the whole training split, 1437 examples;
evaluation of both models on the 360 validation examples by the NumPy backend,
whose int8 kernels are the exact integer reference).  The fallback example
uses a deliberately poor calibration (2 examples, per-tensor weights) and a
budget of half its plain int8 loss.
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


def fallback_rows(weights: dict) -> list[str]:
    out = []
    for name in MODELS:
        spec = str(ROOT / "specs" / f"{name}.dln")
        kw = dict(calib_size=2, per_channel=False, progress=False)
        plain = dlc.quantize(spec, weights[name], **kw)
        loss = (plain.fp32_accuracy - plain.int8_accuracy) * 100
        budget = round(loss / 2, 2)
        out.append(f"### {name}: plain int8 loses {loss:.2f} points; `--budget {budget:g}%`")
        out.append("")
        out.append(f"`dlc quantize specs/{name}.dln --weights W --calib train --calib-size 2 --per-tensor "
                   f"--budget {budget:g}% -o {name}.int8.safetensors`")
        out.append("")
        try:
            b = dlc.quantize(spec, weights[name], budget=budget, **kw).budget
            verdict = f"met: {', '.join(b.float_layers)} back in fp32, final loss {b.final.loss_pp:+.2f} points"
        except BudgetError as e:
            b, verdict = e.result, f"not met: {e.message}"
        out += ["| layer | sensitivity (points regained in fp32) |", "|---|---|"]
        out += [f"| {k} | {v:+.2f} |" for k, v in b.sensitivity.items()]
        out += ["", "| step | fp32 layers | accuracy | loss (points) |", "|---|---|---|---|"]
        for s in b.steps:
            out.append(f"| {s.what} | {'all' if s.what == 'fp32' else ', '.join(s.float_layers) or '-'} | "
                       f"{s.accuracy:.2%} | {s.loss_pp:+.2f} |")
        out += ["", f"Result: {verdict}.", ""]
    return out


def main() -> None:
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
        lines += ["", "## The budget fallback (seed %d)" % seeds[0], ""] + fallback_rows(first)
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
