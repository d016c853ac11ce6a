"""Screenshots of the deal-card panel: both shells, 320 px and desktop width, Russian and English, plus
the forecast, the statement and the settings screen, over the demo sandbox portal.

    .venv/bin/python bench/panel_screenshots.py [-o dist/panel-screenshots]

Writes PNGs into a folder git ignores (dist/ by default) and prints their paths. Not a bench.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from panel_harness import CHROMIUM, CHROMIUM_ARGS, demo_server
from playwright.sync_api import expect, sync_playwright

WIDTHS = {"320": 320, "desktop": 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--output", default="dist/panel-screenshots")
    out = Path(parser.parse_args().output)
    out.mkdir(parents=True, exist_ok=True)
    with demo_server() as demo, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        for lang in ("ru", "en"):
            for label, width in WIDTHS.items():
                for shell in ("amocrm", "bitrix24"):
                    context = browser.new_context(
                        viewport={"width": width, "height": 900}, device_scale_factor=1
                    )
                    page = context.new_page()
                    page.goto(demo.shell_url(shell, lang=lang))
                    expect(page.locator(".cbp-balance")).to_be_visible(timeout=10_000)
                    shot = out / f"{shell}-account-{lang}-{label}.png"
                    page.screenshot(path=str(shot), full_page=True)
                    print(shot)
                    if shell == "amocrm":
                        page.locator('.cbp-action[data-action="charge"]').click()
                        page.locator('form[data-form="charge"]').get_by_role("button").first.click()
                        page.wait_for_timeout(200)
                        shot = out / f"{shell}-charge-form-errors-{lang}-{label}.png"
                        page.screenshot(path=str(shot), full_page=True)
                        print(shot)
                        for tab in ("forecast", "statement", "invoices", "operators", "log"):
                            page.locator(f'.cbp-tab[data-section="{tab}"]').click()
                            page.wait_for_timeout(600)
                            shot = out / f"{shell}-{tab}-{lang}-{label}.png"
                            page.screenshot(path=str(shot), full_page=True)
                            print(shot)
                    context.close()
            context = browser.new_context(viewport={"width": 1024, "height": 900})
            page = context.new_page()
            page.goto(demo.shell_url("bitrix24", lang=lang, view="settings"))
            expect(page.locator('form[data-form="settings"]')).to_be_visible(timeout=10_000)
            shot = out / f"settings-{lang}-desktop.png"
            page.screenshot(path=str(shot), full_page=True)
            print(shot)
            context.close()
        browser.close()


if __name__ == "__main__":
    main()
