"""The JSONgle-library call scenario, run where the only network is loopback.

Chromium gathers ICE host candidates on every interface it sees, and pairs
them with whatever the other page signals; run on the host, a call between
two pages could use the host's own non-loopback address.  So the daemon,
the page server and the browser run together in a fresh network namespace
that has nothing but ``lo`` (``unshare -n``, as root; ``unshare -rn``
elsewhere): every packet of the call is on 127.0.0.1.

``python -m tests.support.browser_call_run OUT.json`` (inside the namespace)
writes ``{"results": {...pages...}, "stats": {.../stats...}, "stderr": "..."}``;
:func:`run_call` runs it in a namespace from the test.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path
from typing import Any, Optional
from urllib.parse import urlencode

REPO_ROOT = Path(__file__).resolve().parents[2]
TESTS = REPO_ROOT / "tests"
BROWSER = TESTS / "browser"
P2P = "p2p-room"
MUC = "#muc#chat"


def namespace_command() -> Optional[list[str]]:
    """How to enter a namespace with only ``lo`` up here, or None."""
    for unshare in (["unshare", "-n"], ["unshare", "-rn"]):
        try:
            done = subprocess.run([*unshare, "ip", "link", "set", "lo", "up"], capture_output=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if done.returncode == 0:
            return unshare
    return None


def run_call(timeout: float = 120.0) -> dict[str, Any]:
    """Run the scenario in its own network namespace; what the pages saw and /stats."""
    unshare = namespace_command()
    if unshare is None:
        raise RuntimeError("cannot make a network namespace (unshare -n / -rn)")
    with tempfile.TemporaryDirectory() as directory:
        out = Path(directory) / "call.json"
        script = f'ip link set lo up && exec "{sys.executable}" -m tests.support.browser_call_run "{out}"'
        done = subprocess.run(
            [*unshare, "sh", "-c", script], cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout,
            env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        )
        if not out.exists():
            raise RuntimeError(f"the call run wrote nothing (exit {done.returncode})\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}")
        return json.loads(out.read_text(encoding="utf-8"))


def main(out: Path) -> None:
    from tests.support.browser_parity import StaticSite, run_pages
    from tests.support.daemon import Daemon

    files = {
        "/call.html": BROWSER / "call.html",
        "/jsongle_like.js": BROWSER / "jsongle_like.js",
        "/call_scenario.js": BROWSER / "call_scenario.js",
        "/socket.io.min.js": TESTS / "js" / "node_modules" / "socket.io-client" / "dist" / "socket.io.min.js",
    }
    report: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as directory:
        daemon = Daemon.start(Path(directory), {"logDefaultLevel": "info"})
        try:
            with StaticSite(files) as site:
                def page(role: str) -> str:
                    query = {"role": role, "server": daemon.ws_url, "token": "test-token", "p2p": P2P, "muc": MUC}
                    return site.url("/call.html?" + urlencode(query))

                try:
                    pages = run_pages(
                        [("bob", page("bob")), ("alice", page("alice"))],
                        timeout=90,
                        ready_when={"bob": "window.__ready === true"},
                    )
                    report.update(results=pages.results, stderr=pages.stderr)
                except Exception as error:  # the test shows it
                    report.update(error=str(error))
            with urllib.request.urlopen(f"{daemon.rest_url}/stats", timeout=10) as response:
                report["stats"] = json.loads(response.read())
        finally:
            daemon.stop()
            report["daemon"] = daemon.output()[-4000:]
    out.write_text(json.dumps(report), encoding="utf-8")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
