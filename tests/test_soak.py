"""Soak: many connect / hello / join / relay / leave / disconnect cycles, nothing left.

``make soak`` runs the full version (20 000 cycles, 50 concurrent
socket.io-clients); the normal suite runs 2 000 cycles, and 1 000 with
CI=true (``SOAK_CYCLES`` overrides both).  At the end ``users_count``,
``conferences_count`` and ``jsongle_engine_sessions`` must be 0, and the
daemon's RSS after the last block of cycles must be within 5 % of its RSS
after the first block (a block is 1 000 cycles, or a quarter of a short run).

The allocator settles during the first couple of thousand cycles (RSS steps
up once, then stays flat: Python object counts do not grow), so a short run
mostly measures that warm-up: it is held to 15 % and catches gross leaks
only; counting what is left behind is its real check.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.test_backpressure import rss_kib
from tests.test_cleanup import wait_for_empty

JS_DIR = Path(__file__).resolve().parent / "js"
TOKEN = "test-token"
CONCURRENCY = 50
FULL_CYCLES = 20000


def soak_cycles() -> int:
    if os.environ.get("SOAK_CYCLES"):
        return int(os.environ["SOAK_CYCLES"])  # make soak: FULL_CYCLES
    return 1000 if os.environ.get("CI") == "true" else 2000


@pytest.mark.soak
def test_soak(daemon_factory, capsys):
    if shutil.which("node") is None or not (JS_DIR / "node_modules" / "socket.io-client").is_dir():
        pytest.skip("node and tests/js/node_modules are needed (make node)")
    cycles = soak_cycles()
    block = min(1000, cycles // 4)
    daemon = daemon_factory({"maxConcurrentUsers": 200, "logDefaultLevel": "warn"})
    command = ["node", "soak.js", daemon.ws_url, TOKEN, str(cycles), str(CONCURRENCY), str(block)]
    rss: dict[int, int] = {}
    end: dict = {}
    with subprocess.Popen(command, cwd=JS_DIR, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as soak:
        try:
            assert soak.stdout is not None
            for line in soak.stdout:
                report = json.loads(line)
                assert "error" not in report, report
                if report.get("end"):
                    end = report
                    break
                rss[report["done"]] = rss_kib(daemon.pid)
            assert soak.wait(timeout=60) == 0, soak.stderr.read() if soak.stderr else ""
        finally:
            if soak.poll() is None:
                soak.kill()
    assert end.get("done") == cycles, end
    counts = wait_for_empty(daemon)
    assert counts == {"users_count": 0.0, "conferences_count": 0.0, "jsongle_engine_sessions": 0.0}
    first, last = rss[block], rss[cycles]
    growth = (last - first) / first
    with capsys.disabled():
        print(
            f"\nsoak: {cycles} cycles, {CONCURRENCY} concurrent clients, {end['seconds']:.1f} s; "
            f"RSS after the first {block}: {first} KiB, after the last {block}: {last} KiB, "
            f"growth {growth * 100:+.2f} % (max {max(rss.values())} KiB); left behind: {counts}\nRSS (KiB) by cycles done: {rss}"
        )
    assert growth < (0.05 if cycles >= FULL_CYCLES else 0.15)
