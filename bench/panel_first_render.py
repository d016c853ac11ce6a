"""The deal-card panel's first render and its shipped size.

    .venv/bin/python bench/panel_first_render.py [--loads 20]

First render: navigation start → the summary (balance) visible, in headless Chromium (Debian's) over the
demo sandbox portal served locally by `gunicorn -w 2 --threads 4` (SQLite), median / p90 / max of N
loads, for both shells (the amoCRM card stand-in and the Bitrix24 placement stand-in). "cold" opens each
load in a fresh browser context (empty cache: every module, the i18n file and both API calls fetched);
"warm" reloads in one context.
Size: what a browser downloads for the panel (common/ modules, CSS, one i18n file, the shell), raw and
gzipped (level 6, as nginx's default). Floors: first render ≤ 300 ms locally, bundle ≤ 150 KB gzipped.
Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import gzip
import os
import statistics
from pathlib import Path

from panel_harness import CHROMIUM, CHROMIUM_ARGS, demo_server
from playwright.sync_api import sync_playwright

WIDGET = Path(__file__).resolve().parents[1] / "static" / "widget"

# The moment the balance is in the DOM, in ms since navigation start (performance.timeOrigin), and the
# frame it is painted in (requestAnimationFrame after insertion).
PROBE = """
(() => {
  const seen = () => document.querySelector('.cbp-balance');
  const observer = new MutationObserver(() => {
    if (seen() && window.__firstRender === undefined) {
      window.__firstRender = -1;
      requestAnimationFrame(() => { window.__firstRender = performance.now(); });
      observer.disconnect();
    }
  });
  observer.observe(document, { childList: true, subtree: true });
})();
"""


def shipped(shell: str) -> tuple[int, int, list[str]]:
    files = [*sorted((WIDGET / "common").rglob("*.js")), WIDGET / "common" / "panel.css"]
    files.append(WIDGET / "common" / "i18n" / "ru.json")
    files.append(WIDGET / ("amocrm/script.js" if shell == "amocrm" else "bitrix24/tab.js"))
    raw = sum(p.stat().st_size for p in files)
    zipped = sum(len(gzip.compress(p.read_bytes(), compresslevel=6)) for p in files)
    return raw, zipped, [str(p.relative_to(WIDGET)) for p in files]


def measure(browser, url: str, loads: int, warm: bool) -> list[float]:  # type: ignore[no-untyped-def]
    times: list[float] = []
    context = browser.new_context(viewport={"width": 400, "height": 800}) if warm else None
    if context is not None:
        context.add_init_script(PROBE)
        page = context.new_page()
        page.goto(url)
        page.wait_for_function("window.__firstRender > 0", timeout=10_000)  # fill the cache once
    for _ in range(loads):
        if warm:
            page.reload()
        else:
            context = browser.new_context(viewport={"width": 400, "height": 800})
            context.add_init_script(PROBE)
            page = context.new_page()
            page.goto(url)
        page.wait_for_function("window.__firstRender > 0", timeout=10_000)
        times.append(page.evaluate("window.__firstRender"))
        if not warm:
            context.close()
    if warm:
        context.close()
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loads", type=int, default=20)
    loads = parser.parse_args().loads
    with demo_server(gunicorn=True) as demo, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        print(f"first render (navigation start -> balance painted), {loads} loads, headless Chromium, local")
        # Shared machines distort the cold figures most: say how busy this one was.
        load = " ".join(f"{x:.2f}" for x in os.getloadavg())
        print(f"  load average before: {load} on {os.cpu_count()} CPUs")
        for shell in ("amocrm", "bitrix24"):
            for warm in (False, True):
                times = measure(browser, demo.shell_url(shell), loads, warm)
                ordered = sorted(times)
                print(
                    f"  {shell:9s} {'warm' if warm else 'cold'}: median {statistics.median(times):6.1f} ms"
                    f"  p90 {ordered[int(0.9 * (len(ordered) - 1))]:6.1f} ms  max {ordered[-1]:6.1f} ms"
                    "   (floor <= 300 ms)"
                )
        browser.close()
    for shell in ("amocrm", "bitrix24"):
        raw, zipped, files = shipped(shell)
        print(
            f"shipped JS+CSS+i18n for the {shell} shell: {len(files)} files, {raw / 1024:.1f} KB raw, "
            f"{zipped / 1024:.1f} KB gzipped (floor <= 150 KB gzipped)"
        )


if __name__ == "__main__":
    main()
