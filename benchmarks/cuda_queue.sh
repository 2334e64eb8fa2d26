#!/usr/bin/env bash
# Run a queue of runner jobs on a CUDA machine within one wall-clock deadline, P jobs at once, and
# report what each job measured (member-updates/s, chunk wall time). Made for a borrowed GPU machine
# that holds only a copy of the working tree: pure-Python packages and the data can come with it.
#
#   benchmarks/cuda_queue.sh --carry                                           # here: build .devcarry
#   python -m analysis.coverage --commands --to-target | grep m2 > queue.txt   # here
#   benchmarks/cuda_queue.sh --deadline-s 540 queue.txt                        # there (carry .devcarry)
#
# --carry: copies the pure-Python packages the runner needs and the GPU image lacks from .venv into
# .devcarry/site, gzips MNIST (and CIFAR-10 batch1 with CARRY_CIFAR=1) from the data root (DATA_ROOT,
# default ../shared/data) into .devcarry/data,
# and has git ignore .devcarry (.git/info/exclude). Never commit it.
#
# QUEUE_FILE: one job a line, "python -m experiments.run OVERRIDES..." (what analysis.coverage prints;
# the prefix is optional; a grid slice is any job: benchmark=m2 optimizer=smd grid=smd seeds=2 chunk_size=K),
# run in order; a job left with under MIN_LEFT_S before the deadline is skipped. At GRACE_S before the
# deadline every running job gets SIGTERM: the runner stops its chunk at the next divergence check (at most
# 1000 steps), saves the chunk's snapshot there when SNAPSHOT_MINUTES is set (the same command resumes it,
# bit-identically, on the same machine), and exits with status 5; a job still running at the deadline is
# killed. Nothing finished is lost: each finished member is in the store (atomically) when its chunk ends, and
# the last step copies the store into results/records. A job whose chunk fails (exit 3: a compile or CUDA
# error) is run once more with compile=false.
#
# On a fresh GPU machine, one command (the .venv need not exist: any python3 with torch will do, with the
# harness's pure-Python packages from .devcarry/site):
#   benchmarks/cuda_queue.sh --deadline-s 540 queue.txt      (device tool: carry [".devcarry"])
#
# Environment:
#   DEADLINE_S (520)  seconds from the start until every job must have ended (or --deadline-s N)
#   GRACE_S (60)      seconds between the SIGTERM and the deadline (a large chunk needs its 1000 steps)
#   MIN_LEFT_S (30)   a job is started only with this much time left before its SIGTERM
#   SNAPSHOT_MINUTES  when set: the runner's snapshot_minutes= (a stopped chunk resumes on this machine)
#   P (1)             jobs at once (one Python process each, one GPU shared by all). On CUDA a job without
#                     chunk_size= sizes its chunks to the free memory it sees when it starts (up to 0.9 of it),
#                     so jobs started together would each count on the same memory: with P > 1, give every
#                     line a chunk_size= (sessions 19-20 ran 7 jobs of K = 7 at once)
#   DEVICE (cuda)     the runner's device=; DEVICE=cpu EXTRA=epochs=0.02 dry-runs the plumbing here
#   EXTRA ("")        more overrides for every job
#   PY                the interpreter (default: .venv/bin/python if it has torch, else python3); OUT: where
#                     the tarball of logs and records goes ($OUT or /tmp/cuda_queue)
#   CARRY (.devcarry) a folder with site/ (pure-Python packages, put on PYTHONPATH) and data/ (the data
#                     root; *.gz files in it are unpacked first), when the machine lacks them
set -uo pipefail
cd "$(dirname "$0")/.."
CARRY="${CARRY:-.devcarry}"
if [[ "${1:-}" == --carry ]]; then
  set -e
  site="$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
  rm -rf "$CARRY"; mkdir -p "$CARRY/site" "$CARRY/data/MNIST/raw" "$CARRY/data/cifar-10-approx"
  for m in antlr4 dadaptation dog hydra hydra_plugins omegaconf parameterfree prodigyopt schedulefree; do
    cp -r "$site/$m" "$CARRY/site/"
  done
  find "$CARRY/site" -name __pycache__ -prune -exec rm -rf {} +
  root="${DATA_ROOT:-../shared/data}"
  for f in "$root"/MNIST/raw/*-ubyte; do gzip -c "$f" > "$CARRY/data/MNIST/raw/$(basename "$f").gz"; done
  # CIFAR only on request: gzipped it is about 55 MB, near the 64 MiB a device call may carry with the tree
  [[ "${CARRY_CIFAR:-0}" == 1 ]] && for f in "$root"/cifar-10-*/data_batch_1 "$root"/cifar-10-*/test_batch; do
    [[ -f "$f" ]] && mkdir -p "$CARRY/data/$(basename "$(dirname "$f")")" \
      && gzip -c "$f" > "$CARRY/data/$(basename "$(dirname "$f")")/$(basename "$f").gz"
  done
  rmdir "$CARRY/data/cifar-10-approx" 2>/dev/null || true
  grep -qx "/$CARRY/" .git/info/exclude 2>/dev/null || echo "/$CARRY/" >> .git/info/exclude
  du -sh "$CARRY"
  exit 0
fi
if [[ "${1:-}" == --deadline-s ]]; then DEADLINE_S="${2:?--deadline-s needs seconds}"; shift 2; fi
[[ $# -eq 1 && -f "$1" ]] || { echo "usage: benchmarks/cuda_queue.sh [--deadline-s N] QUEUE_FILE | --carry (see the header)" >&2; exit 2; }
QUEUE="$(realpath "$1")"
export DEADLINE_EPOCH=$(( $(date +%s) + ${DEADLINE_S:-520} ))
export STOP_EPOCH=$(( DEADLINE_EPOCH - ${GRACE_S:-60} )) MIN_LEFT_S="${MIN_LEFT_S:-30}" GRACE_S="${GRACE_S:-60}"
if [[ -z "${PY:-}" ]]; then
  PY=python3
  [[ -x .venv/bin/python ]] && .venv/bin/python -c 'import torch' 2>/dev/null && PY=.venv/bin/python
fi
export DEVICE="${DEVICE:-cuda}" EXTRA="${EXTRA:-}" PY WANDB_MODE=disabled PYTHONUNBUFFERED=1
[[ -n "${SNAPSHOT_MINUTES:-}" ]] && EXTRA="$EXTRA snapshot_minutes=$SNAPSHOT_MINUTES"
OUT="${OUT:-/tmp/cuda_queue}"; mkdir -p "$OUT"
WORK="$(mktemp -d)"; export LOGS="$WORK/logs"; mkdir -p "$LOGS"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
[[ -d "$CARRY/site" ]] && export PYTHONPATH="$PYTHONPATH:$PWD/$CARRY/site"
export DATA_ARG=""
if [[ -d "$CARRY/data" ]]; then
  DATA="$WORK/data"; cp -r "$CARRY/data" "$DATA"
  find "$DATA" -name '*.gz' -exec gunzip {} +
  DATA_ARG="data.root=$DATA"
fi

command -v nvidia-smi >/dev/null && { nvidia-smi --query-gpu=name,utilization.gpu,memory.used --format=csv -l 15 > "$LOGS/nvidia-smi.csv" 2>&1 & }
"$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"

run_one() {  # run_one OVERRIDES... (one queue line without its "python -m experiments.run")
  local name left rc
  name="$(printf '%s\n' "$@" | sed -n 's/^\(benchmark\|optimizer\|seed_offset\)=//p' | paste -sd-)"
  left=$(( STOP_EPOCH - $(date +%s) ))
  if (( left < MIN_LEFT_S )); then echo "[queue] skip $*: ${left}s left"; return 0; fi
  echo "[queue] $(date -u +%H:%M:%S) start $* (${left}s left)"
  # SIGTERM at STOP_EPOCH (the runner stops at its next check, saving its chunk), SIGKILL GRACE_S later
  # shellcheck disable=SC2086
  timeout --preserve-status -s TERM -k "$GRACE_S" "$left" "$PY" -m experiments.run "$@" "device=$DEVICE" progress=false $DATA_ARG $EXTRA \
    >> "$LOGS/$name.log" 2>&1
  rc=$?
  if (( rc == 3 )); then
    left=$(( STOP_EPOCH - $(date +%s) ))
    echo "[queue] $name: a chunk failed; again with compile=false (${left}s left)"
    # shellcheck disable=SC2086
    (( left >= MIN_LEFT_S )) && timeout --preserve-status -s TERM -k "$GRACE_S" "$left" "$PY" -m experiments.run "$@" "device=$DEVICE" \
      progress=false compile=false retry_failed=true $DATA_ARG $EXTRA >> "$LOGS/$name.log" 2>&1
    rc=$?
  fi
  case $rc in
    5) echo "[queue] $(date -u +%H:%M:%S) end $name: stopped at the deadline (exit 5; finished members kept)" ;;
    124|137) echo "[queue] $(date -u +%H:%M:%S) end $name: killed at the deadline (exit $rc; finished members kept)" ;;
    *) echo "[queue] $(date -u +%H:%M:%S) end $name: exit $rc" ;;
  esac
}
export -f run_one

grep -v '^\s*\(#\|$\)' "$QUEUE" | sed 's/^ *python[0-9.]* -m experiments\.run //' | xargs -P "${P:-1}" -L 1 bash -c 'run_one "$@"' _

echo "[queue] per job: what the runner measured"
for f in "$LOGS"/*.log; do
  echo "== $(basename "$f" .log)"
  grep -E "to train on|measured|chunk [0-9]+/|done in|FAILED|stopped|Error|error" "$f" | tail -8
done
kill %1 2>/dev/null
# jobs of one cell (seed_offset=...) rewrite the same records file and can drop each other's lines there,
# never from the store: one last sync puts every finished member into results/records (the project's own
# store only: a queue run with store=PATH in EXTRA keeps its records to itself)
[[ " $EXTRA " == *" store="* ]] || "$PY" -m experiments.results
tar czf "$OUT/cuda_queue.tgz" -C "$WORK" logs -C "$PWD" results/records $( [[ -d store/failed ]] && echo store/failed )
echo "[queue] wrote $OUT/cuda_queue.tgz"
