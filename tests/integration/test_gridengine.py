"""What only Grid Engine has, against a real single-node Grid Engine
(scripts/gridengine-up brings it up): its resource options, the error state Eqw,
its run-time limit. The contract every scheduler keeps is in test_schedulers.py.

Skipped, with the reason, where no Grid Engine answers; in CI (CI=true) a missing
Grid Engine fails the run instead.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from acjob.backends.gridengine import AccountingRecord, parse_qacct
from acjob.model import State
from tests.conftest import Daemon, client_for, wait_for
from tests.integration.schedulers import GRIDENGINE, native_id_of, scheduler_daemon, until


@pytest.fixture
def gdaemon(short_tmp: Path) -> Iterator[Daemon]:
    yield from scheduler_daemon(GRIDENGINE, short_tmp)


def _qstat_j(native: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["qstat", "-j", native], capture_output=True, text=True, timeout=30)


def test_resources_reach_the_grid_engine_job(gdaemon: Daemon) -> None:
    res = gdaemon.run("acjob", "--cpus", "2", "--memory", "64", "--time-limit", "120",
                      'echo "$NSLOTS $PE"; qstat -j "$JOB_ID" | grep -o "h_rt=[0-9]*"')
    assert res.returncode == 0, res.stderr
    assert res.stdout.decode().split() == ["2", "smp", "h_rt=120"], res.stderr


def test_error_state_ends_the_attempt_with_its_reason(gdaemon: Daemon) -> None:
    """A job Grid Engine cannot start (its output file cannot be opened) sits in Eqw:
    acjob deletes it and ends the attempt with Grid Engine's reason."""
    with client_for(gdaemon) as client:
        job = client.submit("echo never", retry={"max_attempts": 1},
                            resources={"extra_args": ["-h"]})  # held until we break it
        until(client, job.id, State.INITIALIZING)
        native_id = native_id_of(client, job.id)
        subprocess.run(["qalter", "-o", "/nonexistent/dir/out", native_id], check=True,
                       capture_output=True, timeout=30)
        subprocess.run(["qrls", native_id], check=True, capture_output=True, timeout=30)
        info = job.wait(timeout=120)
        assert info.state is State.SYSTEM_ERROR
        assert info.reason is not None and "can't open output file" in info.reason
        assert info.data["attempts"][0]["failure"] == "boot_fail"
        assert b"".join(job.stdout()) == b""
    wait_for(lambda: _qstat_j(native_id).returncode != 0, what="the Eqw job to be deleted")


def test_run_time_limit_is_a_timeout(gdaemon: Daemon) -> None:
    with client_for(gdaemon) as client:
        job = client.submit("echo started; sleep 300", resources={"time_limit_s": 2})
        info = job.wait(timeout=120)
        assert info.state is State.EXECUTOR_ERROR, info.reason
        assert info.failure == "timeout" and info.data["attempts"][0]["failure"] == "timeout"
        assert info.reason is not None and "limit" in info.reason
        assert b"".join(job.stdout()) == b"started\n"


def _listed_state(native: str) -> str | None:
    """The job's state letters in qstat, None once Grid Engine no longer lists it."""
    out = subprocess.run(["qstat", "-u", "*"], capture_output=True, text=True,
                         timeout=30).stdout
    for line in out.splitlines():
        words = line.split()
        if words and words[0] == native:
            return words[4]
    return None


def test_a_suspended_job_survives_and_finishes(gdaemon: Daemon, short_tmp: Path) -> None:
    """With -notify, Grid Engine sends SIGUSR1 to the whole job before it suspends it;
    neither the wrapper nor the command may die of it."""
    mark = short_tmp / "started"
    with client_for(gdaemon) as client:
        job = client.submit(f"touch {mark}; sleep 4; echo done", retry={"max_attempts": 1})
        native = native_id_of(client, job.id)
        wait_for(mark.exists, timeout=60, what="the command to start")
        subprocess.run(["qmod", "-sj", native], check=True, capture_output=True, timeout=30)
        wait_for(lambda: "s" in (_listed_state(native) or ""), what="the suspension")
        subprocess.run(["qmod", "-usj", native], check=True, capture_output=True,
                       timeout=30)
        info = job.wait(timeout=120)
        assert (info.state, info.exit_code) == (State.COMPLETE, 0), info.reason
        assert len(info.data["attempts"]) == 1
        assert b"".join(job.stdout()) == b"done\n"


@pytest.mark.parametrize("code", [99, 100])
def test_exit_statuses_grid_engine_reserves_are_the_jobs_own(gdaemon: Daemon,
                                                              code: int) -> None:
    """A job script exiting 99 is rerun by Grid Engine, 100 held in error state; the
    wrapper keeps them from the scheduler, and the job ends with its own status."""
    with client_for(gdaemon) as client:
        job = client.submit(f"exit {code}", retry={"max_attempts": 1})
        native = native_id_of(client, job.id)
        info = job.wait(timeout=120)
        assert (info.state, info.exit_code) == (State.EXECUTOR_ERROR, code), info.reason
    wait_for(lambda: _listed_state(native) is None, what="Grid Engine to forget the job")

    def accounted() -> list[AccountingRecord]:
        out = subprocess.run(["qacct", "-j", native], capture_output=True, text=True,
                             timeout=30).stdout
        return parse_qacct(out)

    # It ran once (99 would have made Grid Engine run it again), and Grid Engine heard 1.
    records = wait_for(accounted, what="the accounting record")
    assert [r.exit_status for r in records] == [1]
