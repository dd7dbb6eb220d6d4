"""The store's kept specs: validated once per job, used only for the text they were made
from, bounded; and a job's deliveries read with it whenever its spec has some."""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import pytest

from acjob import lifecycle
from acjob.model import JobSpec, new_job_id
from acjob.store import Store, specs


def test_a_spec_is_validated_once_per_job_and_text(monkeypatch: pytest.MonkeyPatch) -> None:
    job_id, text = new_job_id(), JobSpec(command="true").model_dump_json()
    first = specs.spec_of(job_id, text)
    calls = []
    real = JobSpec.model_validate_json
    monkeypatch.setattr(JobSpec, "model_validate_json",
                        lambda data: calls.append(data) or real(data))
    assert specs.spec_of(job_id, text) is first
    assert calls == []


def test_a_kept_spec_never_stands_for_another_text() -> None:
    job_id = new_job_id()
    specs.spec_of(job_id, JobSpec(command="true").model_dump_json())
    other = specs.spec_of(job_id, JobSpec(command="false").model_dump_json())
    assert other.command == "false"


def test_the_oldest_specs_go_first_past_the_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(specs, "_kept", OrderedDict())
    monkeypatch.setattr(specs, "MAX_SPECS", 3)
    text = JobSpec(command="true").model_dump_json()
    ids = [new_job_id() for _ in range(4)]
    for job_id in ids:
        specs.spec_of(job_id, text)
    assert list(specs._kept) == ids[1:]


def test_deliveries_are_read_with_a_job_whose_spec_has_some(tmp_path: Path) -> None:
    store = Store(tmp_path / "acjob.db")
    with_hook = JobSpec.model_validate(
        {"command": "true", "deliveries": [{"type": "webhook", "url": "http://example/"}]})
    delivering, _ = store.create_job(with_hook, "local", job_id=new_job_id())
    quiet, _ = store.create_job(JobSpec(command="true"), "local", job_id=new_job_id())
    for job in (delivering, quiet):
        store.start_attempt(job.id)
        store.end_attempt(job.id, 1, lambda current: lifecycle.conclude_exit(current, 0))
    assert [d.kind for d in store.get(delivering.id).deliveries] == ["webhook"]
    assert store.get(quiet.id).deliveries == ()
    store.close()
