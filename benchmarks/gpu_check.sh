#!/usr/bin/env bash
# One GPU slot, one command (issue 35 s3): first the roofline of M2 and C1 on the GPU, then the rest of the slot on
# M2's Table 1 grid members.
#
#   benchmarks/gpu_check.sh --deadline-s 540     # on the GPU machine (device tool: carry [".devcarry"], built
#                                                # here by benchmarks/cuda_queue.sh --carry)
#   benchmarks/gpu_check.sh --dry-run            # here, on the CPU: tiny sizes, a store of its own, ~2-3 min
#
# 1. benchmarks/roofline.py --device cuda: SGD, AdaGrad, SMD and vSGD-l on M2 and C1 at K = 1, 10, 100 and the
#    largest K that fits the GPU's free memory (the runner's K on CUDA, experiments.run.chunk_for_memory), each
#    as member-updates/s and achieved GB/s against the GPU's measured copy bandwidth. At most ROOFLINE_S seconds
#    (the CSV is written after every row, so a cut-short run keeps what it measured).
# 2. The rest of the time: M2's SMD, AdaGrad and SGD grids (Table 1; the rules measured in 1) through
#    benchmarks/cuda_queue.sh, one job at a time, each in chunks of the largest K that the rate measured in 1
#    finishes before the deadline (a chunk cut off by the deadline is lost on a machine that is not kept: its
#    snapshot would not come back). Finished members land in the store and results/records (in the tarball).
#
# Writes to $OUT (or /tmp/gpu_check): roofline_cuda.csv, roofline_cuda.png, queue.txt, cuda_queue.tgz (logs and
# results/records), gpu_check.log. Environment: PY (as cuda_queue.sh), ROOFLINE_S (240), DEADLINE_S (540).
set -uo pipefail
cd "$(dirname "$0")/.."
DRY=0
while (( $# )); do
  case "$1" in
    --deadline-s) DEADLINE_S="${2:?--deadline-s needs seconds}"; shift 2 ;;
    --dry-run) DRY=1; shift ;;
    *) echo "usage: benchmarks/gpu_check.sh [--deadline-s N] [--dry-run]" >&2; exit 2 ;;
  esac
done
START=$(date +%s)
DEADLINE_S="${DEADLINE_S:-540}"
OUT="${OUT:-/tmp/gpu_check}"; mkdir -p "$OUT"
if [[ -z "${PY:-}" ]]; then
  PY=python3
  [[ -x .venv/bin/python ]] && .venv/bin/python -c 'import torch' 2>/dev/null && PY=.venv/bin/python
fi
export PY WANDB_MODE=disabled PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
[[ -d .devcarry/site ]] && export PYTHONPATH="$PYTHONPATH:$PWD/.devcarry/site"
exec > >(tee -a "$OUT/gpu_check.log") 2>&1

if (( DRY )); then  # the plumbing on the CPU: a tiny network, two rules, short timings, a store of its own
  DEVICE=cpu; BENCH="m0"; RULES="sgd adagrad"; KS="1 2"; SECONDS_EACH=0.2; GRIDS="adagrad"; STEPS_NET=m0
  DEADLINE_S=$(( DEADLINE_S < 180 ? DEADLINE_S : 180 )); ROOFLINE_S="${ROOFLINE_S:-80}"
  export EPOCHS=0.01 EXTRA="store=$OUT/store epochs=0.01 compile=false threads=1" GRACE_S=15 MIN_LEFT_S=5
else
  DEVICE=cuda; BENCH="m2 c1"; RULES="sgd adagrad smd vsgd_l"; KS="1 10 100"; SECONDS_EACH=1; GRIDS="smd adagrad sgd"
  STEPS_NET=m2; ROOFLINE_S="${ROOFLINE_S:-240}"
  "$PY" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' \
    || { echo "[gpu_check] no CUDA device here; --dry-run runs the plumbing on the CPU"; exit 2; }
  command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,memory.used --format=csv
fi
echo "[gpu_check] $(date -u +%H:%M:%S) python $PY, device $DEVICE, deadline ${DEADLINE_S}s"

# -- 1. the roofline ------------------------------------------------------------------------------------
# shellcheck disable=SC2086
timeout --preserve-status -s TERM -k 10 "$ROOFLINE_S" "$PY" benchmarks/roofline.py --device "$DEVICE" \
  --benchmarks $BENCH --rules $RULES --ks $KS --runner-k --seconds "$SECONDS_EACH" \
  --csv "$OUT/roofline_cuda.csv" --png "$OUT/roofline_cuda.png"
echo "[gpu_check] roofline exit $? ($(( $(date +%s) - START ))s so far)"
[[ -f "$OUT/roofline_cuda.csv" && ! -f "$OUT/roofline_cuda.png" ]] \
  && "$PY" benchmarks/roofline.py --plot-only --csv "$OUT/roofline_cuda.csv" --png "$OUT/roofline_cuda.png"

# -- 2. grid members for the rest of the time -----------------------------------------------------------
LEFT=$(( START + DEADLINE_S - $(date +%s) ))
# chunk_size per grid: the largest K whose chunk finishes in the time left at a rate measured at K' <= K
# (a rate per member grows with K until the step is bandwidth-bound), capped at the largest K measured
"$PY" - "$OUT/roofline_cuda.csv" "$LEFT" "$STEPS_NET" "$GRIDS" > "$OUT/queue.txt" <<'PYEOF'
import csv, os, sys
from benchmarks.throughput import N_TRAIN, bench_spec

path, left, net, grids = sys.argv[1], float(sys.argv[2]), sys.argv[3], sys.argv[4].split()
_, cfg = bench_spec(net)
steps = N_TRAIN[cfg.dataset] * float(os.environ.get("EPOCHS") or cfg.epochs)  # one member's updates
try:
    rows = [r for r in csv.DictReader(open(path)) if r["benchmark"] == cfg.name]
except FileNotFoundError:
    rows = []
budget = left - float(os.environ.get("GRACE_S", 60)) - 30  # the SIGTERM's grace; process start, data, compilation
for rule in grids:
    mine = [(int(r["K"]), float(r["updates_per_s"]), int(r["runner_K"])) for r in rows if r["rule"] == rule]
    if not mine:
        print(f"# {rule}: not measured, not queued")
        continue
    cap = max(m[2] for m in mine)
    k = max((min(cap, int(budget * rate / steps)) for K, rate, _ in mine if int(budget * rate / steps) >= K), default=0)
    if k < 1:
        print(f"# {rule}: no member of {cfg.name} finishes in {budget:.0f} s at the measured rates, not queued")
        continue
    print(f"benchmark={net} optimizer={rule} grid={rule} seeds=2 chunk_size={k}")
PYEOF
echo "[gpu_check] queue (${LEFT}s left):"; cat "$OUT/queue.txt"
if grep -q '^benchmark=' "$OUT/queue.txt"; then
  DEVICE="$DEVICE" P=1 OUT="$OUT" DEADLINE_S="$LEFT" GRACE_S="${GRACE_S:-60}" bash benchmarks/cuda_queue.sh "$OUT/queue.txt"
fi
echo "[gpu_check] $(date -u +%H:%M:%S) done in $(( $(date +%s) - START ))s; files in $OUT:"; ls "$OUT"
