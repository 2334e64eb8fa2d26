#!/usr/bin/env bash
# Reproduce the paper's tables and figures:  ./reproduce.sh TARGET [hydra overrides...]
# Runs what the results store is missing (the runner skips members already there), then the analysis
# (python -m analysis), then prints where the outputs are.  ./reproduce.sh --help lists the targets.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$ROOT"

# Exact versions the project is tested with (the one place they are written; README and .ci/run call `setup`).
TORCH_PINS=(torch==2.14.1 torchvision==0.29.1)

# Hours that results/wall_time.md projects (python -m analysis.wall_time writes it from the records' wall times and
# the measured rates of benchmarks/roofline.csv), read here so that --help never quotes a number typed by hand.
wall_hours() {  # wall_hours 'LABEL': the hours after "LABEL **" in results/wall_time.md, rounded, or "?"
  local h
  h="$(sed -n "s/.*$1 \*\*\([0-9.]*\) h\*\*.*/\1/p" "$ROOT/results/wall_time.md" 2>/dev/null | head -1)"
  [[ -n "$h" ]] && printf '%.0f' "$h" || printf '?'
}

usage() {
  local t1 t2 all
  t1="$(wall_hours 'the grids above in full (projected):')"
  t2="$(wall_hours 'the same cells at 10 seeds (projected):')"
  all="$( [[ "$t1$t2" =~ \? ]] && echo '?' || echo $((t1 + t2)))"
  sed -e "s/@T1@/~$t1 h/" -e "s/@T2@/~$t2 h/" -e "s/@ALL@/~$all h/" <<'EOF'
Usage: ./reproduce.sh TARGET [hydra overrides passed to every run, e.g. device=cuda seeds=2]

Targets (wall time on this project's 2-core CPU machine, measured 2026-11-23, or projected: table1, table2 and
all as results/wall_time.md projects them now, from the runs' own wall times and, for the grid members still to
run, the rates the current code measured, benchmarks/roofline.csv; device=cuda runs the same code: an H200
trained M2's 7-seed cells in 4-9 min a cell, seven jobs at once, docs/architecture.md "On CUDA"; the rates an H100
measured, benchmarks/roofline_h100.csv, price M2's SGD, AdaGrad and SMD grids on one GPU: results/wall_time.md):
  quick      M0 and C0 with every method, 1 epoch, 2 seeds, and the noisy quadratic; then the analysis,
             in a store and output folder of its own (store/quick, results/quick: the committed
             results/ and results/records/ are left as they are; STORE= and OUT= override)
             (the README's first command)      measured 2026-11-24: 2.5 min (+ about 3 min setup)
  table1     the baselines' tuning grids on all six benchmarks (Sec. 7), 2 seeds each    projected: @T1@
  table2     every method at Table 1's setting (baselines) or untuned (vSGD), 10 seeds   projected: @T2@
  table3     same runs as table2 (final test error instead of train)                     (= table2)
             table1, table2, table3 and all then bring the pick of every grid the store has searched in
             full to 10 seeds (Tables 2/3 report those baselines at our pick, §: python -m analysis.coverage
             --picks prints the commands)
  fig2       the non-stationary quadratic of Fig. 2                                      measured: 15 s
  suite_1d   the 1-D test-function suite                                                 measured: 1 min
  beyond     Tables 2+/3+ (issue 9): table2's runs, vSGD-fd and eight PyPI tuning-free
             optimizers at their defaults, 10 seeds (table2's 16 h included)             projected: ~50 h
  unit_suite the unit-test suite for stochastic optimization, every optimizer (issue 9)  measured: 10 min
  supp_fig9  critical C of vSGD-l (Supp. Fig. 9): XOR MLPs of 12 widths, then M0 C0 M1 CR, 10 seeds per C,
             short runs (results/README.md; C1 and M2: 41 min more)   measured 2026-12-05: 39 min (14 CPU-min)
  supp_fig10 test error against C (Supp. Fig. 10): vSGD-l/b/g, 9 C, M0 and M1 2 seeds; M2 vSGD-l 1 seed
             (M2's -b and -g not run: about 2.6 CPU-hours)  measured 2026-12-05: 104 min (38 CPU-min) with M1's
             first seed; its second, 44 min beside two other jobs; M2 (2026-12-06): 99 min beside 1-2 jobs
             (both measured beside 3-5 other jobs on this machine; alone, about the CPU time)
  table4     today's small workloads (issue 34): 5 nn.Module workloads x every method x 3 seeds, minibatches
             (docs/table4.md)                                 measured 2026-12-05: 0.5 CPU-hours (records' sum)
  supp_fig3  vSGD-l on M1 with 800 hidden units, 100 epochs, 2 seeds (Supp. Fig. 3); resumable: the
             run saves itself every 10 min, run it again to go on   projected: ~10 h (322 member-updates/s
             measured 2026-12-05 beside 2 other jobs; 6 million updates per seed)
  figures    no runs: only the analysis (tables and figures from what the store holds)   measured: 30 s
  all        table1, table2, table3, fig2 and suite_1d, then the analysis                projected: @ALL@
  restore    re-run what results/records/ lacks of the committed tables (results/coverage.md lists
             it), cheapest first, JOBS=2 at once; then rewrite results/coverage.md. No analysis:
             `git add results/records results/coverage.md` keeps the runs   estimated in coverage.md
  complete   once restore has backed every committed cell: bring every Table 2/3 cell to 3 seeds, then to
             the paper's 10 (C1 and M2), cheapest first in each pass, JOBS=2 at once; then rewrite
             results/coverage.md. Afterwards `python -m analysis` rewrites the tables   estimated in coverage.md
  setup      create .venv with the pinned torch and the project (python3 -m venv)        measured: ~4 min
  test       the test suite (pytest; creates .venv first when missing); extra args go to pytest

Environment:
  PYTHON=path   the interpreter to use (default: .venv/bin/python; python3 if it already has the project's
                dependencies; otherwise `setup` runs first)
  STORE=path    results store (default: the runner's, <project>/store)
  OUT=path      where tables and figures go (default: results)
  JOBS=n        runs at once for `restore` (default 2: two single-thread jobs use this 2-core machine best)

Outputs: results/table{1,2,3}.{md,tex,csv}, results/fidelity.md, results/wall_time.md, results/figures/*.{png,pdf},
and results/unit_suite_summary.md when the unit-test suite has run (python -m experiments.run experiment=unit_suite).
A run that is interrupted loses nothing: run the same command again and it resumes.
EOF
}

# The one place the environment is built (README and .ci/run call `./reproduce.sh setup`).
setup() {
  if [[ ! -x .venv/bin/python ]]; then
    echo "[reproduce] creating .venv (python3 -m venv) and installing the project with ${TORCH_PINS[*]}"
    python3 -m venv .venv
  fi
  .venv/bin/pip install --quiet --upgrade pip
  # the library (vsgd, editable) and the harness's dependencies (the `harness` extra, inside `dev`)
  .venv/bin/pip install --quiet "${TORCH_PINS[@]}" -e '.[dev]'
  # The harness (baselines, experiments, synthetic, analysis) is not installed (pyproject.toml): it is imported
  # from the repository root, which this file puts on the venv's path, so that scripts run from anywhere
  # (python benchmarks/x.py, examples/) find it too. Only this project venv gets it, never a user's environment.
  local site
  site="$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
  echo "$ROOT" > "$site/vsgd_harness.pth"
  echo "[reproduce] environment ready: $ROOT/.venv/bin/python"
}

find_python() {
  if [[ -n "${PYTHON:-}" ]]; then
    echo "$PYTHON"
  elif [[ -x .venv/bin/python ]]; then
    echo ".venv/bin/python"
  elif command -v python3 >/dev/null && python3 -c "import torch, hydra, pandas, scipy, matplotlib" 2>/dev/null; then
    echo "python3"
  else
    setup >&2
    echo ".venv/bin/python"
  fi
}

run_experiment() {  # run_experiment NAME [overrides...]
  local name="$1"; shift
  local store_arg=()
  [[ -n "${STORE:-}" ]] && store_arg=("store=$STORE")
  echo "[reproduce] $PY -m experiments.run experiment=$name ${store_arg[*]} $*"
  local t0=$SECONDS
  "$PY" -m experiments.run "experiment=$name" ${store_arg[@]+"${store_arg[@]}"} "$@"
  echo "[reproduce] experiment=$name done in $((SECONDS - t0)) s"
}

run_picks() {  # Tables 2/3 report a baseline at our own grid's pick (§) where its grid ran in full: 10 seeds there
  local cmds c store_arg=()
  [[ -n "${STORE:-}" ]] && store_arg=("store=$STORE")
  cmds="$("$PY" -m analysis.coverage --picks "${STORE:-$ROOT/store}")" || return 1
  while IFS= read -r c; do
    [[ -z "$c" ]] && continue
    echo "[reproduce] ${c/#python/$PY} ${store_arg[*]} $*"
    ${c/#python/$PY} ${store_arg[@]+"${store_arg[@]}"} "$@"
  done <<< "$cmds"
}

analysis() {
  local args=(--out "${OUT:-results}")
  [[ -n "${STORE:-}" ]] && args+=(--store "$STORE")
  echo "[reproduce] $PY -m analysis ${args[*]}"
  "$PY" -m analysis "${args[@]}"
}

# The targets that run experiments and then the analysis (dispatched in the second `case` below).
RUN_TARGETS="quick table1 table2 table3 fig2 suite_1d beyond table4 unit_suite supp_fig3 supp_fig9 supp_fig10 figures all"

target="${1:-}"
[[ $# -gt 0 ]] && shift
case "$target" in
  -h|--help|help) usage; exit 0 ;;
  "") usage >&2; echo "error: no target given; choose one of the targets above." >&2; exit 2 ;;
  setup) setup; exit 0 ;;
  restore|complete)  # one job per cell, JOBS in parallel (two single-thread jobs: 1.5-2x here, docs/architecture.md)
    PY="$(find_python)"
    status=0
    flags=(--commands); [[ "$target" == complete ]] && flags+=(--to-target)
    cmds="$("$PY" -m analysis.coverage "${flags[@]}")" || exit 1  # complete before restore: one error line
    if [[ -n "$cmds" ]]; then
      printf '%s\n' "$cmds" | sed "s|^python |$PY |; s|\$| $*|" \
        | xargs -d '\n' -P "${JOBS:-2}" -I{} sh -c 'echo "[reproduce] $(date -u +%H:%M:%S) {}"; {}' || status=$?
    fi
    "$PY" -m analysis.coverage --write
    exit "$status" ;;
  test)
    PY="$(find_python)"
    "$PY" -c "import vsgd, hydra, pytest" 2>/dev/null || { setup; PY=.venv/bin/python; }
    echo "[reproduce] $PY -m pytest $*"
    WANDB_MODE=disabled exec "$PY" -m pytest "$@" ;;
  *) [[ "$target" != *" "* && " $RUN_TARGETS " == *" $target "* ]] || {
       echo "error: unknown target '$target'. Targets: $RUN_TARGETS restore setup test (see ./reproduce.sh --help)." >&2; exit 2; } ;;
esac

PY="$(find_python)"
if [[ "$target" == quick ]]; then  # a demonstration: its 1-epoch runs stay out of the project's store and results/
  STORE="${STORE:-$ROOT/store/quick}"
  OUT="${OUT:-results/quick}"
fi
start=$SECONDS
case "$target" in
  quick) run_experiment quick "$@"; run_experiment fig2_nonstationary ;;  # STORE, OUT: set above
  table1|table2|table3) run_experiment "$target" "$@"; run_picks "$@" ;;
  suite_1d|unit_suite) run_experiment "$target" "$@" ;;
  beyond) run_experiment beyond_tables "$@" ;;
  table4) run_experiment table4 "$@" ;;
  fig2) run_experiment fig2_nonstationary "$@" ;;
  supp_fig9)  # the XOR setups (store/synthetic), then the benchmarks' short runs (one multirun)
    run_experiment supp_fig9_xor "$@"; run_experiment supp_fig9_critical_c -m benchmark=m0,c0,m1,cr "$@" ;;
  supp_fig3) run_experiment supp_fig3_long "$@" ;;
  supp_fig10)
    run_experiment supp_fig10_c_sensitivity -m benchmark=m0 optimizer=vsgd_l,vsgd_b,vsgd_g "$@"
    run_experiment supp_fig10_c_sensitivity -m benchmark=m1 optimizer=vsgd_l,vsgd_b,vsgd_g "$@"
    run_experiment supp_fig10_c_sensitivity benchmark=m2 optimizer=vsgd_l seeds=1 chunk_size=3 "$@" ;;
  figures) ;;
  all) for name in table1 table2 table3 fig2_nonstationary suite_1d; do run_experiment "$name" "$@"; done
       run_picks "$@" ;;
esac
analysis
echo "[reproduce] target '$target' finished in $((SECONDS - start)) s; tables in ${OUT:-results}/, figures in ${OUT:-results}/figures/"
