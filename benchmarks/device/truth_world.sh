#!/bin/bash
# Ground truth of layer selection on a model trained by `goldenlayers train-world` with a world seed and shape the
# project does not ship, on the lent GPU (docs/selection.md "Commands, device, settings").
#   benchmarks/device/truth_world.sh ARCH SEED [LAYERS D_MODEL CASES SEEDS]      e.g. llama 7 12 256 300 0,1,2
# Trains the model (or reuses it), then benchmarks/bench_regret.py sweeps R-ROME (preset default-small) over every
# layer on CASES world edits of that model's own world (the ground truth, kept as JSON lines and resumed when cut)
# and scores every selector, timed on this GPU, for each split seed. Results go to $OUT/world-ARCH-sSEED/ (or
# $RES/..., for a job left running in the background) as made; TRAIN_ONLY=1 stops after training, NO_SELECT=1
# after the sweep (score the selectors in a later call, alone on the GPU, so that their times are not shared).
set -u
source "$(dirname "$0")/env.sh"
ARCH=$1; SEED=$2; LAYERS=${3:-12}; D=${4:-256}; N=${5:-300}; SEEDS=${6:-0,1,2}; DEADLINE=${DEADLINE:-590}
W=/tmp/m/world-$ARCH-s$SEED; O=${RES:-$OUT}/world-$ARCH-s$SEED; mkdir -p $O
nvidia-smi -L > $O/device.txt
if [ ! -f $W/model.safetensors ]; then
  timeout $(( DEADLINE - SECONDS - 30 )) python3 -m goldenlayers train-world --arch $ARCH --seed $SEED --layers $LAYERS \
    --d-model $D --out $W --device cuda --batch-size 512 --lr 3e-3 --max-steps 9000 --eval-every 500 \
    --target-recall 0.997 > /tmp/m/train-$ARCH-$SEED.log 2>&1
  echo "train exit $? at $SECONDS s" | tee -a $O/device.txt
fi
cp $W/training.json $O/ 2>/dev/null
grep -v -i warn /tmp/m/train-$ARCH-$SEED.log 2>/dev/null | tail -5 > $O/train.log
[ -f $W/model.safetensors ] && [ -z "${TRAIN_ONLY:-}" ] || exit 0
timeout $(( DEADLINE - SECONDS - 5 )) python3 $HERE/benchmarks/bench_regret.py --model $W --dataset world --limit $N \
  --rows /tmp/m/rows-$ARCH-$SEED.jsonl --preset default-small --seeds $SEEDS --batch-size $N --out $O/regret.json ${NO_SELECT:+--no-selectors} 2>&1 \
  | grep -v -i "warn\|Loading\|ground truth sweep" > $O/regret.log
echo "bench exit $? at $SECONDS s" | tee -a $O/device.txt
gzip -c /tmp/m/rows-$ARCH-$SEED.jsonl > $O/rows.jsonl.gz
