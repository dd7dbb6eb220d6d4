"""The feeder: a job reads its stdin as it arrives, and exactly the bytes of the mark."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from acjob import feeder
from acjob.wrapper import render_wrapper


def _await(condition: object, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def test_feed_copies_up_to_the_mark(tmp_path: Path) -> None:
    data, mark, out = tmp_path / "stdin", tmp_path / "mark", tmp_path / "out"
    data.write_bytes(b"0123456789")
    mark.write_text("6\n")  # bytes past the mark are never fed (a later upload's leftover)
    with out.open("wb") as sink:
        assert feeder.feed(str(data), str(mark), sink.fileno()) == 6
    assert out.read_bytes() == b"012345"


def test_feed_refuses_a_file_shorter_than_its_mark(tmp_path: Path) -> None:
    data, mark, out = tmp_path / "stdin", tmp_path / "mark", tmp_path / "out"
    data.write_bytes(b"abc")
    mark.write_text("10\n")
    with out.open("wb") as sink, pytest.raises(OSError, match="ends at 3 of 10 bytes"):
        feeder.feed(str(data), str(mark), sink.fileno())


def _live_wrapper(tmp_path: Path, command: str) -> tuple[subprocess.Popen[bytes], Path, Path,
                                                         Path]:
    attempt, work = tmp_path / "1", tmp_path / "work"
    attempt.mkdir()
    work.mkdir()
    data, mark = tmp_path / "stdin", tmp_path / "stdin.size"
    feed = [sys.executable, "-I", "-S", feeder.__file__, str(data), str(mark)]
    script = render_wrapper(job_id="j" * 26, attempt=1, attempt_dir=attempt, workdir=work,
                            command=command, stdin=data, env={}, feed=feed)
    (attempt / "job.sh").write_text(script)
    proc = subprocess.Popen(["/bin/sh", str(attempt / "job.sh")])
    return proc, attempt, data, mark


def test_the_command_reads_its_stdin_while_it_still_arrives(tmp_path: Path) -> None:
    witness = tmp_path / "first-line"
    proc, attempt, data, mark = _live_wrapper(
        tmp_path, f'IFS= read -r line; printf "%s" "$line" > {witness}; cat')
    try:
        with data.open("ab") as upload:  # the daemon appends as chunks come
            upload.write(b"first\n")
            upload.flush()
            # No close mark yet: the command must have the first line already.
            _await(lambda: witness.exists() and witness.read_bytes() == b"first", "line 1")
            upload.write(b"second\n")
        mark.write_text(f"{data.stat().st_size}\n")
        assert proc.wait(timeout=30) == 0
    finally:
        proc.kill()
    assert (attempt / "stdout").read_bytes() == b"second\n"
    assert (attempt / "exit").read_text().split() == ["0"]


def test_a_command_that_stops_reading_ends_the_attempt(tmp_path: Path) -> None:
    """The stdin never closes, but the command is done with it: the attempt ends with the
    command's status instead of waiting for bytes nobody reads."""
    proc, attempt, data, _ = _live_wrapper(tmp_path, "head -c 3; exit 7")
    data.write_bytes(b"abcdef")
    try:
        assert proc.wait(timeout=30) == 7
    finally:
        proc.kill()
    assert (attempt / "stdout").read_bytes() == b"abc"
    assert (attempt / "exit").read_text().split() == ["7"]


def test_a_truncated_upload_is_fed_once_in_order(tmp_path: Path) -> None:
    """A client that resumes an upload resends bytes the feeder may have fed already: the
    file shrinks back and grows again with the same bytes; none is fed twice."""
    data, mark = tmp_path / "stdin", tmp_path / "mark"
    data.write_bytes(b"hello ")
    read_end, write_end = os.pipe()
    child = subprocess.Popen([sys.executable, "-I", "-S", feeder.__file__, str(data), str(mark)],
                             stdout=write_end)
    os.close(write_end)
    try:
        assert os.read(read_end, 6) == b"hello "
        with data.open("r+b") as upload:
            upload.truncate(3)  # the resumed upload starts again at byte 3
            upload.seek(3)
            upload.write(b"lo world")
        mark.write_text("11\n")
        rest = b""
        while chunk := os.read(read_end, 100):
            rest += chunk
        assert child.wait(timeout=30) == 0
    finally:
        child.kill()
        os.close(read_end)
    assert b"hello " + rest == b"hello world"


def test_the_feeder_outlives_a_cancel_so_no_cut_stdin_passes_for_whole(tmp_path: Path) -> None:
    """SIGTERM to the job's group: the feeder ignores it (the command dies of it), so it
    never closes the pipe early on a command that survived."""
    data, mark = tmp_path / "stdin", tmp_path / "mark"
    data.write_bytes(b"first ")
    read_end, write_end = os.pipe()
    child = subprocess.Popen([sys.executable, "-I", "-S", feeder.__file__, str(data), str(mark)],
                             stdout=write_end)
    os.close(write_end)
    try:
        assert os.read(read_end, 6) == b"first "
        child.send_signal(signal.SIGTERM)
        with data.open("ab") as upload:
            upload.write(b"second")
        mark.write_text("12\n")
        rest = b""
        while chunk := os.read(read_end, 100):
            rest += chunk
        assert child.wait(timeout=30) == 0
    finally:
        child.kill()
        os.close(read_end)
    assert rest == b"second"


def test_a_feeder_that_fails_marks_the_attempt_as_not_the_jobs_verdict(tmp_path: Path) -> None:
    """No Python on the node, say: the command read an empty stdin and exited 0, but the
    exit file says FEED, so the attempt is lost (retried), never COMPLETE."""
    attempt, work = tmp_path / "1", tmp_path / "work"
    attempt.mkdir()
    work.mkdir()
    script = render_wrapper(job_id="j" * 26, attempt=1, attempt_dir=attempt, workdir=work,
                            command="wc -c", stdin=tmp_path / "stdin", env={},
                            feed=["/nonexistent/python", "feeder.py"])
    (attempt / "job.sh").write_text(script)
    subprocess.run(["/bin/sh", str(attempt / "job.sh")], check=False, timeout=30)
    assert (attempt / "exit").read_text().split() == ["0", "FEED"]


def test_a_feeder_whose_job_was_removed_stops(tmp_path: Path) -> None:
    job = tmp_path / "job"
    job.mkdir()
    data = job / "stdin"
    data.write_bytes(b"x")
    read_end, write_end = os.pipe()
    child = subprocess.Popen([sys.executable, "-I", "-S", feeder.__file__, str(data),
                              str(job / "stdin.size")], stdout=write_end,
                             stderr=subprocess.PIPE)
    os.close(write_end)
    try:
        assert os.read(read_end, 1) == b"x"
        data.unlink()
        job.rmdir()
        assert child.wait(timeout=30) == 1
        assert child.stderr is not None and b"spool directory is gone" in child.stderr.read()
    finally:
        child.kill()
        os.close(read_end)
