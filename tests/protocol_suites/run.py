"""Run the official Engine.IO / Socket.IO protocol test suites in headless Chromium.

The suites (the ``test-suite/`` directories of the public
socketio/engine.io-protocol and socketio/socket.io-protocol repositories)
run in Node.js or, opened as ``test-suite/index.html``, in a browser, where
each WebSocket message is its own event.  This script takes a checkout of
each, starts ``examples/protocol_echo.py`` on a free port, serves each
suite's ``test-suite/`` directory from another port with mocha, chai and
chai-string from ``tests/js/node_modules`` in place of the CDN (and the
suite's server URL, ``http://localhost:3000``, pointed at the echo
server's port, and ``mocha.run()`` made a module script so that it runs after
the suite's module), opens ``index.html`` in headless Chromium (puppeteer-core,
Debian's chromium) and prints every passed and failed test.

Usage, from the repository root::

    PYTHONPATH=. .venv/bin/python tests/protocol_suites/run.py \\
        --engine-io ../engine.io-protocol --socket-io ../socket.io-protocol --runs 3

Exit status 0 when every run of every suite passed, 1 otherwise.
"""

from __future__ import annotations

import argparse
import os
import re
import selectors
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator, Optional

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT))

from tests.support.browser_parity import StaticSite, chromium_missing, run_pages  # noqa: E402
from tests.support import processes  # noqa: E402

NODE_MODULES = REPO_ROOT / "tests" / "js" / "node_modules"
ECHO = REPO_ROOT / "examples" / "protocol_echo.py"
SUITE_URL = 'const URL = "http://localhost:3000";'
CDN = re.compile(r"https://unpkg\.com/(mocha|chai|chai-string)@\d+/([\w.-]+)")

#: Wraps mocha.run to collect what the suite's own runner reports.
REPORTER = """<script>
(function () {
  // Globals of this report and of puppeteer's page helpers, not the suite's leaks.
  mocha.globals(["__result", "__done", "__ariaQuerySelector*", "puppeteer_*"]);
  const run = mocha.run.bind(mocha);
  mocha.run = function (callback) {
    const runner = run(callback);
    const out = { passes: [], failures: [] };
    window.__result = out;
    runner.on("pass", (test) => out.passes.push(test.fullTitle()));
    runner.on("fail", (test, error) =>
      out.failures.push({ title: test.fullTitle(), error: String((error && error.message) || error) }));
    runner.on("end", () => { out.total = runner.total; window.__done = true; });
    return runner;
  };
})();
</script>
"""


def suite_files(suite_dir: Path, server_port: int) -> dict[str, object]:
    """The suite's files as served: no CDN, the suite pointed at our port."""
    index = (suite_dir / "index.html").read_text(encoding="utf-8")
    vendor: dict[str, object] = {}

    def local(match: re.Match[str]) -> str:
        package, name = match.group(1), match.group(2)
        path = NODE_MODULES / package / name
        if not path.is_file():
            raise SystemExit(f"{path} is missing: run `npm ci` in tests/js")
        vendor[f"/vendor/{package}/{name}"] = path
        return f"/vendor/{package}/{name}"

    index = CDN.sub(local, index)
    if "https://" in index or "http://" in index:
        raise SystemExit(f"{suite_dir}/index.html loads something else from the network")
    # The suite is an ES module, which runs after the page is parsed: a
    # classic ``mocha.run()`` can start before any test is declared (then 0
    # tests run). As a module script it runs after test-suite.js, in order.
    exec_tag = '<script class="mocha-exec">'
    if exec_tag not in index:
        raise SystemExit(f"{suite_dir}/index.html has no {exec_tag}")
    index = index.replace(exec_tag, REPORTER + '<script type="module" class="mocha-exec">', 1)
    suite = (suite_dir / "test-suite.js").read_text(encoding="utf-8")
    if SUITE_URL not in suite:
        raise SystemExit(f"{suite_dir}/test-suite.js does not declare {SUITE_URL}")
    suite = suite.replace(SUITE_URL, f'const URL = "http://localhost:{server_port}";')
    return {
        "/index.html": index.encode("utf-8"),
        "/test-suite.js": suite.encode("utf-8"),
        **vendor,
    }


class EchoServer:
    """examples/protocol_echo.py in its own process, on a free port."""

    def __init__(self) -> None:
        env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
        self.proc = subprocess.Popen(
            [sys.executable, str(ECHO), "--port", "0"], cwd=REPO_ROOT, env=env,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        self.port = self._read_port()

    def _read_port(self, timeout: float = 15.0) -> int:
        assert self.proc.stdout is not None
        selector = selectors.DefaultSelector()
        selector.register(self.proc.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if selector.select(timeout=0.2):
                line = self.proc.stdout.readline()
                if not line:
                    break
                found = re.search(r"listening on 127\.0\.0\.1:(\d+)", line)
                if found:
                    return int(found.group(1))
        self.stop()
        raise SystemExit("examples/protocol_echo.py did not start")

    def stop(self) -> None:
        processes.stop(self.proc)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def run_suite(name: str, checkout: Path, timeout: float) -> dict:
    """One browser run of one suite against a fresh echo server: its passes and failures."""
    echo = EchoServer()
    try:
        with StaticSite(suite_files(checkout / "test-suite", echo.port)) as site:
            result = run_pages([(name, site.url("/index.html"))], timeout=timeout).results[name]
    finally:
        echo.stop()
    return result


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--engine-io", type=Path, help="a checkout of socketio/engine.io-protocol")
    parser.add_argument("--socket-io", type=Path, help="a checkout of socketio/socket.io-protocol")
    parser.add_argument("--runs", type=int, default=1, help="runs of each suite in a row")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds one suite may take")
    parser.add_argument("--verbose", action="store_true", help="also list the passed tests")
    args = parser.parse_args(argv)
    suites = [(n, p) for n, p in (("Engine.IO", args.engine_io), ("Socket.IO", args.socket_io)) if p is not None]
    if not suites:
        parser.error("give --engine-io and/or --socket-io")
    missing = chromium_missing()
    if missing:
        print(f"cannot run: {missing}", file=sys.stderr)
        return 2
    clean = True
    for run in range(1, args.runs + 1):
        for name, checkout in suites:
            result = run_suite(name, checkout, args.timeout)
            passed, failed = len(result["passes"]), len(result["failures"])
            print(f"run {run} {name}: {passed}/{passed + failed} passed, {failed} failed", flush=True)
            if args.verbose:
                for title in result["passes"]:
                    print(f"  passed {title}")
            for failure in result["failures"]:
                print(f"  FAILED {failure['title']}: {failure['error']}")
            clean = clean and failed == 0 and passed > 0
    return 0 if clean else 1


if __name__ == "__main__":
    sys.exit(main())
