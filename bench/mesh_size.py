"""How many members a conference mesh holds: demo pages in one MUC room.

A mesh costs each member N-1 uploads and N-1 downloads (one peer connection
per other member), so it stops working somewhere as N grows. This opens N
demo pages (``auto=1``, Chromium's fake camera and microphone, all pages in
one headless Chromium) in a fresh MUC room for N = 2, 3, ... and, once every
page has its N-1 peer connections up and a settling time has passed, checks
that every page still decodes every remote stream: the ``framesDecoded`` of
each of its N-1 inbound video streams (getStats, through the page's
``window.framesDecoded()``) grows over the measuring window. It stops at the
first N that fails, or at ``--max``.

    .venv/bin/python bench/mesh_size.py [--min 2] [--max 8] [--settle 10]
        [--window 5] [--connect-timeout 90]

Per N it prints the time until every page was connected, the slowest
stream's decoded frame rate, the CPU the browser (every process under the
driver), the daemon and everything else on the machine used over the
window, in cores (the load averages count Chromium's own busy threads, so
"others" is what tells how loaded the machine was), then one JSON line per N. Not a test: the figures depend on the
machine and on what else runs on it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.support.browser import Browser, BrowserError, Page  # noqa: E402
from tests.support.daemon import Daemon  # noqa: E402

TOKEN = "bench-token"
TICKS = os.sysconf("SC_CLK_TCK")
FRAMES = "window.framesDecoded().then(frames => ({at: performance.now(), frames}))"


def cpu_seconds(root: int) -> float:
    """User + system CPU of ``root`` and every process below it, from /proc."""
    parents: dict[int, int] = {}
    ticks: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(entry)] = int(fields[1])
        ticks[int(entry)] = int(fields[11]) + int(fields[12])
    tree = {root}
    grew = True
    while grew:
        below = {pid for pid, parent in parents.items() if parent in tree} - tree
        grew = bool(below)
        tree |= below
    return sum(ticks.get(pid, 0) for pid in tree) / TICKS


def busy_seconds() -> float:
    """CPU time the whole machine spent busy (every core), from /proc/stat."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / TICKS


def load_averages() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def wait_all(pages: list[Page], expression: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    for page in pages:
        try:
            page.wait_for(expression, timeout=max(1.0, deadline - time.monotonic()))
        except BrowserError:
            return False
    return True


def measure(browser: Browser, daemon: Daemon, n: int, args: argparse.Namespace) -> dict[str, Any]:
    room = f"#muc#size{n}"
    pages: list[Page] = []
    result: dict[str, Any] = {"members": n, "load_before": load_averages()}
    try:
        started = time.monotonic()
        for k in range(1, n + 1):
            query = urlencode({"room": room, "name": f"m{k}", "token": TOKEN, "auto": "1"})
            pages.append(browser.open(f"n{n}-m{k}", f"{daemon.ws_url}/demo/?{query}"))
            pages[-1].wait_for(f"document.body.dataset.members === '{k}'", timeout=30)
        connected = wait_all(pages, f"document.body.dataset.peers === '{n - 1}'", args.connect_timeout)
        result["connect_s"] = round(time.monotonic() - started, 1)
        if not connected:
            result.update(ok=False, why="not every peer connection came up",
                          peers=[page.dataset()["peers"] for page in pages])
            return result
        time.sleep(args.settle)

        cpu = (cpu_seconds(browser.pid), cpu_seconds(daemon.pid), busy_seconds())
        clock = time.monotonic()
        before = [page.evaluate(FRAMES) for page in pages]
        time.sleep(args.window)
        after = [page.evaluate(FRAMES) for page in pages]
        elapsed = time.monotonic() - clock
        browser_cpu = (cpu_seconds(browser.pid) - cpu[0]) / elapsed
        daemon_cpu = (cpu_seconds(daemon.pid) - cpu[1]) / elapsed
        others_cpu = (busy_seconds() - cpu[2]) / elapsed - browser_cpu - daemon_cpu

        rates = []  # decoded frames per second, per page and remote stream
        for b, a in zip(before, after):
            seconds = (a["at"] - b["at"]) / 1000
            streams = set(a["frames"]) & set(b["frames"])
            rates.append([(a["frames"][uid] - b["frames"][uid]) / seconds for uid in streams])
        decoding = sum(1 for r in rates for fps in r if fps > 0)
        ok = decoding == n * (n - 1)
        result.update(
            ok=ok,
            why="" if ok else f"{decoding} of {n * (n - 1)} streams decoding",
            streams=decoding,
            min_fps=round(min(min(r) for r in rates), 1),
            mean_fps=round(sum(map(sum, rates)) / max(1, sum(map(len, rates))), 1),
            browser_cores=round(browser_cpu, 2),
            daemon_cores=round(daemon_cpu, 3),
            others_cores=round(max(0.0, others_cpu), 2),
            peers=[page.dataset()["peers"] for page in pages],
        )
        return result
    finally:
        result["load_after"] = load_averages()
        for page in pages:
            page.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--min", type=int, default=2)
    parser.add_argument("--max", type=int, default=8)
    parser.add_argument("--settle", type=float, default=10.0, help="seconds after every page is connected")
    parser.add_argument("--window", type=float, default=5.0, help="seconds over which frames must grow")
    parser.add_argument("--connect-timeout", type=float, default=90.0)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="jsongle-mesh-") as scratch:
        daemon = Daemon.start(Path(scratch), {"demo": True, "appToken": TOKEN, "maxMembersPerMultiRoom": args.max})
        browser = Browser.start()
        results = []
        try:
            print(f"{browser.version}, {os.cpu_count()} cores, load averages {load_averages()}")
            print(f"{'N':>2} {'ok':>3} {'connect s':>9} {'streams':>7} {'min fps':>7} {'mean fps':>8}"
                  f" {'browser cores':>13} {'daemon cores':>12} {'others cores':>12}  load before -> after")
            for n in range(args.min, args.max + 1):
                r = measure(browser, daemon, n, args)
                results.append(r)
                print(f"{n:>2} {'yes' if r['ok'] else 'NO':>3} {r['connect_s']:>9} {r.get('streams', '-'):>7}"
                      f" {r.get('min_fps', '-'):>7} {r.get('mean_fps', '-'):>8} {r.get('browser_cores', '-'):>13}"
                      f" {r.get('daemon_cores', '-'):>12} {r.get('others_cores', '-'):>12}"
                      f"  {r['load_before']} -> {r['load_after']}"
                      + (f"  ({r['why']})" if not r["ok"] else ""), flush=True)
                if not r["ok"]:
                    break
        finally:
            browser.stop()
            daemon.stop()
        for r in results:
            print(json.dumps(r))
        held = [r["members"] for r in results if r["ok"]]
        print(f"every stream decoded up to {max(held) if held else 'none'} members")
    return 0


if __name__ == "__main__":
    sys.exit(main())
