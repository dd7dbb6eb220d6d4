"""The client core: its plans run by a fake driver, and the two clients kept twins."""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable
from typing import Any

import pytest

from acjob import AsyncClient, AsyncJobHandle, Client, JobHandle
from acjob.client.core import (
    Call,
    Emit,
    JobOptions,
    Open,
    Plan,
    Pull,
    ReadStdin,
    Response,
    Run,
    Sleep,
    TransportError,
)
from acjob.client.plans import Plans
from acjob.errors import (
    Conflict,
    ConnectionFailed,
    Gone,
    NotFound,
    StorageFull,
    TransientError,
)

Reply = Response | bytes | Exception


def ok(data: Any, status: int = 200, **headers: str) -> Response:
    return Response(status, headers, json.dumps(data).encode())


def error(status: int, code: str) -> Response:
    return ok({"error": {"code": code, "message": "m", "hint": None}}, status)


def job(state: str = "RUNNING", attempt: int = 1, **extra: Any) -> dict[str, Any]:
    return {"id": "j1", "state": state, "attempt": attempt, "seq": 1, **extra}


class FakeDriver:
    """Runs a plan against scripted replies to its Call, Open and Pull effects.

    Records every effect; Sleep takes no time, ReadStdin reads the plan's iterator.
    """

    def __init__(self, *replies: Reply) -> None:
        self.replies = list(replies)
        self.effects: list[Any] = []
        self.emitted = b""

    def run(self, plan: Plan[Any]) -> Any:
        run = Run(plan)
        while (effect := run.next()) is not None:
            self.effects.append(effect)
            if isinstance(effect, Emit):
                self.emitted += effect.data
            elif isinstance(effect, ReadStdin):
                run.send(next(effect.chunks, None))
            elif isinstance(effect, Call | Open | Pull):
                reply = self.replies.pop(0)
                if isinstance(reply, Exception):
                    run.throw(reply)
                else:
                    run.send(reply)
        assert not self.replies, "the plan did not use every scripted reply"
        return run.result

    def of(self, kind: type[Any]) -> list[Any]:
        return [e for e in self.effects if isinstance(e, kind)]


def test_a_transport_error_is_retried_after_a_pause() -> None:
    driver = FakeDriver(TransportError("connection reset"), ok(job()))
    info = driver.run(Plans(60).get("j1"))
    assert info.id == "j1" and info.attempt == 1
    assert len(driver.of(Call)) == 2 and [s.seconds for s in driver.of(Sleep)] == [0.1]


def test_a_503_is_retried_then_succeeds_with_growing_pauses() -> None:
    driver = FakeDriver(error(503, "unavailable"), error(507, "storage_full"), ok(job()))
    assert driver.run(Plans(60).get("j1")).id == "j1"
    assert [s.seconds for s in driver.of(Sleep)] == [0.1, 0.2]


def test_errors_that_retrying_cannot_fix_are_raised_at_once() -> None:
    driver = FakeDriver(error(404, "not_found"))
    with pytest.raises(NotFound):
        driver.run(Plans(60).get("j1"))
    assert driver.of(Sleep) == []
    driver = FakeDriver(error(501, "not_implemented"))
    with pytest.raises(TransientError):
        driver.run(Plans(60).cancel("j1"))
    assert len(driver.of(Call)) == 1


def test_retrying_stops_at_the_deadline() -> None:
    # A driver's transport error says where and why (see acjob.client.reach).
    with pytest.raises(ConnectionFailed, match=r"^cannot reach the acjob daemon at h: refused$"):
        FakeDriver(TransportError("h: refused")).run(Plans(0).shutdown())
    with pytest.raises(StorageFull):
        FakeDriver(error(507, "storage_full")).run(Plans(0).shutdown())


def test_a_submission_keeps_one_idempotency_key_across_retries() -> None:
    created = job("QUEUED", 0, stdin={"closed": True, "bytes": 0})
    driver = FakeDriver(TransportError("reset"), ok(created))
    assert driver.run(Plans(60).submit("cat", JobOptions(env={"A": "1"}), stdin=b"x")) == "j1"
    first, second = driver.of(Call)
    assert first == second and first.headers["Idempotency-Key"]
    assert first.json == {"command": "cat", "stdin": "upload", "env": {"A": "1"}}


def test_a_broken_upload_resumes_at_the_daemons_offset() -> None:
    driver = FakeDriver(
        TransportError("broken pipe"),             # PUT of the whole chunk
        ok({"bytes": 6, "closed": False}),         # GET: the daemon kept 6 bytes
        ok({"bytes": 11, "closed": True}),         # PUT of the rest
    )
    assert driver.run(Plans(60).upload_stdin("j1", b"hello world")) == 11
    first, status, rest = driver.of(Call)
    assert (first.method, first.params, first.content) == (
        "PUT", {"offset": 0, "final": "true"}, b"hello world")
    assert (status.method, status.path) == ("GET", "/v1/jobs/j1/stdin")
    assert (rest.params, rest.content) == ({"offset": 6, "final": "true"}, b"world")


def test_an_upload_whose_answer_was_lost_is_not_sent_again() -> None:
    driver = FakeDriver(TransportError("reset"), ok({"bytes": 5, "closed": True}))
    assert driver.run(Plans(60).upload_stdin("j1", b"hello")) == 5
    assert len(driver.of(Call)) == 2


def test_a_cut_stream_resumes_at_the_offset_reached() -> None:
    attempt = {"x-acjob-attempt": "1"}
    driver = FakeDriver(
        Response(200, attempt), b"abc", TransportError("reset"),
        Response(200, attempt), b"def", b"",
        ok(job("COMPLETE")),
    )
    driver.run(Plans(60).stream("j1", "stdout"))
    assert driver.emitted == b"abcdef"
    first, second = driver.of(Open)
    assert first.params == {"offset": 0, "follow": True}
    assert second.params == {"offset": 3, "follow": True, "attempt": 1}


def test_a_stream_does_not_splice_a_retried_attempt() -> None:
    driver = FakeDriver(
        Response(200, {"x-acjob-attempt": "1"}), b"abc", b"",
        ok(job("PREEMPTED", attempt=2, reason="node lost")),
    )
    with pytest.raises(Conflict) as caught:
        driver.run(Plans(60).stream("j1", "stdout"))
    assert caught.value.code == "attempt_retried" and driver.emitted == b"abc"


def test_a_stream_error_body_is_read_and_raised() -> None:
    body = json.dumps({"error": {"code": "output_expired", "message": "gone"}}).encode()
    driver = FakeDriver(Response(410, {}), body[:5], body[5:], b"")
    with pytest.raises(Gone, match="gone") as caught:
        driver.run(Plans(60).stream("j1", "stderr"))
    assert caught.value.code == "output_expired" and driver.emitted == b""


# -- the two clients are twins --------------------------------------------------------------

_TWIN_NAMES = {"aclose": "close", "__aenter__": "__enter__", "__aexit__": "__exit__"}


def _public(cls: type[Any]) -> dict[str, Callable[..., Any]]:
    return {_TWIN_NAMES.get(name, name): member for name, member in vars(cls).items()
            if callable(member) and (not name.startswith("_") or name in {
                "__init__", "__enter__", "__exit__", "__aenter__", "__aexit__"})}


def _sync_form(annotation: Any) -> str:
    """An async method's annotation as its sync twin spells it."""
    text = str(annotation)
    for async_name, sync_name in (("AsyncIterator", "Iterator"), ("AsyncJobHandle", "JobHandle"),
                                  ("AsyncClient", "Client")):
        text = text.replace(async_name, sync_name)
    return text


@pytest.mark.parametrize(("sync_cls", "async_cls"), [(Client, AsyncClient),
                                                     (JobHandle, AsyncJobHandle)])
def test_the_async_twin_has_the_same_methods_and_parameters(sync_cls: type[Any],
                                                            async_cls: type[Any]) -> None:
    sync_methods, async_methods = _public(sync_cls), _public(async_cls)
    assert sync_methods.keys() == async_methods.keys()
    for name, sync_method in sync_methods.items():
        async_method = async_methods[name]
        sync_sig, async_sig = inspect.signature(sync_method), inspect.signature(async_method)
        assert [(p.name, p.kind, p.default, _sync_form(p.annotation))
                for p in async_sig.parameters.values()] == [
            (p.name, p.kind, p.default, str(p.annotation))
            for p in sync_sig.parameters.values()], name
        assert _sync_form(async_sig.return_annotation) == str(sync_sig.return_annotation), name
        # What returns a value in the sync client is awaited in the async one; what
        # returns an iterator returns an async iterator, usable without awaiting.
        returns_iterator = str(sync_sig.return_annotation).startswith("Iterator")
        is_plain = name in {"__init__", "job"} or returns_iterator
        assert inspect.iscoroutinefunction(async_method) is not is_plain, name


def test_a_stream_of_an_ended_job_asks_nothing_more() -> None:
    """X-Acjob-Final: the body is all there is; no request follows the stream."""
    from acjob.client.core import Open, Pull, Response, Run
    from acjob.client.plans import Plans

    run = Run(Plans(retry_for=1.0).stream("j" * 26, "stdout"))
    effect = run.next()
    assert isinstance(effect, Open)
    run.send(Response(200, {"x-acjob-attempt": "1", "x-acjob-final": "true"}))
    emitted = []
    while (effect := run.next()) is not None:
        assert isinstance(effect, Pull | Emit), effect  # never a Call: no get afterwards
        if isinstance(effect, Pull):
            run.send(b"out" if not emitted else b"")
        else:
            emitted.append(effect.data)
            run.send(None)
    assert emitted == [b"out"]


@pytest.mark.parametrize("handle", [JobHandle, AsyncJobHandle])
def test_a_handle_waits_like_its_client(handle: type[Any]) -> None:
    """``job.wait(poll=…)`` as ``client.wait(id, poll=…)``: the handle has every knob."""
    client = Client if handle is JobHandle else AsyncClient
    waits = inspect.signature(client.wait).parameters
    assert list(inspect.signature(handle.wait).parameters) == [
        "self", *[name for name in waits if name not in ("self", "job_id")]]
