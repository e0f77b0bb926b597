"""Benchmark of the trace viewer in headless Chromium (Debian's /usr/bin/chromium, Playwright).

Run: ``uv run --no-sync python benchmarks/bench_viewer.py [--events N] [--repeat N]``

Figures (medians over ``--repeat`` fresh pages) for a synthetic trace of ``--events`` events
(``tests/fixtures/synth.py``: one root fanning out to 4 concurrent children per iteration):
1. ``render_html`` in Python (trace → page) and the page's size;
2. page ready: milliseconds from navigation start until the script has built the page and
   forced its layout (``performance.now()``, read in the page), and wall time from ``goto``;
3. "Expand all" (every run and iteration body built and laid out) and one search (its
   120 ms typing debounce subtracted), timed in the page.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from playwright.sync_api import sync_playwright

from rlm_graph.viewer import render_html
from tests.fixtures.synth import synthetic_trace
from tests.test_viewer import CHROMIUM, CHROMIUM_ARGS

TIME_CLICK = """sel => { const t0 = performance.now(); document.querySelector(sel).click();
  void document.body.offsetHeight; return performance.now() - t0; }"""
TIME_SEARCH = """term => new Promise(done => { const box = document.getElementById('search');
  const t0 = performance.now(); box.value = term;
  box.dispatchEvent(new Event('input'));
  const wait = () => document.body.dataset.search === term
    ? (void document.body.offsetHeight, done(performance.now() - t0 - 120))
    : requestAnimationFrame(wait);
  wait(); })"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    trace = synthetic_trace(args.events)
    renders = []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        page_html = render_html(trace)
        renders.append(time.perf_counter() - t0)
    tmp = Path(tempfile.mkdtemp(prefix="bench-viewer-"))
    path = tmp / "trace.html"
    path.write_text(page_html, encoding="utf-8")

    ready, wall, expand, search = [], [], [], []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        version = browser.version
        for _ in range(args.repeat):
            context = browser.new_context(viewport={"width": 1300, "height": 900})
            page = context.new_page()
            t0 = time.perf_counter()
            page.goto(path.as_uri())
            page.wait_for_selector("body[data-ready]")
            wall.append(time.perf_counter() - t0)
            ready.append(float(page.get_attribute("body", "data-ready-ms") or "nan"))
            search.append(page.evaluate(TIME_SEARCH, "needle"))
            page.evaluate(TIME_SEARCH, "")
            expand.append(page.evaluate(TIME_CLICK, "#expand-all"))
            context.close()
        browser.close()

    med = statistics.median
    print(f"machine: {platform.machine()}, Python {platform.python_version()}, Chromium {version}")
    print(f"trace: {trace['n_events']} events, page {len(page_html) / 1e6:.2f} MB")
    print(f"render_html (Python): {med(renders) * 1000:.0f} ms")
    print(f"page ready (in page, from navigation start): {med(ready):.0f} ms")
    print(f"page ready (wall, goto → drawn): {med(wall) * 1000:.0f} ms")
    print(f"search 'needle' (in page, debounce excluded): {med(search):.0f} ms")
    print(f"expand all (in page): {med(expand):.0f} ms")
    print(f"medians of {args.repeat}")


if __name__ == "__main__":
    main()
