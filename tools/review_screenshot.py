"""Screenshot of the review page of a run (docs/review_page.png).

Serves ``RUN_DIR`` with ``pipeline.review`` on a free local port, opens it in Debian's
headless chromium (``/usr/bin/chromium`` through ``/usr/bin/chromedriver``; selenium's
manager is kept offline), ticks the first two cards (to show a merge being prepared)
and saves a PNG, re-encoded smaller (palette of 256 colours) when it exceeds
``--max-kb``::

    PYTHONPATH=$PWD python3 -m tools.review_screenshot /tmp/s1 docs/review_page.png
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--size", default="1280,860", help="window width,height in px")
    parser.add_argument("--max-kb", type=int, default=300)
    args = parser.parse_args(argv)

    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.support.ui import WebDriverWait

    from pipeline.review import make_server

    os.environ["SE_OFFLINE"] = "true"
    server = make_server(args.run_dir, port=0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                     "--disable-gpu", f"--window-size={args.size}", "--hide-scrollbars"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(executable_path="/usr/bin/chromedriver"),
                              options=options)
    try:
        driver.get(server.url)
        WebDriverWait(driver, 20).until(
            lambda d: d.find_element("tag name", "body").get_attribute("data-loaded"))
        driver.execute_script("for (const i of document.images) i.loading = 'eager';")
        WebDriverWait(driver, 20).until(lambda d: d.execute_script(
            "return [...document.images].every(i => i.complete)"))
        for box in driver.find_elements("css selector", "input.pick")[:2]:
            box.click()
        args.out.parent.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(args.out))
    finally:
        driver.quit()
        server.shutdown()
        server.server_close()
    if args.out.stat().st_size > args.max_kb * 1024:
        from PIL import Image

        Image.open(args.out).convert("RGB").quantize(256).save(args.out, optimize=True)
    print(f"{args.out}: {args.out.stat().st_size // 1024} KB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
