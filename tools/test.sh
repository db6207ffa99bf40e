#!/usr/bin/env bash
# The full test suite: the README's test command runs this. Needs the `dev` extra installed.
# `bash tools/test.sh 1 2` runs only the steps named (default: all four).
set -euo pipefail
cd "$(dirname "$0")/.."
export MPLBACKEND=Agg
steps="${*:-1 2 3 4}"
run() { [[ " $steps " == *" $1 "* ]]; }
if run 1; then
  echo "== 1/4 notebooks, exported package and README in sync; imports run down the layers"
  python tools/check_sync.py
  python tools/check_layers.py
  ruff check   # unused imports, redefinitions, undefined names ([tool.ruff] in pyproject.toml)
fi
if run 2; then
  export PXP_STEP2_LOG; PXP_STEP2_LOG=$(mktemp)   # what this step printed: pytest's check that it is quiet reads it instead of running it again
  trap 'rm -f "$PXP_STEP2_LOG"' EXIT
  {
  if command -v quarto >/dev/null; then
    echo "== 2/4 docs pre-processing (nbdev-proc-nbs; rendering the site: nbdev-docs)"
    python tools/check_imports.py
    nbdev-proc-nbs </dev/null   # no --force: it would also regenerate our custom sidebar.yml
  else   # nbdev-proc-nbs would try to install Quarto (with sudo); the pre-processing itself needs no Quarto
    echo "== 2/4 docs pre-processing without Quarto (not installed, so nbdev-proc-nbs and nbdev-docs are skipped; the notebooks' doc processing still runs)"
    python tools/check_imports.py
    python -c "from nbdev.serve import proc_nbs; proc_nbs()"
  fi
  } 2>&1 | tee "$PXP_STEP2_LOG"
fi
if run 3; then
  echo "== 3/4 notebook tests (nbdev-test, 2 workers; cells flagged slow/cuda/notest are skipped)"
  # not OMP_NUM_THREADS=1: faster on five middle notebooks (1.25x), but the whole step took 690 s against 650 s, the last tutorials running alone on one core
  nbdev-test --n-workers 2 --timing
fi
if run 4; then
  echo "== 4/4 pytest"
  python -m pytest -q tests
fi
