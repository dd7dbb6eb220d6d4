"""Jobs survive the daemon: kill -9 while they run, restart, and everything arrives."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from acjob.model import State
from tests.conftest import Daemon, client_for, wait_for


def _gated(gate: Path, text: str) -> str:
    return f"echo {text}-start; while [ ! -e {gate} ]; do sleep 0.05; done; echo {text}-end"


def test_kill9_daemon_while_jobs_run(daemon: Daemon, short_tmp: Path) -> None:
    gate_a, gate_b = short_tmp / "gate-a", short_tmp / "gate-b"
    with client_for(daemon) as client:
        # a: ends while the daemon is down; b: ends after the restart.
        a = client.submit(_gated(gate_a, "a"))
        b = client.submit(_gated(gate_b, "b"), stdin=b"unused")
        for job in (a, b):
            info = client.get(job.id)
            while info.state is not State.RUNNING:
                info = client.get(job.id, wait=30, since=info.seq)
    daemon.kill9()
    gate_a.touch()
    exit_file = daemon.state_dir / "spool" / a.id / "1" / "exit"
    wait_for(exit_file.exists, what="job a to end while the daemon is down")
    daemon.start()
    gate_b.touch()
    with client_for(daemon) as client:
        info_a = client.wait(a.id, timeout=60)
        info_b = client.wait(b.id, timeout=60)
        assert info_a.state is State.COMPLETE and info_a.attempt == 1
        assert info_b.state is State.COMPLETE and info_b.attempt == 1
        assert b"".join(client.stream(a.id)) == b"a-start\na-end\n"
        assert b"".join(client.stream(b.id)) == b"b-start\nb-end\n"


def test_real_status_of_a_job_that_failed_while_the_daemon_was_down(
    daemon: Daemon, short_tmp: Path
) -> None:
    gate = short_tmp / "gate"
    with client_for(daemon) as client:
        job = client.submit(f"while [ ! -e {gate} ]; do sleep 0.05; done; exit 42")
        info = client.get(job.id)
        while info.state is not State.RUNNING:
            info = client.get(job.id, wait=30, since=info.seq)
    daemon.kill9()
    gate.touch()
    wait_for((daemon.state_dir / "spool" / job.id / "1" / "exit").exists, what="exit file")
    daemon.start()
    polled = daemon.run("acpoll", job.id)
    assert polled.returncode == 42


def test_pipe_client_rides_through_a_daemon_restart(daemon: Daemon, short_tmp: Path) -> None:
    gate = short_tmp / "gate"
    proc = subprocess.Popen(
        [sys.executable, "-c", "from acjob.cli.acjob import main; main()", "-n", _gated(gate, "x")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=daemon.env,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline() == b"x-start\n"
    daemon.kill9()
    daemon.start()
    gate.touch()
    rest, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert rest == b"x-end\n"


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_vanished_process_is_retried_per_policy(daemon: Daemon, short_tmp: Path,
                                                sig: signal.Signals) -> None:
    marker = short_tmp / "first-attempt-running"
    script = (f'if [ "$ACJOB_ATTEMPT" = 1 ]; then touch {marker}; sleep 300; fi; '
              'echo "attempt $ACJOB_ATTEMPT"')
    with client_for(daemon) as client:
        job = client.submit(script, retry={"max_attempts": 2})
        wait_for(marker.exists, what="first attempt to start")
        pid = int((daemon.state_dir / "spool" / job.id / "1" / "pid").read_text())
        os.killpg(pid, sig)  # the infrastructure loses, or stops, the job
        info = client.wait(job.id, timeout=60)
        assert info.state is State.COMPLETE, info.reason
        assert info.attempt == 2
        assert b"".join(client.stream(job.id)) == b"attempt 2\n"
        attempts = info.data["attempts"]
        assert attempts[0]["failure"] == "lost"


def test_vanished_process_without_retries_is_system_error(daemon: Daemon, short_tmp: Path) -> None:
    marker = short_tmp / "running"
    with client_for(daemon) as client:
        job = client.submit(f"touch {marker}; sleep 300", retry={"max_attempts": 1})
        wait_for(marker.exists, what="job to start")
        pid = int((daemon.state_dir / "spool" / job.id / "1" / "pid").read_text())
        os.killpg(pid, signal.SIGKILL)
        info = client.wait(job.id, timeout=60)
        assert info.state is State.SYSTEM_ERROR
        assert info.reason is not None and "vanished" in info.reason
    polled = daemon.run("acpoll", job.id)
    assert polled.returncode == 255
    assert b"SYSTEM_ERROR" in polled.stderr


def test_interrupted_submission_is_fenced_not_run_twice(daemon: Daemon, short_tmp: Path) -> None:
    """A crash between 'submitting' and the native id: the attempt is fenced or adopted."""
    witness = short_tmp / "witness"
    with client_for(daemon) as client:
        job = client.submit(f"echo ran >> {witness}; echo ok")
        assert client.wait(job.id, timeout=60).state is State.COMPLETE
    # Simulate the crash window for a second job: record intent in the store by hand,
    # with the daemon stopped, then let the restarted daemon heal it.
    daemon.stop()
    from acjob.model import JobSpec, new_job_id
    from acjob.store import Store

    store = Store(daemon.state_dir / "acjob.db")
    job_id = new_job_id()
    store.create_job(JobSpec(command=f"echo ran >> {witness}-2; echo healed"), "local",
                     job_id=job_id)
    store.start_attempt(job_id)  # intent recorded, backend never called
    store.close()
    daemon.start()
    with client_for(daemon) as client:
        info = client.wait(job_id, timeout=60)
        assert info.state is State.COMPLETE
        assert b"".join(client.stream(job_id)) == b"healed\n"
        assert [a["state"] for a in info.data["attempts"]] == ["abandoned", "ended"]
    assert (short_tmp / "witness-2").read_text() == "ran\n"


def test_cancel_running_job(daemon: Daemon, short_tmp: Path) -> None:
    marker = short_tmp / "running"
    with client_for(daemon) as client:
        job = client.submit(f"touch {marker}; sleep 300")
        wait_for(marker.exists, what="job to start")
        assert job.cancel().state in (State.CANCELING, State.CANCELED)
        info = job.wait(timeout=60)
        assert info.state is State.CANCELED
        pid = int((daemon.state_dir / "spool" / job.id / "1" / "pid").read_text())
        assert not Path(f"/proc/{pid}").exists() or b"Z" in Path(f"/proc/{pid}/stat").read_bytes()


def test_cancel_a_job_waiting_for_its_stdin(daemon: Daemon, short_tmp: Path) -> None:
    with client_for(daemon) as client:
        # Stdin never closed: the job runs, waiting for bytes that never come.
        created = client.create("cat; echo done", stdin_upload=True)
        client.cancel(created.id)
        assert client.wait(created.id, timeout=60).state is State.CANCELED
    result = daemon.run("acpoll", created.id)
    assert result.returncode == 143
    assert result.stdout == b""


def test_slot_limit_queues_the_rest(short_tmp: Path) -> None:
    from tests.conftest import tool_env

    state = short_tmp / "slots-state"
    config = short_tmp / "slots.toml"
    config.write_text(f'[server]\nstate_dir = "{state}"\n[backends.local]\nslots = 1\n')
    sock = short_tmp / "s.sock"
    d = Daemon(state_dir=state, url=f"unix:{sock}",
               env=tool_env(short_tmp, ACJOB_URL=f"unix:{sock}"), config=config)
    d.start()
    try:
        gate = short_tmp / "gate"
        with client_for(d) as client:
            first = client.submit(f"while [ ! -e {gate} ]; do sleep 0.05; done; echo 1")
            second = client.submit("echo 2")
            info = client.get(first.id)
            while info.state is not State.RUNNING:
                info = client.get(first.id, wait=30, since=info.seq)
            # The only slot is taken: the second job waits, and stays waiting.
            assert client.get(second.id, wait=1).state is State.QUEUED
            gate.touch()
            assert second.wait(timeout=60).state is State.COMPLETE
            assert first.status().state is State.COMPLETE
            started = second.status().data["attempts"][0]["started_at"]
            assert started is None or started >= first.status().data["ended_at"] - 1
    finally:
        d.stop()


def test_cancel_kills_what_ignores_sigterm(daemon: Daemon, short_tmp: Path) -> None:
    marker = short_tmp / "running"
    with client_for(daemon) as client:
        job = client.submit(f"trap '' TERM; touch {marker}; sleep 300; echo survived")
        wait_for(marker.exists, what="job to start")
        pgid = int((daemon.state_dir / "spool" / job.id / "1" / "pid").read_text())
        job.cancel()
        assert job.wait(timeout=60).state is State.CANCELED

        def group_gone() -> bool:
            try:
                os.killpg(pgid, 0)
            except ProcessLookupError:
                return True
            return False

        assert group_gone()  # CANCELED only once nothing of the job is left
        assert b"".join(job.stdout()) == b""


def test_idempotency_key_survives_a_restart(daemon: Daemon) -> None:
    retry = {"max_attempts": 2, "on": ["lost", "exit", "node_fail"]}
    with client_for(daemon) as client:
        first = client.create("echo once", retry=retry, idempotency_key="restart-key")
    daemon.stop()
    daemon.start()
    with client_for(daemon) as client:
        again = client.create("echo once", retry=retry, idempotency_key="restart-key")
    assert again.id == first.id


def test_pipe_stops_rather_than_mix_attempts(daemon: Daemon, short_tmp: Path) -> None:
    marker = short_tmp / "printed"
    script = (f'echo "line from attempt $ACJOB_ATTEMPT"; '
              f'if [ "$ACJOB_ATTEMPT" = 1 ]; then touch {marker}; sleep 300; fi')
    proc = subprocess.Popen(
        [sys.executable, "-c", "from acjob.cli.acjob import main; main()", "-n",
         "--max-attempts", "2", script],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=daemon.env)
    assert proc.stdout is not None
    assert proc.stdout.readline() == b"line from attempt 1\n"
    wait_for(marker.exists, what="the first attempt")
    with client_for(daemon) as client:
        job_id = client.list(limit=1)[0][0].id
        pid = int((daemon.state_dir / "spool" / job_id / "1" / "pid").read_text())
        os.killpg(pid, signal.SIGKILL)
        rest, err = proc.communicate(timeout=60)
        assert proc.returncode == 255
        assert rest == b""  # nothing of attempt 2 mixed in
        assert b"failed after its output began" in err
        info = client.wait(job_id, timeout=60)
        assert info.state is State.COMPLETE and info.attempt == 2
        assert b"".join(client.stream(job_id)) == b"line from attempt 2\n"


def test_an_attempt_adopted_after_a_crash_is_seen_to_end(daemon: Daemon, short_tmp: Path) -> None:
    """A crash after the wrapper started but before its id was recorded: the restarted
    daemon adopts the running attempt and notices its end (it is not the daemon's child,
    so nothing but the daemon's own look tells it)."""
    gate, started = short_tmp / "gate", short_tmp / "started"
    with client_for(daemon) as client:
        job = client.submit(f"touch {started}; while [ ! -e {gate} ]; do sleep 0.05; done; "
                            "echo adopted")
        wait_for(started.exists, what="the job to start")
    daemon.kill9()
    import sqlite3

    with sqlite3.connect(daemon.state_dir / "acjob.db") as db:  # back to the crash window
        db.execute("UPDATE attempts SET native_id = NULL, state = 'submitting' "
                   "WHERE job_id = ?", (job.id,))
        db.execute("UPDATE jobs SET state = 'INITIALIZING' WHERE id = ?", (job.id,))
    daemon.start()
    with client_for(daemon) as client:
        wait_for(lambda: client.get(job.id).data["attempts"][0]["native_id"] is not None,
                 what="the attempt to be adopted")
        gate.touch()
        info = client.wait(job.id, timeout=60)
        assert info.state is State.COMPLETE, info.reason
        assert b"".join(client.stream(job.id)) == b"adopted\n"
