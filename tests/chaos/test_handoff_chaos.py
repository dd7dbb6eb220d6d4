"""Chaos on the daemon's machine: `acjob -t pipe` over the daemon's Unix socket, where the
output is read from the handed spool file and a piped stdin is spliced into its spool
file (acjob.server.handoff), while the daemon is killed with SIGKILL at random moments.

The main chaos driver talks TCP through a cutting proxy, where nothing is handed over;
this is the same promise for the handed files: every job ends with its own status, its
stdout is its stdin byte for byte, and it ran exactly once.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import threading
import time
from pathlib import Path

from tests.conftest import Daemon

JOBS = 12
KILLS = 3


def _feed(proc: subprocess.Popen[bytes], data: bytes, rng: random.Random) -> None:
    """Write ``data`` to the client's stdin in pieces, with pauses, so that uploads span
    the kills; then close it."""
    assert proc.stdin is not None
    try:
        for start in range(0, len(data), 256 << 10):
            proc.stdin.write(data[start:start + (256 << 10)])
            proc.stdin.flush()
            time.sleep(rng.uniform(0, 0.1))
        proc.stdin.close()
    except BrokenPipeError:
        pass  # the client ended early: its exit status says why


def test_handed_files_lose_and_repeat_nothing_through_kills(daemon: Daemon,
                                                            short_tmp: Path) -> None:
    rng = random.Random(14)
    witness = short_tmp / "witness"
    witness.mkdir()
    runs = []
    for i in range(JOBS):
        data = os.urandom(rng.randint(1 << 20, 3 << 20))
        command = f"cat; echo x >> {witness}/{i}"
        with (short_tmp / f"out{i}").open("wb") as out, \
                (short_tmp / f"err{i}").open("wb") as err:
            proc = subprocess.Popen(
                [sys.executable, "-c", "from acjob.cli.acjob import main; main()", "-t",
                 "pipe", command], stdin=subprocess.PIPE, stdout=out, stderr=err,
                env=dict(daemon.env, ACJOB_RETRY_FOR="300"))
        feeder = threading.Thread(target=_feed, args=(proc, data, random.Random(i)))
        feeder.start()
        runs.append((proc, data, feeder))
    try:
        for _ in range(KILLS):
            time.sleep(rng.uniform(0.3, 1.2))
            daemon.kill9()
            daemon.start()
        codes = [proc.wait(timeout=300) for proc, _, _ in runs]
    finally:
        for proc, _, feeder in runs:
            proc.kill()
            feeder.join(timeout=30)
    problems = []
    for i, (code, (_, data, _)) in enumerate(zip(codes, runs, strict=True)):
        out = (short_tmp / f"out{i}").read_bytes()
        err = (short_tmp / f"err{i}").read_bytes()
        if code != 0:
            problems.append(f"job {i}: exit {code}: {err[-500:]!r}")
        elif out != data:
            problems.append(f"job {i}: stdout differs ({len(out)} of {len(data)} bytes)")
        ran = (witness / str(i)).read_text().count("x") if (witness / str(i)).exists() else 0
        if ran != 1:
            problems.append(f"job {i} ran {ran} times")
    assert problems == []
