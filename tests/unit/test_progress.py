"""Progress reports: the line parser, the file's tail, the callback rate, the watcher,
the client's event parser and the progress bar."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from acjob.client.core import EventParser, JobInfo, ServerEvent
from acjob.model import Job, JobSpec, new_job_id
from acjob.progress import (
    MAX_MESSAGE,
    TAIL_BYTES,
    Progress,
    next_callback_at,
    parse_line,
    parse_tail,
)
from acjob.spool import Spool
from acjob.store import Store
from acjob.watcher import Watcher


@pytest.mark.parametrize(("line", "expected"), [
    ("40", (40.0, None)),
    ("40 aligning sequences", (40.0, "aligning sequences")),
    ("  7.5   step  two  ", (7.5, "step  two")),
    ("0", (0.0, None)),
    ("100 done", (100.0, "done")),
    ("40% aligning", (40.0, "aligning")),
    (".5 barely", (0.5, "barely")),
    ("40\taligning\r", (40.0, "aligning")),
    ("4 0", (4.0, "0")),
    ("12 caf\u00e9 \u2713", (12.0, "caf\u00e9 \u2713")),
    ("50 \x1b[31mred\x1b[0m", (50.0, "[31mred [0m")),  # control characters become spaces
    ("50 " + "m" * 1000, (50.0, "m" * MAX_MESSAGE)),
])
def test_good_lines(line: str, expected: tuple[float, str | None]) -> None:
    assert parse_line(line) == expected


@pytest.mark.parametrize("line", [
    "", "   ", "garbage", "forty percent", "40aligning", "-5", "-5 down", "100.5", "101",
    "1000", "1e2", "nan", "inf", "0x10", "40,5", "% 40", "40%% x", "40.1234567",
    "+40", "\u0664\u0660 arabic digits",
])
def test_malformed_lines_are_not_progress(line: str) -> None:
    assert parse_line(line) is None


@pytest.mark.parametrize(("tail", "cut", "expected"), [
    (b"40 a\n", False, (40.0, "a")),
    (b"10 a\n20 b\n", False, (20.0, "b")),  # the last complete line wins
    (b"10 a\n20 b", False, (10.0, "a")),  # ... not one still being written
    (b"20 b", False, None),
    (b"10 a\ngarbage\n", False, (10.0, "a")),  # a malformed line is passed over
    (b"10 a\n\n\n", False, (10.0, "a")),
    (b"garbage\n", False, None),
    (b"", False, None),
    (b"99 end of a long line\n10 a\n", True, (10.0, "a")),
    (b"99 end of a long line\n", True, None),  # its start was before the tail
    (b"\xff\xfe 1\n33 \xff\n", False, (33.0, "\ufffd")),
])
def test_tails(tail: bytes, cut: bool, expected: tuple[float, str | None] | None) -> None:
    assert parse_tail(tail, cut=cut) == expected


def test_callback_rate() -> None:
    """At most one progress callback per interval: the first at once, the next one
    interval after the last one went (at once if that is past)."""
    assert next_callback_at(None, 10, 100.0) == 100.0
    assert next_callback_at(95.0, 10, 100.0) == 105.0
    assert next_callback_at(90.0, 10, 100.0) == 100.0
    assert next_callback_at(50.0, 10, 100.0) == 100.0


def test_json_forms() -> None:
    progress = Progress(40.0, "x", 12.5, 2)
    assert progress.to_json() == {"percent": 40.0, "message": "x", "updated_at": 12.5}
    assert Progress.from_json(progress.to_json(), 2) == progress
    assert Progress.from_json(None) is None
    assert Progress.from_json({"percent": "40", "updated_at": 1}) is None
    info = JobInfo.from_json({"id": "j", "state": "RUNNING", "attempt": 3,
                              "progress": {"percent": 5, "message": None, "updated_at": 1}})
    assert info.progress == Progress(5.0, None, 1.0, 3)
    assert JobInfo.from_json({"id": "j", "state": "QUEUED"}).progress is None


def test_event_parser_whatever_the_chunks() -> None:
    stream = (b"id: 7\nevent: RUNNING\ndata: {\"a\": 1}\n\n: keep-alive\n\n"
              b"event: progress\ndata: {\"b\": 2}\r\n\r\n")
    expected = [ServerEvent("RUNNING", "7", '{"a": 1}'),
                ServerEvent("progress", None, '{"b": 2}')]
    for size in (1, 3, len(stream)):
        parser = EventParser()
        found = []
        for start in range(0, len(stream), size):
            found += parser.feed(stream[start:start + size])
        assert found == expected, size


# -- reading the file, watching it --------------------------------------------------------


def _attempt_dir(spool: Spool, job_id: str) -> Path:
    directory = spool.attempt_dir(job_id, 1)
    directory.mkdir(parents=True)
    return directory


def test_reading_a_progress_file(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    job_id = new_job_id()
    path = _attempt_dir(spool, job_id) / "progress"
    assert spool.read_progress(job_id, 1, None)[:2] == (None, None)  # not there yet
    path.write_text("10 a\n")
    stamp, said, _ = spool.read_progress(job_id, 1, None)
    assert said == (10.0, "a") and stamp is not None
    assert spool.read_progress(job_id, 1, stamp)[:2] == (stamp, None)  # unchanged: a stat
    path.write_text("x" * TAIL_BYTES * 3 + "\n70 b\n")
    assert spool.read_progress(job_id, 1, stamp)[1] == (70.0, "b")
    path.write_text("5 " + "y" * TAIL_BYTES + "\n")  # huge: never complete in the tail
    assert spool.read_progress(job_id, 1, None)[1] is None


@pytest.mark.parametrize("kind", ["fifo", "symlink", "directory"])
def test_only_a_regular_file_is_read(tmp_path: Path, kind: str) -> None:
    """A job may put anything there: a FIFO would block the daemon, a link would show
    another file's last line."""
    spool = Spool(tmp_path / "spool")
    job_id = new_job_id()
    path = _attempt_dir(spool, job_id) / "progress"
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "symlink":
        (tmp_path / "secret").write_text("42 secret\n")
        path.symlink_to(tmp_path / "secret")
    else:
        path.mkdir()
    assert spool.read_progress(job_id, 1, None)[:2] == (None, None)


def test_the_watcher_records_changes_only(tmp_path: Path) -> None:
    store = Store(tmp_path / "db")
    spool = Spool(tmp_path / "spool")
    job, _ = store.create_job(JobSpec(command="x"), "local", job_id=new_job_id())
    attempt = store.start_attempt(job.id)
    store.attempt_submitted(job.id, 1, "n")
    path = _attempt_dir(spool, job.id) / "progress"
    recorded: list[Progress | None] = []
    store.subscribe_progress(lambda j: recorded.append(j.progress))
    watcher = Watcher(store, spool)
    watcher.track(store.get(job.id), attempt, often=True)
    key = (job.id, 1)
    watcher.check([key])
    path.write_text("20 twenty\n")
    watcher.check([key])
    watcher.check([key])
    path.write_text("20 twenty\n")  # rewritten the same: nothing new to record
    watcher.check([key])
    path.write_text("bad\n")
    watcher.check([key])
    path.write_text("30 thirty\n")
    watcher.check([key])
    assert [(p.percent, p.message, p.attempt) for p in recorded if p] == [
        (20.0, "twenty", 1), (30.0, "thirty", 1)]
    watcher.forget(key)
    path.write_text("40 forty\n")
    watcher.check([key])
    assert len(recorded) == 2


# -- the progress bar ------------------------------------------------------------------


def test_the_bar_on_a_terminal() -> None:
    from rich.console import Console

    from acjob.cli.progress import ProgressBar

    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=100, color_system=None)
    with ProgressBar(label="job-1", started_at=0.0, console=console) as bar:
        assert bar.active
        bar.update(None, "waiting for a node")
        bar.update(40, "aligning sequences")
    text = out.getvalue()
    assert "waiting for a node" in text
    assert "job-1" in text and "40%" in text and "aligning sequences" in text
    assert "left)" in text  # a remaining time: 40 % after a long time


def test_the_bar_is_nothing_off_a_terminal() -> None:
    """Not a terminal: nothing is written, and rich is never imported (a tool's start
    time), nor by importing the tools."""
    code = ("import sys; import acjob.cli.acpoll, acjob.cli.ac; "
            "from acjob.cli.progress import ProgressBar\n"
            "with ProgressBar(label='j') as bar:\n"
            "    bar.update(40, 'aligning'); print(bar.active)\n"
            "print('rich' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    assert result.stdout.split() == ["False", "False"]
    assert result.stderr == ""


def test_remaining_time_and_clock() -> None:
    from acjob.cli.progress import clock, remaining

    assert remaining(100.0, 25.0) == 300.0
    assert remaining(100.0, None) is None
    assert remaining(100.0, 0.5) is None  # too little to go by
    assert remaining(2.0, 50.0) is None  # too soon
    assert remaining(100.0, 100.0) is None
    assert [clock(s) for s in (0, 65, 3661, 90061, -3)] == [
        "0:00", "1:05", "1:01:01", "1d 01:01:01", "0:00"]


# -- the client's plan ------------------------------------------------------------------


def _progress_event(attempt: int, percent: float | None) -> bytes:
    progress = None if percent is None else {"percent": percent, "message": None,
                                             "updated_at": 1.0}
    data = json.dumps({"job_id": "j1", "attempt": attempt, "progress": progress})
    return f"event: progress\ndata: {data}\n\n".encode()


def test_following_progress_resumes_and_leaves_out_repeats() -> None:
    from acjob.client.core import Emit, Open, Response, TransportError, progress_of
    from acjob.client.plans import Plans
    from tests.unit.test_client_core import FakeDriver

    first = _progress_event(1, 10)
    driver = FakeDriver(
        Response(200, {}), first + b"id: 5\nevent: RUNN", b"ING\ndata: {}\n\n",
        TransportError("cut"),
        # Resumed after event 5: the current progress again (left out), then news.
        Response(200, {}), first + _progress_event(1, 20),
        _progress_event(2, None),  # a new attempt, nothing reported yet: left out
        _progress_event(2, 5) + b"id: 9\nevent: COMPLETE\ndata: {}\n\n", b"",
    )
    driver.run(Plans(retry_for=60).progress("j1"))
    assert [o.params["after"] for o in driver.of(Open)] == [0, 5]
    emitted = [progress_of(e.data) for e in driver.of(Emit)]
    assert [(p.percent, p.attempt) for p in emitted if p] == [(10.0, 1), (20.0, 1), (5.0, 2)]


def test_following_progress_ends_with_the_job_after_an_early_end() -> None:
    """A stream the daemon ended before the job (it was stopping) is followed again,
    unless the job is over by then."""
    from acjob.client.core import Open, Response
    from acjob.client.plans import Plans
    from tests.unit.test_client_core import FakeDriver, job, ok

    driver = FakeDriver(Response(200, {}), b"id: 3\nevent: RUNNING\ndata: {}\n\n", b"",
                        ok(job()), Response(200, {}), b"", ok(job("CANCELED")))
    driver.run(Plans(retry_for=60).progress("j1"))
    assert [o.params["after"] for o in driver.of(Open)] == [0, 3]


def test_progress_callbacks_wait_their_interval_and_stop_with_the_job(tmp_path: Path) -> None:
    """The first change goes at once; the next within the interval waits for it; the
    job's end drops what waits. (No clock is waited on: what waits is looked at.)"""
    import asyncio

    from acjob import lifecycle
    from acjob.model import WebhookDelivery
    from acjob.notifier import Notifier

    class Channel:
        def __init__(self) -> None:
            self.posted: list[tuple[str, float | None]] = []
            self.called = asyncio.Event()

        async def send_progress(self, url: str, job: Job) -> None:
            self.posted.append((url, job.progress.percent if job.progress else None))
            self.called.set()

    async def scenario() -> None:
        store = Store(tmp_path / "db")
        spec = JobSpec(command="x", deliveries=[
            WebhookDelivery(url="http://a/", progress_interval=5),
            WebhookDelivery(url="http://b/")])
        job, _ = store.create_job(spec, "local", job_id=new_job_id())
        store.start_attempt(job.id)
        store.attempt_submitted(job.id, 1, "n")
        channel = Channel()
        notifier = Notifier(store, channel)
        store.record_progress(job.id, 1, Progress(10.0, None, 1.0))
        await channel.called.wait()
        assert channel.posted == [("http://a/", 10.0)]  # the webhook that asked, only
        store.record_progress(job.id, 1, Progress(20.0, None, 2.0))
        store.record_progress(job.id, 1, Progress(30.0, None, 3.0))
        assert list(notifier._timers[job.id]) == [0]  # one post waits for the interval
        store.end_attempt(job.id, 1, lambda j: lifecycle.conclude_exit(j, 0))
        assert job.id not in notifier._timers  # the job ended: nothing more is posted
        assert channel.posted == [("http://a/", 10.0)]
        store.close()

    asyncio.run(scenario())
