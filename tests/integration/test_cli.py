"""Interruptions and the operator's tool, through the real CLI."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import acjob
from acjob.model import State
from tests.conftest import Daemon, client_for, wait_for


def _start_pipe(daemon: Daemon, *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-c", "from acjob.cli.acjob import main; main()", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=daemon.env,
    )


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP],
                         ids=["ctrl-c", "sigterm", "sighup"])
def test_an_interruption_detaches_and_acpoll_picks_up(daemon: Daemon, short_tmp: Path,
                                                      sig: signal.Signals) -> None:
    """Ctrl-C, a web service's SIGTERM and a closed terminal's SIGHUP alike: the handle
    is printed, the job goes on, acjob exits 128+N."""
    gate = short_tmp / "gate"
    proc = _start_pipe(daemon, "-n", f"echo one; while [ ! -e {gate} ]; do sleep 0.05; done; "
                                      "echo two")
    assert proc.stdout is not None
    assert proc.stdout.readline() == b"one\n"
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + sig, err
    line = [x for x in err.decode().splitlines() if x.strip().startswith("acpoll ")]
    assert line, err
    job_id = line[0].split()[1]
    with client_for(daemon) as client:
        assert client.get(job_id).state is State.RUNNING
    gate.touch()
    polled = daemon.run("acpoll", job_id)
    assert polled.returncode == 0
    assert polled.stdout == b"one\ntwo\n"


def test_sighup_after_the_terminal_closed_still_exits_129(daemon: Daemon) -> None:
    import pty

    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-c", "from acjob.cli.acjob import main; main()", "-n",
         "echo one; sleep 300"], stdout=subprocess.PIPE, stderr=slave, env=daemon.env)
    os.close(slave)
    assert proc.stdout is not None
    assert proc.stdout.readline() == b"one\n"
    os.close(master)  # the terminal is gone: writing to it fails with EIO
    proc.send_signal(signal.SIGHUP)
    assert proc.wait(timeout=60) == 129
    with client_for(daemon) as client:
        jobs, _ = client.list()
        assert jobs[0].state is State.RUNNING  # detached, not lost
        client.cancel(jobs[0].id)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_with_cancel_on_interrupt_cancels(daemon: Daemon, sig: signal.Signals) -> None:
    proc = _start_pipe(daemon, "-n", "--cancel-on-interrupt", "echo started; sleep 300")
    assert proc.stdout is not None
    assert proc.stdout.readline() == b"started\n"
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + sig
    job_id = err.decode().split("canceled job ")[1].split()[0]
    with client_for(daemon) as client:
        assert client.wait(job_id, timeout=60).state is State.CANCELED


def test_ctrl_c_while_sending_stdin_cancels_the_job(daemon: Daemon) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", "from acjob.cli.acjob import main; main()", "cat"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=daemon.env)
    assert proc.stdin is not None
    proc.stdin.write(b"some input that never ends\n")
    proc.stdin.flush()
    with client_for(daemon) as client:
        jobs = wait_for(lambda: client.list()[0], what="the job to be created")
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 130, err
        assert b"interrupted while sending stdin" in err
        # The job was already running on what had arrived: it is stopped, then canceled.
        assert client.wait(jobs[0].id, timeout=60).state is State.CANCELED


def test_a_time_limit_is_its_own_failure_with_exit_124(daemon: Daemon) -> None:
    result = daemon.run("acjob", "--time-limit", "1", "echo started; sleep 60")
    assert result.returncode == 124, result.stderr  # as timeout(1)
    assert result.stdout == b"started\n"
    assert b"timed out: the time limit of 1 s was reached\n" in result.stderr
    assert b"attempt 1 of" not in result.stderr  # a time-out is not retried
    handle = daemon.run("acjob", "-t", "poll", "--time-limit", "1", "sleep 60").stdout
    polled = daemon.run("acpoll", input=handle)
    assert polled.returncode == 124
    shown = json.loads(daemon.run("ac", "show", "--json", handle.decode().strip()).stdout)
    assert (shown["state"], shown["failure"], shown["exit_code"]) == (
        "EXECUTOR_ERROR", "timeout", None)
    assert "failure   timeout" in daemon.run("ac", "show", shown["id"]).stdout.decode()


def test_ac_jobs_show_logs_cancel(daemon: Daemon, short_tmp: Path) -> None:
    done = daemon.run("acjob", "-t", "poll", "echo out; echo err >&2").stdout.decode().strip()
    with client_for(daemon) as client:
        client.wait(done, timeout=60)
    listing = json.loads(daemon.run("ac", "jobs", "--json").stdout)
    assert [j["id"] for j in listing] == [done]
    assert done in daemon.run("ac", "jobs").stdout.decode()
    shown = json.loads(daemon.run("ac", "show", done, "--json").stdout)
    assert shown["state"] == "COMPLETE" and shown["attempts"][0]["exit_code"] == 0
    assert b"COMPLETE" in daemon.run("ac", "show", done).stdout
    assert daemon.run("ac", "logs", done).stdout == b"out\n"
    assert daemon.run("ac", "logs", "--stderr", done).stdout == b"err\n"
    running = daemon.run("acjob", "-t", "poll", "sleep 300").stdout.decode().strip()
    cancel = daemon.run("ac", "cancel", running)
    assert cancel.returncode == 0 and running in cancel.stdout.decode()
    with client_for(daemon) as client:
        assert client.wait(running, timeout=60).state is State.CANCELED


def test_a_closed_reader_is_sigpipe_not_an_error(daemon: Daemon) -> None:
    daemon.run("acjob", "true")
    proc = subprocess.Popen(
        [sys.executable, "-c", "from acjob.cli.ac import main; main()", "jobs", "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=daemon.env)
    assert proc.stdout is not None
    proc.stdout.close()
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 141, err
    assert b"Traceback" not in err


def test_clear_errors_not_tracebacks(daemon: Daemon) -> None:
    unknown = daemon.run("ac", "show", "a" * 26)
    assert unknown.returncode == 1
    assert unknown.stderr.startswith(b"Error: no job") and b"Traceback" not in unknown.stderr
    bad = daemon.run("acpoll", "../../etc/passwd")
    assert bad.returncode == 255 and b"is not a job id" in bad.stderr
    assert b"Traceback" not in bad.stderr
    no_backend = daemon.run("acjob", "--backend", "nope", "true")
    assert no_backend.returncode == 2 and b"Try:" in no_backend.stderr  # a usage error
    usage = daemon.run("acjob")
    assert usage.returncode == 2 and b"usage: acjob" in usage.stderr.lower()
    assert b"Error: no command given" in usage.stderr
    nothing = daemon.run("acpoll")
    assert nothing.returncode == 2 and b"no job handle" in nothing.stderr


def test_unreachable_daemon_is_a_clear_error(short_tmp: Path) -> None:
    from tests.conftest import tool_env

    env = tool_env(short_tmp, ACJOB_URL=f"unix:{short_tmp}/nobody.sock")
    result = subprocess.run(
        [sys.executable, "-c", "from acjob.cli.ac import main; main()", "shutdown"],
        env=env, capture_output=True, timeout=60)
    assert result.returncode == 1
    assert result.stderr.decode().splitlines()[0] == (
        f"Error: cannot reach the acjob daemon at unix:{short_tmp}/nobody.sock: no such socket")
    assert b"Errno" not in result.stderr
    assert result.stderr.decode().splitlines()[1].startswith(
        "Try: if no daemon runs, there is nothing to stop")


def test_a_wait_for_the_daemon_is_said_at_once_with_where_and_how_long(
        short_tmp: Path) -> None:
    from tests.conftest import free_port, tool_env

    url = f"http://127.0.0.1:{free_port()}"
    env = tool_env(short_tmp, ACJOB_URL=url, ACJOB_TOKEN="t", ACJOB_RETRY_FOR="600")
    proc = subprocess.Popen([sys.executable, "-c", "from acjob.cli.acjob import main; main()",
                             "-n", "true"], env=env, stderr=subprocess.PIPE)
    assert proc.stderr is not None
    try:
        first = proc.stderr.readline().decode()
        assert proc.poll() is None  # said while it waits, not after
        assert first == (f"acjob: waiting up to 600 s for the acjob daemon at {url} "
                         "(connection refused); ACJOB_RETRY_FOR sets the wait\n")
    finally:
        proc.kill()
        proc.communicate()
    env["ACJOB_RETRY_FOR"] = "0.5"
    result = subprocess.run([sys.executable, "-c", "from acjob.cli.acpoll import main; main()",
                             "a" * 26], env=env, capture_output=True, timeout=60)
    assert result.returncode == 255
    lines = result.stderr.decode().splitlines()
    assert lines[0].startswith(f"acjob: waiting up to 0.5 s for the acjob daemon at {url}")
    assert lines[1] == (f"Error: cannot reach the acjob daemon at {url}: connection refused "
                        "(tried for 0.5 s)")
    assert lines[2].startswith("Try: check that it runs")


def test_200_mb_binary_roundtrip(daemon: Daemon, short_tmp: Path) -> None:
    source = short_tmp / "in.bin"
    with source.open("wb") as f:
        for _ in range(200):
            f.write(os.urandom(1 << 20))
    expected = hashlib.sha256(source.read_bytes()).hexdigest()
    with source.open("rb") as stdin:
        proc = subprocess.run(
            [sys.executable, "-c", "from acjob.cli.acjob import main; main()", "cat"],
            stdin=stdin, capture_output=True, env=daemon.env, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert len(proc.stdout) == 200 << 20
    assert hashlib.sha256(proc.stdout).hexdigest() == expected


def test_python_client_sync_and_async(daemon: Daemon) -> None:
    import asyncio

    with acjob.Client(daemon.url) as client:
        job = client.submit(["sort", "-r"], stdin=b"a\nc\nb\n", labels={"who": "test"})
        info = job.wait()
        assert info.state is State.COMPLETE and info.exit_code == 0
        assert b"".join(job.stdout()) == b"c\nb\na\n"
        failing = client.submit("echo oops >&2; exit 4")
        assert failing.wait().state is State.EXECUTOR_ERROR
        assert failing.status().exit_code == 4
        assert b"".join(failing.stderr()) == b"oops\n"

    async def main() -> bytes:
        async with acjob.AsyncClient(daemon.url) as aclient:
            handle = await aclient.submit("cat", stdin=b"async\n")
            assert (await handle.wait()).state is State.COMPLETE
            return b"".join([c async for c in handle.stdout()])

    assert asyncio.run(main()) == b"async\n"
