"""Random graphs through `dlc.verify`, counted: the figures of docs/verify.md.

    nice -n 19 .venv/bin/python tests/fuzz/run_verify_campaign.py --first 0 --count 2000 \\
        --backends numpy,torch --levels 0,2 --train --out campaign.json

Graphs go ten to a model (as tests/fuzz/test_random_graphs.py).  The JSON
lists every failing model with the diverging node and its reproducer's path.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import dlc  # noqa: E402
from dlc.errors import DlcError  # noqa: E402
from random_graphs import random_spec  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--first", type=int, default=0)
    ap.add_argument("--count", type=int, default=100)
    ap.add_argument("--per-model", type=int, default=10)
    ap.add_argument("--backends", default="numpy,torch")
    ap.add_argument("--levels", default="0,2")
    ap.add_argument("--train", action="store_true")
    ap.add_argument("--out", default="campaign.json")
    a = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="dlc-campaign-"))
    summary = {"graphs": 0, "models": 0, "failing_models": 0, "failures": [], "args": vars(a)}
    t0 = time.time()
    for first in range(a.first, a.first + a.count, a.per_model):
        seeds = list(range(first, min(first + a.per_model, a.first + a.count)))
        text, _ = random_spec(seeds)
        spec = work / f"random_{first}.dln"
        spec.write_text(text)
        try:
            rep = dlc.verify(dlc.load(spec), backends=tuple(a.backends.split(",")),
                             levels=tuple(int(x) for x in a.levels.split(",")), train=a.train,
                             repro_dir=str(work / f"repro_{first}"))
            ok, detail = rep.ok, rep.render()
        except DlcError as e:
            ok, detail = False, e.render()
        summary["graphs"] += len(seeds)
        summary["models"] += 1
        if not ok:
            summary["failing_models"] += 1
            summary["failures"].append({"seeds": [seeds[0], seeds[-1]], "spec": str(spec), "report": detail})
        summary["seconds"] = round(time.time() - t0, 1)
        Path(a.out).write_text(json.dumps(summary, indent=1))
    print(json.dumps({k: v for k, v in summary.items() if k != "failures"}))


if __name__ == "__main__":
    main()
