"""The Slurm backend against a real single-node Slurm (scripts/slurm-up brings it up).

Skipped, with the reason, where no Slurm answers; in CI (CI=true) a missing Slurm
fails the run instead.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

import acjob
from acjob.model import State
from tests.conftest import Daemon, client_for, tool_env, wait_for

NODE = socket.gethostname().split(".")[0]


def _slurm_problem() -> str | None:
    if not shutil.which("sbatch"):
        return "Slurm is not installed (run scripts/slurm-up as root on Debian)"
    try:
        out = subprocess.run(["sinfo", "-h", "-N", "-o", "%T"], capture_output=True, text=True,
                             timeout=20)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"sinfo failed: {exc}"
    if out.returncode != 0:
        return f"Slurm does not answer: {out.stderr.strip()}"
    return None


@pytest.fixture(scope="module")
def slurm() -> None:
    problem = _slurm_problem()
    if problem:
        if os.environ.get("CI") == "true":
            pytest.fail(f"Slurm must run in CI: {problem}")
        pytest.skip(problem)


@pytest.fixture
def sdaemon(slurm: None, short_tmp: Path) -> Iterator[Daemon]:
    state = short_tmp / "state"
    config = short_tmp / "slurm.toml"
    config.write_text(
        f'[server]\nstate_dir = "{state}"\nbackend = "slurm"\n'
        "[backends.slurm]\npoll_interval = 0.2\nmax_poll_interval = 2\nlost_grace = 10\n"
        "command_timeout = 10\n")
    sock = short_tmp / "d.sock"
    d = Daemon(state_dir=state, url=f"unix:{sock}",
               env=tool_env(short_tmp, ACJOB_URL=f"unix:{sock}"), config=config)
    d.start()
    try:
        yield d
    finally:
        _cancel_leftovers(d)
        d.stop()


def _cancel_leftovers(d: Daemon) -> None:
    if d.proc is None or d.proc.poll() is not None:
        return
    with client_for(d) as client:
        active = [s.value for s in State if not s.is_final]
        for info in client.list(state=active, limit=1000)[0]:
            client.cancel(info.id)


def _until(client: acjob.Client, job_id: str, *states: State) -> acjob.JobInfo:
    info = client.get(job_id)
    while info.state not in states:
        assert not info.is_final, (info.state, info.reason)
        info = client.get(job_id, wait=30, since=info.seq)
    return info


def _scontrol(*args: str) -> None:
    subprocess.run(["scontrol", *args], capture_output=True, timeout=30)


def test_pipe_through_slurm(sdaemon: Daemon) -> None:
    data = os.urandom(1 << 20)
    result = sdaemon.run("acjob", "cat", input=data)
    assert result.returncode == 0, result.stderr
    assert result.stdout == data
    failed = sdaemon.run("acjob", "echo out; echo err >&2; exit 3")
    assert (failed.returncode, failed.stdout, failed.stderr) == (3, b"out\n", b"err\n")
    res = sdaemon.run("acjob", "--cpus", "2", "--memory", "64", "--time-limit", "120",
                      'echo "$SLURM_CPUS_PER_TASK $SLURM_MEM_PER_NODE"; '
                      'squeue -h -j "$SLURM_JOB_ID" -o %l')
    assert res.stdout.decode().split() == ["2", "64", "2:00"], res.stderr
    assert sdaemon.run("acjob", "--", "printf", "%s|", "a b", "$X").stdout == b"a b|$X|"


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


def test_kill9_daemon_with_pending_and_running_jobs(sdaemon: Daemon, short_tmp: Path) -> None:
    gate = short_tmp / "gate"
    cpus = os.cpu_count() or 2
    count = cpus + 2  # some run, some wait for a free CPU
    with client_for(sdaemon) as client:
        jobs = [client.submit(f"echo ran >> {short_tmp}/witness-{i}; "
                              f"while [ ! -e {gate} ]; do sleep 0.1; done; echo done-{i}",
                              resources={"cpus": 1}) for i in range(count)]
        running = 0
        for job in jobs[:cpus]:
            _until(client, job.id, State.RUNNING)
            running += 1
        assert running == cpus
        pending = [client.get(j.id) for j in jobs[cpus:]]
        assert all(p.state is State.INITIALIZING for p in pending)
    sdaemon.kill9()
    sdaemon.start()
    gate.touch()
    with client_for(sdaemon) as client:
        for i, job in enumerate(jobs):
            info = client.wait(job.id, timeout=120)
            assert info.state is State.COMPLETE, info.reason
            assert info.attempt == 1
            assert b"".join(client.stream(job.id)) == f"done-{i}\n".encode()
    for i in range(count):
        assert (short_tmp / f"witness-{i}").read_text() == "ran\n"


def test_crash_between_sbatch_and_recording_is_healed_by_tag(
    sdaemon: Daemon, short_tmp: Path
) -> None:
    """The daemon dies after sbatch but before the native id is committed."""
    import asyncio

    from acjob.backends.slurm import SlurmBackend
    from acjob.model import JobSpec, new_job_id
    from acjob.spool import Spool
    from acjob.store import Store
    from acjob.wrapper import render_wrapper

    sdaemon.stop()
    store = Store(sdaemon.state_dir / "acjob.db")
    spool = Spool(sdaemon.state_dir / "spool")
    job_id = new_job_id()
    job, _ = store.create_job(
        JobSpec(command=f"echo ran >> {short_tmp}/witness; "
                f"while [ ! -e {short_tmp}/gate ]; do sleep 0.1; done; echo healed"),
        "slurm", job_id=job_id)
    attempt = store.start_attempt(job_id)  # intent committed
    spool.create_job(job_id)
    wrapper = spool.create_attempt(job_id, attempt.number, render_wrapper(
        job_id=job_id, attempt=1, attempt_dir=spool.attempt_dir(job_id, 1),
        workdir=spool.work_dir(job_id), command=job.spec.command, stdin=None, env={}))
    native = asyncio.run(SlurmBackend(spool, {}).submit(job, 1, wrapper))  # sbatch ran...
    store.close()  # ...and the daemon "crashed" before recording it
    sdaemon.start()
    with client_for(sdaemon) as client:
        info = _until(client, job_id, State.RUNNING)
        assert [a["native_id"] for a in info.data["attempts"]] == [native]  # adopted
        (short_tmp / "gate").touch()
        info = client.wait(job_id, timeout=120)
        assert info.state is State.COMPLETE, info.reason
        assert len(info.data["attempts"]) == 1
        assert b"".join(client.stream(job_id)) == b"healed\n"
    assert (short_tmp / "witness").read_text() == "ran\n"


def test_controller_outage_fails_nothing(sdaemon: Daemon, short_tmp: Path) -> None:
    gate_a, gate_b = short_tmp / "a", short_tmp / "b"
    with client_for(sdaemon) as client:
        a = client.submit(f"while [ ! -e {gate_a} ]; do sleep 0.1; done; echo a")
        b = client.submit(f"while [ ! -e {gate_b} ]; do sleep 0.1; done; echo b")
        _until(client, a.id, State.RUNNING)
        _until(client, b.id, State.RUNNING)
        pid = int(Path("/run/slurmctld.pid").read_text())
        os.kill(pid, signal.SIGTERM)
        try:
            wait_for(lambda: not Path(f"/proc/{pid}").exists(), what="slurmctld to stop")
            # Wait until the daemon has seen the controller fail, several polls in a row.
            wait_for(lambda: sdaemon.log.read_text().count("cannot poll the slurm backend") >= 3,
                     timeout=60, what="polls against the stopped controller")
            assert client.get(a.id).state is State.RUNNING
            gate_a.touch()  # a ends while the controller is down: its exit file says so
            assert a.wait(timeout=60).state is State.COMPLETE
            assert client.get(b.id).state is State.RUNNING
        finally:
            subprocess.run(["slurmctld"], timeout=60)
        wait_for(lambda: subprocess.run(["squeue", "-h"], capture_output=True).returncode == 0,
                 timeout=60, what="slurmctld to answer again")
        gate_b.touch()
        info = b.wait(timeout=120)
        assert info.state is State.COMPLETE, info.reason
        assert b"".join(b.stdout()) == b"b\n"
        assert b"".join(a.stdout()) == b"a\n"


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
        _until(client, job.id, State.RUNNING)
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
        _until(client, job.id, State.RUNNING)
        wait_for(marker.exists, what="the job to start")
        try:
            _set_node_down()
            info = job.wait(timeout=120)
        finally:
            _resume_node()
        assert info.state is State.SYSTEM_ERROR
        assert info.reason is not None and "NODE_FAIL" in info.reason


def test_external_scancel_and_acjob_cancel(sdaemon: Daemon) -> None:
    with client_for(sdaemon) as client:
        outside = client.submit("sleep 300")
        info = _until(client, outside.id, State.RUNNING)
        native = info.data["attempts"][0]["native_id"]
        subprocess.run(["scancel", native], check=True, timeout=30)
        info = outside.wait(timeout=60)
        assert info.state is State.CANCELED
        inside = client.submit("sleep 300")
        info = _until(client, inside.id, State.RUNNING)
        native = info.data["attempts"][0]["native_id"]
        inside.cancel()
        assert inside.wait(timeout=60).state is State.CANCELED
        state = subprocess.run(["squeue", "-h", "-t", "all", "-j", native, "-o", "%T"],
                               capture_output=True, text=True, timeout=30).stdout.strip()
        assert state in ("CANCELLED", "")


def test_bulk_submission_runs_as_a_job_array(sdaemon: Daemon, short_tmp: Path) -> None:
    with client_for(sdaemon) as client:
        jobs = client.submit_many(
            [{"command": f"echo task-{i} >> {short_tmp}/w-{i}; echo task-{i}",
              "resources": {"cpus": 1}} for i in range(6)])
        infos = [client.wait(j.id, timeout=120) for j in jobs]
        assert [i.state for i in infos] == [State.COMPLETE] * 6
        natives = [i.data["attempts"][0]["native_id"] for i in infos]
        bases = {n.split("_")[0] for n in natives}
        assert len(bases) == 1 and all("_" in n for n in natives)  # one array, six tasks
        for i, job in enumerate(jobs):
            assert b"".join(client.stream(job.id)) == f"task-{i}\n".encode()
            assert (short_tmp / f"w-{i}").read_text() == f"task-{i}\n"
