#!/bin/bash
# Source on the lent GPU machine (docs/benchmarks.md "On the lent GPU"): installs the wheels carried in .whl/ into
# /tmp/site once (the machine has no network and lacks pydantic, faker, gguf, accelerate), copies GGUF parts carried
# in .gpu/<model>/ to /tmp/m/<model>/ (a file over the 64 MiB carry limit travels in parts over several calls), and
# sets the environment every script here runs in. `gguf_ready MODEL` joins a model's parts into /tmp/m/MODEL.gguf once
# all have arrived (checked against .gpu/MODEL/SHA256 or /tmp/m/MODEL/SHA256) and converts it once into the cache.
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
mkdir -p /tmp/m /tmp/site
[ -f /tmp/site/.done ] || { python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
  --target /tmp/site "$HERE"/.whl/*.whl 2>&1 | grep -v -i warn; touch /tmp/site/.done; }
export PYTHONPATH=/tmp/site:$HERE GOLDENLAYERS_CACHE=/tmp/m/glc HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 \
  TOKENIZERS_PARALLELISM=false
for d in "$HERE"/.gpu/*/; do
  [ -d "$d" ] || continue
  m=$(basename "$d"); mkdir -p /tmp/m/$m; cp -n "$d"* /tmp/m/$m/ 2>/dev/null
done
[ -f "$HERE/.gpu/geo.pkl" ] && cp -n "$HERE/.gpu/geo.pkl" "$HERE/.gpu/gl.py" /tmp/m/ 2>/dev/null

gguf_ready() {  # gguf_ready MODEL: /tmp/m/MODEL.gguf joined, checked and converted (exit status 1 if parts are missing)
  local m=$1
  if [ ! -f /tmp/m/$m.gguf ]; then
    local want; want=$(cut -d' ' -f1 /tmp/m/$m/SHA256)
    cat /tmp/m/$m/p* > /tmp/m/$m.part
    if [ "$(sha256sum /tmp/m/$m.part | cut -d' ' -f1)" != "$want" ]; then
      echo "$m: parts incomplete ($(ls /tmp/m/$m | tr '\n' ' '))"; rm -f /tmp/m/$m.part; return 1
    fi
    mv /tmp/m/$m.part /tmp/m/$m.gguf
  fi
  python3 -c "
import sys, time; t = time.time()
from goldenlayers.models import load_model
lm = load_model(sys.argv[1])
print(sys.argv[1], type(lm.model).__name__, lm.adapter.n_layers(lm.model), 'layers; loaded in %.1f s' % (time.time() - t))
" /tmp/m/$m.gguf 2>&1 | grep -v -i "warn\|Loading weights"
}
