"""Print, per real model and backend, the largest error of dlc's output relative to onnxruntime's
(max |dlc - ort| / max |ort|): `python tests/onnx/real_models_report.py [numpy torch tvm]`."""
from __future__ import annotations

import sys
import warnings

import numpy as np


def main(backends):
    import onnx
    import onnxruntime as ort
    import real_models

    from dlc.frontend.onnx import import_onnx
    from dlc.onnx_import import run_imported
    warnings.simplefilter("ignore")
    print("| model | " + " | ".join(backends) + " |")
    print("|---|" + "---|" * len(backends))
    for name in real_models.models():
        data, feed, _ = real_models.export(name)
        ref = ort.InferenceSession(data, providers=["CPUExecutionProvider"]).run(None, feed)[0]
        imp = import_onnx(onnx.load_from_string(data))
        row = []
        for b in backends:
            try:
                out = run_imported(imp, feed, b, bind={"N": next(iter(feed.values())).shape[0]})["out"]
                row.append(f"{np.abs(out - ref).max() / np.abs(ref).max():.1e}")
            except Exception as e:  # noqa: BLE001  (reported in the table, not hidden)
                row.append(f"error: {type(e).__name__}")
        print(f"| {name} | " + " | ".join(row) + " |", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:] or ["numpy", "torch", "tvm"])
