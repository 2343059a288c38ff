"""bench/results/issue11.md from the JSON files `bench/run_issue11.sh` writes.

    python bench/issue11_report.py
"""
from __future__ import annotations

import json
from pathlib import Path

R = Path(__file__).resolve().parent / "results"
MIB = 1 << 20


def _load(name: str) -> dict:
    return json.loads((R / name).read_text())


def tvm() -> list[str]:
    out = ["## TVM cpu at -O0 and -O2 against onnxruntime (graph optimisation ALL) and torch.compile",
           "",
           "`python bench/bench_tvm.py --models M --batches 1,32 --levels 0,2 --torch-compile --repeat 6 --warmup 2`."
           " torch.compile: default mode, CPU inductor. Targets: TVM-O2/ORT <= 0.9, TVM-O2/compile <= 1.0.", "",
           "| case | TVM -O0 ms | TVM -O2 ms | onnxruntime | torch.compile | torch eager | TVM-O2/ORT | TVM-O2/compile"
           " | -O2/-O0 |", "|---|---|---|---|---|---|---|---|---|"]
    for m in ("resnet18", "resnet50", "mobilenet_v2", "bert_base"):
        for r in _load(f"issue11_tvm_{m}.json")["rows"]:
            med, o = r["median_ms"], r["tvm_over"]["tvm_O2"]
            out.append(f"| {m} b{r['batch']} | {med['tvm_O0']:.1f} | {med['tvm_O2']:.1f} | {med['ort']:.1f} | "
                       f"{med['compile']:.1f} | {med['torch']:.1f} | {o['ort']:.2f} | {o['compile']:.2f} | "
                       f"{med['tvm_O2'] / med['tvm_O0']:.2f} |")
    return out + [""]


def numpy() -> list[str]:
    out = ["## NumPy interpreter at -O2 against torch eager", "",
           "`python bench/bench_numpy.py --no-check` (hand-written torch modules of bench/reference) and"
           " `python bench/bench_train.py` (b64, cross-entropy, Adam). Targets: ResNet-18 b1 <= 1.2,"
           " training steps <= 1.5.", "", "| case | numpy ms | torch ms | numpy/torch |", "|---|---|---|---|"]
    for r in _load("issue11_numpy_forward.json")["forward"]:
        out.append(f"| {r['spec']} b{r['batch']} forward | {r['numpy_ms']:.2f} | {r['torch_ms']:.2f} | {r['ratio']:.2f} |")
    for r in _load("issue11_train_step.json")["train_step"]:
        out.append(f"| {r['spec']} b{r['batch']} training step | {r['numpy_ms']:.2f} | {r['torch_ms']:.2f} | "
                   f"{r['ratio']:.2f} |")
    return out + [""]


def memory() -> list[str]:
    out = ["## Memory plan against the NumPy interpreter's tracemalloc peak", "",
           "`python bench/bench_memory.py` (-O2 graphs). Targets: ResNet-50 planned peak >= 40% below the naive"
           " plan; the measured peak within 10% of the plan's prediction.", "",
           "| model | N | mode | kernels | naive MiB | planned MiB | saving | predicted MiB | measured MiB |"
           " measured/predicted |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in _load("issue11_memory.json")["rows"]:
        out.append(f"| {r['spec']} | {r['N']} | {r['mode']} | {r['kernels']} | {r['naive_bytes'] / MIB:.1f} | "
                   f"{r['planned_bytes'] / MIB:.1f} | {r['saving'] * 100:.0f}% | "
                   f"{r['predicted_interpreter_bytes'] / MIB:.1f} | {r['measured_interpreter_bytes'] / MIB:.1f} | "
                   f"{r['measured_over_predicted']:.2f} |")
    return out + [""]


def torch_module() -> list[str]:
    out = ["## The generated torch module against the hand-written one (bench/reference)", "",
           "`python bench/bench_torch_zoo.py --repeat 15 --warmup 3 --min-cell-seconds 0`: generated / hand-written,"
           " median of back-to-back pairs, batch 1, eval. Targets: no slower; bert_base (SDPA) faster.", "",
           "| model | generated ms | hand-written ms | ratio | IQR | SDPA in generated |", "|---|---|---|---|---|---|"]
    for r in _load("issue11_torch_zoo.json")["models"]:
        f = r["forward_eval"]
        out.append(f"| {r['model']} | {f['gen_ms']:.2f} | {f['hand_ms']:.2f} | {f['ratio']:.3f} | "
                   f"{f['ratio_iqr'][0]:.2f}-{f['ratio_iqr'][1]:.2f} | {r['generated_uses_sdpa']} |")
    return out + [""]


def main() -> None:
    cpu = (R / "issue11_cpu.txt").read_text().split(":", 1)[-1].strip()
    lines = ["# Issue 11 figures: the optimising middle", "",
             f"Measured with `bash bench/run_issue11.sh` on an idle machine, CPU {cpu} (Zen 4), 2 cores, 2 threads"
             " for every runtime, 2026-12-07. The figures of a row come from one process, side by side; medians"
             " after warm-up.", ""]
    lines += tvm() + numpy() + memory() + torch_module()
    lines += ["## Kernel counts", "", "`python bench/kernel_counts.py`: [kernel_counts.md](kernel_counts.md).", ""]
    tmp = R / "issue11.md.tmp"
    tmp.write_text("\n".join(lines))
    tmp.replace(R / "issue11.md")


if __name__ == "__main__":
    main()
