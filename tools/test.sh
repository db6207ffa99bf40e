#!/usr/bin/env bash
# The full test suite: the README's test command runs this. Needs the `dev` extra installed.
set -euo pipefail
cd "$(dirname "$0")/.."
export MPLBACKEND=Agg
echo "== 1/4 notebooks, exported package and README in sync; imports run down the layers"
python tools/check_sync.py
python tools/check_layers.py
ruff check   # unused imports, redefinitions, undefined names ([tool.ruff] in pyproject.toml)
echo "== 2/4 docs pre-processing (nbdev-proc-nbs; rendering needs Quarto: nbdev-docs)"
python tools/check_imports.py
nbdev-proc-nbs </dev/null   # no --force: it would also regenerate our custom sidebar.yml
echo "== 3/4 notebook tests (nbdev-test, 2 workers; cells flagged slow/cuda/notest are skipped)"
nbdev-test --n-workers 2 --timing
echo "== 4/4 pytest"
python -m pytest -q tests
