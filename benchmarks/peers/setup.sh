#!/bin/bash
# RecBole 1.2.1 in its own virtualenv (benchmarks/peers/.venv-recbole, ignored by git). RecBole pins old versions
# of what it imports and its quick_start pulls ray: it is installed without its dependencies, then exactly the
# modules its config, data, model and trainer packages import, at versions it works with (numpy 1.x, pandas 2.1).
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
[ -x .venv-recbole/bin/python ] || $PY -m venv .venv-recbole
V=.venv-recbole/bin/pip
$V install -q torch==2.13.0 || $V install -q torch --index-url https://download.pytorch.org/whl/cpu
$V install -q --no-deps recbole==1.2.1
$V install -q "numpy==1.26.4" "pandas==2.1.4" "scipy==1.11.4" "scikit-learn==1.3.2" "colorlog==4.7.2" \
  "colorama==0.4.6" "pyyaml>=6" "tqdm>=4.60" "texttable>=1.6" "psutil>=5" "tabulate>=0.8" "tensorboard>=2.10"
.venv-recbole/bin/python -c "from recbole.trainer import Trainer; from recbole.model.sequential_recommender import SASRec; print('recbole ready')"
