"""One comparison sitting: jsongle against the Node.js JSONgle-Server.

For every target row, three rounds; in each round both servers are started
fresh, in alternating order, and loaded by ``bench/loadgen.mjs`` with the same
flags.  The medians, their ratio and whether the target is met are printed as
a Markdown table; every raw result line is kept in ``--out``.

    python3 bench/compare.py --node-dir ~/src/JSONgle-Server

``--node-url URL --node-pid PID`` (and ``--jsongle-url``/``--jsongle-pid``)
measure servers already running instead; capacity then measures a server that
may not be fresh.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
LOADGEN = BENCH / "loadgen.mjs"
TOKEN = "bench-token"


@dataclass(frozen=True)
class Row:
    """One target: a scenario with flags, the figure compared, the goal."""

    label: str
    args: tuple[str, ...]
    metric: str
    higher_is_better: bool
    target: float
    extra: Optional[tuple[str, float]] = None  # a second figure (p99), lower is better


ROWS = (
    Row("relay ice --pairs 10 --window 1", ("relay", "--payload", "ice", "--pairs", "10", "--window", "1"),
        "msgs_per_s", True, 2.0, ("latency_ms.p99", 1.0)),
    Row("relay ice --pairs 10 --window 32", ("relay", "--payload", "ice", "--pairs", "10", "--window", "32"),
        "msgs_per_s", True, 2.0, ("latency_ms.p99", 1.0)),
    Row("relay ice --pairs 100 --window 1", ("relay", "--payload", "ice", "--pairs", "100", "--window", "1"),
        "msgs_per_s", True, 2.0, ("latency_ms.p99", 1.0)),
    Row("relay sdp --pairs 10 --window 32", ("relay", "--payload", "sdp", "--pairs", "10", "--window", "32"),
        "msgs_per_s", True, 2.0, ("latency_ms.p99", 1.0)),
    Row("capacity --connections 10000", ("capacity", "--connections", "10000"), "kb_per_client", False, 0.5),
    Row("churn --clients 50", ("churn", "--clients", "50"), "cycles_per_s", True, 1.5),
    Row("connchurn --clients 10", ("connchurn", "--clients", "10"), "sessions_per_s", True, 1.2),
)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_listening(port: int, proc: subprocess.Popen, deadline: float = 30.0) -> None:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listening on {port} after {deadline} s")


class Server:
    """A server for one run: started fresh, or one already running."""

    def __init__(self, name: str, url: str, pid: Optional[int], proc: Optional[subprocess.Popen] = None) -> None:
        self.name = name
        self.url = url
        self.pid = pid
        self.proc = proc

    def stop(self) -> None:
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


#: jsongle's settings for a sitting: those of the Node.js server, and the
#: per-connection rate limit off (the generator sends far above any sane one).
JSONGLE_SETTINGS = {
    "listenAddress": "127.0.0.1",
    "appToken": TOKEN,
    "maxConcurrentUsers": "30000",
    "logDefaultLevel": "warn",
    "useHTTPS": "false",
    "rateLimitPerSecond": "0",
}


def start_jsongle(workdir: Path, settings: dict[str, str], repo: Path = REPO) -> Server:
    """``twistd jsongle`` from the checkout ``repo`` (its virtualenv when it has one)."""
    ws, rest = free_port(), free_port()
    env_file = workdir / "jsongle.env"
    values = {"wsPort": str(ws), "restPort": str(rest), "logPath": str(workdir / "jsongle.log"), **settings}
    env_file.write_text("".join(f"{key}={value}\n" for key, value in values.items()))
    python = repo / ".venv" / "bin" / "python"
    command = [
        str(python if python.exists() else sys.executable),
        "-c",
        "import sys; from twisted.scripts.twistd import run; sys.argv[0] = 'twistd'; sys.exit(run())",
        "--nodaemon", "--pidfile=", "jsongle", "--config", str(env_file),
    ]
    env = dict(os.environ, PYTHONPATH=str(repo))
    proc = subprocess.Popen(command, cwd=workdir, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_listening(ws, proc)
    return Server("jsongle", f"http://127.0.0.1:{ws}", proc.pid, proc)


def start_node(node_dir: Path, workdir: Path) -> Server:
    ws, rest = free_port(), free_port()
    env = dict(
        os.environ,
        wsPort=str(ws),
        restPort=str(rest),
        useHTTPS="false",
        appToken=TOKEN,
        maxConcurrentUsers="30000",
        logDefaultLevel="warn",
        logPath=str(workdir / "node.log"),
        corsPolicyOrigin="",
    )
    proc = subprocess.Popen(
        ["node", "server.js"], cwd=node_dir, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    wait_listening(ws, proc)
    return Server("node", f"http://127.0.0.1:{ws}", proc.pid, proc)


def run_loadgen(server: Server, row: Row, scale: float, resume: bool = False) -> dict[str, Any]:
    args = list(row.args)
    if scale != 1.0 and row.args[0] == "capacity":
        args[2] = str(max(100, int(int(args[2]) * scale)))
    command = ["node", str(LOADGEN), *args, "--url", server.url, "--token", TOKEN]
    if server.pid:
        command += ["--server-pid", str(server.pid)]
    if resume:
        command.append("--resume")
    if row.args[0] != "capacity":
        command += ["--duration", str(max(2, round(8 * scale)))]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if not lines:
        return {"error": f"no result (exit {done.returncode}): {done.stderr.strip()[-300:]}"}
    return json.loads(lines[-1])


def figure(result: dict[str, Any], path: str) -> Optional[float]:
    value: Any = result
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return float(value) if isinstance(value, (int, float)) else None


def median(results: list[dict[str, Any]], path: str) -> Optional[float]:
    values = [v for v in (figure(r, path) for r in results) if v is not None]
    return statistics.median(values) if values else None


def per_cpu(results: list[dict[str, Any]], path: str) -> list[dict[str, Any]]:
    """The figure divided by the server's CPU use (cores): work per CPU-second."""
    out = []
    for result in results:
        value, cpu = figure(result, path), result.get("server_cpu")
        if value is not None and cpu:
            out.append({"v": value / cpu})
    return out


def verdict(row: Row, node: list[dict], ours: list[dict]) -> list[list[str]]:
    """Table lines for one row: figure, both medians, ratio, verdict, ratio per CPU-second."""
    lines = []
    checks = [(row.metric, row.higher_is_better, row.target)]
    if row.extra:
        checks.append((row.extra[0], False, row.extra[1]))
    for path, higher, target in checks:
        a, b = median(node, path), median(ours, path)
        ratio = b / a if a and b is not None else None
        ok = ratio is not None and (ratio >= target if higher else ratio <= target)
        goal = f"≥ {target}×" if higher else f"≤ {target}×"
        efficiency = "—"
        if higher and row.args[0] != "capacity":
            ea, eb = median(per_cpu(node, path), "v"), median(per_cpu(ours, path), "v")
            efficiency = f"{fmt(eb / ea, 2)}×" if ea and eb is not None else "—"
        lines.append([row.label, path, fmt(a), fmt(b), f"{fmt(ratio, 2)}× ({goal})", "met" if ok else "not met", efficiency])
    return lines


def fmt(value: Optional[float], digits: int = 1) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    node = subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()
    return (
        f"{cpu}, {os.cpu_count()} cores, Linux {platform.release()}, "
        f"Python {platform.python_version()}, Node.js {node}"
    )


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--node-dir", type=Path, help="an installed JSONgle-Server checkout (npm ci done)")
    parser.add_argument("--node-url"), parser.add_argument("--node-pid", type=int)
    parser.add_argument("--jsongle-url"), parser.add_argument("--jsongle-pid", type=int)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rows", default="", help="comma-separated row numbers (1-7); default all")
    parser.add_argument("--scale", type=float, default=1.0, help="shorter runs and fewer connections, for trying")
    parser.add_argument("--only", choices=("node", "jsongle"), help="measure one server (tuning)")
    parser.add_argument("--out", type=Path, default=Path("bench-results.jsonl"))
    parser.add_argument(
        "--jsongle-setting", action="append", default=[], metavar="KEY=VALUE",
        help="a jsongle config key for the sitting, e.g. rateLimitPerSecond=100000 to measure the rate limit's cost",
    )
    parser.add_argument(
        "--resume", action="store_true",
        help="every client opts in to resume (connection state recovery), to compare its cost with a run without",
    )
    options = parser.parse_args(argv)
    if options.only != "jsongle" and not options.node_dir and not options.node_url:
        parser.error("give --node-dir or --node-url (or --only jsongle)")
    if shutil.which("node") is None:
        parser.error("node is not on PATH")

    rows = ROWS
    if options.rows:
        rows = tuple(ROWS[int(n) - 1] for n in options.rows.split(","))

    settings = dict(JSONGLE_SETTINGS)
    for item in options.jsongle_setting:
        key, separator, value = item.partition("=")
        if not separator:
            parser.error(f"--jsongle-setting wants KEY=VALUE, not {item!r}")
        settings[key] = value
    workdir = Path(tempfile.mkdtemp(prefix="jsongle-bench-"))
    starters: dict[str, Callable[[], Server]] = {}
    if options.only != "jsongle":
        starters["node"] = (
            (lambda: Server("node", options.node_url, options.node_pid))
            if options.node_url
            else (lambda: start_node(options.node_dir.resolve(), workdir))
        )
    if options.only != "node":
        starters["jsongle"] = (
            (lambda: Server("jsongle", options.jsongle_url, options.jsongle_pid))
            if options.jsongle_url
            else (lambda: start_jsongle(workdir, settings))
        )

    results: dict[tuple[str, str], list[dict[str, Any]]] = {}
    began = time.monotonic()
    with options.out.open("w") as out:
        for row in rows:
            for round_ in range(options.rounds):
                order = list(starters)
                if round_ % 2:
                    order.reverse()
                for name in order:
                    server = starters[name]()
                    try:
                        result = run_loadgen(server, row, options.scale, options.resume)
                    finally:
                        server.stop()
                    result.update(server=name, row=row.label, round=round_ + 1)
                    out.write(json.dumps(result) + "\n")
                    out.flush()
                    results.setdefault((row.label, name), []).append(result)
                    shown = figure(result, row.metric)
                    flag = " (generator saturated)" if result.get("generator_saturated") else ""
                    print(
                        f"[{time.monotonic() - began:6.0f}s] {row.label:36} {name:8} round {round_ + 1}: "
                        f"{row.metric}={fmt(shown)} server_cpu={result.get('server_cpu')}{flag}"
                        + (f" ERROR {result['error']}" if "error" in result else ""),
                        flush=True,
                    )
    shutil.rmtree(workdir, ignore_errors=True)

    print()
    print(f"Machine: {machine()}; {options.rounds} rounds, medians; ratio = jsongle / Node.js.")
    print()
    print("| scenario | figure | Node.js | jsongle | ratio (target) | | ratio per server CPU-second |")
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        node = results.get((row.label, "node"), [])
        ours = results.get((row.label, "jsongle"), [])
        for line in verdict(row, node, ours):
            print("| " + " | ".join(line) + " |")
    print(f"\n{time.monotonic() - began:.0f} s in all; raw results in {options.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
