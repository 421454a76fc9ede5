"""Ending the processes the tests start, by their PID, and only those."""

from __future__ import annotations

import subprocess


def stop(proc: "subprocess.Popen[str] | subprocess.Popen[bytes]", timeout: float = 10.0) -> None:
    """SIGTERM, then SIGKILL if it has not exited within ``timeout`` seconds; reaped either way."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
