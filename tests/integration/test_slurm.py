"""What only Slurm has, against a real single-node Slurm (scripts/slurm-up brings it up):
its resource options, its refusals, a node failure. The contract every scheduler
keeps is in test_schedulers.py.

Skipped, with the reason, where no Slurm answers; in CI (CI=true) a missing Slurm
fails the run instead.
"""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

import acjob
from acjob.model import State
from tests.conftest import Daemon, client_for, wait_for
from tests.integration.schedulers import SLURM, scheduler_daemon, until

NODE = socket.gethostname().split(".")[0]


@pytest.fixture
def sdaemon(short_tmp: Path) -> Iterator[Daemon]:
    yield from scheduler_daemon(SLURM, short_tmp)


def _scontrol(*args: str) -> None:
    subprocess.run(["scontrol", *args], capture_output=True, timeout=30)


def test_resources_reach_the_slurm_job(sdaemon: Daemon) -> None:
    res = sdaemon.run("acjob", "--cpus", "2", "--memory", "64", "--time-limit", "120",
                      'echo "$SLURM_CPUS_PER_TASK $SLURM_MEM_PER_NODE"; '
                      'squeue -h -j "$SLURM_JOB_ID" -o %l')
    assert res.stdout.decode().split() == ["2", "64", "2:00"], res.stderr


def test_scheduler_refusal_is_a_clear_system_error(sdaemon: Daemon) -> None:
    result = sdaemon.run("acjob", "--json", "-t", "poll", "--", "true")
    assert result.returncode == 0
    bad = sdaemon.run("acjob", "true", env=dict(sdaemon.env))
    assert bad.returncode == 0
    with client_for(sdaemon) as client:
        job = client.submit("true", resources={"queue": "nosuchpartition"})
        info = job.wait(timeout=60)
        assert info.state is State.SYSTEM_ERROR
        assert info.reason is not None and "partition" in info.reason.lower()
        with pytest.raises(acjob.InvalidRequest):
            client.submit("true", resources={"extra_args": ["--output=/etc/passwd"]})


def _set_node_down() -> None:
    _scontrol("update", f"nodename={NODE}", "state=down", "reason=acjob-test")


def _resume_node() -> None:
    _scontrol("update", f"nodename={NODE}", "state=resume")


def test_node_failure_is_retried_per_policy(sdaemon: Daemon, short_tmp: Path) -> None:
    marker = short_tmp / "first"
    script = (f'if [ "$ACJOB_ATTEMPT" = 1 ]; then touch {marker}; sleep 300; fi; '
              'echo "attempt $ACJOB_ATTEMPT"')
    with client_for(sdaemon) as client:
        job = client.submit(script, retry={"max_attempts": 2})
        until(client, job.id, State.RUNNING)
        wait_for(marker.exists, what="the first attempt to start")
        try:
            _set_node_down()
            info = client.get(job.id)
            while info.attempt < 2 and not info.is_final:
                info = client.get(job.id, wait=30, since=info.seq)
        finally:
            _resume_node()
        info = job.wait(timeout=120)
        assert info.state is State.COMPLETE, info.reason
        assert info.attempt == 2
        assert info.data["attempts"][0]["failure"] == "node_fail"
        assert b"".join(job.stdout()) == b"attempt 2\n"


def test_node_failure_without_retries_is_system_error(sdaemon: Daemon, short_tmp: Path) -> None:
    marker = short_tmp / "started"
    with client_for(sdaemon) as client:
        job = client.submit(f"touch {marker}; sleep 300", retry={"max_attempts": 1})
        until(client, job.id, State.RUNNING)
        wait_for(marker.exists, what="the job to start")
        try:
            _set_node_down()
            info = job.wait(timeout=120)
        finally:
            _resume_node()
        assert info.state is State.SYSTEM_ERROR
        assert info.reason is not None and "NODE_FAIL" in info.reason
