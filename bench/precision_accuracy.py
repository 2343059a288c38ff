"""Train a digits model in fp32, bf16 and fp16 with dlc's symbolic step; one JSON line per precision.

    python bench/precision_accuracy.py specs/mlp.dln numpy > bench/results/precision_accuracy_mlp.jsonl
    python bench/precision_accuracy.py specs/digits_cnn.dln torch > bench/results/precision_accuracy_digits_cnn.jsonl

The train section's settings (epochs, optimizer, schedule, seed); the last epoch's metrics are printed
(val_accuracy is the held-out split's accuracy).  Run folders go to a temporary directory.
"""
from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dlc.compiler.passes import PipelineOptions
from dlc.trainer import train


def main(spec: str, backend: str, epochs: int | None = None) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        for prec in ("fp32", "bf16", "fp16"):
            t = time.time()
            r = train(spec, backend=backend, epochs=epochs, progress=False, grad="symbolic",
                      opt=PipelineOptions(precision=prec), out=str(Path(tmp) / prec))
            print(json.dumps({"spec": spec, "backend": backend, "precision": prec,
                              "seconds": round(time.time() - t, 1), **r.history[-1]}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else None)
