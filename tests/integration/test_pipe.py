"""acjob -t pipe and -t poll against a real daemon subprocess, through the real CLI."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import acjob
from tests.conftest import Daemon, client_for


def test_sort_through_a_pipe(daemon: Daemon) -> None:
    result = daemon.run("acjob", "-t", "pipe", "sort", input=b"b\na\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"a\nb\n"


def test_exit_status_is_the_jobs(daemon: Daemon) -> None:
    assert daemon.run("acjob", "-t", "pipe", "exit 3").returncode == 3
    assert daemon.run("acjob", "true").returncode == 0


def test_signal_gives_128_plus_n(daemon: Daemon) -> None:
    result = daemon.run("acjob", "kill -TERM $$")
    assert result.returncode == 128 + signal.SIGTERM


def test_stderr_goes_to_stderr(daemon: Daemon) -> None:
    result = daemon.run("acjob", "echo out; echo err >&2")
    assert result.stdout == b"out\n"
    assert result.stderr == b"err\n"


def test_argv_after_dashes_never_sees_a_shell(daemon: Daemon) -> None:
    words = ["a b", "$HOME", ";ls", "`id`", "*", "'q'"]
    result = daemon.run("acjob", "--", "printf", "%s\\n", *words)
    assert result.returncode == 0, result.stderr
    assert result.stdout.decode().splitlines() == words


def test_several_words_without_dashes_are_one_shell_string(daemon: Daemon) -> None:
    result = daemon.run("acjob", "echo", "$((1+2))")
    assert result.stdout == b"3\n"


def test_binary_stdin_roundtrip_is_exact(daemon: Daemon) -> None:
    data = os.urandom(3 << 20) + bytes(range(256)) * 10
    result = daemon.run("acjob", "cat", input=data)
    assert result.returncode == 0, result.stderr
    assert result.stdout == data


def test_output_streams_while_the_job_runs(daemon: Daemon, short_tmp: Path) -> None:
    gate = short_tmp / "go"
    proc = subprocess.Popen(
        [sys.executable, "-c", "from acjob.cli.acjob import main; main()", "-n",
         f"echo a; while [ ! -e {gate} ]; do sleep 0.05; done; echo b"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=daemon.env,
    )
    assert proc.stdout is not None
    first = proc.stdout.readline()
    assert first == b"a\n"
    # The job is provably still running: it waits for the gate we have not opened.
    with client_for(daemon) as client:
        jobs, _ = client.list(limit=1)
        assert jobs[0].state is acjob.State.RUNNING
    gate.touch()
    rest, _ = proc.communicate(timeout=60)
    assert rest == b"b\n"
    assert proc.returncode == 0


def test_poll_then_acpoll(daemon: Daemon) -> None:
    handle = daemon.run("acjob", "-t", "poll", "sleep 1; echo done")
    assert handle.returncode == 0, handle.stderr
    job_id = handle.stdout.decode().strip()
    assert len(job_id) == 26
    polled = daemon.run("acpoll", "-i", "1", input=handle.stdout)
    assert polled.returncode == 0, polled.stderr
    assert polled.stdout == b"done\n"


def test_acpoll_exits_with_the_job_status(daemon: Daemon) -> None:
    handle = daemon.run("acjob", "-t", "poll", "echo partial; exit 7").stdout.decode().strip()
    polled = daemon.run("acpoll", handle)
    assert polled.returncode == 7
    assert polled.stdout == b"partial\n"


def test_handle_survives_a_daemon_restart(daemon: Daemon) -> None:
    handle = daemon.run("acjob", "-t", "poll", "echo kept").stdout.decode().strip()
    with client_for(daemon) as client:
        assert client.wait(handle, timeout=60).state is acjob.State.COMPLETE
    daemon.stop()
    daemon.start()
    polled = daemon.run("acpoll", handle)
    assert polled.returncode == 0, polled.stderr
    assert polled.stdout == b"kept\n"


def test_each_job_gets_its_own_empty_workdir(daemon: Daemon, short_tmp: Path) -> None:
    first = daemon.run("acjob", "touch mine; pwd; ls -A")
    second = daemon.run("acjob", "pwd; ls -A")
    dir1, *files1 = first.stdout.decode().split()
    dir2, *files2 = second.stdout.decode().split()
    assert dir1 != dir2
    assert files1 == ["mine"] and files2 == []
    chosen = short_tmp / "chosen"
    chosen.mkdir()
    third = daemon.run("acjob", "--workdir", str(chosen), "pwd")
    assert third.stdout.decode().strip() == str(chosen)


def test_large_output_is_exact(daemon: Daemon) -> None:
    # 20 MB of deterministic bytes produced by the job itself.
    script = "head -c 20000000 /dev/zero | tr '\\0' 'x'; printf end"
    result = daemon.run("acjob", script)
    assert result.returncode == 0
    assert len(result.stdout) == 20_000_003
    assert hashlib.sha256(result.stdout).hexdigest() == hashlib.sha256(
        b"x" * 20_000_000 + b"end").hexdigest()
