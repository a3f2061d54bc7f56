#!/bin/bash
# Copy what the jobs left running on the lent GPU have written so far (/tmp/m/res, the sweeps' JSON lines gzipped)
# into this call's $OUT, so that every call brings the results home (a machine given back loses /tmp/m).
mkdir -p $OUT/res && cp -r /tmp/m/res/. $OUT/res/ 2>/dev/null
for f in /tmp/m/rows-*.jsonl; do [ -f "$f" ] && gzip -c "$f" > $OUT/res/$(basename "$f").gz; done
for f in /tmp/m/runs/*/store.sqlite; do [ -f "$f" ] && python3 -c "import sqlite3, sys; s = sqlite3.connect(sys.argv[1]); b = sqlite3.connect(sys.argv[2]); s.backup(b)" "$f" $OUT/res/$(basename $(dirname "$f")).sqlite; done
tail -c 200 /tmp/m/*.log 2>/dev/null | tr '\r' '\n' | grep -v "^$" | tail -n 30
