"""A long job through repeated daemon restarts: its state and output survive them all.

Minutes here; nothing in the mechanism depends on the length (months work the same way:
the wrapper, the exit file and the store carry everything across restarts).
"""

from __future__ import annotations

import subprocess
import sys

from acjob.model import State
from tests.conftest import Daemon, client_for

LINES = 120


def test_long_job_through_restarts(daemon: Daemon) -> None:
    script = f"i=0; while [ $i -lt {LINES} ]; do echo line-$i; i=$((i+1)); sleep 0.25; done"
    proc = subprocess.Popen(
        [sys.executable, "-c", "from acjob.cli.acjob import main; main()", "-n", script],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=daemon.env)
    assert proc.stdout is not None
    seen = [proc.stdout.readline()]
    for restart in range(6):
        # Let the job make progress, then take the daemon away under the client.
        target = len(seen) + 8
        while len(seen) < target:
            seen.append(proc.stdout.readline())
        if restart % 2:
            daemon.kill9()
        else:
            daemon.stop()
        daemon.start()
    # Read on through the same buffered reader (communicate() would skip what it holds).
    rest = proc.stdout.read()
    proc.wait(timeout=300)
    assert proc.stderr is not None
    err = proc.stderr.read()
    lines = b"".join([*seen, rest]).decode().splitlines()
    assert proc.returncode == 0, err
    assert lines == [f"line-{i}" for i in range(LINES)]
    with client_for(daemon) as client:
        jobs, _ = client.list(limit=1)
        info = client.wait(jobs[0].id, timeout=60)
        assert info.state is State.COMPLETE and info.attempt == 1
