"""Run the Autobahn test suite's fuzzing client against our echo endpoint.

Starts ``fuzz/echo_server.py`` on an ephemeral loopback port, writes a spec,
runs ``wstest -m fuzzingclient`` (Python 2.7, from its own virtualenv), then
reads the report and prints how many cases ended in each behaviour. Exits 1
when a case FAILED (or the run did not complete), 0 otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import select
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parent
BEHAVIOURS = ("OK", "NON-STRICT", "INFORMATIONAL", "UNIMPLEMENTED", "FAILED")
AGENT = "jsongle"
# permessage-deflate (12.*, 13.*): the endpoint does not offer the extension,
# as the daemon does not, so those cases only test a refusal.
DEFAULT_EXCLUDE = ("12.*", "13.*")


def make_spec(url: str, outdir: Path, cases: list[str], exclude: list[str]) -> dict[str, Any]:
    """The fuzzingclient spec: one server, the cases to run and to leave out."""
    return {
        "outdir": str(outdir),
        "servers": [{"agent": AGENT, "url": url}],
        "cases": cases,
        "exclude-cases": exclude,
        "exclude-agent-cases": {},
    }


def read_report(outdir: Path) -> dict[str, dict[str, Any]]:
    """Case id -> the report's entry (behavior, behaviorClose, ...) for our agent."""
    index = json.loads((outdir / "index.json").read_text(encoding="utf-8"))
    return index[AGENT]


def case_key(case_id: str) -> tuple[int, ...]:
    return tuple(int(part) for part in case_id.split("."))


def summarize(report: dict[str, dict[str, Any]]) -> dict[str, Counter[str]]:
    """Counts of each behaviour, for the cases and for their closing."""
    return {
        "behavior": Counter(entry["behavior"] for entry in report.values()),
        "behaviorClose": Counter(entry["behaviorClose"] for entry in report.values()),
    }


def case_detail(outdir: Path, entry: dict[str, Any]) -> str:
    """The report's one-line description and result of a case."""
    try:
        case = json.loads((outdir / (entry["reportfile"][:-5] + ".json")).read_text(encoding="utf-8"))
    except (OSError, KeyError, ValueError):
        return ""
    return f"{case.get('description', '')} -> {case.get('result', '')}"


def start_echo(max_payload: int, timeout: float = 20.0) -> tuple[subprocess.Popen[str], int]:
    """Start the echo endpoint; return it and the port it listens on."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO_ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "echo_server.py"), "--max-payload", str(max_payload)],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            break
        line = proc.stdout.readline()
        if not line:
            break
        if line.startswith("echo listening on "):
            return proc, int(line.rsplit(":", 1)[1])
    proc.kill()
    proc.wait()
    raise RuntimeError("the echo endpoint did not start")


def run(wstest: str, outdir: Path, cases: list[str], exclude: list[str], max_payload: int, timeout: float) -> dict[str, dict[str, Any]]:
    """Fuzz the echo endpoint and return the report (case id -> entry)."""
    outdir.mkdir(parents=True, exist_ok=True)
    echo, port = start_echo(max_payload)
    try:
        spec = make_spec(f"ws://127.0.0.1:{port}", outdir, cases, exclude)
        spec_path = outdir / "fuzzingclient.json"
        spec_path.write_text(json.dumps(spec, indent=2), encoding="utf-8")
        with open(outdir / "wstest.log", "w", encoding="utf-8") as log:
            subprocess.run(
                [wstest, "-m", "fuzzingclient", "-s", str(spec_path)],
                cwd=str(outdir),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                timeout=timeout,
                check=True,
            )
    finally:
        echo.terminate()
        try:
            echo.wait(10)
        except subprocess.TimeoutExpired:
            echo.kill()
            echo.wait()
    return read_report(outdir)


def print_summary(report: dict[str, dict[str, Any]], outdir: Path) -> None:
    counts = summarize(report)
    print(f"{len(report)} cases")
    for field, label in (("behavior", "behaviour"), ("behaviorClose", "closing")):
        row = "  ".join(f"{name} {counts[field].get(name, 0)}" for name in BEHAVIOURS)
        print(f"{label:9}  {row}")
    for case_id in sorted(report, key=case_key):
        entry = report[case_id]
        if entry["behavior"] != "OK" or entry["behaviorClose"] != "OK":
            print(f"  {case_id}: {entry['behavior']}/{entry['behaviorClose']}  {case_detail(outdir, entry)}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wstest", default=str(REPO_ROOT / ".venv-fuzz" / "bin" / "wstest"))
    parser.add_argument("--outdir", type=Path, default=HERE / "reports", help="report directory, emptied first")
    parser.add_argument("--cases", default="*", help="comma-separated case ids or patterns")
    parser.add_argument("--exclude", default=",".join(DEFAULT_EXCLUDE))
    parser.add_argument("--max-payload", type=int, default=64 * 1024 * 1024)
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds for the whole run")
    args = parser.parse_args(argv)
    wstest = os.path.abspath(args.wstest)
    if not os.access(wstest, os.X_OK):
        parser.error(f"no wstest at {wstest} (make fuzz-venv installs it)")
    outdir = args.outdir
    shutil.rmtree(outdir, ignore_errors=True)
    cases = [c for c in args.cases.split(",") if c]
    exclude = [c for c in args.exclude.split(",") if c]
    report = run(wstest, outdir.resolve(), cases, exclude, args.max_payload, args.timeout)
    print_summary(report, outdir.resolve())
    print(f"report: {outdir.resolve() / 'index.html'}")
    return 1 if any(entry["behavior"] == "FAILED" for entry in report.values()) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
