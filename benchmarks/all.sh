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
for ds in office beauty; do
  seeds="1 2 3"; [ "$ds" = beauty ] && seeds="1"
  $PY benchmarks/run.py accuracy --model sigma --dataset "$ds" --loss ce --seeds $seeds
  $PY benchmarks/run.py accuracy --model sigma --dataset "$ds" --loss bce --seeds $seeds
  $PY benchmarks/run.py accuracy --model sigma --dataset "$ds" --loss ce --seeds $seeds --tag nomie --set model.prior=standard
  $PY benchmarks/run.py accuracy --model sigma --dataset "$ds" --loss ce --seeds $seeds --tag nosgm --set model.sgm=false
  $PY benchmarks/run.py accuracy --model sigma --dataset "$ds" --loss ce --seeds $seeds --tag noorth --set model.beta2=0
done
$PY benchmarks/run.py speed --dataset beauty --models sasrec sigma --threads 1
$PY benchmarks/run.py speed --dataset beauty --models sasrec --no-bucket
$PY benchmarks/run.py summarise
