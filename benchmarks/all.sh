#!/usr/bin/env bash
# Every benchmark behind BENCHMARKS.md (long: hours on 2 CPU cores). Runs resume where they stopped.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
for ds in office beauty; do
  for loss in ce bce; do
    $PY benchmarks/run.py accuracy --dataset "$ds" --loss "$loss" --seeds 1 2 3
  done
done
$PY benchmarks/run.py speed --dataset beauty --models sasrec sigma --threads 1
$PY benchmarks/run.py speed --dataset beauty --models sasrec --no-bucket
$PY benchmarks/run.py summarise
