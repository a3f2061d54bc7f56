"""The HTML report (goldenlayers.report): self-contained (figures as base64 PNGs, no external resources), holds
every table and the run metadata, and renders in a headless browser. Rows are FABRICATED test fixtures
(tests/test_report_fixtures.py), never results."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import base64
import re
import shutil
import subprocess

import numpy as np
import pytest
from matplotlib.image import imread
from test_report_fixtures import fabricate_run
from typer.testing import CliRunner

from goldenlayers.cli import app
from goldenlayers.report import report


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    fab = fabricate_run(tmp_path_factory.mktemp("run"), models=("tiny-a",), n_cases=15)
    return fab, report(fab.run)


def test_html_is_self_contained_and_holds_everything(built):
    fab, out = built
    page = out.html.read_text()
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    for t in out.tables:
        assert f'<table id="{t.key}">' in page and t.title in page
    assert [t.key for t in out.tables][:2] == ["table1", "table2-tiny-a-zsre"]
    imgs = re.findall(r'<img alt="[^"]*" src="data:image/png;base64,([A-Za-z0-9+/=]+)">', page)
    assert len(imgs) == len(out.figures) == 4  # figures 1-4 (one model: one figure 1)
    for data, path in zip(imgs, out.figures.values(), strict=True):
        assert base64.b64decode(data) == path.read_bytes()
    assert not re.search(r'(src|href)="(https?:)?//', page)  # nothing fetched from elsewhere
    meta = fab.run.meta
    assert meta["versions"]["torch"] in page and "results rows" in page and "name: fabricated" in page
    md = out.markdown.read_text()
    assert "| Model |  | ZsRE | WikiBio |" in md and "![Figure 2: layer x dataset gap heatmap" in md


def test_cli_report(built, tmp_path):
    fab, _ = built
    r = CliRunner().invoke(app, ["report", str(fab.run.path), "--out", str(tmp_path / "rep"),
                                 "--overall-weights", "rewrite=2"])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "rep" / "report.html").stat().st_size > 10_000
    assert "weighted mean of 2*rewrite, 1*rephrase" in (tmp_path / "rep" / "report.md").read_text()
    r = CliRunner().invoke(app, ["report", str(fab.run.path), "--overall-weights", "zscore=1"])
    assert r.exit_code == 2 and "--overall-weights" in r.output and "unknown metric" in r.output


def _chromium() -> str | None:
    return next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)


@pytest.mark.slow
@pytest.mark.skipif(_chromium() is None, reason="no chromium (apt-get install -y chromium)")
def test_headless_browser_renders_the_report(built, tmp_path):
    _, out = built
    shot = tmp_path / "shot.png"
    cmd = [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}", "--window-size=1200,1600",
           out.html.resolve().as_uri()]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert shot.is_file(), proc.stderr[-2000:]
    img = imread(shot)[..., :3]
    assert img.shape[:2] == (1600, 1200)
    assert img.std() > 0.05  # not blank
    dark = (img.mean(axis=2) < 0.5).mean()
    assert 0.005 < dark < 0.5  # text and table rules on a light page
    header = img[:, :, 2][np.all(np.abs(img - [0xEE / 255, 0xF2 / 255, 0xF7 / 255]) < 0.01, axis=2)]
    assert header.size > 1000  # the table header background (#eef2f7) is painted: the CSS applied
