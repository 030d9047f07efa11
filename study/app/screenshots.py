"""Serve the app with `streamlit run` on loopback, visit every page in headless Chromium
(Debian's /usr/bin/chromium through Playwright; never a downloaded browser), check that no
exception element shows and that charts rendered, and save a screenshot of each page.

    python -m study.app.screenshots --root results --out screenshots/
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

APP = Path(__file__).resolve().parents[2] / "app.py"
PAGES = {
    "strategies": "",
    "search": "search",
    "lineage": "lineage",
    "stability": "stability",
    "masks": "masks",
    "sequences": "sequences",
    "data": "data",
}
CHROMIUM = os.environ.get("STUDY_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@dataclass
class PageVisit:
    name: str
    screenshot: Path
    charts: int
    exceptions: int
    title: str


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serve(root: str | Path, port: int | None = None):
    port = port or free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "streamlit",
            "run",
            str(APP),
            "--server.port",
            str(port),
            "--server.address",
            "127.0.0.1",
            "--server.headless",
            "true",
            "--browser.gatherUsageStats",
            "false",
            "--",
            "--root",
            str(root),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        cwd=APP.parent,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.time() > deadline:
                output = proc.stdout.read().decode() if proc.stdout else ""
                raise RuntimeError(f"streamlit did not start: {output[-2000:]}")
            time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def visit_pages(
    url: str, out: Path, min_charts: dict[str, int] | None = None, pages: dict[str, str] | None = None
) -> list[PageVisit]:
    from playwright.sync_api import sync_playwright

    out.mkdir(parents=True, exist_ok=True)
    visits = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1400, "height": 2000})
        for name, path in (pages or PAGES).items():
            page.goto(f"{url}/{path}")
            page.wait_for_selector('[data-testid="stMainBlockContainer"] h1', timeout=60_000)
            want = (min_charts or {}).get(name, 0)
            if want:
                page.wait_for_function(
                    'n => document.querySelectorAll(\'[data-testid="stVegaLiteChart"] canvas, '
                    '[data-testid="stVegaLiteChart"] svg.marks\').length >= n',
                    arg=want,
                    timeout=60_000,
                )
            page.wait_for_function(  # the script has finished and every chart on the page has drawn
                "() => !document.querySelector('[data-testid=\"stStatusWidget\"]') && "
                "[...document.querySelectorAll('[data-testid=\"stVegaLiteChart\"]')].every("
                "c => c.querySelector('canvas, svg.marks'))",
                timeout=120_000,
            )
            page.wait_for_timeout(800)  # let the last elements settle before the screenshot
            shot = out / f"{name}.png"
            page.screenshot(path=str(shot), full_page=True)
            visits.append(
                PageVisit(
                    name,
                    shot,
                    charts=page.locator(
                        '[data-testid="stVegaLiteChart"] canvas, [data-testid="stVegaLiteChart"] svg.marks'
                    ).count(),
                    exceptions=page.locator('[data-testid="stException"]').count(),
                    title=page.locator('[data-testid="stMainBlockContainer"] h1').first.inner_text(),
                )
            )
        browser.close()
    return visits


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", default="results")
    ap.add_argument("--out", default="screenshots")
    ap.add_argument("--pages", default=",".join(PAGES), help="which pages, comma-separated (default: all)")
    args = ap.parse_args()
    wanted = {name: PAGES[name] for name in args.pages.split(",")}
    with serve(args.root) as url:
        for v in visit_pages(url, Path(args.out), pages=wanted):
            print(f"{v.name:10s} title={v.title!r} charts={v.charts} exceptions={v.exceptions} -> {v.screenshot}")


if __name__ == "__main__":
    main()
