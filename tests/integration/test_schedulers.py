"""The batch-scheduler contract, run against each real scheduler (Slurm, Grid Engine).

The same tests for both: what differs between schedulers is described once in
tests/integration/schedulers.py.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import acjob
from acjob.backends.base import load_backend
from acjob.model import JobSpec, State, new_job_id
from acjob.spool import Spool
from acjob.store import Store
from acjob.wrapper import render_wrapper
from tests.conftest import Daemon, client_for, wait_for
from tests.integration.schedulers import (
    SCHEDULERS,
    Scheduler,
    native_id_of,
    scheduler_daemon,
    until,
)


@pytest.fixture(params=SCHEDULERS, ids=lambda s: s.name)
def sched(request: pytest.FixtureRequest) -> Scheduler:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
def bdaemon(sched: Scheduler, short_tmp: Path) -> Iterator[Daemon]:
    yield from scheduler_daemon(sched, short_tmp)


def test_pipe_stdin_stdout_exit_status(bdaemon: Daemon) -> None:
    data = os.urandom(1 << 20)
    result = bdaemon.run("acjob", "cat", input=data)
    assert result.returncode == 0, result.stderr
    assert result.stdout == data
    failed = bdaemon.run("acjob", "echo out; echo err >&2; exit 3")
    assert (failed.returncode, failed.stdout, failed.stderr) == (3, b"out\n", b"err\n")
    assert bdaemon.run("acjob", "--", "printf", "%s|", "a b", "$X").stdout == b"a b|$X|"


def test_stdin_reaches_a_scheduled_job_as_it_arrives(bdaemon: Daemon) -> None:
    """Live stdin through the shared spool: the job echoes its first line before the
    second is sent."""
    proc = subprocess.Popen(
        [sys.executable, "-c", "from acjob.cli.acjob import main; main()", "cat"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env=bdaemon.env)
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    try:
        proc.stdin.write(b"first\n")
        proc.stdin.flush()
        assert proc.stdout.readline() == b"first\n"
        proc.stdin.write(b"second\n")
        proc.stdin.close()
        rest, err = proc.stdout.read(), proc.stderr.read()
        assert proc.wait(timeout=120) == 0, err
    finally:
        proc.kill()
    assert rest == b"second\n"


def test_kill9_daemon_with_pending_and_running_jobs(bdaemon: Daemon, short_tmp: Path) -> None:
    gate = short_tmp / "gate"
    cpus = os.cpu_count() or 2
    count = cpus + 2  # some run, some wait for a free CPU
    with client_for(bdaemon) as client:
        jobs = [client.submit(f"echo ran >> {short_tmp}/witness-{i}; "
                              f"while [ ! -e {gate} ]; do sleep 0.1; done; echo done-{i}")
                for i in range(count)]
        for job in jobs[:cpus]:
            until(client, job.id, State.RUNNING)
        pending = [client.get(j.id) for j in jobs[cpus:]]
        assert all(p.state is State.INITIALIZING for p in pending)
    bdaemon.kill9()
    bdaemon.start()
    gate.touch()
    with client_for(bdaemon) as client:
        for i, job in enumerate(jobs):
            info = client.wait(job.id, timeout=120)
            assert info.state is State.COMPLETE, info.reason
            assert info.attempt == 1
            assert b"".join(client.stream(job.id)) == f"done-{i}\n".encode()
    for i in range(count):
        assert (short_tmp / f"witness-{i}").read_text() == "ran\n"


def test_crash_between_submit_and_recording_is_healed_by_tag(
    bdaemon: Daemon, sched: Scheduler, short_tmp: Path
) -> None:
    """The daemon dies after the submit command ran but before its id was committed."""
    bdaemon.stop()
    store = Store(bdaemon.state_dir / "acjob.db")
    spool = Spool(bdaemon.state_dir / "spool")
    job_id = new_job_id()
    job, _ = store.create_job(
        JobSpec(command=f"echo ran >> {short_tmp}/witness; "
                f"while [ ! -e {short_tmp}/gate ]; do sleep 0.1; done; echo healed"),
        sched.name, job_id=job_id)
    attempt = store.start_attempt(job_id)  # intent committed
    spool.create_job(job_id)
    wrapper = spool.create_attempt(job_id, attempt.number, render_wrapper(
        job_id=job_id, attempt=1, attempt_dir=spool.attempt_dir(job_id, 1),
        workdir=spool.work_dir(job_id), command=job.spec.command, stdin=None, env={}))
    options = {"parallel_environment": "smp"} if sched.name == "gridengine" else {}
    backend = load_backend(sched.name, spool, options)
    native = asyncio.run(backend.submit(job, 1, wrapper))  # submitted...
    store.close()  # ...and the daemon "crashed" before recording it
    bdaemon.start()
    with client_for(bdaemon) as client:
        info = until(client, job_id, State.RUNNING)
        assert [a["native_id"] for a in info.data["attempts"]] == [native]  # adopted
        (short_tmp / "gate").touch()
        info = client.wait(job_id, timeout=120)
        assert info.state is State.COMPLETE, info.reason
        assert len(info.data["attempts"]) == 1
        assert b"".join(client.stream(job_id)) == b"healed\n"
    assert (short_tmp / "witness").read_text() == "ran\n"


def test_controller_outage_fails_nothing(bdaemon: Daemon, sched: Scheduler,
                                         short_tmp: Path) -> None:
    gate_a, gate_b = short_tmp / "a", short_tmp / "b"
    with client_for(bdaemon) as client:
        a = client.submit(f"while [ ! -e {gate_a} ]; do sleep 0.1; done; echo a")
        b = client.submit(f"while [ ! -e {gate_b} ]; do sleep 0.1; done; echo b")
        until(client, a.id, State.RUNNING)
        until(client, b.id, State.RUNNING)
        sched.stop_controller()
        try:
            # Wait until the daemon has seen the controller fail, several polls in a row.
            wait_for(lambda: bdaemon.log.read_text().count(
                f"cannot poll the {sched.name} backend") >= 3,
                timeout=60, what="polls against the stopped controller")
            assert client.get(a.id).state is State.RUNNING
            gate_a.touch()  # a ends while the controller is down: its exit file says so
            assert a.wait(timeout=60).state is State.COMPLETE
            assert client.get(b.id).state is State.RUNNING
        finally:
            sched.start_controller()
        gate_b.touch()
        info = b.wait(timeout=120)
        assert info.state is State.COMPLETE, info.reason
        assert b"".join(b.stdout()) == b"b\n"
        assert b"".join(a.stdout()) == b"a\n"


def test_external_cancel_and_acjob_cancel(bdaemon: Daemon, sched: Scheduler,
                                          short_tmp: Path) -> None:
    with client_for(bdaemon) as client:
        started = short_tmp / "started"
        outside = client.submit(f"touch {started}; sleep 300")
        info = until(client, outside.id, State.RUNNING)
        wait_for(started.exists, what="the job to start")
        native = info.data["attempts"][0]["native_id"]
        subprocess.run(sched.cancel(native), check=True, timeout=30, capture_output=True)
        info = outside.wait(timeout=60)
        assert info.state is State.CANCELED, info.reason
        assert info.attempt == 1
        inside = client.submit("sleep 300")
        until(client, inside.id, State.RUNNING)
        inside.cancel()
        assert inside.wait(timeout=60).state is State.CANCELED


def test_external_cancel_of_a_pending_job(bdaemon: Daemon, sched: Scheduler,
                                          short_tmp: Path) -> None:
    gate = short_tmp / "gate"
    cpus = os.cpu_count() or 2
    with client_for(bdaemon) as client:
        blockers = [client.submit(f"while [ ! -e {gate} ]; do sleep 0.1; done")
                    for _ in range(cpus)]
        for job in blockers:
            until(client, job.id, State.RUNNING)
        waiting = client.submit(f"touch {short_tmp}/ran")
        until(client, waiting.id, State.INITIALIZING)
        native = native_id_of(client, waiting.id)
        subprocess.run(sched.cancel(native), check=True, timeout=30, capture_output=True)
        info = waiting.wait(timeout=60)
        gate.touch()
        assert info.state is State.CANCELED, info.reason
        for job in blockers:
            assert job.wait(timeout=60).state is State.COMPLETE
    assert not (short_tmp / "ran").exists()


def test_bulk_submission_runs_as_a_job_array(bdaemon: Daemon, sched: Scheduler,
                                             short_tmp: Path) -> None:
    with client_for(bdaemon) as client:
        jobs = client.submit_many(
            [{"command": f"echo task-{i} >> {short_tmp}/w-{i}; echo task-{i}",
              "resources": {"cpus": 1}} for i in range(6)])
        infos = [client.wait(j.id, timeout=120) for j in jobs]
        assert [i.state for i in infos] == [State.COMPLETE] * 6, [i.reason for i in infos]
        natives = [i.data["attempts"][0]["native_id"] for i in infos]
        assert all(sched.task_separator in n for n in natives), natives
        assert len({n.split(sched.task_separator)[0] for n in natives}) == 1  # one array
        for i, job in enumerate(jobs):
            assert b"".join(client.stream(job.id)) == f"task-{i}\n".encode()
            assert (short_tmp / f"w-{i}").read_text() == f"task-{i}\n"


def test_raw_options_are_checked_by_the_scheduler_dialect(bdaemon: Daemon,
                                                          sched: Scheduler) -> None:
    reserved = {"slurm": ["--output=/etc/passwd"], "gridengine": ["-o", "/etc/passwd"]}
    with client_for(bdaemon) as client, pytest.raises(acjob.InvalidRequest):
        client.submit("true", resources={"extra_args": reserved[sched.name]})


def test_a_job_refused_in_unknown_words_waits_alone_then_ends(sched: Scheduler,
                                                              short_tmp: Path) -> None:
    """One job's trouble costs only that job: refused by the scheduler in words acjob
    does not know, it is tried again alone while the jobs behind it run, and after
    ``refusal_tries`` it ends SYSTEM_ERROR with the scheduler's words."""
    for d in scheduler_daemon(sched, short_tmp, "refusal_tries = 2\n"):
        with client_for(d) as client:
            refused = client.submit(
                "echo never", resources={"extra_args": list(sched.refused_args)})
            behind = [client.submit(f"echo {n}") for n in range(3)]
            for job in behind:
                info = client.wait(job.id, timeout=120)
                assert info.state is State.COMPLETE, info.reason
                assert b"".join(client.stream(job.id)) == f"{behind.index(job)}\n".encode()
            info = client.wait(refused.id, timeout=120)
            assert info.state is State.SYSTEM_ERROR
            assert "refused" in (info.reason or "") and "2 times" in (info.reason or "")
            word = "deadline" if sched.name == "slurm" else "priority"
            assert word in (info.reason or "")


def test_a_compute_host_that_dies_and_comes_back(sched: Scheduler, bdaemon: Daemon,
                                                  short_tmp: Path) -> None:
    """The execution daemon and the job's processes die with their host, which comes
    back later: the attempt is retried per the policy, after the first one ended, never
    beside it; nothing stays RUNNING."""
    marker = short_tmp / "first"
    script = (f'if [ "$ACJOB_ATTEMPT" = 1 ]; then touch {marker}; sleep 300; fi; '
              'echo "attempt $ACJOB_ATTEMPT"')
    with client_for(bdaemon) as client:
        job = client.submit(script, retry={"max_attempts": 2})
        until(client, job.id, State.RUNNING)
        wait_for(marker.exists, what="the first attempt to start")
        wrapper = int((bdaemon.state_dir / "spool" / job.id / "1" / "pid").read_text())
        try:
            sched.kill_host(wrapper)
            if sched.declares_dead_hosts:  # the host is still dead when its jobs fail
                info = client.get(job.id)
                while info.attempt < 2 and not info.is_final:
                    info = client.get(job.id, wait=60, since=info.seq)
        finally:
            sched.start_execd()
        info = client.wait(job.id, timeout=300)
        assert info.state is State.COMPLETE, info.reason
        assert info.attempt == 2
        first, second = info.data["attempts"]
        assert first["failure"] == "node_fail", first
        # The retry came once the first had ended (its processes died with the host).
        assert first["state"] == "ended" and first["ended_at"] is not None
        assert second["state"] == "ended" and second["exit_code"] == 0
        assert b"".join(client.stream(job.id)) == b"attempt 2\n"
