"""A headless Chromium driven over the DevTools protocol, for the viewer's browser test and README's screenshot.

No browser automation package is needed: Chromium is started with ``--remote-debugging-port=0`` and driven over
its websocket with aiohttp (already installed as a dependency of ``datasets``). :func:`find_chromium` returns None
where no Chromium is installed (set ``$OPD_CHROMIUM`` to a binary to choose one), and the browser test skips.

As a script it writes a screenshot of a viewer page after a click on one diagnosed token:
``python tests/browser.py PAGE.html OUT.png [--node node-ROLLOUT-POSITION]``.
"""
from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")
# no network, no profile state, no GPU: a fresh, quiet browser that runs as root in a container
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--remote-debugging-port=0")
TIMEOUT_S = 30.0


def find_chromium() -> str | None:
    """``$OPD_CHROMIUM``, else the first Chromium-like binary on PATH, else None."""
    chosen = os.environ.get("OPD_CHROMIUM")
    if chosen:
        return chosen if Path(chosen).is_file() else None
    return next((path for path in map(shutil.which, CANDIDATES) if path), None)


@contextmanager
def chromium(binary: str):
    """A running headless Chromium with a fresh profile; yields its DevTools port, stops it afterwards."""
    # Chromium's helper processes may still write to the profile while it is removed: cleanup errors are ignored
    with tempfile.TemporaryDirectory(prefix="opd-chromium-", ignore_cleanup_errors=True) as profile:
        # its own process group, so that stopping it stops its renderer and helper processes too
        process = subprocess.Popen([binary, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            port_file, deadline = Path(profile) / "DevToolsActivePort", time.monotonic() + TIMEOUT_S
            while not (port_file.is_file() and port_file.read_text().strip()):
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{binary} did not start (exit code {process.poll()})")
                time.sleep(0.05)
            yield int(port_file.read_text().split()[0])
        finally:
            _stop(process)


def _stop(process: subprocess.Popen) -> None:
    """SIGTERM to the browser's process group, SIGKILL after 10 s."""
    for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, None)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


class Page:
    """One page target over its websocket: commands with ``send``, every event kept in ``events``."""

    def __init__(self, websocket):
        self.websocket, self.events, self._next_id, self._waiting = websocket, [], 0, {}
        self._reader = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        async for message in self.websocket:
            data = json.loads(message.data)
            future = self._waiting.pop(data["id"], None) if "id" in data else None
            if future is not None:
                future.set_result(data)
            elif "method" in data:
                self.events.append(data)

    async def send(self, method: str, **params):
        self._next_id += 1
        future = asyncio.get_running_loop().create_future()
        self._waiting[self._next_id] = future
        await self.websocket.send_json({"id": self._next_id, "method": method, "params": params})
        data = await asyncio.wait_for(future, TIMEOUT_S)
        if "error" in data:
            raise RuntimeError(f"{method}: {data['error']}")
        return data.get("result", {})

    async def evaluate(self, expression: str):
        result = await self.send("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"page script failed: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def wait_for(self, method: str) -> None:
        deadline = time.monotonic() + TIMEOUT_S
        while not any(event["method"] == method for event in self.events):
            if time.monotonic() > deadline:
                raise TimeoutError(f"no {method} within {TIMEOUT_S} s")
            await asyncio.sleep(0.05)

    def errors(self) -> list[str]:
        """Console errors, uncaught exceptions and browser log errors (failed loads...) seen so far."""
        found = []
        for event in self.events:
            params = event.get("params", {})
            if event["method"] == "Runtime.exceptionThrown":
                found.append(json.dumps(params.get("exceptionDetails", {}))[:500])
            elif event["method"] == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                found.append(json.dumps(params.get("args", []))[:500])
            elif event["method"] == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
                found.append(params["entry"].get("text", "")[:500])
        return found


@dataclass(frozen=True)
class ClickResult:
    errors: tuple[str, ...]  # console errors and exceptions during load and click
    detail_id: str  # the detail the clicked token points to
    visible_before: bool  # the same detail before the click
    detail_visible: bool  # displayed, non-empty, its top inside the window after the click
    detail_text: str  # its rendered text (innerText)
    details_visible: int  # how many details are displayed after the click


async def _click_node(port: int, page_path: Path, node: str | None, screenshot: Path | None,
                      size: tuple[int, int]) -> ClickResult:
    import aiohttp

    async with aiohttp.ClientSession() as session:
        async with session.get(f"http://127.0.0.1:{port}/json/list") as response:
            targets = await response.json()
        target = next(t for t in targets if t.get("type") == "page")
        async with session.ws_connect(target["webSocketDebuggerUrl"], max_msg_size=0) as websocket:
            page = Page(websocket)
            for domain in ("Page", "Runtime", "Log"):
                await page.send(f"{domain}.enable")
            await page.send("Emulation.setDeviceMetricsOverride", width=size[0], height=size[1],
                            deviceScaleFactor=1, mobile=False)
            await page.send("Page.navigate", url=page_path.resolve().as_uri())
            await page.wait_for("Page.loadEventFired")
            selector = f'.node[data-detail="{node}"]' if node else ".node"
            box = await page.evaluate(
                f"(() => {{ const n = document.querySelector({json.dumps(selector)}); if (!n) return null;"
                f" const centre = () => {{ const r = n.getBoundingClientRect();"
                f" return {{x: r.x + r.width / 2, y: r.y + r.height / 2, id: n.getAttribute('data-detail')}}; }};"
                # scroll, as a user would, only when the token is off screen or covered (by a pinned panel)
                f" let c = centre(); const hit = document.elementFromPoint(c.x, c.y);"
                f" if (!hit || !n.contains(hit)) {{ n.scrollIntoView({{block: 'center'}}); c = centre(); }}"
                f" return c; }})()")
            if box is None:
                raise LookupError(f"no element {selector} in {page_path}")
            state = (
                f"(() => {{ const shown = d => {{ const r = d.getBoundingClientRect();"
                f" return getComputedStyle(d).display !== 'none' && r.width > 0 && r.height > 0"
                f" && r.top >= 0 && r.top < window.innerHeight - 20; }};"  # its heading is on screen
                f" const d = document.getElementById({json.dumps(box['id'])}); if (!d) return null;"
                f" return {{visible: shown(d), text: d.innerText,"
                f" count: Array.from(document.querySelectorAll('.detail')).filter(shown).length}}; }})()")
            before = await page.evaluate(state)
            for kind in ("mouseMoved", "mousePressed", "mouseReleased"):  # a real click, as a user's
                await page.send("Input.dispatchMouseEvent", type=kind, x=box["x"], y=box["y"], button="left",
                                clickCount=1)
            after = await page.evaluate(state)
            if screenshot is not None:
                shot = await page.send("Page.captureScreenshot", format="png")
                screenshot.write_bytes(base64.b64decode(shot["data"]))
            await asyncio.sleep(0.2)  # let late console events arrive
            page._reader.cancel()
            return ClickResult(tuple(page.errors()), box["id"], bool(before and before["visible"]),
                               bool(after and after["visible"]), after["text"] if after else "",
                               after["count"] if after else 0)


def click_node(binary: str, page_path: Path, node: str | None = None, screenshot: Path | None = None,
               size: tuple[int, int] = (1280, 900)) -> ClickResult:
    """Load ``page_path`` headless, click diagnosed token ``node`` (its ``data-detail``; default the first) and
    report console errors and whether its detail is visible; optionally save a PNG screenshot after the click."""
    with chromium(binary) as port:
        return asyncio.run(_click_node(port, Path(page_path), node, screenshot, size))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("page", type=Path)
    parser.add_argument("out", type=Path, help="PNG file")
    parser.add_argument("--node", default=None, help="data-detail of the token to click, e.g. node-1-12")
    parser.add_argument("--colours", type=int, default=128, help="palette size of the saved PNG (keeps it small)")
    args = parser.parse_args()
    binary = find_chromium()
    if binary is None:
        raise SystemExit("no Chromium found: apt-get install chromium, or set $OPD_CHROMIUM")
    result = click_node(binary, args.page, args.node, args.out)
    from PIL import Image

    Image.open(args.out).convert("RGB").quantize(colors=args.colours).save(args.out, optimize=True)
    print(f"wrote {args.out} ({args.out.stat().st_size // 1024} KB); detail visible: {result.detail_visible}; "
          f"console errors: {len(result.errors)}")


if __name__ == "__main__":
    main()
