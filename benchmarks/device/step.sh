#!/bin/bash
# One call of a multi-call session on the lent GPU (docs/selection.md "Commands, device, settings"):
#   benchmarks/device/step.sh METHOD WAIT [MODEL...]      e.g. step.sh rome 240 smol gemma
# The machine is given back 30 s after a call ends and only jobs in their own process session outlive a call, so
# a sweep runs in the background while every call (each carrying the next GGUF parts in .gpu/<model>/, env.sh
# copies them to /tmp/m/<model>/) starts the jobs whose model has all its parts, waits up to WAIT seconds (less
# once every job started here has ended), and brings home what the jobs have written so far, in one tarball
# ($OUT/res.tgz: /tmp/m/res, the job logs, a consistent copy of every run store), since a call returns at most 8
# files and a machine lost between calls loses /tmp/m. TIME_LAYERS (default 3) is passed to truth_real.sh: jobs
# that share the GPU re-time the test sweep just before the selectors (bench_regret.py --time-layers).
set -u
METHOD=$1; WAIT=$2; shift 2
source "$(dirname "$0")/env.sh"
mkdir -p /tmp/m/res
for G in "$@"; do
  [ -f /tmp/m/started-$G-$METHOD ] && continue
  [ -f /tmp/m/$G/SHA256 ] || { echo "$G: no SHA256 yet"; continue; }
  if [ ! -f /tmp/m/$G.gguf ] && [ "$(cat /tmp/m/$G/p* | sha256sum | cut -d' ' -f1)" != "$(cut -d' ' -f1 /tmp/m/$G/SHA256)" ]; then
    echo "$G: parts so far: $(ls /tmp/m/$G | tr '\n' ' ')"; continue
  fi
  date +%s > /tmp/m/started-$G-$METHOD
  RES=/tmp/m/res DEADLINE=${DEADLINE:-3000} TIME_LAYERS=${TIME_LAYERS:-3} setsid nohup bash "$HERE/benchmarks/device/truth_real.sh" \
    $G $METHOD > /tmp/m/job-$G-$METHOD.log 2>&1 < /dev/null &
  echo "$G: all parts here; started truth_real.sh $G $METHOD"
done
running() { pgrep -f "truth_real.sh" > /dev/null; }
END=$(( SECONDS + WAIT ))
while [ $SECONDS -lt $END ] && running; do sleep 5; done
for f in /tmp/m/runs/*/store.sqlite; do
  [ -f "$f" ] && python3 -c "import sqlite3, sys; s = sqlite3.connect(sys.argv[1]); b = sqlite3.connect(sys.argv[2]); s.backup(b)" \
    "$f" /tmp/m/res/$(basename $(dirname "$f")).sqlite
done
cp /tmp/m/job-*.log /tmp/m/run-*.log /tmp/m/res/ 2>/dev/null
tar czf $OUT/res.tgz -C /tmp/m res
for f in /tmp/m/job-*.log /tmp/m/run-*.log; do
  [ -f "$f" ] && { echo "== $f"; tr '\r' '\n' < "$f" | grep -v -i "warn\|^$" | tail -n 4; }
done
for f in /tmp/m/runs/*/store.sqlite; do
  [ -f "$f" ] && python3 -c "import sqlite3, sys; s = sqlite3.connect(sys.argv[1]); print(sys.argv[1], s.execute('select count(*) from results').fetchone()[0], 'result rows')" "$f" 2>&1 | tail -1
done
running && echo "jobs running" || echo "no job running"
nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader
echo "call took $SECONDS s"
