"""`goldenlayers --help` and `goldenlayers ls` answer without importing torch (the registries' names come from
the listings cache once computed), and `ls` lists the settings presets with the methods they cover. Speed is
measured in benchmarks/bench_cli_startup.py, not here."""

import os
import subprocess
import sys

from cli_helpers import flat, invoke

PROBE = ("import sys\nfrom typer.testing import CliRunner\nfrom goldenlayers.cli import app\n"
         "r = CliRunner().invoke(app, sys.argv[1:])\nassert r.exit_code == 0, r.output\n"
         "print('torch imported' if 'torch' in sys.modules else 'no torch')\n")


def _probe(args, cache) -> str:
    env = dict(os.environ, GOLDENLAYERS_CACHE=str(cache), HF_HUB_OFFLINE="1")
    res = subprocess.run([sys.executable, "-c", PROBE, *args], env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    return res.stdout.strip().splitlines()[-1]


def test_help_and_cached_ls_do_not_import_torch(tmp_path):
    assert _probe(["--help"], tmp_path) == "no torch"
    assert _probe(["ls"], tmp_path) == "torch imported"  # first time: the names are computed, then cached
    assert _probe(["ls"], tmp_path) == "no torch"


def test_ls_lists_presets_and_their_methods(tmp_path):
    res = invoke(["ls"], env={"GOLDENLAYERS_CACHE": str(tmp_path)})
    assert res.exit_code == 0, res.output
    presets = next(line for line in res.output.splitlines() if line.startswith("presets:"))
    assert "default-gpt2-quality (r-rome/rome)" in presets and "generic (alphaedit/emmet/memit/r-rome/rome)" in presets
    assert "methods: alphaedit, emmet, memit, r-rome, rome" in flat(res)
    again = invoke(["ls"], env={"GOLDENLAYERS_CACHE": str(tmp_path)})
    assert again.output == res.output  # from the cache: the same listing
