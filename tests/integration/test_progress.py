"""Progress reports end to end: a job writes to $ACJOB_PROGRESS, and the job's JSON, its
event stream, the clients, ac, acpoll and webhooks show it. On the local backend, on
Slurm and on Grid Engine.

Jobs wait on FIFOs (or, on a scheduler, gate files) that the test opens once it has
seen what the job reported so far: no sleeps.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import pty
import select
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

import acjob
from acjob.model import State
from tests.conftest import Daemon, client_for, configured_daemon, wait_for
from tests.integration.schedulers import SCHEDULERS, Scheduler, scheduler_daemon, until
from tests.integration.test_delivery import SECRET, Receiver


def _fifos(where: Path, *names: str) -> list[Path]:
    paths = [where / name for name in names]
    for path in paths:
        os.mkfifo(path)
    return paths


def _open_gate(fifo: Path) -> None:
    """Let the job past its ``read x < FIFO`` (opening blocks until the job reads)."""
    with open(fifo, "w") as gate:
        gate.write("go\n")


def _events(d: Daemon, job_id: str) -> list[tuple[str, dict]]:
    """The job's event stream as it is now (not followed)."""
    transport = httpx.HTTPTransport(uds=d.url.removeprefix("unix:"))
    with httpx.Client(base_url="http://acjob", transport=transport, timeout=30) as http:
        text = http.get(f"/v1/jobs/{job_id}/events", params={"follow": "false"}).text
    events = []
    for block in text.split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        if "event" in fields:
            events.append((fields["event"], json.loads(fields["data"])))
    return events


def test_progress_in_the_job_its_events_the_clients_and_ac(daemon: Daemon,
                                                           short_tmp: Path) -> None:
    g0, g1, g2 = _fifos(short_tmp, "g0", "g1", "g2")
    script = (f'read x < {g0}; echo "10 starting" > "$ACJOB_PROGRESS"; read x < {g1}; '
              f'echo "40 aligning sequences" > "$ACJOB_PROGRESS"; read x < {g2}; '
              # Neither counts: a malformed line, then one whose newline never came.
              "printf 'not a number\\n75 cut short' > \"$ACJOB_PROGRESS\"; echo out")
    with client_for(daemon) as client:
        job = client.submit(script)
        assert client.get(job.id).data["progress"] is None
        updates = client.progress(job.id)
        _open_gate(g0)
        first = next(updates)
        assert (first.percent, first.message, first.attempt) == (10.0, "starting", 1)
        data = client.get(job.id).data
        assert data["progress"] == {"percent": 10.0, "message": "starting",
                                    "updated_at": first.updated_at}
        _open_gate(g1)
        second = next(updates)
        assert (second.percent, second.message) == (40.0, "aligning sequences")
        assert second.updated_at >= first.updated_at
        progress_events = [e for name, e in _events(daemon, job.id) if name == "progress"]
        assert progress_events == [{"job_id": job.id, "attempt": 1,
                                    "progress": second.to_json()}]
        shown = daemon.run("ac", "show", job.id).stdout.decode()
        assert "progress  40% aligning sequences" in shown, shown
        listed = daemon.run("ac", "jobs").stdout.decode()
        assert "PROGRESS" in listed and " 40% " in listed, listed
        _open_gate(g2)
        assert list(updates) == []  # ended: the last lines said nothing usable
        info = client.wait(job.id, timeout=60)
    assert info.state is State.COMPLETE
    assert info.progress is not None
    assert (info.progress.percent, info.progress.message) == (40.0, "aligning sequences")

    async def follow() -> list[acjob.Progress]:
        async with acjob.AsyncClient(daemon.url) as aclient:
            return [p async for p in aclient.progress(job.id)]

    # A final job: its last progress, once, and the end.
    assert [(p.percent, p.message) for p in asyncio.run(follow())] == \
        [(40.0, "aligning sequences")]


def test_a_retried_attempt_starts_from_no_progress(daemon: Daemon, short_tmp: Path) -> None:
    g1, g2 = _fifos(short_tmp, "g1", "g2")
    script = ('if [ "$ACJOB_ATTEMPT" = 1 ]; then echo "50 first try" > "$ACJOB_PROGRESS"; '
              f'exit 3; fi; read x < {g1}; echo "5 second try" > "$ACJOB_PROGRESS"; '
              f"read x < {g2}")
    with client_for(daemon) as client:
        job = client.submit(script, retry={"max_attempts": 2, "on": ["exit"]})
        info = client.get(job.id)
        while not (info.attempt == 2 and info.state is State.RUNNING):
            assert not info.is_final, info.reason
            info = client.get(job.id, wait=30, since=info.seq)
        assert info.progress is None and info.data["progress"] is None
        updates = client.progress(job.id)
        _open_gate(g1)
        second = next(updates)
        assert (second.percent, second.message, second.attempt) == (5.0, "second try", 2)
        _open_gate(g2)
        assert list(updates) == []
        info = client.wait(job.id, timeout=60)
    assert info.state is State.COMPLETE and info.progress == second


def _acpoll(d: Daemon, job_id: str, stderr: int, env: dict[str, str] | None = None
            ) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-c", "from acjob.cli.acpoll import main; main()", job_id],
        stdout=subprocess.PIPE, stderr=stderr, env=env or d.env)


def test_acpoll_draws_nothing_when_stderr_is_not_a_terminal(daemon: Daemon,
                                                            short_tmp: Path) -> None:
    (gate,) = _fifos(short_tmp, "gate")
    with client_for(daemon) as client:
        job = client.submit(f'echo "30 working" > "$ACJOB_PROGRESS"; read x < {gate}; '
                            'echo "90 nearly" > "$ACJOB_PROGRESS"; echo out')
        next(client.progress(job.id))
        proc = _acpoll(daemon, job.id, subprocess.PIPE)
        _open_gate(gate)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0
    assert (out, err) == (b"out\n", b"")


def _read_until(fd: int, wanted: bytes, seen: bytearray, to_end: bool = False) -> None:
    """Read a pty's output until ``wanted`` came, or with ``to_end`` until the other
    side closed (fail after a minute of silence)."""
    while to_end or wanted not in seen:
        ready, _, _ = select.select([fd], [], [], 60)
        assert ready, f"{wanted!r} never came; got {bytes(seen)!r}"
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # the other side closed
            chunk = b""
        if to_end and not chunk:
            return
        assert chunk, f"{wanted!r} never came; got {bytes(seen)!r}"
        seen += chunk


def test_acpoll_draws_a_bar_on_a_terminal(daemon: Daemon, short_tmp: Path) -> None:
    g1, g2 = _fifos(short_tmp, "g1", "g2")
    with client_for(daemon) as client:
        job = client.submit(f'echo "30 working hard" > "$ACJOB_PROGRESS"; read x < {g1}; '
                            f'echo "60 still working" > "$ACJOB_PROGRESS"; read x < {g2}; '
                            "echo out")
        next(client.progress(job.id))
        master, slave = pty.openpty()
        env = {**daemon.env, "TERM": "xterm", "COLUMNS": "120"}
        proc = _acpoll(daemon, job.id, slave, env)
        os.close(slave)
        seen = bytearray()
        try:
            _read_until(master, b"working hard", seen)
            assert b"30%" in seen
            _open_gate(g1)
            _read_until(master, b"still working", seen)
            assert b"60%" in seen
            _open_gate(g2)
            _read_until(master, b"", seen, to_end=True)  # the bar is gone with acpoll
            out, _ = proc.communicate(timeout=60)
        finally:
            proc.kill()
            os.close(master)
    assert proc.returncode == 0 and out == b"out\n"


def test_acjob_pipe_draws_a_bar_until_output_reaches_the_terminal(daemon: Daemon,
                                                                  short_tmp: Path) -> None:
    """`acjob -t pipe` with stdout to a file and stderr on a terminal: the bar shows the
    job's reports while it waits, and goes when the job's own stderr reaches the
    terminal (a bar among the job's bytes would garble both); stdout stays the job's."""
    g1, g2 = _fifos(short_tmp, "g1", "g2")
    master, slave = pty.openpty()
    env = {**daemon.env, "TERM": "xterm", "COLUMNS": "120"}
    out_file = short_tmp / "out"
    with out_file.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-c", "from acjob.cli.acjob import main; main()", "-n",
             f'echo "30 working hard" > "$ACJOB_PROGRESS"; read x < {g1}; '
             f'echo "60 still working" > "$ACJOB_PROGRESS"; read x < {g2}; '
             'echo result; echo "a warning" >&2'],
            stdout=out, stderr=slave, env=env)
    os.close(slave)
    seen = bytearray()
    try:
        _read_until(master, b"working hard", seen)
        assert b"30%" in seen
        _open_gate(g1)
        _read_until(master, b"still working", seen)
        assert b"60%" in seen
        _open_gate(g2)
        _read_until(master, b"", seen, to_end=True)
        assert proc.wait(timeout=60) == 0
    finally:
        proc.kill()
        os.close(master)
    assert out_file.read_bytes() == b"result\n"
    tail = bytes(seen).rsplit(b"still working", 1)[1]
    assert b"a warning" in tail and b"%" not in tail.split(b"a warning", 1)[1]


# -- webhooks ---------------------------------------------------------------------------


@pytest.fixture
def wdaemon(short_tmp: Path) -> Iterator[Daemon]:
    yield from configured_daemon(short_tmp, "", f'[webhook]\nsecret = "{SECRET}"\n'
                                 "[delivery]\nfirst_retry = 0.2\nmax_retry = 0.5\n")


def _signed(headers: dict[str, str], body: bytes) -> bool:
    expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(headers["x-acjob-signature"], expected)


@pytest.mark.parametrize("first_answer", [200, 500])
def test_webhook_gets_signed_progress_and_one_result(wdaemon: Daemon, short_tmp: Path,
                                                     first_answer: int) -> None:
    """Progress callbacks are signed and marked; a failed one is dropped, not retried;
    the result comes once, whatever happened to them."""
    (gate,) = _fifos(short_tmp, "gate")
    receiver = Receiver([first_answer])
    try:
        with client_for(wdaemon) as client:
            job = client.submit(
                f'echo "10 started" > "$ACJOB_PROGRESS"; read x < {gate}; '
                'echo "20 more" > "$ACJOB_PROGRESS"; echo out',
                deliveries=[{"type": "webhook", "url": receiver.url,
                             "progress_interval": 5}], labels={"k": "v"})
            wait_for(lambda: receiver.requests, what="the first progress callback")
            _open_gate(gate)
            client.wait(job.id, timeout=60)
            delivery = wait_for(lambda: (d := client.get(job.id).data["deliveries"][0])
                                ["state"] == "sent" and d, what="the result")
    finally:
        receiver.stop()
    assert delivery["attempts"] == 1
    requests = [(h, json.loads(b)) for h, b in receiver.requests]
    assert all(_signed(h, b) for h, b in receiver.requests)
    assert all(h["x-acjob-event"] == doc["event"] for h, doc in requests)
    results = [doc for _, doc in requests if doc["event"] == "result"]
    assert len(results) == 1 and results[0]["delivery_id"] == delivery["id"]
    assert results[0]["job"]["state"] == "COMPLETE"
    progress = [(h, doc) for h, doc in requests if doc["event"] == "progress"]
    headers, first = progress[0]
    assert first == {"event": "progress", "callback_id": headers["x-acjob-delivery"],
                     "job": {"id": job.id, "state": first["job"]["state"], "attempt": 1,
                             "labels": {"k": "v"}},
                     "progress": {"percent": 10.0, "message": "started",
                                  "updated_at": first["progress"]["updated_at"]}}
    # Seen running by the monitor, or about to be: the report came first.
    assert first["job"]["state"] in ("INITIALIZING", "RUNNING")
    # The change that came within the interval is posted only if the job still runs
    # when the interval is over: it ended first, unless this machine was very slow.
    assert [doc["progress"]["percent"] for _, doc in progress] in ([10.0], [10.0, 20.0])


def test_progress_interval_below_the_minimum_is_refused(wdaemon: Daemon) -> None:
    with client_for(wdaemon) as client, pytest.raises(acjob.InvalidRequest,
                                                      match="progress_interval"):
        client.submit("true", deliveries=[{"type": "webhook", "url": "http://127.0.0.1:9/",
                                           "progress_interval": 1}])


# -- the batch schedulers ---------------------------------------------------------------


@pytest.fixture(params=SCHEDULERS, ids=lambda s: s.name)
def bdaemon(request: pytest.FixtureRequest, short_tmp: Path) -> Iterator[Daemon]:
    sched: Scheduler = request.param
    yield from scheduler_daemon(sched, short_tmp)


def _gate(path: Path) -> str:
    return f"while [ ! -e {path} ]; do sleep 0.1; done"


def test_progress_on_a_batch_scheduler(bdaemon: Daemon, short_tmp: Path) -> None:
    """The progress file lives in the shared spool; the daemon reads it at each poll.
    The first attempt fails; the second starts from no progress."""
    g1, g2 = short_tmp / "g1", short_tmp / "g2"
    script = ('echo "15 attempt $ACJOB_ATTEMPT" > "$ACJOB_PROGRESS"; '
              f'if [ "$ACJOB_ATTEMPT" = 1 ]; then {_gate(g1)}; exit 3; fi; {_gate(g2)}; '
              'echo "80 nearly there" > "$ACJOB_PROGRESS"; echo out')
    with client_for(bdaemon) as client:
        job = client.submit(script, retry={"max_attempts": 2, "on": ["exit"]})
        updates = client.progress(job.id)
        first = next(updates)
        assert (first.percent, first.message, first.attempt) == (15.0, "attempt 1", 1)
        assert client.get(job.id).data["progress"] == first.to_json()
        assert [e for name, e in _events(bdaemon, job.id) if name == "progress"] == [
            {"job_id": job.id, "attempt": 1, "progress": first.to_json()}]
        assert "progress  15% attempt 1" in bdaemon.run("ac", "show", job.id).stdout.decode()
        g1.touch()
        second = next(updates)
        assert (second.percent, second.message, second.attempt) == (15.0, "attempt 2", 2)
        g2.touch()
        third = next(updates)
        assert (third.percent, third.message, third.attempt) == (80.0, "nearly there", 2)
        assert list(updates) == []
        info = until(client, job.id, State.COMPLETE)
        assert info.progress == third
        assert b"".join(client.stream(job.id)) == b"out\n"


def test_a_new_attempt_on_a_scheduler_shows_no_progress(bdaemon: Daemon,
                                                        short_tmp: Path) -> None:
    gate = short_tmp / "gate"
    script = ('if [ "$ACJOB_ATTEMPT" = 1 ]; then echo "50 first" > "$ACJOB_PROGRESS"; '
              f"exit 3; fi; {_gate(gate)}")
    with client_for(bdaemon) as client:
        job = client.submit(script, retry={"max_attempts": 2, "on": ["exit"]})
        info = client.get(job.id)
        while not (info.attempt == 2 and info.state is State.RUNNING):
            assert not info.is_final, info.reason
            info = client.get(job.id, wait=30, since=info.seq)
        assert info.data["progress"] is None
        gate.touch()
        assert until(client, job.id, State.COMPLETE).progress is None
