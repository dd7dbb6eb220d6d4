"""The receiver's order of steps: check, write the files, commit, wake."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from acjob.errors import Conflict, InvalidRequest
from acjob.model import JobSpec, State, new_job_id
from acjob.receiver import Receiver, ReceiverSettings, Submission
from acjob.spool import Spool
from acjob.store import Store


class Picky:
    """A backend that refuses commands containing 'nope'."""

    def validate(self, spec: JobSpec) -> None:
        if "nope" in str(spec.command):
            raise InvalidRequest("refused")


@pytest.fixture
def parts(tmp_path: Path) -> tuple[Receiver, list[str | None]]:
    woken: list[str | None] = []
    receiver = Receiver(Store(tmp_path / "db"), Spool(tmp_path / "spool"),
                        {"local": Picky()},  # type: ignore[dict-item]
                        ReceiverSettings(default_backend="local"), wake=woken.append)
    return receiver, woken


def test_files_then_commit_then_wake(parts: tuple[Receiver, list[str | None]]) -> None:
    receiver, woken = parts
    job_id = new_job_id()
    [(job, created)] = receiver.accept([Submission(JobSpec(command="true"), job_id=job_id,
                                                   files=(("plan.json", b"{}"),))])
    assert created and job.id == job_id and job.state is State.QUEUED
    assert (receiver.spool.job_dir(job_id) / "plan.json").read_bytes() == b"{}"
    assert woken == [None]


def test_a_refused_job_leaves_nothing(parts: tuple[Receiver, list[str | None]]) -> None:
    receiver, woken = parts
    with pytest.raises(InvalidRequest):
        receiver.accept([Submission(JobSpec(command="true")),
                         Submission(JobSpec(command="nope"))])
    assert receiver.store.list_jobs()[0] == []
    assert list(receiver.spool.root.iterdir()) == []
    assert woken == []


def test_a_mail_needs_a_mail_server(parts: tuple[Receiver, list[str | None]]) -> None:
    receiver, _ = parts
    spec = JobSpec(command="true", deliveries=[{"type": "email", "to": "me@example.org"}])
    with pytest.raises(InvalidRequest) as refused:
        receiver.accept([Submission(spec)])
    assert refused.value.code == "mail_unavailable" and "[mail]" in (refused.value.hint or "")
    # A new [mail] table takes a restart: the hint says so, and names the file.
    receiver.settings = ReceiverSettings(default_backend="local", config_file="/etc/a.toml")
    with pytest.raises(InvalidRequest) as refused:
        receiver.accept([Submission(spec)])
    assert refused.value.hint == (
        "add a [mail] table (host, sender) to /etc/a.toml, then restart the daemon (ac "
        "shutdown; a private daemon starts again with the next command), or fetch the result "
        "with -t poll and acpoll")
    receiver.settings = ReceiverSettings(default_backend="local", mail_sending=True)
    [(_, created)] = receiver.accept([Submission(spec)])
    assert created


def test_a_failed_commit_removes_the_files_it_would_have_owned(
        parts: tuple[Receiver, list[str | None]], monkeypatch: pytest.MonkeyPatch) -> None:
    receiver, _ = parts

    def broken(new: object) -> object:
        raise Conflict("raced")

    monkeypatch.setattr(receiver.store, "create_jobs", broken)
    with pytest.raises(Conflict):
        receiver.accept([Submission(JobSpec(command="true"), files=(("plan.json", b"x"),))])
    assert list(receiver.spool.root.iterdir()) == []


def test_a_retry_gets_its_job_without_checking_again(
        parts: tuple[Receiver, list[str | None]]) -> None:
    receiver, _ = parts
    spec = JobSpec(command="true", workdir="/")
    [(first, _)] = receiver.accept([Submission(spec)], key="k")
    receiver.backends = {}  # the world changed: no backend would accept it now
    [(again, created)] = receiver.accept([Submission(spec)], key="k")
    assert again.id == first.id and not created
    with pytest.raises(Conflict):
        receiver.accept([Submission(JobSpec(command="other"))], key="k")


def test_job_file_names_are_plain_names(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    job_id = new_job_id()
    spool.create_job(job_id)
    for bad in ("../x.json", "stdin", "1", "a/b.json", ".hidden.json", "x"):
        with pytest.raises(ValueError, match="not a job file name"):
            spool.write_job_file(job_id, bad, b"")


def test_a_queued_job_costs_no_directory(parts: tuple[Receiver, list[str | None]]) -> None:
    """Its directory is made when it is dispatched or its stdin arrives."""
    receiver, _ = parts
    [(job, _)] = receiver.accept([Submission(JobSpec(command="true"))])
    assert not receiver.spool.job_dir(job.id).exists()


def test_bytes_once_received_never_change(tmp_path: Path) -> None:
    """A job may already have read them: a resend must be the same bytes; a stdin past
    its limit keeps what came before the chunk that passed it."""
    import asyncio

    from acjob.errors import PayloadTooLarge

    spool = Spool(tmp_path)
    job_id = new_job_id()
    spool.create_job(job_id)

    async def chunks(*parts: bytes) -> AsyncIterator[bytes]:
        for part in parts:
            yield part

    async def scenario() -> None:
        assert await spool.write_stdin(job_id, 0, chunks(b"hello ", b"wor"), None) == 9
        assert await spool.write_stdin(job_id, 6, chunks(b"world"), None) == 11  # resend
        with pytest.raises(Conflict, match="differ"):
            await spool.write_stdin(job_id, 0, chunks(b"HELLO"), None)
        with pytest.raises(PayloadTooLarge):
            await spool.write_stdin(job_id, 11, chunks(b"!", b"too much"), 12)

    asyncio.run(scenario())
    assert spool.stdin_path(job_id).read_bytes() == b"hello world!"


def test_the_daemons_own_fence_is_known_after_a_crash(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    job_id = new_job_id()
    assert spool.fence(job_id, 1)
    assert spool.fence(job_id, 1)  # a restart asks again: still its own fence
    (spool.attempt_dir(job_id, 2)).mkdir(parents=True)
    (spool.attempt_dir(job_id, 2) / "claim").touch()  # a wrapper's claim
    assert not spool.fence(job_id, 2)
