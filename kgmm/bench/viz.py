"""``kgmm bench viz``: how fast the HTML graph view of a large subgraph renders in a real browser.

A graph of ``nodes`` entities (six types) and ``2 x nodes`` random relations is written with
:func:`kgmm.app.viz.write_html`; a copy gets a small probe script that records, in wall-clock time from the start
of navigation, when the graph's canvas first holds drawn pixels, and then counts animation frames for two
seconds while the view zooms (``frames_per_s``: does it stay interactive). Headless Chromium is driven over
the DevTools protocol on a pipe (``--remote-debugging-pipe``: no network port, no extra package).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from kgmm.errors import ValidationError

PROBE = """<script>
(function () {
  const result = {first_render_ms: null, frames_per_s: null};
  window.__kgmmRender = result;
  function painted() {
    for (const canvas of document.querySelectorAll('canvas')) {
      let context = null;
      try { context = canvas.getContext('2d'); } catch (e) { context = null; }
      if (!context || !canvas.width || !canvas.height) continue;
      const data = context.getImageData(0, 0, canvas.width, canvas.height).data;
      for (let i = 3; i < data.length; i += 4 * 61) { if (data[i] > 0) return true; }
    }
    return false;
  }
  function countFrames() {
    const start = performance.now();
    let frames = 0;
    function frame(now) {
      frames += 1;
      const target = document.querySelector('canvas');
      if (target) target.dispatchEvent(new WheelEvent('wheel', {deltaY: frames % 20 < 10 ? -40 : 40, clientX: 400,
                                                                  clientY: 300, bubbles: true}));
      if (now - start < 2000) { requestAnimationFrame(frame); }
      else { result.frames_per_s = Math.round(frames * 1000 / (now - start)); }
    }
    requestAnimationFrame(frame);
  }
  function tick() {
    if (painted()) { result.first_render_ms = Math.round(performance.now()); countFrames(); return; }
    requestAnimationFrame(tick);
  }
  requestAnimationFrame(tick);
})();
</script>"""


def synthetic_graph(nodes: int, seed: int = 0):
    """A random graph: ``nodes`` entities of six types, ``2 x nodes`` relations."""
    from kgmm.schema import Entity, Relation, Subgraph

    rng = random.Random(seed)
    types = ("Disease", "Symptom", "Drug", "Finding", "Anatomy", "Procedure")
    entities = [Entity(f"bench:{i}", f"entity {i}", types[i % len(types)], "bench") for i in range(nodes)]
    relations = [Relation(f"bench:{rng.randrange(nodes)}", rng.choice(("TREATS", "CAUSES", "HAS_SYMPTOM")),
                          f"bench:{rng.randrange(nodes)}", 1.0, "bench", [], []) for _ in range(2 * nodes)]
    return Subgraph(entities, relations)


class _Browser:
    """Headless Chromium spoken to over ``--remote-debugging-pipe`` (NUL-separated JSON messages)."""

    def __init__(self, executable: str, width: int = 1280, height: int = 900) -> None:
        to_chrome_read, self._write = os.pipe()
        self._read, from_chrome_write = os.pipe()
        self._profile = tempfile.mkdtemp(prefix="kgmm-chromium-")

        def wire() -> None:
            os.dup2(to_chrome_read, 3)
            os.dup2(from_chrome_write, 4)

        self._process = subprocess.Popen(
            [executable, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-extensions", "--no-first-run", "--disable-sync", "--remote-debugging-pipe",
             f"--user-data-dir={self._profile}", f"--window-size={width},{height}", "about:blank"],
            pass_fds=(3, 4, to_chrome_read, from_chrome_write), preexec_fn=wire, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL)
        os.close(to_chrome_read)
        os.close(from_chrome_write)
        self._buffer = b""
        self._next = 0

    def call(self, method: str, params: dict | None = None, session: str | None = None, timeout: float = 60) -> dict:
        self._next += 1
        message = {"id": self._next, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._write, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            while b"\0" not in self._buffer:
                chunk = os.read(self._read, 1 << 20)
                if not chunk:
                    raise ValidationError("Chromium closed the DevTools pipe")
                self._buffer += chunk
            raw, self._buffer = self._buffer.split(b"\0", 1)
            reply = json.loads(raw)
            if reply.get("id") == self._next:
                if "error" in reply:
                    raise ValidationError(f"Chromium: {method}: {reply['error'].get('message')}")
                return reply.get("result", {})
        raise ValidationError(f"Chromium did not answer {method} within {timeout} s")

    def close(self) -> None:
        try:
            self.call("Browser.close", timeout=5)
        except (ValidationError, OSError):
            pass
        self._process.kill()
        self._process.wait()
        os.close(self._write)
        os.close(self._read)
        shutil.rmtree(self._profile, ignore_errors=True)


def bench_viz(nodes: int = 2000, *, runs: int = 3, chromium: str | None = None, timeout: float = 60) -> dict:
    """Render the view of a ``nodes``-entity graph ``runs`` times; report the first-render time and frame rate.

    Raises:
        ValidationError: without Chromium (install Debian's ``chromium``) or when the graph never renders.
    """
    from kgmm.app.viz import write_html

    executable = chromium or shutil.which("chromium") or shutil.which("chromium-browser") or \
        shutil.which("google-chrome")
    if executable is None:
        raise ValidationError("no Chromium found; install it (Debian: apt-get install chromium) or pass --chromium")
    folder = Path(tempfile.mkdtemp(prefix="kgmm-bench-viz-"))
    written = write_html(synthetic_graph(nodes), folder / "view.html")
    page = folder / "probe.html"
    html = (folder / "view.html").read_text(encoding="utf-8")
    page.write_text(html.replace("</body>", PROBE + "</body>", 1), encoding="utf-8")
    results = []
    browser = _Browser(executable)
    try:
        target = browser.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = browser.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        browser.call("Page.enable", session=session)
        for _ in range(runs):
            browser.call("Page.navigate", {"url": page.as_uri()}, session=session)
            deadline, measured = time.monotonic() + timeout, None
            while time.monotonic() < deadline:
                value = browser.call("Runtime.evaluate", {"expression": "JSON.stringify(window.__kgmmRender || null)",
                                                          "returnByValue": True}, session=session)
                measured = json.loads(value.get("result", {}).get("value") or "null")
                if measured and measured.get("frames_per_s") is not None:
                    break
                time.sleep(0.1)
            if not measured or measured.get("first_render_ms") is None:
                raise ValidationError(f"the {nodes}-node view did not render within {timeout} s")
            results.append(measured)
    finally:
        browser.close()
        shutil.rmtree(folder, ignore_errors=True)
    first = sorted(r["first_render_ms"] for r in results)
    fps = sorted(r["frames_per_s"] for r in results)
    return {"nodes": written["nodes"], "edges": written["edges"], "html_bytes": len(html), "runs": len(results),
            "first_render_ms": first, "first_render_median_ms": first[len(first) // 2],
            "frames_per_s": fps, "frames_per_s_median": fps[len(fps) // 2]}


__all__ = ["bench_viz", "synthetic_graph"]
