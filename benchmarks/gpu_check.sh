#!/usr/bin/env bash
# The GPU check (issue 21, item 4): on a machine with CUDA, in about 5 minutes,
#   1. every test marked `cuda` (tests/test_cuda.py: the IR-drop operator and its gradient, the noisy layer's kernels,
#      read noise on the device, the MIF twin eager and compiled, a training step of an MSNN and an ANN, a sweep
#      point's chip evaluation, the device model of fitting; and the older CUDA tests of neurons, integrators and
#      devices), each comparing the GPU result with the CPU result;
#   2. the GPU rows of the benchmarks: the 784x256 layer's operators with their gradient on the GPU against one CPU
#      thread (bench_crossbar.py --only device; target <= 50 ms), the Fashion MSNN epoch on the GPU against the
#      one-thread CPU epoch (bench_train.py; target >= 10x), and the batched device transient (bench_devices.py,
#      when ngspice is there).
# Run from the repository root:   bash benchmarks/gpu_check.sh
# Outputs go to ${OUT:-/tmp/gpu_check}. The epoch comparison caps both epochs at GPU_CHECK_BATCHES training batches
# (default 50) and extrapolates to the full epoch by the batch count (same batches, same per-batch work); the ratio of
# the capped epochs is the ratio of the per-batch costs. Fashion-MNIST is looked for in FASHION_DIR, data/fashion-mnist
# and /usr/share/datasets/fashion-mnist; without it the epoch row uses the digits quickstart (said in the output).
# Dry run without a GPU (proves the steps and paths; the "GPU" is then the CPU, with tiny sizes):
#   GPU_CHECK_ALLOW_CPU=1 bash benchmarks/gpu_check.sh
set -euo pipefail

cd "$(dirname "$0")/.."
OUT="${OUT:-/tmp/gpu_check}"
mkdir -p "$OUT"
PY="${PYTHON:-python3}"
START=$(date +%s)
FAILED=()

log() { echo "[gpu_check $(($(date +%s) - START)) s] $*" | tee -a "$OUT/summary.txt"; }

if ! "$PY" -c "import memsim" 2>/dev/null; then
    log "memsim is not importable: installing it (python3 -m pip install -e '.[dev]')"
    "$PY" -m pip install -q -e ".[dev]"
fi

if "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    DEVICE=cuda
    BATCHES="${GPU_CHECK_BATCHES:-50}"
    ROUNDS=3
    unset MEMSIM_TEST_DEVICE
elif [[ "${GPU_CHECK_ALLOW_CPU:-0}" == "1" ]]; then
    DEVICE=cpu
    BATCHES="${GPU_CHECK_BATCHES:-3}"
    ROUNDS=1
    export MEMSIM_TEST_DEVICE=cpu
    log "DRY RUN: no CUDA device; the 'GPU' side is the CPU and the sizes are tiny (GPU_CHECK_ALLOW_CPU=1)"
else
    echo "gpu_check: torch sees no CUDA device. Fix: run this on a machine with a GPU, or set GPU_CHECK_ALLOW_CPU=1" \
         "for a dry run on the CPU" >&2
    exit 2
fi

# -- the machine -------------------------------------------------------------------------------------------------
{ command -v nvidia-smi >/dev/null && nvidia-smi -L || echo "nvidia-smi: not available"; } | tee "$OUT/gpu.txt"
"$PY" - <<'EOF' | tee -a "$OUT/gpu.txt"
import os, platform, torch
print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, python {platform.python_version()}, "
      f"{os.cpu_count()} CPUs")
if torch.cuda.is_available():
    for k in range(torch.cuda.device_count()):
        p = torch.cuda.get_device_properties(k)
        print(f"cuda:{k} {p.name}, {p.total_memory / 2**30:.0f} GiB, capability {p.major}.{p.minor}")
EOF
log "device under test: $DEVICE; epoch rows capped at $BATCHES batches; outputs in $OUT"

# -- 1. the tests marked cuda ------------------------------------------------------------------------------------
log "tests: python -m pytest -m cuda (GPU against CPU)"
if timeout 240 "$PY" -m pytest -q -p no:cacheprovider -o addopts="" -ra -m cuda \
        --junitxml="$OUT/cuda_tests.xml" tests/test_cuda.py tests/test_neurons.py tests/test_integrate.py \
        tests/test_device_torch.py 2>&1 | tee "$OUT/cuda_tests.txt"; then
    log "tests: passed"
else
    log "tests: FAILED or timed out (see $OUT/cuda_tests.txt)"
    FAILED+=(tests)
fi

# -- 2a. the 784x256 layer's operators with their gradient -------------------------------------------------------
log "bench: 784x256 operators with gradient, $DEVICE vs one CPU thread (target <= 50 ms on the GPU)"
if timeout 150 "$PY" benchmarks/bench_crossbar.py --only device --device "$DEVICE" --rounds "$ROUNDS" \
        2>&1 | tee "$OUT/bench_operator.txt"; then
    { grep -E "^  float" "$OUT/bench_operator.txt" || echo "no timing rows"; } | sed 's/^ */operator /' \
        | tee -a "$OUT/summary.txt"
else
    log "bench operator: FAILED or timed out"
    FAILED+=(bench_operator)
fi

# -- 2b. the Fashion MSNN epoch on the device against one CPU thread ---------------------------------------------
SUITE=fashion
DATA_SET=()
FOUND=""
for d in "${FASHION_DIR:-}" data/fashion-mnist /usr/share/datasets/fashion-mnist; do
    if [[ -n "$d" && -f "$d/train-images-idx3-ubyte.gz" ]]; then FOUND="$d"; break; fi
done
if [[ -n "$FOUND" ]]; then
    DATA_SET=(--set "data.data_dir=$FOUND")
else
    SUITE=digits
    log "Fashion-MNIST not found (FASHION_DIR, data/fashion-mnist, /usr/share/datasets/fashion-mnist):" \
        "the epoch row uses the digits quickstart instead, NOT the issue's Fashion target"
fi
EPOCH_OK=1
for job in "device:$DEVICE" "cpu:cpu"; do
    tag="epoch_${job%%:*}"
    dev="${job#*:}"
    log "bench: $SUITE MSNN, 2 epochs of $BATCHES batches on $dev (one CPU thread)"
    if ! timeout 200 "$PY" benchmarks/bench_train.py "$SUITE" --epochs 2 --max-batches "$BATCHES" --no-eval \
            --no-baseline --threads 1 --device "$dev" --runs "$OUT/runs/$tag" --out "$OUT/$tag.json" \
            "${DATA_SET[@]}" > "$OUT/$tag.txt" 2>&1; then
        log "bench $tag: FAILED or timed out (see $OUT/$tag.txt)"
        FAILED+=("$tag")
        EPOCH_OK=0
        break
    fi
done
if [[ "$EPOCH_OK" == 1 ]]; then
    if "$PY" - "$OUT/epoch_device.json" "$OUT/epoch_cpu.json" "$BATCHES" "$SUITE" <<'EOF' | tee -a "$OUT/summary.txt"
import json, math, sys
from memsim.training.config import load_config
from memsim.training.loop import load_datasets

dev_rows, cpu_rows = (json.load(open(p)) for p in sys.argv[1:3])
batches, suite = int(sys.argv[3]), sys.argv[4]
for d, c in zip(dev_rows, cpu_rows):
    cfg = load_config(d["config"], [])
    n_train = len(load_datasets(cfg)[0]) if suite == "digits" else 60000
    full = math.ceil(n_train / cfg.training.batch_size)
    scale = full / batches
    ratio = c["epoch_time_s"] / d["epoch_time_s"]
    print(f"epoch {d['job']} ({suite}, compile={d['compile']}): {d['device']} {d['epoch_time_s']:.2f} s vs one CPU "
          f"thread {c['epoch_time_s']:.2f} s for {batches} batches (second epoch): x{ratio:.1f} "
          f"(target >= 10 for Fashion); extrapolated to the full epoch of {full} batches: "
          f"{d['epoch_time_s'] * scale:.1f} s vs {c['epoch_time_s'] * scale:.1f} s; first epoch (with compilation) "
          f"{d['first_epoch_time_s']:.1f} s vs {c['first_epoch_time_s']:.1f} s")
EOF
    then :; else FAILED+=(epoch_summary); fi
fi

# -- 2c. the batched device transient (needs ngspice for its reference) ------------------------------------------
if "$PY" -c "import PySpice" 2>/dev/null; then
    NDEV=100000
    [[ "$DEVICE" == cpu ]] && NDEV=2000
    log "bench: batched device transient, $NDEV devices on $DEVICE vs ngspice"
    if timeout 90 "$PY" benchmarks/bench_devices.py --device "$DEVICE" --devices "$NDEV" --spice-repeats 1 \
            2>&1 | tee "$OUT/bench_devices.txt"; then :; else
        log "bench devices: FAILED or timed out"
        FAILED+=(bench_devices)
    fi
else
    log "bench devices: skipped (PySpice/ngspice not installed; its baseline is ngspice)"
fi

log "done in $(($(date +%s) - START)) s; failed: ${FAILED[*]:-none}"
[[ ${#FAILED[@]} -eq 0 ]]
