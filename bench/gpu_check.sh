#!/usr/bin/env bash
# The GPU check of docs/benchmarking.md, on a machine with an NVIDIA GPU:
#   bash bench/gpu_check.sh OUT_DIR
# 1. compiles every zoo spec for `cuda` (dlc compile --target cuda, the GPU's sm_XY);
# 2. runs `dlc verify --backends tvm-cuda -O 2` on every zoo spec (the GPU kernels against the float64
#    NumPy reference, same weights and inputs);
# 3. runs `dlc bench` on resnet50, bert_base and mobilenet_v2: tvm-cuda against torch-eager and torch-compile
#    on the GPU (--device cuda), batch 1 and 32, with the report's JSON, markdown and PNG.
# Everything goes to OUT_DIR: one log per step, and summary.md with each step's status and wall time.
# It needs only what `.ci/run` installs (`make setup`); a torch without CUDA (the CPU wheel CI pins) makes the
# torch baselines report "unavailable" with that reason, never a crash.  Budget: 8 minutes in all; each phase
# runs under `timeout`, and whatever did not finish is reported as such.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${1:?usage: bash bench/gpu_check.sh OUT_DIR}
mkdir -p "$OUT/pkg" "$OUT/verify" "$OUT/bench"
OUT=$(cd "$OUT" && pwd)
[ -x .venv/bin/python ] || make setup >"$OUT/setup.log" 2>&1 || { echo "make setup failed: $OUT/setup.log"; exit 1; }
PY=${PY:-.venv/bin/python}
JOBS=${JOBS:-$(( $(nproc) / 2 > 0 ? $(nproc) / 2 : 1 ))}
export TVM_NUM_THREADS=${TVM_NUM_THREADS:-2}
SUMMARY="$OUT/summary.md"
start=$(date +%s)

{
    echo "# dlc GPU check, $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo
    echo '```'
    nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap --format=csv 2>&1 | head -5
    lscpu | grep -m1 'Model name'
    echo "cores $(nproc); $($PY -c 'import dlc, torch, tvm, numpy; print("dlc", dlc.__version__, "torch", torch.__version__, "cuda" if torch.cuda.is_available() else "no-cuda", "tvm", tvm.__version__, "numpy", numpy.__version__)' 2>&1 | tail -1)"
    echo '```'
    echo
} >"$SUMMARY"

# $1: phase name, $2: timeout in seconds, $3: a file of commands (one per line), run JOBS at a time
phase() {
    local name=$1 limit=$2 cmds=$3 t0
    t0=$(date +%s)
    timeout "$limit" xargs -d '\n' -P "$JOBS" -I{} bash -c '{}' <"$cmds"
    local rc=$?
    echo "- **$name**: $(( $(date +%s) - t0 )) s$([ $rc = 124 ] && echo ", stopped at its ${limit} s limit")" >>"$SUMMARY"
}

specs=$(ls ${SPECS:-specs/*.dln})   # SPECS="specs/mlp.dln ..." narrows it
: >"$OUT/compile.cmds"; : >"$OUT/verify.cmds"
for s in $specs; do
    n=$(basename "$s" .dln)
    echo "$PY -m dlc compile $s --target cuda -o $OUT/pkg/$n.dlcpkg >$OUT/pkg/$n.log 2>&1; echo \$? >$OUT/pkg/$n.rc" >>"$OUT/compile.cmds"
    echo "$PY -m dlc verify $s --backends tvm-cuda -O 2 --json --repro-dir $OUT/verify/$n.repro >$OUT/verify/$n.json 2>$OUT/verify/$n.log; echo \$? >$OUT/verify/$n.rc" >>"$OUT/verify.cmds"
done
phase "compile the zoo for cuda" 180 "$OUT/compile.cmds"
phase "dlc verify --backends tvm-cuda" 180 "$OUT/verify.cmds"

bench_one() {   # spec, model flag, extra binds, name
    $PY -m dlc bench "$1" $2 --backends tvm-cuda --baselines torch-eager,torch-compile --device cuda \
        --batch 1,32 $3 --repeat 20 --warmup 5 -o "$OUT/bench/$4.json" --plot "$OUT/bench/$4.png" \
        >"$OUT/bench/$4.txt" 2>&1
    echo $? >"$OUT/bench/$4.rc"
}
export -f bench_one; export PY OUT
printf '%s\n' "bench_one specs/resnet50.dln '' '' resnet50" \
    "bench_one specs/mobilenet_v2.dln '' '' mobilenet_v2" \
    "bench_one specs/bert_base.dln '-m BertClassifier' '--bind T=128' bert_base" >"$OUT/bench.cmds"
JOBS=1 phase "dlc bench on the GPU (one at a time)" 120 "$OUT/bench.cmds"

{
    echo
    echo "| spec | compile | verify (tvm-cuda -O2) |"
    echo "|---|---|---|"
    for s in $specs; do
        n=$(basename "$s" .dln)
        c=$(cat "$OUT/pkg/$n.rc" 2>/dev/null || echo "not run"); v=$(cat "$OUT/verify/$n.rc" 2>/dev/null || echo "not run")
        echo "| $n | $([ "$c" = 0 ] && echo ok || echo "rc $c") | $([ "$v" = 0 ] && echo ok || echo "rc $v") |"
    done
    echo
    for b in resnet50 mobilenet_v2 bert_base; do
        echo "## bench $b (rc $(cat "$OUT/bench/$b.rc" 2>/dev/null || echo 'not run'))"
        echo
        [ -f "$OUT/bench/$b.json" ] && $PY -c "import json,sys; from dlc.bench_format import render; print(render(json.load(open(sys.argv[1])), 'md'))" "$OUT/bench/$b.json"
        echo
    done
    echo "total $(( $(date +%s) - start )) s"
} >>"$SUMMARY"
cat "$SUMMARY"
