"""Node counts before and after -O1 (canonicalize, fold_constants, cse, dce)
for every zoo spec: the eval graph, the training-mode forward graph, and the
training step (loss and every gradient, `Model.grad_graph`) with symbolic
sizes and at the model's example sizes; with the duplicates CSE can merge.

    python bench/simplify_counts.py      # a markdown table on stdout, and
                                         # bench/results/simplify_counts.md

Counts include the nodes of nested (scan, fused) bodies, as the pass records do.
"""
from __future__ import annotations

import glob
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import dlc  # noqa: E402
from dlc.compiler.passes import PipelineOptions, run_pipeline  # noqa: E402
from dlc.compiler.passes.cse import node_key  # noqa: E402
from dlc.errors import DlcError  # noqa: E402

PASSES = ("canonicalize", "fold_constants", "cse", "dce")


def count(g) -> int:
    return sum(1 for _ in g.walk())


def duplicates(g) -> int:
    """Top-level nodes with the CSE key of an earlier node."""
    seen, dup = set(), 0
    for n in g.nodes:
        k = node_key(n)
        dup += k is not None and k in seen
        seen.add(k)
    return dup


def simplify(g):
    before, dup = count(g), duplicates(g)
    g, records, _ = run_pipeline(g, PipelineOptions(level=1), verify=False)
    removed = {r.name: r.nodes_before - r.nodes_after for r in records}
    return before, count(g), dup, duplicates(g), removed


def row(spec: str) -> str:
    m = dlc.load(spec)
    cells = []
    for mode in ("eval", "train"):
        before, after, *_ = simplify(m.symbolic_graph(mode))
        cells.append(f"{before} → {after}")
    try:
        before, after, d0, d1, _ = simplify(m.grad_graph("train")[0])
        examples = {k: v for k, v in m.graph.dims.items() if v is not None}
        cb, ca, _, _, removed = simplify(m.grad_graph("train", examples)[0])
    except DlcError as e:
        return f"| {Path(spec).stem} | " + " | ".join(cells) + f" | no training graph: {e.message[:60]} | | | |"
    cells += [f"{before} → {after}", f"{d0} → {d1}", f"{cb} → {ca}", "/".join(str(removed.get(p, 0)) for p in PASSES)]
    return f"| {Path(spec).stem} | " + " | ".join(cells) + " |"


def main() -> None:
    lines = ["| spec | eval | train fwd | training step (symbolic) | dup before → after | "
             "training step (example sizes) | removed by canon / fold / cse / dce |",
             "|---|---|---|---|---|---|---|"]
    print("\n".join(lines), flush=True)
    for spec in sorted(glob.glob(str(ROOT / "specs" / "*.dln"))):
        lines.append(row(spec))
        print(lines[-1], flush=True)
    out = ROOT / "bench" / "results" / "simplify_counts.md"
    tmp = out.with_suffix(".md.tmp")
    tmp.write_text("\n".join(lines) + "\n")
    tmp.replace(out)


if __name__ == "__main__":
    main()
