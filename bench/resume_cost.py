"""What resume costs per relayed message: two jsongle daemons, loaded in turns.

``compare.py --resume`` runs after a run without it give the cost of connection
state recovery as a ratio of two runs half a minute apart; on a shared machine
the two differ by more than the cost measured. Here both runs happen in the
same seconds: two fresh daemons, each loaded by its own ``loadgen.mjs`` with
the same relay row (one generator's clients opt in with ``--resume``), and
the generators take turns, ``--slice`` seconds each (the other is stopped with
SIGSTOP), for the whole measured window. Each server's CPU per relayed message
is read over that window, and the ratio (with resume over without) of each
round is reported with the median of the rounds.

    python3 bench/resume_cost.py --rows 1,2,3,4 --rounds 5
    python3 bench/resume_cost.py --redis        # each daemon on a Redis of its own

``--redis`` starts one ``redis-server`` per daemon for each round (a cluster of
one: the relay goes through Redis, and nothing a stopped daemon left is there
for the next).

``--base PATH`` compares two versions of the code instead, both with resume:
the first daemon runs the checkout at PATH and its clients opt in too, so the
ratio is what this tree's resume costs over what PATH's costs (below 1: this
tree is cheaper). Ratios of resume over no resume from separate sittings move
by a few hundredths; this one answers whether a change helped.

    python3 bench/resume_cost.py --rows 2 --base ../jsongle-before
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Optional

from compare import (
    JSONGLE_SETTINGS, LOADGEN, REPO, ROWS, TOKEN, Server, fmt, free_port, machine, start_jsongle, wait_listening,
)

RELAY_ROWS = tuple(row for row in ROWS if row.args[0] == "relay")


class Redis:
    """A throw-away redis-server on a free loopback port, without persistence."""

    def __init__(self) -> None:
        self.port = free_port()
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        wait_listening(self.port, self.proc)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


def loadgen(server: Server, args: tuple[str, ...], duration: int, resume: bool) -> subprocess.Popen:
    command = ["node", str(LOADGEN), *args, "--url", server.url, "--token", TOKEN,
               "--server-pid", str(server.pid), "--duration", str(duration)]
    if resume:
        command.append("--resume")
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def take_turns(generators: list[subprocess.Popen], slice_s: float, deadline: float) -> None:
    """Run one generator at a time, each for ``slice_s``, until all have exited
    (on an error, :func:`one_round` starts and kills what is left)."""
    turn = 0
    for generator in generators[1:]:
        generator.send_signal(signal.SIGSTOP)
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        running = [g for g in generators if g.poll() is None]
        if not running:
            return
        active = running[turn % len(running)]
        active.send_signal(signal.SIGCONT)
        time.sleep(slice_s)
        if len(running) > 1 and active.poll() is None:
            active.send_signal(signal.SIGSTOP)
        turn += 1
    raise RuntimeError("the generators did not finish in time")


def result_of(generator: subprocess.Popen) -> dict[str, Any]:
    out, err = generator.communicate(timeout=60)
    lines = [line for line in out.splitlines() if line.startswith("{")]
    if not lines:
        return {"error": f"no result (exit {generator.returncode}): {err.strip()[-300:]}"}
    return json.loads(lines[-1])


def cost_us(result: dict[str, Any]) -> Optional[float]:
    """Server CPU microseconds per relayed message over the measured window."""
    cpu, rate = result.get("server_cpu"), result.get("msgs_per_s")
    return cpu / rate * 1e6 if cpu and rate else None


def checkout(options: argparse.Namespace, resume: bool) -> Path:
    """The code a daemon runs: this tree, or with ``--base`` that checkout for the first one."""
    return REPO if resume or options.base is None else options.base


def one_round(row: Any, round_: int, options: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """Both daemons fresh, both generators in turns; the two results."""
    redises: list[Redis] = []
    servers: dict[bool, Server] = {}
    generators: dict[bool, subprocess.Popen] = {}
    try:
        for resume in (False, True):
            settings = dict(JSONGLE_SETTINGS)
            if options.redis:
                redises.append(Redis())
                settings["redisUrl"] = redises[-1].url
            directory = Path(tempfile.mkdtemp(prefix="on-" if resume else "off-", dir=workdir))
            servers[resume] = start_jsongle(directory, settings, checkout(options, resume))
        # Which one runs first alternates from round to round.
        order = [False, True] if round_ % 2 == 0 else [True, False]
        for resume in order:
            # With --base, the base's clients opt in too: the code differs, not the clients.
            opt_in = resume or options.base is not None
            generators[resume] = loadgen(servers[resume], row.args, options.duration, opt_in)
        take_turns([generators[resume] for resume in order], options.slice, 2 * options.duration + 120)
        return {resume: result_of(generators[resume]) for resume in (False, True)}
    finally:
        for generator in generators.values():
            if generator.poll() is None:
                generator.send_signal(signal.SIGCONT)
                generator.kill()
                generator.wait()
        for server in servers.values():
            server.stop()
        for redis in redises:
            redis.stop()


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", default="1,2,3,4", help="relay rows of compare.py (1-4)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--duration", type=int, default=16, help="measured seconds of each generator (in turns)")
    parser.add_argument("--slice", type=float, default=0.25, help="seconds of each turn")
    parser.add_argument("--redis", action="store_true", help="each daemon on a Redis of its own")
    parser.add_argument("--out", type=Path, default=Path("resume-cost.jsonl"))
    parser.add_argument("--base", type=Path, help="another checkout: its daemon, with resume, is the one compared with")
    options = parser.parse_args(argv)
    # Stopped by a signal, it still starts what it stopped and stops what it started.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(1))
    rows = []
    for number in options.rows.split(","):
        row = ROWS[int(number) - 1]
        if row not in RELAY_ROWS:
            parser.error(f"row {number} is not a relay row")
        rows.append(row)
    if shutil.which("node") is None:
        parser.error("node is not on PATH")
    if options.redis and shutil.which("redis-server") is None:
        parser.error("--redis needs redis-server on PATH")
    if options.base is not None:
        options.base = options.base.resolve()
        if not (options.base / "jsongle" / "__init__.py").exists():
            parser.error(f"--base {options.base}: not a jsongle checkout")

    workdir = Path(tempfile.mkdtemp(prefix="jsongle-resume-cost-"))
    ratios: dict[str, list[float]] = {}
    costs: dict[tuple[str, bool], list[float]] = {}
    began = time.monotonic()
    try:
        with options.out.open("w") as out:
            for row in rows:
                for round_ in range(options.rounds):
                    results = one_round(row, round_, options, workdir)
                    for resume, result in results.items():
                        result.update(row=row.label, round=round_ + 1, resume=resume, mode="redis" if options.redis else "single")
                        result["code"] = str(checkout(options, resume))
                        out.write(json.dumps(result) + "\n")
                    off, on = cost_us(results[False]), cost_us(results[True])
                    if off and on:
                        ratios.setdefault(row.label, []).append(on / off)
                        costs.setdefault((row.label, False), []).append(off)
                        costs.setdefault((row.label, True), []).append(on)
                    errors = [r["error"] for r in results.values() if "error" in r]
                    print(
                        f"[{time.monotonic() - began:6.0f}s] {row.label:36} round {round_ + 1}: "
                        f"{fmt(off)} -> {fmt(on)} us/msg" + (f" ERROR {errors}" if errors else ""),
                        flush=True,
                    )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    mode = "each daemon on its own Redis" if options.redis else "single process"
    print()
    print(f"Machine: {machine()}; {mode}; {options.rounds} rounds, turns of {options.slice:g} s.")
    print()
    if options.base is None:
        print("| scenario | µs/msg without | µs/msg with resume | cost ratio (median) | rounds |")
    else:
        print(f"Both with resume; the base is {options.base}.\n")
        print("| scenario | µs/msg, base | µs/msg, this tree | cost ratio (median) | rounds |")
    print("|---|---|---|---|---|")
    for row in rows:
        found = ratios.get(row.label, [])
        without, with_ = costs.get((row.label, False), []), costs.get((row.label, True), [])
        print(
            f"| {row.label} | {fmt(statistics.median(without) if without else None)} "
            f"| {fmt(statistics.median(with_) if with_ else None)} "
            f"| {fmt(statistics.median(found) if found else None, 3)} "
            f"| {', '.join(f'{r:.2f}' for r in found)} |"
        )
    print(f"\n{time.monotonic() - began:.0f} s in all; raw results in {options.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
