#!/bin/bash
# The GPU checks of issue 20, as one short script for a lent device machine (run from the repository root):
#   bash benchmarks/gpu.sh            -> results under ${OUT:-gpu-out}/ (copy the rows into BENCHMARKS.md)
# 1. the gpu-marked tests; 2. SASRec and SIGMA epochs + full evaluation (Beauty when ../shared/data is there, else
# the synthetic set scaled up), bf16 on and off, torch.compile on and off; 3. the 10^6-item step time of ce,
# ce_chunked and sampled softmax; 4. two-GPU DDP when the machine has two GPUs. Each step is bounded by timeout.
set -u
OUT=${OUT:-gpu-out}; mkdir -p "$OUT"
PY=${PY:-python}
$PY -c "import torch; print(torch.__version__, torch.cuda.get_device_name(0), torch.cuda.device_count())" | tee "$OUT/device.txt"
$PY -m pip install -q -e '.[test]' >/dev/null 2>&1 || true
timeout 300 $PY -m pytest -q -m gpu tests/test_gpu.py 2>&1 | tail -3 | tee "$OUT/pytest-gpu.txt"
DATA=beauty; [ -e ../shared/data ] || DATA=synthetic
EXTRA=(); [ "$DATA" = synthetic ] && EXTRA=(--set data.synthetic_users=50000)
for model in sasrec sigma; do
  for amp in true false; do
    for compile in false true; do
      timeout 240 $PY -m sigmarec train $model --dataset $DATA "${EXTRA[@]}" --set train.device=cuda --set train.epochs=3 \
        --set train.amp=$amp --set train.compile=$compile --set train.progress=false --out "$OUT/$model-amp$amp-compile$compile" \
        > "$OUT/$model-amp$amp-compile$compile.log" 2>&1
      grep -h '"train_seconds"' "$OUT/$model-amp$amp-compile$compile/epochs.jsonl" 2>/dev/null | \
        $PY -c "import sys, json; r=[json.loads(l) for l in sys.stdin]; print('$model amp=$amp compile=$compile', [(x['train_seconds'], x.get('eval_seconds')) for x in r])" | tee -a "$OUT/epochs.txt"
    done
  done
done
timeout 300 $PY benchmarks/catalog.py --items 1000000 --device cuda --configs ce:256 ce_chunked:256 sampled:256 --steps 5 | tee "$OUT/catalog.txt"
if [ "$($PY -c 'import torch; print(torch.cuda.device_count())')" -ge 2 ]; then
  timeout 300 $PY -m sigmarec train sasrec --dataset $DATA "${EXTRA[@]}" --set train.device=cuda --set train.epochs=3 \
    --set train.progress=false --nproc 2 --out "$OUT/sasrec-ddp2" > "$OUT/sasrec-ddp2.log" 2>&1; tail -3 "$OUT/sasrec-ddp2.log"
fi
