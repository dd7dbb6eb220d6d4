"""Every client operation, written once as a plan (see :mod:`.core`).

A plan is a generator of effects that a driver performs; it returns the operation's
result or raises its error. :class:`Client` and :class:`AsyncClient` both run these,
so they behave alike by construction.
"""

from __future__ import annotations

import builtins
import json
import os
import time
from collections.abc import Iterable, Mapping
from typing import Any, cast

from ..errors import Conflict, ConnectionFailed
from ..states import State
from .core import (
    RETRIABLE,
    Backoff,
    Block,
    Call,
    Emit,
    Ended,
    EventParser,
    JobInfo,
    JobOptions,
    Open,
    Plan,
    Response,
    Sleep,
    Streamed,
    Which,
    call,
    error_of,
    open_stream,
    pull,
    read_stdin,
)
from .stdin import (
    UPLOAD_CHUNK,
    LiveStdin,
    Segment,
    Stdin,
    _chunks,
    _resume_at,
    _with_lookahead,
    is_live,
)


class Plans:
    """The plans of one client.

    Attributes:
        retry_for: How many seconds a request whose connection fails (or that meets a
            transient error) is retried, with backoff, before its error is raised.
    """

    def __init__(self, retry_for: float) -> None:
        self.retry_for = retry_for

    def request(self, effect: Call, *, retry: bool = True) -> Plan[Any]:
        """Make a request; return its JSON answer.

        Connection failures and 5xx answers other than 501 (which will not change)
        are retried for :attr:`retry_for` seconds; with ``retry=False`` they are
        raised at once, for a caller that resumes by itself.

        Raises:
            ConnectionFailed: the daemon could not be reached in time.
            TransientError: it kept answering 5xx (or answered 501).
            PermanentError: it answered 4xx (the subclass by status and code).
        """
        backoff = Backoff(self.retry_for)
        while True:
            try:
                response = yield from call(effect)
                if response.status >= 500 and response.status != 501:
                    raise error_of(response)
            except RETRIABLE as exc:
                if not retry:
                    raise
                yield Sleep(backoff.next(exc))
                continue
            if response.status >= 400:
                raise error_of(response)
            return json.loads(response.body)

    def create(self, command: str | list[str], options: JobOptions, *,
               stdin_upload: bool = False, idempotency_key: str | None = None) -> Plan[JobInfo]:
        """Create a job; with ``stdin_upload`` it waits for :meth:`upload_stdin`.

        One idempotency key (``idempotency_key``, else a fresh one) serves every
        retry, so a lost answer never makes two jobs.
        """
        key = idempotency_key or os.urandom(16).hex()
        data = yield from self.request(Call("POST", "/v1/jobs",
                                            json=options.body(command, stdin_upload),
                                            headers={"Idempotency-Key": key}))
        return JobInfo.from_json(data)

    def submit(self, command: str | list[str], options: JobOptions, *, stdin: Stdin = None,
               idempotency_key: str | None = None) -> Plan[str]:
        """Create a job and upload its stdin; return its id once both are durable."""
        info = yield from self.create(command, options, stdin_upload=stdin is not None,
                                      idempotency_key=idempotency_key)
        # A retried submission may find its job's stdin already closed.
        if stdin is not None and not info.data["stdin"]["closed"]:
            yield from self.upload_stdin(info.id, stdin)
        return info.id

    def submit_many(self, jobs: Iterable[Mapping[str, Any]], *,
                    idempotency_key: str | None = None) -> Plan[builtins.list[str]]:
        """Create several jobs in one transaction; return their ids in order."""
        key = idempotency_key or os.urandom(16).hex()
        data = yield from self.request(Call("POST", "/v1/jobs/batch",
                                            json={"jobs": [dict(j) for j in jobs]},
                                            headers={"Idempotency-Key": key}))
        return [j["id"] for j in data["jobs"]]

    def upload_stdin(self, job_id: str, stdin: Stdin, offset: int = 0) -> Plan[int]:
        """Upload ``stdin`` and close it; return the bytes uploaded.

        A stdin that may still be arriving (a pipe, an iterable) is sent as it comes,
        so the job, which may already run, reads it live; one that is complete (bytes,
        a path, a regular file) is sent in chunks. Either way an upload that fails is
        resumed at the byte the daemon reached (asked with ``GET .../stdin``), so no
        byte is sent twice into the job's stdin.

        A live stdin of which the daemon already holds ``offset`` bytes, written by
        this client another way (see :mod:`acjob.client.handoff`), goes on from there.

        Raises:
            ConnectionFailed: the daemon stayed unreachable for :attr:`retry_for`
                seconds during one chunk, or (``stdin_lost``) lost acknowledged bytes.
        """
        if is_live(stdin):
            return (yield from self._upload_live(job_id, LiveStdin(cast(Any, stdin)), offset))
        return (yield from self._upload_whole(job_id, stdin))

    def close_stdin(self, job_id: str, offset: int) -> Plan[int]:
        """Close the job's stdin at ``offset`` bytes (flushed to disk before the answer);
        return its size."""
        closed = yield from self.request(Call(
            "PUT", f"/v1/jobs/{job_id}/stdin", params={"offset": offset, "final": "true"},
            content=b"", timeout=None))
        return int(closed["bytes"])

    def _upload_live(self, job_id: str, source: LiveStdin, offset: int) -> Plan[int]:
        """Send a live stdin in segments, each one request streamed as the bytes come;
        close it with an empty final request once it ended."""
        path = f"/v1/jobs/{job_id}/stdin"
        while True:
            first = yield Block(lambda: source.read(UPLOAD_CHUNK))
            if not first:
                return (yield from self.close_stdin(job_id, offset))
            segment = Segment(source, offset, first)
            backoff = Backoff(self.retry_for)
            skip = 0
            while True:
                try:
                    result = yield from self.request(Call(
                        "PUT", path, params={"offset": offset + skip, "final": "false"},
                        content=Streamed(segment.body(skip)), timeout=None), retry=False)
                    break
                except RETRIABLE as exc:
                    yield Sleep(backoff.next(exc))
                    status = yield from self.request(Call("GET", path))
                    resume = _resume_at(status, offset, len(segment.buffer))
                    if resume is None:
                        return int(status["bytes"])
                    skip = resume
            offset = int(result["bytes"])
            if offset != segment.start + len(segment.buffer):
                raise ConnectionFailed(
                    f"the daemon holds {offset} stdin bytes, but "
                    f"{segment.start + len(segment.buffer)} were sent",
                    hint="submit the job again", code="stdin_lost")
            if segment.ended:
                return (yield from self.close_stdin(job_id, offset))

    def _upload_whole(self, job_id: str, stdin: Stdin) -> Plan[int]:
        """Send a complete stdin in chunks, the last one closing it."""
        path = f"/v1/jobs/{job_id}/stdin"
        chunks = _with_lookahead(_chunks(stdin))
        offset = 0
        while (item := (yield from read_stdin(chunks))) is not None:
            chunk, last = item
            backoff = Backoff(self.retry_for)
            done = 0
            while True:
                params = {"offset": offset + done, "final": "true" if last else "false"}
                try:
                    result = yield from self.request(
                        Call("PUT", path, params=params, content=chunk[done:] if done else chunk,
                             timeout=None), retry=False)
                    break
                except RETRIABLE as exc:
                    yield Sleep(backoff.next(exc))
                    status = yield from self.request(Call("GET", path))
                    resume = _resume_at(status, offset, len(chunk))
                    if resume is None:
                        result = status
                        break
                    done = resume
            offset = result["bytes"]
        return offset

    def get(self, job_id: str, *, wait: float = 0, since: int | None = None) -> Plan[JobInfo]:
        """Return the job; with ``wait``, as soon as it passes event ``since`` (at most
        ``wait`` seconds)."""
        params: dict[str, Any] = {"wait": wait}
        if since is not None:
            params["since"] = since
        data = yield from self.request(Call("GET", f"/v1/jobs/{job_id}", params=params,
                                            timeout=wait + 30.0))
        return JobInfo.from_json(data)

    def list(self, *, state: Iterable[str] = (), label: Mapping[str, str] | None = None,
             limit: int = 100, cursor: str | None = None,
             name_prefix: str | None = None) -> Plan[
        tuple[builtins.list[JobInfo], str | None]
    ]:
        """Return one page of jobs (newest first) and the cursor of the next page."""
        params: dict[str, Any] = {"state": builtins.list(state), "limit": limit,
                                  "label": [f"{k}={v}" for k, v in (label or {}).items()]}
        if cursor:
            params["cursor"] = cursor
        if name_prefix:
            params["name_prefix"] = name_prefix
        data = yield from self.request(Call("GET", "/v1/jobs", params=params))
        return [JobInfo.from_json(j) for j in data["jobs"]], data["next_cursor"]

    def cancel(self, job_id: str) -> Plan[JobInfo]:
        """Cancel the job (idempotent); return it."""
        return JobInfo.from_json((yield from self.request(Call("POST",
                                                              f"/v1/jobs/{job_id}/cancel"))))

    def remove_files(self, job_id: str) -> Plan[JobInfo]:
        """Remove a finished job's files now; return the job."""
        return JobInfo.from_json((yield from self.request(Call("DELETE",
                                                              f"/v1/jobs/{job_id}/files"))))

    def prune(self, older_than: float) -> Plan[int]:
        """Remove the files of the jobs that ended ``older_than`` seconds ago or more;
        return how many."""
        data = yield from self.request(Call("POST", "/v1/jobs/prune",
                                            json={"older_than_s": older_than}))
        return int(data["removed"])

    def shutdown(self) -> Plan[None]:
        """Ask the daemon to stop (running jobs go on)."""
        yield from self.request(Call("POST", "/v1/shutdown"))

    def wait(self, job_id: str, timeout: float | None = None,
             poll: float = 60.0) -> Plan[JobInfo]:
        """Long-poll until the job is final or ``timeout`` seconds passed; return it.

        Each long-poll lasts at most ``poll`` seconds.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = poll if deadline is None else max(0.0, min(poll, deadline - time.monotonic()))
            # One request for the whole wait: the daemon answers at the job's end (a
            # daemon that does not know `final` answers at each event: asked again).
            data = yield from self.request(Call(
                "GET", f"/v1/jobs/{job_id}", params={"wait": left, "final": True},
                timeout=left + 30.0))
            info = JobInfo.from_json(data)
            if info.is_final or left <= 0:
                return info

    def stream(self, job_id: str, which: Which = "stdout", *, offset: int = 0,
               follow: bool = True, attempt: int | None = None) -> Plan[None]:
        """Emit one attempt's output from ``offset``, resuming after broken connections.

        Follows the latest attempt unless ``attempt`` is given; with ``follow`` it
        ends once the job is over and every byte was emitted. The retry deadline
        starts over with each chunk received.

        Raises:
            Conflict: (``attempt_retried``) following the latest attempt, the attempt
                whose bytes were already emitted failed and a retry started over:
                its output would not continue what was emitted.
            ConnectionFailed: the daemon stayed unreachable for :attr:`retry_for` s.
            PermanentError: the job does not exist, its output expired, …
        """
        pinned, emitted, whole = attempt is not None, False, False
        backoff = Backoff(self.retry_for)
        while True:
            params: dict[str, Any] = {"offset": offset, "follow": follow}
            if attempt is not None:
                params["attempt"] = attempt
            try:
                response = yield from open_stream(Open(f"/v1/jobs/{job_id}/{which}", params))
                if response.status >= 400:
                    body = b""
                    while chunk := (yield from pull()):
                        body += chunk
                    # Any 5xx, 501 included, is retried here, as it always was.
                    raise error_of(Response(response.status, response.headers, body))
                attempt = int(response.headers.get("x-acjob-attempt", "0"))
                whole = response.headers.get("x-acjob-final") == "true"
                while chunk := (yield from pull()):
                    offset += len(chunk)
                    emitted = True
                    backoff.reset(self.retry_for)
                    yield Emit(chunk)
            except RETRIABLE as exc:
                yield Sleep(backoff.next(exc))
                continue
            if not follow or attempt == 0 or whole:
                return  # (whole: the job had ended, and every byte came)
            known = yield Ended()
            info = JobInfo.from_json(known) if known is not None \
                else (yield from self.get(job_id))
            if (info.attempt == attempt and info.is_final) or pinned:
                return
            if info.attempt != attempt:
                if emitted:
                    raise Conflict(
                        f"attempt {attempt} of job {job_id} failed after its output began "
                        f"({info.reason}); attempt {info.attempt} starts over",
                        hint=f"read the final output once the job has ended: acpoll {job_id}",
                        code="attempt_retried",
                    )
                attempt, offset = info.attempt, 0
            # Otherwise the daemon ended the stream early (it was stopping): resume.

    def progress(self, job_id: str) -> Plan[None]:
        """Emit each change of the job's progress, until the job is final.

        Follows the job's event stream, resuming after a broken connection (from the
        last event seen); each emitted item is the JSON of one ``progress`` event
        (``job_id``, ``attempt``, ``progress``). The job's current progress comes
        first, if it has any; repeats and the ``null`` of a new attempt are left out.

        Raises:
            ConnectionFailed: the daemon stayed unreachable for :attr:`retry_for` s.
            NotFound: no such job.
        """
        after, last = 0, None
        backoff = Backoff(self.retry_for)
        while True:
            final = False
            parser = EventParser()
            try:
                response = yield from open_stream(Open(f"/v1/jobs/{job_id}/events",
                                                       {"after": after, "follow": "true"}))
                if response.status >= 400:
                    body = b""
                    while chunk := (yield from pull()):
                        body += chunk
                    raise error_of(Response(response.status, response.headers, body))
                while chunk := (yield from pull()):
                    backoff.reset(self.retry_for)
                    for event in parser.feed(chunk):
                        if event.event == "progress":
                            data = json.loads(event.data)
                            key = (data.get("attempt"), data.get("progress"))
                            if data.get("progress") is not None and key != last:
                                yield Emit(event.data.encode())
                            last = key
                            continue
                        if event.id is not None and event.id.isdigit():
                            after = int(event.id)
                        final = final or event.event in _FINAL
            except RETRIABLE as exc:
                yield Sleep(backoff.next(exc))
                continue
            if final:
                return
            # The stream ended early (the daemon was stopping): unless the job is over,
            # follow it again from the last event seen.
            info = yield from self.get(job_id)
            if info.is_final:
                return


_FINAL = frozenset(state.value for state in State if state.is_final)
