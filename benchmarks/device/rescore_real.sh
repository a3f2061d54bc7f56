#!/bin/bash
# Score selectors again against a committed ground-truth sweep of a real model, on the lent GPU, with the code as it
# is now (docs/selection.md "Commands, device, settings"):
#   benchmarks/device/rescore_real.sh MODEL STORE [SELECTORS]    MODEL: smol | gemma; STORE: a docs/data/truth/*.sqlite.gz
# Unpacks the store as a run directory, then benchmarks/bench_regret.py --run scores SELECTORS (default race) for
# split seeds 0,1,2, re-timing the test sweep here at 3 layers (--time-layers 3, the cost's denominator measured with
# the same code). Output goes to ${RES:-$OUT}/rescore-<model>/ as it is made.
set -u
source "$(dirname "$0")/env.sh"
G=$1; STORE=$2; SELECTORS=${3:-race}
case $G in smol) M=smollm2-135m ;; gemma) M=gemma3-270m ;; *) echo "unknown model $G"; exit 2 ;; esac
O=${RES:-$OUT}/rescore-$M; R=/tmp/m/runs/rescore-$M; mkdir -p $O $R
gguf_ready $G | tee -a $O/device.txt || exit 1
nvidia-smi -L >> $O/device.txt
gunzip -c "$HERE/$STORE" > $R/store.sqlite
python3 $HERE/benchmarks/bench_regret.py --model /tmp/m/$G.gguf --dataset realfacts \
  --data-file $HERE/docs/data/truth/rf-$M.json --limit 200 --editor r-rome --run $R --run-model $M --seeds 0,1,2 \
  --batch-size 64 --selectors $SELECTORS --time-layers 3 --out $O/regret.json 2>&1 \
  | grep -v -i "warn\|Loading\|ground truth sweep" > $O/regret.log
echo "done at $SECONDS s" | tee -a $O/device.txt
