"""Kernel count of every zoo model before and after the pass pipeline.

    python bench/kernel_counts.py [-O 2] [--mode eval] [--out bench/results/kernel_counts.md]

For each `specs/*.dln` (the last model of the file, at its example sizes):
the kernels a backend launches (`dlc.compiler.kernels.kernel_count`: a fused
region is one kernel, a reshape of a contiguous value and a scalar constant
none) at -O0 and at the given level, and the regions formed per kind.  The
count is a property of the IR, so no backend runs and the figures do not
depend on the machine.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import dlc  # noqa: E402
from dlc.compiler.kernels import kernel_count, kernel_counts_by_kind  # noqa: E402
from dlc.runtime.atomic import atomic_write  # noqa: E402


def counts(path: Path, level: int, mode: str) -> tuple[int, int, int, dict]:
    m = dlc.load(path)
    g0 = m.optimize(level=0).compiled_graph(mode)
    g = m.optimize(level=level).compiled_graph(mode)
    return len(g0.nodes), kernel_count(g0), kernel_count(g), kernel_counts_by_kind(g)


def table(level: int, mode: str) -> str:
    rows = [f"| model | nodes | kernels -O0 | kernels -O{level} | change | regions at -O{level} |",
            "|---|---|---|---|---|---|"]
    total0 = total = 0
    for path in sorted((ROOT / "specs").glob("*.dln")):
        nodes, k0, k, kinds = counts(path, level, mode)
        total0, total = total0 + k0, total + k
        change = f"{(k - k0) / k0:+.0%}" if k0 else "-"
        kinds_text = ", ".join(f"{n} {kind}" for kind, n in sorted(kinds.items())) or "-"
        rows.append(f"| {path.stem} | {nodes} | {k0} | {k} | {change} | {kinds_text} |")
    rows.append(f"| **all** | | {total0} | {total} | {(total - total0) / total0:+.0%} | |")
    return "\n".join(rows) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-O", dest="level", type=int, default=2)
    ap.add_argument("--mode", default="eval", choices=("eval", "train"))
    ap.add_argument("--out", type=Path)
    a = ap.parse_args()
    t0 = time.perf_counter()
    text = table(a.level, a.mode)
    print(text, end="")
    print(f"({time.perf_counter() - t0:.1f} s)", file=sys.stderr)
    if a.out:
        atomic_write(a.out, text.encode())


if __name__ == "__main__":
    main()
