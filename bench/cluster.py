"""Relay throughput of a jsongle cluster: 1, 2 and 4 processes on one port.

For each process count N, a fresh redis-server (no persistence) and N
daemons sharing one wsPort with ``reusePort=true`` (SO_REUSEPORT: the
kernel spreads the WebSocket connections), then ``bench/relay-load.mjs``
generators: pairs of WebSocket-only clients bouncing transport-info
messages in P2P rooms.  The two members of a pair land on any process, so
with N processes about (N-1)/N of the copies cross Redis.  One process
without Redis is measured too, as the baseline of a single process.

    .venv/bin/python bench/cluster.py [--processes 1,2,4] [--pairs 40]
        [--window 4] [--generators 2] [--duration 8] [--warmup 2]

Prints a table and the scaling ratios (messages/s with N processes over
messages/s with one process on Redis).  Not a test: the figures depend on
the machine, and the generators share its cores with the servers.  So it
also prints the CPU time the servers (jsongle processes and Redis) spent per
relayed message, read from /proc: that cost does not depend on what else
runs, and tells what the cluster adds per message; "ratio if CPU-bound" is
N times the cost with one process over the cost with N, the scaling to
expect with a free core per process.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.support.daemon import Daemon  # noqa: E402
from tests.support.redis import RedisServer, free_port  # noqa: E402

TOKEN = "bench-token"
LOAD = REPO / "bench" / "relay-load.mjs"


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of the processes so far (Linux /proc)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total / tick


def run_generators(port: int, options: argparse.Namespace) -> dict[str, float]:
    """Start the generators together; sum their rates."""
    share = max(1, options.pairs // options.generators)
    command = [
        "node", str(LOAD), "--url", f"ws://127.0.0.1:{port}", "--token", TOKEN, "--pairs", str(share),
        "--window", str(options.window), "--warmup", str(options.warmup), "--duration", str(options.duration),
    ]
    procs = [subprocess.Popen(command, stdout=subprocess.PIPE, text=True) for _ in range(options.generators)]
    results = []
    for proc in procs:
        out, _ = proc.communicate(timeout=options.warmup + options.duration + 120)
        if proc.returncode != 0:
            raise RuntimeError(f"generator failed ({proc.returncode})")
        results.append(json.loads(out.strip().splitlines()[-1]))
    return {
        "rate": sum(r["rate"] for r in results),
        "total": sum(r["total"] for r in results),
        "pairs": sum(r["pairs"] for r in results),
    }


def measure(processes: int, redis: bool, options: argparse.Namespace, workdir: Path) -> dict[str, float]:
    port = free_port()
    server = RedisServer(workdir / f"redis-{processes}-{redis}").start() if redis else None
    daemons: list[Daemon] = []
    try:
        config = {
            "wsPort": port, "reusePort": True, "appToken": TOKEN, "maxConcurrentUsers": 100000,
            "logDefaultLevel": "info", "pingInterval": 25000,
        }
        if server is not None:
            config["redisUrl"] = server.url
        for n in range(processes):
            daemons.append(Daemon.start(workdir / f"daemon-{processes}-{redis}-{n}", {**config, "nodeId": f"bench{n}"}))
        pids = [d.pid for d in daemons] + ([server.pid] if server is not None else [])
        before = cpu_seconds(pids)
        result = run_generators(port, options)
        spent = cpu_seconds(pids) - before
        result.update(processes=processes, redis=redis, cpu_us=1e6 * spent / max(1, result["total"]))
        return result
    finally:
        for daemon in daemons:
            daemon.stop()
        if server is not None:
            server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--processes", default="1,2,4")
    parser.add_argument("--pairs", type=int, default=40)
    parser.add_argument("--window", type=int, default=4)
    parser.add_argument("--generators", type=int, default=2)
    parser.add_argument("--duration", type=float, default=8)
    parser.add_argument("--warmup", type=float, default=2)
    options = parser.parse_args()
    counts = [int(n) for n in options.processes.split(",")]
    print(f"{os.cpu_count()} cores; {options.pairs} pairs, window {options.window}, {options.generators} generators")
    with tempfile.TemporaryDirectory(prefix="jsongle-bench-") as tmp:
        workdir = Path(tmp)
        rows = [measure(1, False, options, workdir)]
        rows += [measure(n, True, options, workdir) for n in counts]
    one = next((r for r in rows if r["redis"] and r["processes"] == 1), rows[0])
    # "if CPU-bound": N processes, each on its own core, at their measured cost per message.
    print(f"{'processes':>9} {'redis':>5} {'msgs/s':>10} {'ratio':>6} {'server CPU/msg':>15} {'ratio if CPU-bound':>19}")
    for row in rows:
        ratio = row["rate"] / one["rate"] if one["rate"] else 0.0
        bound = row["processes"] * one["cpu_us"] / row["cpu_us"] if row["cpu_us"] else 0.0
        print(f"{row['processes']:>9} {'yes' if row['redis'] else 'no':>5} {row['rate']:>10.0f} {ratio:>6.2f}"
              f" {row['cpu_us']:>12.0f} us {bound:>19.2f}")


if __name__ == "__main__":
    main()
