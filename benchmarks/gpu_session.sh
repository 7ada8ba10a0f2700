#!/usr/bin/env bash
# One GPU, one call of about 7 minutes: the GPU paths (training step, batched imputation, bf16 against fp32),
# then three PhysioNet-10% learning curves trained side by side on the same GPU, scored on the same 200 fold-0
# test stays beside CSDI's published network, the fitted first guess and interpolation. Results go to $OUT
# (default gpu-results).
#
#   OUT=gpu-results TSIMPUTE_DATA_DIR=/path/to/data bash benchmarks/gpu_session.sh
#
# Each part has its own time limit, so that a slow part cannot take the other's time; what a part wrote before
# its limit stays in $OUT. See benchmarks/results/gpu_profile.md for what each part measures.
set -uo pipefail
OUT=${OUT:-gpu-results}
DEVICE=${DEVICE:-cuda}
MINUTES=${MINUTES:-3.5}          # training budget of each learning curve
MARKS=${MARKS:-0.5,1,2,3}        # minutes at which each curve records its kept network
THROUGHPUT_S=${THROUGHPUT_S:-100}
CURVES_S=${CURVES_S:-300}
N_TEST=${N_TEST:-200}
mkdir -p "$OUT"
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  python -c "import torch; print(torch.__version__, torch.version.cuda)"; git rev-parse --short HEAD; nproc; } \
    > "$OUT/machine.txt" 2>&1
# 1. CSDI's PhysioNet network (random weights): sampling throughput of CSDI's test protocol (800 stays x 100
#    samples) at 10 steps in bf16 and fp32, training steps per second, peak memory
timeout --kill-after=10 "$THROUGHPUT_S" python benchmarks/throughput.py --device "$DEVICE" --quick \
    --out "$OUT/throughput_gpu.json" > "$OUT/throughput.log" 2>&1
echo "throughput: exit $?" >> "$OUT/machine.txt"
# 2. three fits side by side (they share the GPU, so each is slower than alone): the default Imputer; CSDI's
#    architecture (64 channels, 4 layers, 8 heads) with the fitted first guess; the same with the learned first
#    guess and random targets (the best recipe of the CPU runs, benchmarks/results/learned_guess.md)
curve() {  # name, extra arguments
    local name=$1; shift
    timeout --kill-after=10 "$CURVES_S" python benchmarks/learning_curve.py physionet --minutes "$MINUTES" \
        --marks "$MARKS" --n-test "$N_TEST" --threads 4 --set device="$DEVICE" "$@" --out "$OUT/curve_$name.json" \
        > "$OUT/curve_$name.log" 2>&1
    echo "curve $name: exit $?" >> "$OUT/machine.txt"
}
CSDI_SIZE=(--set channels=64 --set n_layers=4 --set n_heads=8)
curve default &
curve csdi_size "${CSDI_SIZE[@]}" --no-published --baselines "" &
curve csdi_size_learned "${CSDI_SIZE[@]}" --set first_guess=learned --set target_strategy=random --no-published \
    --baselines "" &
wait
# everything in one archive as well (for machines that hand back a few files only)
tar -czf "$OUT.tar.gz" -C "$(dirname "$OUT")" "$(basename "$OUT")" && mv "$OUT.tar.gz" "$OUT/all.tar.gz"
