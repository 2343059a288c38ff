#!/usr/bin/env bash
# The figures of issue 11 (the optimising middle), each ratio measured side by
# side in one process.  Run on an otherwise idle machine:
#     bash bench/run_issue11.sh            # about 40 minutes on 2 cores
# Results: bench/results/issue11_*.json and the logs beside them.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
R=bench/results
lscpu | grep 'Model name' | tee $R/issue11_cpu.txt
# NumPy -O2 against torch eager: ResNet-18 b1 forward, training steps (mlp, lenet5, b64, Adam)
$PY bench/bench_numpy.py --repeat 7 --no-check --out $R/issue11_numpy_forward.json | tee $R/issue11_numpy_forward.log
$PY bench/bench_train.py --repeat 9 --out $R/issue11_train_step.json | tee $R/issue11_train_step.log
# memory plan against the interpreter's tracemalloc peak
$PY bench/bench_memory.py --out $R/issue11_memory.json | tee $R/issue11_memory.log
# the generated torch module against the hand-written one
$PY bench/bench_torch_zoo.py --repeat 15 --warmup 3 --min-cell-seconds 0 --out $R/issue11_torch_zoo.json \
    | tee $R/issue11_torch_zoo.log
# TVM at -O0 and -O2 against onnxruntime (ALL) and torch.compile, batch 1 and 32
for m in resnet18 mobilenet_v2 resnet50 bert_base; do
    $PY bench/bench_tvm.py --models $m --batches 1,32 --levels 0,2 --torch-compile --repeat 6 --warmup 2 \
        --out $R/issue11_tvm_$m.json | tee $R/issue11_tvm_$m.log
done
