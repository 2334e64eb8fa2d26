#!/usr/bin/env bash
# One GPU slot, one command (issue 35 s3): first the roofline of M2 and C1 on the GPU, then the rest of the slot on
# M2's Table 1 grid members.
#
#   benchmarks/gpu_check.sh --deadline-s 540     # on the GPU machine (device tool: carry [".devcarry"], built
#                                                # here by benchmarks/cuda_queue.sh --carry)
#   benchmarks/gpu_check.sh --deadline-s 540 --rates benchmarks/roofline_h100.csv
#                                                # no roofline: the whole slot on the grids, at rates measured
#                                                # before (on the same kind of GPU: on a slower one a chunk
#                                                # sized by them can miss the deadline and be lost)
#   benchmarks/gpu_check.sh --dry-run            # here, on the CPU: tiny sizes, a store of its own, ~2-3 min
#
# 1. benchmarks/roofline.py --device cuda: SGD, AdaGrad, SMD and vSGD-l on M2 and C1 at K = 1, 10, 100 and the
#    largest K that fits the GPU's free memory (the runner's K on CUDA, experiments.run.chunk_for_memory), each
#    as member-updates/s and achieved GB/s against the GPU's measured copy bandwidth. At most ROOFLINE_S seconds
#    (the CSV is written after every row, so a cut-short run keeps what it measured).
# 2. The rest of the time: M2's SMD, AdaGrad and SGD grids (Table 1; the rules measured in 1) through
#    benchmarks/cuda_queue.sh, one job at a time, the grids that finish soonest first, each whole in one chunk
#    while the time lasts, the next one in the largest chunk that the measured rate finishes before the
#    deadline (a chunk cut off by the deadline is lost on a machine that is not kept: its snapshot would not
#    come back). Finished members land in the store and results/records (in the tarball).
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
    --rates) RATES_CSV="${2:?--rates needs a roofline CSV}"; shift 2
             [[ -f "$RATES_CSV" ]] || { echo "gpu_check: --rates $RATES_CSV: no such file" >&2; exit 2; } ;;
    *) echo "usage: benchmarks/gpu_check.sh [--deadline-s N] [--rates ROOFLINE_CSV] [--dry-run]" >&2; exit 2 ;;
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
  export RECORDS_DIR="$OUT/records"  # its own store has no records yet: every member is left
else
  DEVICE=cuda; BENCH="m2 c1"; RULES="sgd adagrad smd vsgd_l"; KS="1 10 100"; SECONDS_EACH=1; GRIDS="smd adagrad sgd"
  STEPS_NET=m2; ROOFLINE_S="${ROOFLINE_S:-240}"
  "$PY" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' \
    || { echo "[gpu_check] no CUDA device here; --dry-run runs the plumbing on the CPU"; exit 2; }
  command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,memory.used --format=csv
fi
echo "[gpu_check] $(date -u +%H:%M:%S) python $PY, device $DEVICE, deadline ${DEADLINE_S}s"

# -- 1. the roofline ------------------------------------------------------------------------------------
if [[ -n "${RATES_CSV:-}" ]]; then
  echo "[gpu_check] no roofline: the queue is sized by $RATES_CSV"
else
  RATES_CSV="$OUT/roofline_cuda.csv"
  # shellcheck disable=SC2086
  timeout --preserve-status -s TERM -k 10 "$ROOFLINE_S" "$PY" benchmarks/roofline.py --device "$DEVICE" \
    --benchmarks $BENCH --rules $RULES --ks $KS --runner-k --seconds "$SECONDS_EACH" \
    --csv "$OUT/roofline_cuda.csv" --png "$OUT/roofline_cuda.png"
  echo "[gpu_check] roofline exit $? ($(( $(date +%s) - START ))s so far)"
  [[ -f "$OUT/roofline_cuda.csv" && ! -f "$OUT/roofline_cuda.png" ]] \
    && "$PY" benchmarks/roofline.py --plot-only --csv "$OUT/roofline_cuda.csv" --png "$OUT/roofline_cuda.png"
fi

# -- 2. grid members for the rest of the time -----------------------------------------------------------
LEFT=$(( START + DEADLINE_S - $(date +%s) ))
# The queue: each grid's members left (from results/records: distinct members of seeds 0-1), priced at the rate
# measured for that chunk size (analysis.wall_time.rate_at: linear in K between measured K), with 10% to
# spare; the grids that finish soonest
# first, each whole in one chunk while the time lasts, then the next one in chunks of the largest K whose chunk
# still finishes (a chunk cut off by the deadline is lost on a machine that is not kept: its snapshot would not
# come back). 30 s a job for process start, data and compilation.
"$PY" - "$RATES_CSV" "$LEFT" "$STEPS_NET" "$GRIDS" > "$OUT/queue.txt" <<'PYEOF'
import csv, json, os, sys
from pathlib import Path
from omegaconf import OmegaConf
from analysis.common import TUNING_SEEDS, grid_size
from analysis.wall_time import rate_at
from benchmarks.throughput import N_TRAIN, bench_spec

path, left, net, grids = sys.argv[1], float(sys.argv[2]), sys.argv[3], sys.argv[4].split()
_, cfg = bench_spec(net)
steps = N_TRAIN[cfg.dataset] * float(os.environ.get("EPOCHS") or cfg.epochs)  # one member's updates
try:
    rows = [r for r in csv.DictReader(open(path)) if r["benchmark"] == cfg.name]
except FileNotFoundError:
    rows = []
budget = left - float(os.environ.get("GRACE_S", 60))  # the SIGTERM's grace
plan = []
for rule in grids:
    mine = sorted((int(r["K"]), float(r["updates_per_s"])) for r in rows if r["rule"] == rule)
    if not mine:
        print(f"# {rule}: not measured, not queued")
        continue
    size = TUNING_SEEDS * grid_size(OmegaConf.to_container(OmegaConf.load(f"conf/grid/{rule}.yaml")))  # as Table 1
    recs = Path(os.environ.get("RECORDS_DIR", "results/records")) / cfg.name / f"{rule}.jsonl"
    lines = [json.loads(l) for l in recs.open() if l.strip()] if recs.is_file() else []
    done = {r["config_hash"] for r in lines if r["seed"] < TUNING_SEEDS}  # the tuning runs (analysis.tables)
    n = max(0, size - len(done))
    rate = lambda k, mine=mine: rate_at(mine, k) / 1.1  # 10% to spare: a chunk cut off is lost
    if n:
        plan.append((n * steps / rate(n), rule, n, rate))
    else:
        print(f"# {rule}: {cfg.name}'s grid is done")
for est, rule, n, rate in sorted(plan, key=lambda p: p[0]):
    if budget - 30 >= est:  # the whole rest of the grid in one chunk
        print(f"# {rule}: {n} left, one chunk, about {est:.0f} s\nbenchmark={net} optimizer={rule} grid={rule} seeds={TUNING_SEEDS} chunk_size={n}")
        budget -= est + 30
        continue
    k = max((k for k in range(1, n + 1) if k * steps / rate(k) <= budget - 30), default=0)
    if k < 1:
        print(f"# {rule}: {n} left; no chunk of {cfg.name} finishes in {budget - 30:.0f} s at the measured rates, not queued")
        continue
    print(f"# {rule}: {n} left; one chunk of {k}, about {k * steps / rate(k):.0f} s\n"
          f"benchmark={net} optimizer={rule} grid={rule} seeds={TUNING_SEEDS} chunk_size={k}")
    budget = 0
PYEOF
echo "[gpu_check] queue (${LEFT}s left):"; cat "$OUT/queue.txt"
if grep -q '^benchmark=' "$OUT/queue.txt"; then
  DEVICE="$DEVICE" P=1 OUT="$OUT" DEADLINE_S="$LEFT" GRACE_S="${GRACE_S:-60}" bash benchmarks/cuda_queue.sh "$OUT/queue.txt"
fi
echo "[gpu_check] $(date -u +%H:%M:%S) done in $(( $(date +%s) - START ))s; files in $OUT:"; ls "$OUT"
