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
# SIGMA and its ablations at kl_cap 0.02 (the default; Beauty's preset is 0.01, below), then at the earlier caps 0.05 and 0.2
for cap in 0.02 0.05 0.2; do
  case $cap in 0.02) tag=klc02;; 0.05) tag=klc05;; *) tag=default;; esac
  for ds in office beauty; do
    seeds="1 2 3"; [ "$ds" = beauty ] && seeds="1"
    K=(--threads 1 --set model.kl_cap=$cap)
    $PY benchmarks/run.py accuracy --model sigma --dataset "$ds" --loss ce --seeds $seeds --tag $tag "${K[@]}"
    $PY benchmarks/run.py accuracy --model sigma --dataset "$ds" --loss bce --seeds $seeds --tag $tag "${K[@]}"
    p="-$tag"; [ "$tag" = default ] && p=""
    $PY benchmarks/run.py accuracy --model sigma --dataset "$ds" --loss ce --seeds $seeds --tag nomie$p "${K[@]}" --set model.prior=standard
    $PY benchmarks/run.py accuracy --model sigma --dataset "$ds" --loss ce --seeds $seeds --tag nosgm$p "${K[@]}" --set model.sgm=false
    $PY benchmarks/run.py accuracy --model sigma --dataset "$ds" --loss ce --seeds $seeds --tag noorth$p "${K[@]}" --set model.beta2=0
  done
done
# kl_cap exploration below the default (validation decides)
$PY benchmarks/run.py accuracy --model sigma --dataset office --loss ce --seeds 1 --threads 1 --tag klc01 --set model.kl_cap=0.01
# Beauty's preset cap (0.01, chosen on Beauty validation) with its ablations; w/o SGM-VAE has no capped term
B=(--threads 1 --set model.kl_cap=0.01)
$PY benchmarks/run.py accuracy --model sigma --dataset beauty --loss ce --seeds 1 2 --tag klc01 "${B[@]}"
$PY benchmarks/run.py accuracy --model sigma --dataset beauty --loss ce --seeds 1 --tag nomie-klc01 "${B[@]}" --set model.prior=standard
$PY benchmarks/run.py accuracy --model sigma --dataset beauty --loss ce --seeds 1 --tag noorth-klc01 "${B[@]}" --set model.beta2=0
# the dropout try ran at cap 0.02, then the Beauty preset's cap: pinned so a rerun repeats it
$PY benchmarks/run.py accuracy --model sigma --dataset beauty --loss ce --seeds 1 --threads 1 --tag do05 --epochs 29 \
  --set model.kl_cap=0.02 --set model.dropout=0.5 --set model.attn_dropout=0.5   # stopped at epoch 29 (BENCHMARKS, "What was tried")
# multi-interest models (one random split per window and step: many cheap epochs)
MI="--epochs 1000 --patience 40 --threads 1"
MIB="--epochs 1000 --patience 20 --threads 1 --set train.eval_every=5"  # Beauty: evaluation dominates, every 5th epoch
for m in sine dss mind comirec_dr comirec_sa; do
  $PY benchmarks/run.py accuracy --model $m --dataset office --loss ce --seeds 1 2 3 $MI
  $PY benchmarks/run.py accuracy --model $m --dataset beauty --loss ce --seeds 1 $MIB
done
$PY benchmarks/run.py accuracy --model sine --dataset ml-100k --loss ce --seeds 1 2 3 $MI --max-len 20 --tag paper \
  --set model.n_concepts=50 --set 'eval.ks=[10,50]' --set train.valid_metric=ndcg@10
$PY benchmarks/run.py accuracy --model sasrec --dataset ml-100k --loss ce --seeds 1 2 3 --threads 1 --max-len 20 --tag paper \
  --set 'eval.ks=[10,50]' --set train.valid_metric=ndcg@10
# DSS under its own sampled protocol (100 popularity-sampled negatives), with and without seq2seq
SAMPLED=(--set eval.sampled_negatives=100 --set eval.sampler=popularity --set 'eval.ks=[1,5,10]' --set train.valid_metric=ndcg@10)
# patience 10 validations (50 epochs): both resumed with it, at epoch 75 (sampled) and 85 (noseq2seq); a fresh run repeats them
MIBS="--epochs 1000 --patience 10 --threads 1 --set train.eval_every=5"
$PY benchmarks/run.py accuracy --model dss --dataset beauty --loss ce --seeds 1 $MIBS --tag sampled "${SAMPLED[@]}"
$PY benchmarks/run.py accuracy --model dss --dataset beauty --loss ce --seeds 1 $MIBS --tag sampled-noseq2seq "${SAMPLED[@]}" \
  --set model.seq2seq=false
# the same pair with the paper's in-batch seq2item loss (Eq. 6)
$PY benchmarks/run.py accuracy --model dss --dataset beauty --loss inbatch --seeds 1 $MIBS --tag sampled "${SAMPLED[@]}"
$PY benchmarks/run.py accuracy --model dss --dataset beauty --loss inbatch --seeds 1 $MIBS --tag sampled-noseq2seq "${SAMPLED[@]}" \
  --set model.seq2seq=false
# session models under HNVM's protocol (sessions at 30-minute gaps; ml-100k user attributes)
S=(--set protocol.name=session --set 'eval.ks=[5,10,20]' --set train.valid_metric=mrr@5)
for ds in ml-100k synthetic-sessions; do
  for m in pop gru4rec gru4rec_session hrnn hnvm sasrec; do
    $PY benchmarks/run.py accuracy --model $m --dataset $ds --loss ce --seeds 1 2 3 --threads 1 --epochs 100 --patience 10 --tag session "${S[@]}"
  done
done
# issue 15: does the mixture prior earn its place? Exploration on Office validation (seed 1), then SIGMA against
# the N(0, I) prior, the shuffled-prior control and SASRec-CE at the same width (3 seeds), tested per user
O=(--dataset office --loss ce --threads 1)
$PY benchmarks/run.py accuracy --model sigma "${O[@]}" --seeds 1 --tag poolmean --set model.soft_pool=mean
$PY benchmarks/run.py accuracy --model sigma "${O[@]}" --seeds 1 --tag poolmean-norm-joint \
  --set model.soft_pool=mean --set model.prior_map=norm --set model.detach_prior=false
$PY benchmarks/run.py accuracy --model sigma "${O[@]}" --seeds 1 --tag poolmean-norm-joint-shift4 --epochs 20 \
  --set model.soft_pool=mean --set model.prior_map=norm --set model.detach_prior=false --set model.prior_logvar_shift=-4  # stopped at epoch 20
$PY benchmarks/run.py accuracy --model sigma "${O[@]}" --seeds 1 2 3 --tag i15
$PY benchmarks/run.py accuracy --model sigma "${O[@]}" --seeds 1 2 3 --tag i15-nomie --set model.prior=standard
$PY benchmarks/run.py accuracy --model sigma "${O[@]}" --seeds 1 2 3 --tag i15-shuffle --set model.prior_shuffle=true
$PY benchmarks/run.py accuracy --model sasrec "${O[@]}" --seeds 1 2 3 --tag i15
for v in i15-nomie i15-shuffle; do
  $PY -m sigmarec.cli compare --runs runs/bench/sigma-office-ce-i15-s{1,2,3} --against runs/bench/sigma-office-ce-$v-s{1,2,3}
done
$PY -m sigmarec.cli compare --runs runs/bench/sigma-office-ce-i15-s{1,2,3} --against runs/bench/sasrec-office-ce-i15-s{1,2,3}
$PY benchmarks/run.py prior --runs runs/bench/sigma-office-ce-i15-s{1,2,3} runs/bench/sigma-office-ce-i15-shuffle-s{1,2,3} --threads 1
# the same on Beauty (its preset, cap 0.01), seed 1, patience 10 validations (best epochs were 21-24 at this preset)
IB=(--dataset beauty --loss ce --threads 1 --patience 10)
$PY benchmarks/run.py accuracy --model sigma "${IB[@]}" --seeds 1 --tag i15
$PY benchmarks/run.py accuracy --model sigma "${IB[@]}" --seeds 1 --tag i15-nomie --set model.prior=standard
$PY -m sigmarec.cli compare --runs runs/bench/sigma-beauty-ce-i15-s1 --against runs/bench/sigma-beauty-ce-i15-nomie-s1
# ... then seeds 2-3, the shuffled control and SASRec-CE at the same width (3 seeds each), paired with equal seed counts
$PY benchmarks/run.py accuracy --model sasrec "${IB[@]}" --seeds 1 2 3 --tag i15
$PY benchmarks/run.py accuracy --model sigma "${IB[@]}" --seeds 2 3 --tag i15
$PY benchmarks/run.py accuracy --model sigma "${IB[@]}" --seeds 2 3 --tag i15-nomie --set model.prior=standard
$PY benchmarks/run.py accuracy --model sigma "${IB[@]}" --seeds 1 2 3 --tag i15-shuffle --set model.prior_shuffle=true
$PY -m sigmarec.cli compare --runs runs/bench/sigma-beauty-ce-i15-s1 --against runs/bench/sasrec-beauty-ce-i15-s1
$PY -m sigmarec.cli compare --runs runs/bench/sigma-beauty-ce-i15-nomie-s1 --against runs/bench/sasrec-beauty-ce-i15-s1
for v in i15-nomie i15-shuffle; do
  $PY -m sigmarec.cli compare --runs runs/bench/sigma-beauty-ce-i15-s{1,2,3} --against runs/bench/sigma-beauty-ce-$v-s{1,2,3}
done
$PY -m sigmarec.cli compare --runs runs/bench/sigma-beauty-ce-i15-s{1,2,3} --against runs/bench/sasrec-beauty-ce-i15-s{1,2,3}
# the authors' width on Office (d = 128, 4 heads, max length 100), SASRec at the same width
W=(--dataset office --loss ce --threads 1 --max-len 100 --set model.hidden_size=128 --set model.n_heads=4)
$PY benchmarks/run.py accuracy --model sasrec "${W[@]}" --seeds 1 --tag i15-d128
$PY benchmarks/run.py accuracy --model sigma "${W[@]}" --seeds 1 --tag i15-d128
$PY -m sigmarec.cli compare --runs runs/bench/sigma-office-ce-i15-d128-s1 --against runs/bench/sasrec-office-ce-i15-d128-s1
# item 4: the variance part of the mixture KL weighted apart (0 = the mean pull alone), then a larger KL weight;
# the identity-initialised linear map trained jointly; the variational estimator with the full KL (check)
V=(--dataset office --loss ce --threads 1 --model sigma --seeds 1 --set model.prior_kl=variational)
$PY benchmarks/run.py accuracy "${V[@]}" --tag i15-var0 --set model.prior_kl_var_weight=0
$PY benchmarks/run.py accuracy "${V[@]}" --tag i15-var0-cap10 --set model.prior_kl_var_weight=0 --set model.kl_cap=0.1
$PY benchmarks/run.py accuracy "${V[@]}" --tag i15-var1
$PY benchmarks/run.py accuracy --dataset office --loss ce --threads 1 --model sigma --seeds 1 --tag i15-linear-joint \
  --set model.prior_map=linear --set model.detach_prior=false
$PY -m sigmarec.cli compare --runs runs/bench/sigma-beauty-ce-i15-s{1,2,3} --against runs/bench/sigma-beauty-ce-i15-shuffle-s{1,2,3}
# issue 16: every registered model under its own defaults, nothing else set (one seed: the library's seed 42),
# against its BENCHMARKS.md row; models without an Office row get one from the long recipe (tag i16-ref)
for m in sasrec gru4rec pop sigma sine comirec_sa mind comirec_dr dss hrnn gru4rec_session hnvm; do
  /usr/bin/time -f "WALL $m %e s" $PY -m sigmarec.cli train $m --dataset office --threads 1 --out runs/conv/$m-office --json
done
for m in pop gru4rec gru4rec_session hrnn hnvm; do
  $PY benchmarks/run.py accuracy --dataset office --loss ce --threads 1 --model $m --seeds 1 --tag i16-ref
done
$PY benchmarks/run.py accuracy --dataset office --loss ce --threads 1 --model comirec_sa --seeds 1 --epochs 1000 --patience 40 --tag i16-check
$PY benchmarks/run.py accuracy --dataset office --loss ce --threads 1 --model pop --seeds 1 --tag i16-count
for m in mind comirec_sa; do for s in 1 2 3; do  # the plain defaults at seeds 1-3, against the rows' seeds 1-3
  $PY -m sigmarec.cli train $m --dataset office --threads 1 --set train.seed=$s --out runs/conv/$m-office-s$s
done; done
# issue 18: SIGMA's Table 1 on Office and Beauty by one command each (trains what is missing, resumable)
$PY -m sigmarec.cli compare --dataset office --models sigma sasrec contrastvae bert4rec svae acvae dt4sr mind comirec_sa comirec_dr bprmf lightgcn \
  --seeds 1 2 3 --jobs 2 --threads 1 --out runs/table1-office
$PY -m sigmarec.cli compare --dataset beauty --models sigma sasrec contrastvae:1,2,3 bert4rec svae acvae dt4sr mind comirec_sa comirec_dr bprmf lightgcn \
  --seeds 1 --jobs 2 --threads 1 --out runs/table1-beauty  # one seed each, three for ContrastVAE (the issue's minimum)
$PY benchmarks/run.py speed --dataset office --models sasrec bert4rec svae acvae contrastvae dt4sr bprmf lightgcn --epochs 3 --threads 1
for lr in 0.005 0.01; do  # BPR-MF's learning rate, on validation (default 0.001)
  $PY -m sigmarec.cli train bprmf --dataset office --threads 1 --set train.seed=1 --set train.lr=$lr --out runs/i18/bprmf-office-lr${lr#0.}-s1
done
B4=($PY -m sigmarec.cli train bert4rec --dataset office --threads 1 --set model.mask_prob=0.6)  # candidates (at the earlier preset's mask), judged on validation
"${B4[@]}" --set train.seed=1 --set model.loss=bce --out runs/i18/bert4rec-office-bce-s1
for d in 0.3 0.5; do "${B4[@]}" --set train.seed=1 --set model.dropout=$d --set model.attn_dropout=$d --out runs/i18/bert4rec-office-d0${d#0.}-s1; done
"${B4[@]}" --set train.seed=1 --set model.hidden_size=128 --out runs/i18/bert4rec-office-h128-s1
for s in 1 2; do for m in 0.2 0.4 0.6; do
  "${B4[@]}" --set train.seed=$s --set model.mask_prob=$m --out runs/i18/bert4rec-office-m0${m#0.}-s$s
done; done
cp -r runs/i18/bert4rec-office-m06-s1 runs/i18/bert4rec-office-p200-s1  # BERT4Rec (mask 0.6) seed 1 continued with patience 200
"${B4[@]}" --set train.seed=1 --set train.patience=200 --out runs/i18/bert4rec-office-p200-s1
for m in dt4sr svae acvae; do  # issue 16: the plain seed-1 runs continued with a larger patience (resumed copies)
  cp -r runs/table1-office/$m-s1 runs/i18/$m-office-p40-s1
  $PY -m sigmarec.cli train $m --dataset office --threads 1 --set train.seed=1 --set train.patience=40 --set train.epochs=500 --out runs/i18/$m-office-p40-s1
done
for s in 2 3; do $PY -m sigmarec.cli train bprmf --refit runs/table1-office/bprmf-s$s --threads 1 --out runs/i18/bprmf-office-refit-s$s; done
for m in bprmf lightgcn; do  # the final refit: validation items trained, the run's best epoch count, then tested
  $PY -m sigmarec.cli train $m --refit runs/table1-office/$m-s1 --threads 1 --out runs/i18/$m-office-refit-s1
  $PY -m sigmarec.cli compare --runs runs/table1-office/$m-s1 --against runs/i18/$m-office-refit-s1
done
$PY -m sigmarec.cli train sasrec --refit runs/bench/sasrec-office-ce-i15-s1 --threads 1 --out runs/i18/sasrec-office-refit-s1
$PY -m sigmarec.cli compare --runs runs/bench/sasrec-office-ce-i15-s1 --against runs/i18/sasrec-office-refit-s1
# issue 20: the page-fault part of the roofline, the 50M-row preprocessing, torch.compile on CPU, RecBole side by side
for f in --no-reuse ""; do $PY benchmarks/roofline.py --dataset beauty --epochs 1 --threads 1 $f; done
$PY benchmarks/biglog.py --file /tmp/biglog.csv --readers sigmarec
for c in false true; do
  $PY -m sigmarec.cli train sasrec --dataset office --threads 1 --set train.epochs=3 --set train.compile=$c --out /tmp/cmp/sasrec-compile-$c --restart
done
bash benchmarks/peers/setup.sh && $PY benchmarks/peers/compare.py
# issue 19: serving on Beauty (exact and FAISS), loopback load test on an idle machine
for m in sasrec sigma; do
  $PY -m sigmarec.cli export runs/bench/$m-beauty-ce-i15-s1 --out runs/export/$m-beauty --index hnsw
  $PY benchmarks/load.py runs/bench/$m-beauty-ce-i15-s1 --clients 8 --requests 3000 --seconds 60
  $PY benchmarks/load.py runs/bench/$m-beauty-ce-i15-s1 --index runs/export/$m-beauty --clients 8 --requests 3000 --seconds 60
done
$PY benchmarks/run.py speed --dataset beauty --models sasrec sigma --threads 1
$PY benchmarks/run.py speed --dataset office --models sasrec sine dss mind comirec_dr comirec_sa --epochs 3 --threads 1
$PY benchmarks/run.py speed --dataset ml-100k --models gru4rec gru4rec_session hrnn hnvm sasrec --epochs 2 --threads 1
$PY benchmarks/run.py speed --dataset beauty --models sasrec sine dss mind comirec_dr comirec_sa --epochs 2 --threads 1
$PY benchmarks/run.py speed --dataset beauty --models sasrec --no-bucket
$PY benchmarks/run.py summarise
$PY benchmarks/run.py summarise --keys recall@5 mrr@5 precision@5
$PY benchmarks/run.py summarise --keys hit@10 ndcg@10 hit@50 ndcg@50
# issue 20: DDP is checked by tests/test_ddp.py; scale benchmarks (idle machine)
$PY benchmarks/catalog.py --items 1000000 --steps 3 --threads 1
$PY benchmarks/biglog.py --file /tmp/biglog.csv
$PY benchmarks/roofline.py --dataset beauty --epochs 1 --threads 1
$PY benchmarks/run.py accuracy --dataset beauty --loss sampled_logq --threads 1 --patience 10 --model sasrec --seeds 1 2 3 --tag i20
python benchmarks/load.py runs/bench/sasrec-beauty-ce-i15-s1 --clients 8 --requests 3000 --seconds 45 --max-batch 64
python benchmarks/load.py runs/bench/sasrec-beauty-ce-i15-s1 --clients 8 --requests 3000 --seconds 45 --max-batch 1
bash benchmarks/peers/setup.sh && $PY benchmarks/peers/compare.py   # RecBole's SASRec beside ours, one thread each
bash benchmarks/gpu.sh                                                # only on a machine with a CUDA device
