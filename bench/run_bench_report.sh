#!/usr/bin/env bash
# The runs behind bench/results/bench_report.{md,json} (docs/benchmarking.md): every zoo model with a
# reference module at batch 1 and 32 against torch-eager, torch-compile and onnxruntime, --train for mlp,
# lenet5 and resnet18, and the op suites; then the combined report.  `make bench` runs it (about an hour on
# one core of the project's 2-core machine).  --threads 1: on a shared machine a 2-thread OpenMP team waits
# at barriers for a preempted partner (bench/results/bench_cmd_2threads/mlp.json).
#   bash bench/run_bench_report.sh [ONLY]      ONLY: run just the outputs whose name contains it
set -uo pipefail
cd "$(dirname "$0")/.."
DLC=${DLC:-.venv/bin/dlc}
D=bench/results/bench_cmd
ONLY=${1:-}
run() {   # output name, then the dlc bench arguments
    local out=$1; shift
    [[ -n "$ONLY" && "$out" != *"$ONLY"* ]] && return 0
    echo "dlc bench $* -o $D/$out.json"
    $DLC bench "$@" -o "$D/$out.json" >"$D/$out.txt" 2>&1 || echo "  (exit $?: see $D/$out.txt)"
}
T="--threads 1"
run mlp specs/mlp.dln --batch 1,32 $T --repeat 20 --warmup 3
run lenet5 specs/lenet5.dln --batch 1,32 $T --repeat 20 --warmup 3
run resnet18 specs/resnet18.dln --batch 1 $T --repeat 10 --warmup 2
run resnet18_b32 specs/resnet18.dln --batch 32 $T --repeat 5 --warmup 1
run resnet50 specs/resnet50.dln --batch 1 $T --repeat 5 --warmup 1
run resnet50_b32 specs/resnet50.dln --batch 32 $T --repeat 3 --warmup 1
run mobilenet_v2 specs/mobilenet_v2.dln --batch 1 $T --repeat 10 --warmup 2
run mobilenet_v2_b32 specs/mobilenet_v2.dln --batch 32 $T --repeat 5 --warmup 1
run transformer_encoder_layer specs/transformer_encoder_layer.dln --batch 1 --bind T=128 $T --repeat 10 --warmup 2
run transformer_encoder_layer_b32 specs/transformer_encoder_layer.dln --batch 32 --bind T=128 $T --repeat 5 --warmup 1
run bert_base specs/bert_base.dln -m BertClassifier --batch 1 --bind T=128 $T --repeat 5 --warmup 1
run bert_base_b32 specs/bert_base.dln -m BertClassifier --batch 32 --bind T=128 $T --repeat 3 --warmup 1
run gpt2 specs/gpt2_small.dln --batch 1 --bind T=128 $T --repeat 5 --warmup 1
run gpt2_b32 specs/gpt2_small.dln --batch 32 --bind T=128 $T --repeat 3 --warmup 1
run mlp_train specs/mlp.dln --train --batch 1,32 $T --repeat 20 --warmup 3
run lenet5_train specs/lenet5.dln --train --batch 1,32 $T --repeat 10 --warmup 2
run resnet18_train specs/resnet18.dln --train --batch 2 $T --repeat 3 --warmup 1
run resnet18_train_b32 specs/resnet18.dln --train --batch 32 $T --repeat 3 --warmup 1
run ops_resnet --ops --suite resnet $T --repeat 10 --warmup 2
run ops_mobilenet --ops --suite mobilenet $T --repeat 10 --warmup 2
run ops_bert --ops --suite bert $T --repeat 10 --warmup 2
.venv/bin/python bench/bench_report.py
