#!/usr/bin/env bash
# The checks that need a CUDA GPU, in one call (about 5 minutes on an H200):
#   1. tests/test_cuda.py, the CUDA-graph step and the compute-device tests, where
#      `--device auto` is the GPU;
#   2. search_throughput.py at the full darts-cifar10 preset: bf16 and float32 with the step
#      replayed as a CUDA graph (as `lenna search` runs it), bf16 eager (--no-cuda-graph), and
#      the derived network's training replayed as a graph too (--train-cuda-graph);
#   3. `lenna search` on the GPU in bf16 and in float32 (same seed, same fixed part): do they
#      derive the same cells?
#   4. the darts-cifar10 preset end to end on a small CIFAR-10-format folder, then
#      `lenna evaluate-arch --cuda-graph` training on the GPU with DARTS's evaluation recipe;
#   5. (only with CROSS_FILE=1, and only when step 1 passed) the cross-file label test-retest
#      on the GPU machine's CPU: is a quieter machine than this project's VMs more repeatable?
# STEPS picks steps by name: "tests throughput search c10" (the default; crossfile with
# CROSS_FILE=1). Each step writes its log to OUT; a failing step does not stop the next. The
# steps' own time limits add up to 25 minutes, the worst case (a normal run: about 5, and 4 more
# for the cross-file step); give a caller's limit room, or pick fewer steps.
#
#   bash benchmarks/gpu_session.sh OUT     # lenna importable (pip install -e . or PYTHONPATH=src)
#   STEPS="tests throughput c10" CROSS_FILE=1 bash benchmarks/gpu_session.sh OUT
set -u
OUT=${1:?usage: gpu_session.sh OUT}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
if ! command -v lenna >/dev/null; then  # lenna on PYTHONPATH only: a command timeout can run
    mkdir -p "$W/bin"
    printf '#!/bin/sh\nexec python3 -c "from lenna.cli import main; main()" "$@"\n' >"$W/bin/lenna"
    chmod +x "$W/bin/lenna"
    export PATH="$W/bin:$PATH"
fi
STEPS=${STEPS:-tests throughput search c10}
[ -n "${SEARCH_ONLY:-}" ] && STEPS="search c10"  # the older spelling of steps 3 and 4 alone
[ -n "${CROSS_FILE:-}" ] && STEPS="$STEPS crossfile"
wanted() { case " $STEPS " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }
step() {  # step NAME SECONDS COMMAND...: run with a time limit, log to OUT/NAME.txt
    local name=$1 limit=$2 rc
    shift 2
    echo "== $name ($(date -u +%T))"
    timeout "$limit" "$@" >"$OUT/$name.txt" 2>&1
    rc=$?
    echo "   exit $rc ($(date -u +%T))"
    tail -n 4 "$OUT/$name.txt"
    return $rc
}

{
    date -u
    nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm --format=csv
    python3 -c 'import torch, sys; print(sys.version.split()[0], torch.__version__,
torch.version.cuda, torch.cuda.is_available(), torch.cuda.get_device_name(0))'
    nproc
} >"$OUT/env.txt" 2>&1
cat "$OUT/env.txt"

tests_ok=1
if wanted tests; then
    step tests 240 python3 -m pytest -q -p no:cacheprovider tests/test_cuda.py \
        tests/test_search_graphed.py tests/test_search_device.py tests/test_measure_timer.py \
        tests/test_search_latency.py tests/test_search_budget.py tests/test_train_graph.py \
        tests/test_train_extras.py tests/test_eval_recipe.py tests/test_measure_store.py \
        tests/test_search_resume.py || tests_ok=0
fi

if wanted throughput; then
    step throughput-bf16-graph 90 python3 benchmarks/search_throughput.py --device cuda --full \
        --out "$W/tp"
    step throughput-fp32-graph 90 python3 benchmarks/search_throughput.py --device cuda --full \
        --out "$W/tp" --amp off
    step throughput-bf16-eager 90 python3 benchmarks/search_throughput.py --device cuda --full \
        --out "$W/tp" --no-cuda-graph
    step throughput-train-graph 90 python3 benchmarks/search_throughput.py --device cuda --full \
        --out "$W/tp" --only train --train-cuda-graph
fi

if wanted search || wanted c10; then
    step train 60 lenna train benchmarks/data/darts-v2.db --model additive --out "$W/p"
fi
if wanted search; then
    for amp in bf16 off; do
        step "search-$amp" 90 lenna search --space darts --predictor "$W/p" --lam 1 \
            --device cuda --amp "$amp" --fixed-ms 0.16 --out "$W/s-$amp"
        cp "$W/s-$amp/genotype.json" "$OUT/genotype-$amp.json" 2>/dev/null
    done
fi

if wanted c10; then
python3 - "$W/c10" <<'EOF'
import sys
from pathlib import Path

import numpy as np

root, rng = Path(sys.argv[1]), np.random.default_rng(0)
root.mkdir(parents=True)
for name, n in [("data_batch_1.bin", 1280), ("data_batch_2.bin", 1280), ("test_batch.bin", 512)]:
    rec = np.empty((n, 3073), np.uint8)
    rec[:, 0] = np.arange(n) % 10
    rec[:, 1:] = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
    (root / name).write_bytes(rec.tobytes())
EOF
step search-c10 150 lenna search --preset darts-cifar10 --data "cifar10:$W/c10" --epochs 2 \
    --predictor "$W/p" --lam 1 --device cuda --out "$W/c10-run"
cp "$W/c10-run/metrics.csv" "$OUT/c10-metrics.csv" 2>/dev/null
step evaluate-c10 150 lenna evaluate-arch "$W/c10-run/genotype.json" --preset darts-cifar10-eval \
    --epochs 2 --cells 8 --channels 16 --device cuda --cuda-graph --json
fi

if wanted crossfile; then
    if [ "$tests_ok" = 1 ]; then  # a failed test leaves the device time for a rerun instead
        # three files: the first calibrates the machine (132 s on an H200 host), the others ~55 s
        step crossfile 420 python3 benchmarks/measure_repeatability.py --cross-file \
            --samples 20 --threads 1 --arms shared
    else
        echo "== crossfile skipped: the tests failed"
    fi
fi
cp benchmarks/RESULTS.md "$OUT/RESULTS.md"
echo "done $(date -u +%T)"
