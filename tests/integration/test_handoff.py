"""Job files handed to a client on the daemon's machine (acjob.server.handoff): the
output read from its spool file, the stdin written into its spool file, and what the
handoff socket refuses. Against a real daemon subprocess, through its real sockets."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

import acjob
from tests.conftest import Daemon, client_for, configured_daemon, wait_for


def _handoffs(client: acjob.Client) -> dict[str, float]:
    """The daemon's handoff counters, read from /metrics."""
    connections = client._http
    text = connections.request("GET", "/metrics").body.decode()
    counts = {}
    for line in text.splitlines():
        if line.startswith("acjob_handoffs_total{"):
            kind = line.split('kind="')[1].split('"')[0]
            counts[kind] = float(line.split()[-1])
    return counts


def _ask(d: Daemon, request: bytes) -> tuple[dict[str, object], list[int]]:
    """Send one raw request line to the handoff socket; return the answer and fds."""
    path = d.url.removeprefix("unix:") + ".fd"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(10)
        sock.connect(path)
        sock.sendall(request)
        message, fds, _, _ = socket.recv_fds(sock, 4096, 4)
    return json.loads(message), fds


def test_output_followed_from_the_handed_file_is_the_http_streams(daemon: Daemon,
                                                                  short_tmp: Path) -> None:
    """A follower reads the output while the job writes it, through the handed file;
    the bytes are those the HTTP stream serves, and the daemon counted the handoff."""
    gate = short_tmp / "gate"
    script = (f"head -c 3000000 /dev/urandom; while [ ! -e {gate} ]; do sleep 0.05; done; "
              "head -c 500000 /dev/urandom")
    with client_for(daemon) as client:
        job = client.submit(script)
        chunks = job.stdout()
        first = next(chunks)  # the job is still running: it waits for the gate
        assert job.status().state is acjob.State.RUNNING
        gate.touch()
        handed = first + b"".join(chunks)
        assert _handoffs(client)["output"] >= 1
        client._http.handoff = False
        over_http = b"".join(job.stdout())
    assert len(handed) == 3_500_000
    assert handed == over_http


def test_output_of_one_attempt_and_a_finished_jobs_stderr(daemon: Daemon) -> None:
    """``attempt``, ``offset`` and a stream of a finished job: the same bytes either way."""
    with client_for(daemon) as client:
        job = client.submit("echo one; echo two >&2; exit 1",
                            retry={"max_attempts": 2, "on": ["exit"]})
        info = job.wait(timeout=60)
        assert info.attempt == 2
        handed = [b"".join(client.stream(job.id, "stdout", attempt=1)),
                  b"".join(client.stream(job.id, "stderr", offset=2)),
                  b"".join(client.stream(job.id, "stdout", follow=False))]
        client._http.handoff = False
        plain = [b"".join(client.stream(job.id, "stdout", attempt=1)),
                 b"".join(client.stream(job.id, "stderr", offset=2)),
                 b"".join(client.stream(job.id, "stdout", follow=False))]
    assert handed == plain == [b"one\n", b"o\n", b"one\n"]


def test_a_piped_stdin_is_written_through_the_handed_file(daemon: Daemon) -> None:
    data = os.urandom(5 << 20)
    result = daemon.run("acjob", "-t", "pipe", "sha256sum", input=data)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[0].decode() == hashlib.sha256(data).hexdigest()
    with client_for(daemon) as client:
        assert _handoffs(client) == {"output": 2.0, "stdin": 1.0}


@contextlib.contextmanager
def _endless_pipe() -> Iterator[acjob.Client]:
    """The read end of a pipe fed zeros until it is closed, unbuffered."""
    read_fd, write_fd = os.pipe()
    stop = threading.Event()

    def feed() -> None:
        with contextlib.suppress(OSError):
            while not stop.is_set():
                os.write(write_fd, bytes(1 << 16))
        os.close(write_fd)

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    source = open(read_fd, "rb", buffering=0)  # noqa: SIM115
    try:
        yield source  # type: ignore[misc]
    finally:
        stop.set()
        source.close()
        feeder.join(timeout=10)


def test_a_handed_upload_stops_when_the_job_has_ended(daemon: Daemon) -> None:
    """The job stops reading and ends while the producer goes on: the daemon lets go
    of the file, and the upload ends with the job's reason, not with a full disk."""
    with client_for(daemon) as client, _endless_pipe() as source:
        created = client.create("head -c 1000 > /dev/null", stdin_upload=True)
        with pytest.raises(acjob.Conflict) as caught:
            client.upload_stdin(created.id, source)
        assert caught.value.code == "job_final"
        assert client.get(created.id).state is acjob.State.COMPLETE
        assert _handoffs(client)["stdin"] == 1


@pytest.fixture
def limited(short_tmp: Path) -> Iterator[Daemon]:
    yield from configured_daemon(short_tmp, "max_stdin_bytes = 1000000\n")


def test_a_handed_upload_past_the_limit_is_refused(limited: Daemon) -> None:
    with client_for(limited) as client, _endless_pipe() as source:
        created = client.create("cat > /dev/null", stdin_upload=True)
        with pytest.raises(acjob.PayloadTooLarge):
            client.upload_stdin(created.id, source)
        # Nothing closed its stdin: it will never take more than the limit.
        assert client.get(created.id).data["stdin"]["closed"] is False
        client.cancel(created.id)


def test_a_handed_stdin_survives_a_daemon_restart_mid_upload(daemon: Daemon) -> None:
    """The daemon stops while the client writes the handed stdin file: the client goes
    on over HTTP from the bytes in the file once the daemon is back; every byte once."""
    head, tail = os.urandom(1 << 20), os.urandom(1 << 20)
    proc = subprocess.Popen(
        [sys.executable, "-c", "from acjob.cli.acjob import main; main()", "sha256sum"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=daemon.env)
    assert proc.stdin is not None
    try:
        proc.stdin.write(head)
        proc.stdin.flush()
        with client_for(daemon) as client:
            wait_for(lambda: _handoffs(client).get("stdin") == 1, what="the stdin handoff")
        daemon.stop()
        daemon.start()
        out, err = proc.communicate(tail, timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 0, err[-2000:]
    assert out.split()[0].decode() == hashlib.sha256(head + tail).hexdigest()


@pytest.mark.parametrize("request_line, says", [
    (b"not json\n", "bad request"),
    (b'{"job": "../../etc/passwd", "stream": "stdout", "attempt": 1}\n', "not a job id"),
    (b'{"job": "aaaaaaaaaaaaaaaaaaaaaaaaaa", "stream": "stdout", "attempt": 1}\n', "no job"),
    (b'{"job": "JOB", "stream": "../stdin", "attempt": 1}\n', "wants stream"),
    (b'{"job": "JOB", "stream": "stdout", "attempt": "1"}\n', "wants stream"),
    (b'{"job": "JOB", "stream": "stdout", "attempt": 9}\n', "no attempt 9"),
    (b'{"job": "JOB", "stdin": true}\n', "without stdin upload"),
    (b'{"job": "JOB"' + b" " * 600 + b"}\n", "too long"),
])
def test_the_handoff_socket_refuses_with_a_reason_and_no_file(
        daemon: Daemon, request_line: bytes, says: str) -> None:
    with client_for(daemon) as client:
        job = client.submit("echo hi")
        job.wait(timeout=60)
    answer, fds = _ask(daemon, request_line.replace(b"JOB", job.id.encode()))
    for fd in fds:
        os.close(fd)
    assert fds == []
    assert says in str(answer.get("error")), answer


def test_the_handoff_socket_is_its_owners_only(daemon: Daemon) -> None:
    path = Path(daemon.url.removeprefix("unix:") + ".fd")
    assert path.stat().st_mode & 0o777 == 0o600
