"""The exported HTML view opened in a real browser (headless Chromium): the graph renders offline, every
entity type's colour is on the canvas, and the page logs no error. CI installs Chromium (.ci/run); elsewhere
the test skips when it is missing."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "store"))
from tiny_graph import write_batch  # noqa: E402

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-extensions", "--no-first-run", "--disable-sync", "--disable-default-apps",
                  "--enable-logging=stderr", "--log-level=0", "--virtual-time-budget=10000"]


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("Chromium is not installed; .ci/run installs Debian's chromium package")
        pytest.skip("no Chromium here (apt-get install chromium)")
    return found


def run_browser(*arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run([chromium(), *CHROMIUM_FLAGS, *arguments], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "HOME": os.environ.get("HOME", "/tmp")})


def console_errors(stderr: str) -> list[str]:
    messages = [line for line in stderr.splitlines() if ":CONSOLE" in line]
    return [line for line in messages if re.search(r"Uncaught|Error|error", line)]


def test_exported_view_renders_in_chromium(tmp_path):
    from PIL import Image

    from kgmm.app.viz import type_colour, write_html
    from kgmm.store import open_store

    store = open_store(tmp_path / "store")
    write_batch(store)
    page = tmp_path / "view.html"
    write_html(store, page, store=store)
    types = {entity.type for entity in store.iter_entities()}
    store.close()

    dom = run_browser("--dump-dom", page.as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert re.search(r'<canvas[^>]+data-testid="nvl-', dom.stdout), "the graph canvas was not created"
    assert not console_errors(dom.stderr), console_errors(dom.stderr)

    shot = tmp_path / "view.png"
    result = run_browser("--window-size=1200,800", f"--screenshot={shot}", page.as_uri())
    assert result.returncode == 0 and shot.is_file(), result.stderr[-2000:]
    pixels = Image.open(shot).convert("RGB")
    counts = {}
    for colour, count in ((rgb, n) for n, rgb in pixels.getcolors(maxcolors=1 << 20)):
        counts[colour] = counts.get(colour, 0) + count

    def drawn(hex_colour: str) -> int:
        target = tuple(int(hex_colour[i:i + 2], 16) for i in (1, 3, 5))
        return sum(n for rgb, n in counts.items() if max(abs(a - b) for a, b in zip(rgb, target, strict=True)) <= 6)

    missing = [t for t in sorted(types) if drawn(type_colour(t)) < 200]
    assert not missing, f"no node of type(s) {missing} on the screenshot"


def test_render_benchmark_measures_a_real_render():
    from kgmm.bench.viz import bench_viz

    chromium()  # skip (or fail in CI) without a browser
    result = bench_viz(60, runs=1)
    assert result["nodes"] == 60 and result["edges"] == 120
    assert 0 < result["first_render_median_ms"] < 60_000 and result["frames_per_s_median"] > 0
