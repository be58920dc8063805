"""See runs as a person does: TensorBoard's own server on a log directory, its HTTP API (what the UI shows:
tags and their groups, HPARAMS columns) and screenshots in headless Chromium.

    python scripts/tensorboard_view.py LOGDIR --shots docs/tensorboard        # landing page, HPARAMS, images
    python scripts/tensorboard_view.py --demo /tmp/tb-demo --shots docs/tensorboard

``--demo DIR`` first trains the runs the README's pictures show into DIR: ``experiment=figure1 steps=1500``, a
4-job ring sweep and a digits run (a few minutes on 2 cores). Screenshots need Chromium (Debian's package
``chromium``) and Playwright (``pip install 'gan-cli[screenshots]'``); the API needs nothing beyond TensorBoard.
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence

PY = Path(sys.executable)


@contextmanager
def serve(logdir: Path, timeout: float = 120.0) -> Iterator[str]:
    """``tensorboard --logdir LOGDIR`` on a free local port, until every run is loaded; yields its URL."""
    with socket.socket() as s:
        s.bind(("localhost", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([str(PY.with_name("tensorboard")), "--logdir", str(logdir), "--port", str(port),
                             "--host", "localhost", "--reload_interval", "1"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url, expected = f"http://localhost:{port}", len({p.parent for p in Path(logdir).rglob("events.out.tfevents.*")})
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                if len(get(url, "/data/runs")) >= expected and tags(url, "scalars"):
                    break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"tensorboard did not serve {logdir}: {proc.stderr.read()[-2000:]}")
            time.sleep(0.5)
        time.sleep(2)  # a last reload: every event file read whole
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def get(url: str, path: str, body: Optional[Dict[str, Any]] = None) -> Any:
    """The JSON answer of the server at ``path`` (a POST of ``body`` when given)."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url + path, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as answer:
        return json.loads(answer.read())


def tags(url: str, plugin: str) -> Dict[str, List[str]]:
    """Each run's tags of ``plugin`` (scalars, images, histograms)."""
    return {run: sorted(found) for run, found in get(url, f"/data/plugin/{plugin}/tags").items()}


def groups(url: str) -> List[str]:
    """The groups of TensorBoard's TIME SERIES tab in the order it shows them (it opens the first two): each
    tag's part before its first '/', sorted as TensorBoard sorts them (by code point: capitals first)."""
    found = {tag.split("/")[0] for plugin in ("scalars", "images", "histograms")
             for run_tags in tags(url, plugin).values() for tag in run_tags}
    return sorted(found)


def hparams(url: str) -> Dict[str, Any]:
    """The HPARAMS tab's columns as the server gives them: hyperparameters (sorted as the tab shows them:
    those that differ first) and metrics (the tab shows the first 5)."""
    return get(url, "/data/plugin/hparams/experiment", {"experimentName": ""})


SHOTS = (  # (file, page, tag filter, viewport height): what the README shows
    ("landing", "timeseries", "", 1700),
    ("hparams", "hparams", "", 1000),
    ("films", "timeseries", "samples|figure1", 1300),
)


def shoot(url: str, out: Path, pages: Sequence[str] = (), width: int = 1400) -> List[Path]:
    """Screenshots of the pages of SHOTS in headless Chromium (Debian's ``chromium``), driven by Playwright
    (``pip install 'gan-cli[screenshots]'``), each once its charts are drawn."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        raise SystemExit("tensorboard_view: screenshots need Playwright: pip install 'gan-cli[screenshots]'") from None
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("tensorboard_view: screenshots need Chromium (Debian: apt-get install chromium)")
    out.mkdir(parents=True, exist_ok=True)
    written = []
    with sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=chromium, args=[
            "--no-sandbox", "--use-gl=angle", "--use-angle=swiftshader", "--enable-unsafe-swiftshader"])
        for name, fragment, tag_filter, height in (s for s in SHOTS if not pages or s[0] in pages):
            page = browser.new_page(viewport={"width": width, "height": height})
            page.goto(f"{url}/#{fragment}")
            page.wait_for_timeout(8000)
            settings = page.locator("button:has-text('Settings')")
            if fragment == "timeseries" and settings.count():
                settings.first.click()  # the settings pane closed: the cards take the width
            if tag_filter:
                page.fill("input[placeholder='Filter tags (regex)']", tag_filter)
                page.keyboard.press("Escape")  # the suggestions list closed
            page.wait_for_timeout(6000)
            page.screenshot(path=str(out / f"{name}.png"))
            written.append(out / f"{name}.png")
        browser.close()
    return written


DEMO = (
    ["experiment=figure1", "steps=1500"],
    ["-m", "dataset=ring", "loss=minimax,nonsaturating", "k=1,2", "steps=1500"],
    ["dataset=digits", "steps=1500"],
)


def demo(root: Path) -> None:
    """The runs of the README's pictures, in ``root`` (one log directory, as `--logdir outputs` reads it)."""
    for args in DEMO:
        where = "hydra.sweep.dir" if "-m" in args else "hydra.run.dir"
        name = "sweep" if "-m" in args else args[0].split("=")[1]
        subprocess.run([str(PY.with_name("gan-train")), *args, f"{where}={root / name}"], check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("logdir", type=Path, nargs="?")
    parser.add_argument("--demo", type=Path, help="train the README's demo runs into this folder first")
    parser.add_argument("--shots", type=Path, help="write screenshots (PNG) into this folder")
    parser.add_argument("--pages", default="", help="with --shots: only these, comma-separated (landing,hparams,films)")
    args = parser.parse_args()
    logdir = args.demo or args.logdir
    if logdir is None:
        parser.error("give a LOGDIR or --demo DIR")
    if args.demo:
        demo(args.demo)
    with serve(logdir) as url:
        shown = hparams(url)
        print(json.dumps({"groups": groups(url),
                          "hparams": [(h["name"], h.get("differs", False)) for h in shown["hparamInfos"]],
                          "metrics": [m["name"]["tag"] for m in shown["metricInfos"]]}, indent=1))
        if args.shots:
            for path in shoot(url, args.shots, [p for p in args.pages.split(",") if p]):
                print(path)


if __name__ == "__main__":
    main()
