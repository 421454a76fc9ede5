"""The Autobahn test suite's fuzzing client against our WebSocket stack (a subset).

``make fuzz`` runs every case; this runs the framing, pings, reserved bits,
opcodes, fragmentation, UTF-8, closing and misc. cases (1-7, 10) on each test
run. wstest needs Python 2.7 and its own virtualenv (``make fuzz-venv``,
which ``.ci/run`` makes when Python 2.7 is there); without them it is skipped,
saying why.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
WSTEST = REPO_ROOT / ".venv-fuzz" / "bin" / "wstest"
CASES = "1.*,2.*,3.*,4.*,5.*,6.*,7.*,10.*"
# Cases whose outcome RFC 6455 leaves to the implementation.
ACCEPTED = {"OK", "INFORMATIONAL"}


def _python2_found() -> bool:
    found = subprocess.run([str(REPO_ROOT / "fuzz" / "find-python2")], capture_output=True)
    return found.returncode == 0


def test_autobahn_fuzzing_subset(tmp_path):
    if not _python2_found():
        pytest.skip("Python 2.7 not available: the Autobahn test suite (wstest) needs it")
    if not WSTEST.exists():
        pytest.skip("wstest not installed: run `make fuzz-venv`")
    outdir = tmp_path / "reports"
    run = subprocess.run(
        [sys.executable, str(REPO_ROOT / "fuzz" / "run_fuzz.py"), "--wstest", str(WSTEST),
         "--outdir", str(outdir), "--cases", CASES, "--timeout", "300"],
        cwd=str(REPO_ROOT),
        capture_output=True,
        text=True,
        timeout=360,
    )
    print(run.stdout, run.stderr)
    report = json.loads((outdir / "index.json").read_text(encoding="utf-8"))["jsongle"]
    assert len(report) > 200, "the subset did not run"
    bad = {
        case: (entry["behavior"], entry["behaviorClose"])
        for case, entry in report.items()
        if entry["behavior"] not in ACCEPTED or entry["behaviorClose"] not in ACCEPTED
    }
    assert bad == {}
    assert run.returncode == 0
