"""Accuracy of unstructured pruning with fine-tuning (issue 12's acceptance).

    python bench/prune_accuracy.py [--spec specs/digits_cnn.dln] [--epochs 30] [--sparsity 0.5]
                                   [--finetune 5] [--out bench/results/prune_accuracy.md]

Trains the spec on its data set (the train section's settings, NumPy
backend), prunes the final weights (`dlc prune`, per-layer magnitude),
fine-tunes them for `--finetune` epochs (`dlc train --weights`, the masks
re-applied after every step) and reports the held-out accuracy of the dense,
the pruned and the fine-tuned weights, and the fine-tuned weights' sparsity.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def accuracy(m, weights: dict, data: str) -> float:
    from dlc.runtime.data import load_dataset
    x_name = m.inputs[0].name
    shape = tuple(int(d) for d in m.inputs[0].shape[1:])
    xs, ys = load_dataset(data, seed=0, input_shape=shape).reshaped(shape).val
    out = m.run({x_name: xs.astype(np.float32)}, weights, bind={"N": len(xs)})
    logits = next(iter(out.values()))
    return float((logits.argmax(axis=1) == ys).mean())


def flow(spec: str, data: str, epochs: int, sparsity: float, finetune: int, folder: Path, backend="numpy") -> dict:
    import dlc
    from dlc.prune import load_masks, prune_unstructured, save_pruned
    m = dlc.load(spec)
    t0 = time.time()
    dense = dlc.train(spec, data=data, epochs=epochs, out=str(folder / "dense"), progress=False,
                      backend=backend).weights
    pruned, masks, report = prune_unstructured(m, dense, sparsity)
    save_pruned(folder / "pruned.safetensors", pruned, masks, report)
    tuned = dlc.train(spec, data=data, epochs=finetune, out=str(folder / "finetune"), progress=False,
                      weights=str(folder / "pruned.safetensors"), backend=backend).weights
    masks = load_masks(folder / "pruned.safetensors")
    zeros = {n: float((np.asarray(tuned[n]) == 0).mean()) for n in masks}
    kept_zero = all(np.all(np.asarray(tuned[n])[~k] == 0) for n, k in masks.items())
    return {"dense": accuracy(m, dense, data), "pruned": accuracy(m, pruned, data),
            "finetuned": accuracy(m, tuned, data), "sparsity": zeros, "masked_stay_zero": kept_zero,
            "seconds": time.time() - t0}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--spec", default="specs/digits_cnn.dln")
    ap.add_argument("--data", default="digits_images")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--sparsity", type=float, default=0.5)
    ap.add_argument("--finetune", type=int, default=5)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "prune_accuracy.md"))
    a = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="dlc-prune-acc-") as tmp:
        r = flow(a.spec, a.data, a.epochs, a.sparsity, a.finetune, Path(tmp))
    lines = [f"# Unstructured pruning of {Path(a.spec).stem}: accuracy on the {a.data} held-out split", "",
             f"`python bench/prune_accuracy.py --spec {a.spec} --epochs {a.epochs} --sparsity {a.sparsity} "
             f"--finetune {a.finetune}` (NumPy backend, seed 0; {r['seconds']:.0f} s)", "",
             "| weights | accuracy |", "| --- | ---: |",
             f"| dense, {a.epochs} epochs | {r['dense']:.2%} |",
             f"| pruned {a.sparsity:.0%} per layer, before fine-tuning | {r['pruned']:.2%} |",
             f"| pruned, fine-tuned {a.finetune} epochs | {r['finetuned']:.2%} |", "",
             f"Fine-tuned minus dense: {(r['finetuned'] - r['dense']) * 100:+.2f} points.  Zeros per weight after "
             "fine-tuning: " + ", ".join(f"{n} {z:.1%}" for n, z in r["sparsity"].items())
             + f"; every masked weight still exactly zero: {r['masked_stay_zero']}."]
    Path(a.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
