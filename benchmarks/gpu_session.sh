#!/usr/bin/env bash
# One GPU, one call of about 9 minutes: the GPU paths (training step, batched imputation, bf16 against fp32)
# and the paper profile on PhysioNet-10% under a training budget. Results go to $OUT (default gpu-results).
#
#   OUT=gpu-results TSIMPUTE_DATA_DIR=/path/to/data bash benchmarks/gpu_session.sh
#
# Each part has its own time limit, so that a slow part cannot take the other's time; what a part wrote before
# its limit stays in $OUT. See benchmarks/results/gpu_profile.md for what each part measures.
set -uo pipefail
OUT=${OUT:-gpu-results}
DEVICE=${DEVICE:-cuda}
TRAIN_SECONDS=${TRAIN_SECONDS:-180}
mkdir -p "$OUT"
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv; python -c "import torch; print(torch.__version__, torch.version.cuda)"; git rev-parse --short HEAD; } > "$OUT/machine.txt" 2>&1
# 1. CSDI's PhysioNet network: sampling throughput of CSDI's test protocol (800 stays x 100 samples) at 10 and 50
#    steps in bf16 and fp32, training steps per second, peak memory
timeout 270 python benchmarks/throughput.py --device "$DEVICE" --out "$OUT/throughput_gpu.json" > "$OUT/throughput.log" 2>&1
echo "throughput: exit $?" >> "$OUT/machine.txt"
# 2. the paper profile (CSDI's architecture, every training stay, 100-sample protocol reduced to 200 test stays and
#    20 samples) with a training budget, beside the first guess and interpolation
timeout 270 python -m tsimpute bench physionet --profile paper --device "$DEVICE" --max-time "$TRAIN_SECONDS" \
    --n-test 200 --n-samples 20 --steps 50,10,5 --methods diffusion-all,diffusion-uniform,first-guess,interpolate \
    --quiet --out "$OUT/paper" > "$OUT/bench.log" 2>&1
echo "bench: exit $?" >> "$OUT/machine.txt"
