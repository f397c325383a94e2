"""Screenshots of the built site (make docs first) in Debian's chromium: the home page, a tutorial and
an API page, into docs/figures/site_*.png. Run: .venv/bin/python docs/examples/site_screenshots.py"""

import functools
import http.server
import threading
from pathlib import Path

from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parents[2]
PAGES = {"home": "", "tutorial": "tutorials/researcher/", "api": "reference/probes/"}

handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(ROOT / "site"))
server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
threading.Thread(target=server.serve_forever, daemon=True).start()
with sync_playwright() as p:
    browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    for name, path in PAGES.items():
        page.goto(f"http://127.0.0.1:{server.server_port}/{path}")
        page.wait_for_load_state("networkidle")
        page.screenshot(path=str(ROOT / "docs" / "figures" / f"site_{name}.png"))
    browser.close()
server.shutdown()
