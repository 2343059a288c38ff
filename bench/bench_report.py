"""Combine the `dlc bench ... -o X.json` reports in bench/results/bench_cmd/ into
bench/results/bench_report.{md,json}, with the grid of cells the issue asks
for (zoo models with reference modules, batch 1 and 32, --train for mlp,
lenet5 and resnet18) marked measured or not.

    python bench/bench_report.py [--dir bench/results/bench_cmd] [--out bench/results/bench_report]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dlc.bench_baselines import BASELINES, REFERENCES  # noqa: E402
from dlc.bench_format import render  # noqa: E402
from dlc.bench_plot import render_png  # noqa: E402
from dlc.runtime.atomic import atomic_write  # noqa: E402

RUNTIMES = ("numpy", "torch", "tvm", *BASELINES)
TRAIN_MODELS = ("MLP", "LeNet5", "ResNet18")


def grid(reports: list[dict]) -> list[dict]:
    """One cell per (model, mode, batch, runtime): its status, or 'not measured'."""
    got = {(r["model"], row.get("mode", "eval"), row["batch"], row["name"]): row["status"]
           for r in reports if r["kind"] == "models" for row in r["rows"]}
    cells = []
    for model in REFERENCES:
        for batch in (1, 32):
            for rt in RUNTIMES:
                cells.append({"model": model, "mode": "eval", "batch": batch, "runtime": rt,
                              "status": got.get((model, "eval", batch, rt), "not measured")})
    for model in TRAIN_MODELS:
        for batch in (2, 32) if model == "ResNet18" else (1, 32):   # batch norm trains on 2 or more
            for rt in RUNTIMES:
                na = "n/a: onnxruntime runs inference only" if rt == "onnxruntime" else "not measured"
                cells.append({"model": model, "mode": "train", "batch": batch, "runtime": rt,
                              "status": got.get((model, "train", batch, rt), na)})
    return cells


def markdown(reports: list[dict], cells: list[dict]) -> str:
    out = ["# dlc bench report", "",
           ("Produced by `python bench/bench_report.py` from the `dlc bench ... -o` JSON files in "
           "`bench/results/bench_cmd/` (commands in `bench/results/bench_cmd/COMMANDS`). "
           "Method: docs/benchmarking.md. The machine is shared: the load average is in each header."), ""]
    for r in reports:
        title = f"{r['model']} ({r.get('mode', 'eval')})" if r["kind"] == "models" else f"op suite {r['suite']}"
        out += [f"## {title}", ""]
        if r.get("source"):
            out += [f"![{title}]({r['source'][:-5]}.png)", "", f"From `{r['source']}`.", ""]
        out += [render(r, "md")]
    measured = [c for c in cells if c["status"] == "ok"]
    missing = [c for c in cells if c["status"] != "ok"]
    out += ["## Coverage of the issue's grid", "",
            f"{len(measured)} of {len(cells)} cells measured and checked. Cells not measured:", "",
            "| model | mode | batch | runtimes | status |", "|---|---|---|---|---|"]
    groups: dict = {}
    for c in missing:
        groups.setdefault((c["model"], c["mode"], c["batch"], c["status"]), []).append(c["runtime"])
    for (model, mode, batch, status), rts in groups.items():
        out.append(f"| {model} | {mode} | {batch} | {', '.join(rts)} | {status} |")
    return "\n".join(out) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", default=str(ROOT / "bench/results/bench_cmd"))
    ap.add_argument("--out", default=str(ROOT / "bench/results/bench_report"))
    args = ap.parse_args()
    reports = []
    for p in sorted(Path(args.dir).glob("*.json")):
        r = json.loads(p.read_text())
        r["source"] = f"{Path(args.dir).name}/{p.name}"
        atomic_write(p.with_suffix(".png"), render_png(r))     # the chart beside each run's JSON
        reports.append(r)
    reports.sort(key=lambda r: (r["kind"] != "models", r.get("mode", ""), r.get("model", r.get("suite", ""))))
    cells = grid(reports)
    atomic_write(args.out + ".json", (json.dumps({"reports": reports, "grid": cells}, indent=2) + "\n").encode())
    atomic_write(args.out + ".md", markdown(reports, cells).encode())


if __name__ == "__main__":
    main()
