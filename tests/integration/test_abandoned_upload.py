"""An upload nobody will finish (issue 18): its job ends, with the bytes it reached,
once no byte came and no client sent for ``[server] stdin_timeout`` seconds; a client
that is still there, however silent its producer, keeps it waiting."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from acjob.errors import Conflict
from acjob.model import State
from tests.conftest import Daemon, client_for, configured_daemon, wait_for


@pytest.fixture
def udaemon(short_tmp: Path) -> Iterator[Daemon]:
    """A daemon that gives up on an upload after one second of silence."""
    yield from configured_daemon(short_tmp, "stdin_timeout = 1\n")


def test_a_pipe_killed_mid_upload_ends_its_job_with_the_bytes_reached(udaemon: Daemon) -> None:
    read, write = os.pipe()
    proc = subprocess.Popen(
        [sys.executable, "-c", "from acjob.cli.acjob import main; main()", "cat"],
        stdin=read, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=udaemon.env)
    os.close(read)
    try:
        os.write(write, b"abc")
        assert proc.stdout is not None
        assert proc.stdout.read(3) == b"abc"  # the job started on its live stdin
        proc.send_signal(signal.SIGKILL)  # the producer still holds the pipe open
        proc.wait(timeout=30)
        with client_for(udaemon) as client:
            (job,) = client.list()[0]
            info = client.wait(job.id, timeout=60)
            assert info.state is State.CANCELED  # it had started: stopped, never completed
            assert "stdin upload stopped at 3 bytes" in (info.reason or "")
            with pytest.raises(Conflict) as refused:  # a client back too late is told why
                client.upload_stdin(job.id, b"abcdef")
            assert refused.value.code == "job_final"
    finally:
        os.close(write)
        if proc.poll() is None:
            proc.kill()


def test_a_client_still_sending_keeps_its_job_however_silent(udaemon: Daemon) -> None:
    read, write = os.pipe()
    with client_for(udaemon) as client:
        held = client.create("cat", stdin_upload=True)
        uploaded: list[int] = []
        with os.fdopen(read, "rb") as source:
            sender = threading.Thread(
                target=lambda: uploaded.append(client.upload_stdin(held.id, source)))
            sender.start()
            os.write(write, b"x")
            wait_for(lambda: b"".join(client.stream(held.id, follow=False)) == b"x",
                     what="the first byte to reach the job")
            # A job created after the held one's last byte, whose upload nobody sends:
            # once the daemon gave up on it, it was past the held one's time too.
            sentinel = client.create("cat", stdin_upload=True)
            ended = client.wait(sentinel.id, timeout=60)
            assert ended.state in (State.CANCELED, State.SYSTEM_ERROR), ended.reason
            assert "stopped at 0 bytes" in (ended.reason or "")
            assert not client.get(held.id).is_final
            os.write(write, b"y")
            os.close(write)
            sender.join(timeout=60)
        info = client.wait(held.id, timeout=60)
        assert info.state is State.COMPLETE and uploaded == [2]
        assert b"".join(client.stream(held.id)) == b"xy"
