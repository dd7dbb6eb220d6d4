"""acjob -t pipe and -t poll against a real daemon subprocess, through the real CLI."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import acjob
from tests.conftest import Daemon, client_for, wait_for


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


def _read_line(proc: subprocess.Popen[bytes]) -> bytes:
    """Read one line of the process's stdout; a pipe that is not live never gives it."""
    assert proc.stdout is not None
    return proc.stdout.readline()


def _finish(proc: subprocess.Popen[bytes]) -> tuple[bytes, bytes]:
    """Read the rest of stdout and stderr once stdin is closed, and wait for the end."""
    assert proc.stdout is not None and proc.stderr is not None
    out, err = proc.stdout.read(), proc.stderr.read()
    proc.wait(timeout=60)
    return out, err


def test_stdin_reaches_the_job_as_it_arrives(daemon: Daemon) -> None:
    """`(echo a; sleep; echo b) | acjob cat` prints `a` while its stdin is still open."""
    proc = subprocess.Popen(
        [sys.executable, "-c", "from acjob.cli.acjob import main; main()", "cat"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=daemon.env)
    assert proc.stdin is not None
    try:
        proc.stdin.write(b"a\n")
        proc.stdin.flush()
        assert _read_line(proc) == b"a\n"  # stdin is still open: the job read it live
        with client_for(daemon) as client:
            jobs, _ = client.list(limit=1)
            assert jobs[0].state is acjob.State.RUNNING
            assert jobs[0].data["stdin"]["closed"] is False
        proc.stdin.write(b"b\n")
        proc.stdin.close()
        rest, err = _finish(proc)
    finally:
        proc.kill()
    assert rest == b"b\n", err
    assert proc.returncode == 0


def test_a_retried_attempt_reads_the_same_stdin_from_the_start(daemon: Daemon) -> None:
    """Attempt 1 reads part of a stdin still arriving and fails; attempt 2 reads every
    byte from the first, the late ones included, once and in order."""
    first, second = os.urandom(100_000), os.urandom(300_000)
    script = ('if [ "$ACJOB_ATTEMPT" = 1 ]; then head -c 1000 > /dev/null; exit 1; fi; '
              "sha256sum")
    with client_for(daemon) as client, client_for(daemon) as watcher:
        created = client.create(script, stdin_upload=True,
                                retry={"max_attempts": 2, "on": ["exit"]})

        def stdin() -> Iterator[bytes]:
            yield first
            # The rest comes only once attempt 1 has failed on what it had.
            wait_for(lambda: watcher.get(created.id).attempt == 2, what="attempt 2")
            yield second

        assert client.upload_stdin(created.id, stdin()) == len(first) + len(second)
        info = client.wait(created.id, timeout=60)
        assert info.state is acjob.State.COMPLETE and info.attempt == 2
        out = b"".join(client.stream(created.id, "stdout"))
    assert out.split()[0].decode() == hashlib.sha256(first + second).hexdigest()


def test_a_live_stdin_survives_a_daemon_killed_mid_upload(daemon: Daemon) -> None:
    """kill -9 of the daemon while the job runs and its stdin still arrives: the client
    resumes the upload where the daemon's copy ends; the re-attached job reads every
    byte once, in order."""
    head, tail = os.urandom(1 << 20), os.urandom(2 << 20)
    proc = subprocess.Popen(
        [sys.executable, "-c", "from acjob.cli.acjob import main; main()", "sha256sum"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=daemon.env)
    assert proc.stdin is not None
    try:
        proc.stdin.write(head)
        proc.stdin.flush()
        with client_for(daemon) as client:
            job = wait_for(lambda: [j for j in client.list(limit=1)[0]
                                    if j.state is acjob.State.RUNNING], what="a running job")[0]
        spooled = daemon.state_dir / "spool" / job.id / "stdin"
        wait_for(lambda: spooled.exists() and spooled.stat().st_size >= len(head),
                 what="the first megabyte to arrive")
        daemon.kill9()
        daemon.start()
        proc.stdin.write(tail)
        proc.stdin.close()
        out, err = _finish(proc)
    finally:
        proc.kill()
    assert proc.returncode == 0, err[-2000:]
    assert out.split()[0].decode() == hashlib.sha256(head + tail).hexdigest()


#: Runs argv (the rest of its own) with stdin and stdout as given, and prints its exit
#: status and peak resident set. A small parent of its own: the kernel counts a parent's
#: high-water mark into a child it forks (it is kept across exec), so measured from this
#: test process, grown by the suite, the figure would be the suite's.
_MEASURE = ("import os, subprocess, sys; p = subprocess.Popen(sys.argv[1:]); "
            "_, status, usage = os.wait4(p.pid, 0); "
            "print(os.waitstatus_to_exitcode(status), usage.ru_maxrss, file=sys.stderr)")


def _run_measured(argv: list[str], env: dict[str, str], stdin: Path,
                  stdout: Path) -> tuple[int, float]:
    """Run a tool, stdin and stdout from and to files; return its exit status and its
    peak resident set in MB (the kernel's own account of the finished process)."""
    with stdin.open("rb") as source, stdout.open("wb") as sink:
        report = subprocess.run([sys.executable, "-c", _MEASURE, *argv], stdin=source,
                                stdout=sink, stderr=subprocess.PIPE, env=env, timeout=300,
                                check=True)
    code, peak = report.stderr.split()[-2:]  # the last line: after the tool's own stderr
    return int(code), int(peak) / 1024


def test_client_memory_stays_bounded_whatever_the_size(daemon: Daemon, short_tmp: Path) -> None:
    """Sending 512 MiB to a job (-t poll, then -t pipe) keeps the client well under
    100 MB: it holds a bounded window of the bytes, never the whole (issue 18)."""
    data, out = short_tmp / "big", short_tmp / "out"
    with data.open("wb") as file:
        file.truncate(512 << 20)  # a sparse file of zeros: no disk is spent on it
    acjob_cli = [sys.executable, "-c", "from acjob.cli.acjob import main; main()"]
    status, peak = _run_measured([*acjob_cli, "-t", "poll", "wc -c"], daemon.env, data, out)
    assert status == 0 and peak < 100, peak
    handle = out.read_bytes().strip().decode()
    with client_for(daemon) as client:
        assert client.wait(handle, timeout=120).exit_code == 0
        assert b"".join(client.stream(handle)) == b"536870912\n"
    status, peak = _run_measured([*acjob_cli, "wc -c"], daemon.env, data, out)
    assert status == 0 and peak < 100, peak
    assert out.read_bytes() == b"536870912\n"
