"""The HTML report in a real headless browser (Debian's chromium, driven by Playwright): it
renders, every embedded plot decodes, nothing is logged as an error, and a screenshot is kept
(`REPORT_SCREENSHOT=path.png` keeps a copy for a human to look at)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from report_runs import make_run

from harness.report import stage

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(),
                                reason="needs Debian's chromium (apt-get install chromium)")
# Headless on a machine without network: no GPU, no sandbox as root, and none of the
# background connections chromium would make to Google's services.
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]


def test_the_report_renders_in_chromium_with_every_plot_loaded(tmp_path):
    from playwright.sync_api import sync_playwright

    cfg, run = make_run(tmp_path, "shown", quality=3)
    html = Path(stage.run(cfg, run / "report")["html"])
    shot = tmp_path / "report.png"
    with sync_playwright() as p:
        browser = p.chromium.launch_persistent_context(
            str(tmp_path / "profile"), executable_path=CHROMIUM, args=FLAGS, headless=True,
            viewport={"width": 1200, "height": 900})
        try:
            page = browser.new_page()
            errors: list[str] = []
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("requestfailed", lambda r: errors.append(f"request failed: {r.url}"))
            page.goto(html.as_uri(), wait_until="load")
            images = page.evaluate("[...document.images].map(i => [i.alt, i.complete, i.naturalWidth])")
            title = page.title()
            headings = page.locator("h2").all_inner_texts()
            compare_columns = page.evaluate(
                "getComputedStyle(document.querySelector('.compare')).gridTemplateColumns")
            page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()
    assert errors == []
    assert len(images) == 7 and all(done and width > 0 for _, done, width in images), images
    assert title.startswith("Run shown:")
    assert headings[:3] == ["Gate", "Code generation: pass@1 (forgetting checks)",
                            "FIM on held-out holes"]
    assert len(compare_columns.split()) == 2  # base and candidate outputs side by side
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    if os.environ.get("REPORT_SCREENSHOT"):
        shutil.copy(shot, os.environ["REPORT_SCREENSHOT"])
