"""A list page's jobs are made straight from the store's rows, not through the model:
the JSON must be exactly the model's, for every kind of job."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from acjob import lifecycle
from acjob.model import FailureKind, JobSpec, RetryPolicy, State, new_job_id
from acjob.progress import Progress
from acjob.store import Store
from acjob.wire import job_json, spec_form, spec_forms_from_json

SPECS = [
    JobSpec(command="true"),
    JobSpec(command=["printf", "%s\n", "é 😀 \"quoted\" \\ \t"], name="ünïcode ✓",
            labels={"a": "1", "b.c-d_e": "x y", "z": ""}),
    JobSpec.model_validate({
        "command": "sleep 1", "stdin": "upload", "env": {"A": "1"}, "workdir": "/tmp",
        "backend": "local", "name": "",
        "resources": {"cpus": 2, "memory_mb": 512, "time_limit_s": 60,
                      "partition": "short", "account": "lab", "extra_args": ["--x=1"]},
        "retry": {"max_attempts": 5, "on": ["exit", "timeout", "lost"]},
        "deliveries": [{"type": "email", "to": "a@example.org"},
                       {"type": "webhook", "url": "https://example.org/h",
                        "progress_interval": 10}],
    }),
    JobSpec(command="x", resources={"cpus": 1}, retry=RetryPolicy(max_attempts=1, on=[])),
    JobSpec(command="false", retry=RetryPolicy(max_attempts=2),
            deliveries=[{"type": "webhook", "url": "http://127.0.0.1:9/cb"}]),
]


def _varied_jobs(store: Store) -> None:
    """Jobs in many states: queued, waiting for stdin, with stdin closed, running with
    progress, retried, failed, complete with deliveries sent and failing, canceled,
    their files removed."""
    ids = [store.create_job(spec, "local", job_id=new_job_id())[0].id for spec in SPECS]
    plain, text, upload, single, failing = ids
    store.close_stdin(upload, 1234)
    # Running, with the progress of its current attempt.
    a = store.start_attempt(upload)
    store.attempt_submitted(upload, a.number, "boot:1:2")
    store.attempt_running(upload, a.number)
    store.record_progress(upload, a.number, Progress(42.5, "half way ✓", 1_700_000_000.25))
    # Lost once, then exited non-zero: EXECUTOR_ERROR, with its deliveries.
    for number in (1, 2):
        attempt = store.start_attempt(failing)
        assert attempt.number == number
        store.attempt_submitted(failing, number, f"n{number}")
        store.record_progress(failing, number, Progress(float(number), None, 2.0))
        if number == 1:
            store.end_attempt(failing, number, lambda job: lifecycle.conclude(
                job, lifecycle.Failed(FailureKind.LOST, "gone")))
        else:
            store.end_attempt(failing, number, lambda job: lifecycle.conclude_exit(job, 3))
    for delivery in store.outbox.due(float("inf")):
        store.outbox.failed(delivery.id, "refused: ✗", 9e9)
    # Complete, then its files removed.
    attempt = store.start_attempt(single)
    store.end_attempt(single, attempt.number, lambda job: lifecycle.conclude_exit(job, 0))
    store.mark_purged([single])
    # Canceled before it ran.
    store.change_state(plain, lifecycle.after_cancel_request, "canceled by request")
    assert {j.state for j in store.list_jobs()[0]} >= {
        State.QUEUED, State.RUNNING, State.EXECUTOR_ERROR, State.COMPLETE, State.CANCELED}
    del text


def test_a_page_of_forms_is_exactly_the_models_json(tmp_path: Path) -> None:
    store = Store(tmp_path / "acjob.db")
    _varied_jobs(store)
    for kwargs in [{}, {"limit": 2}, {"states": [State.EXECUTOR_ERROR, State.QUEUED]},
                   {"labels": {"a": "1"}}, {"name_prefix": "ü"}]:
        jobs, cursor = store.list_jobs(**kwargs)  # type: ignore[arg-type]
        forms, form_cursor = store.list_jobs_json(**kwargs)  # type: ignore[arg-type]
        expected = [job_json(j) for j in jobs]
        assert forms == expected and form_cursor == cursor
        # Equal values could still differ in their JSON (1 and 1.0, key order).
        assert json.dumps(forms) == json.dumps(expected)
    assert any(f["deliveries"] and f["progress"] and f["failure"]
               for f in store.list_jobs_json()[0])


def test_a_spec_text_of_another_version_is_read_through_the_model(tmp_path: Path) -> None:
    """A stored spec without a field the model has now (written before it existed) is
    read as the model reads it, with the field's default."""
    store = Store(tmp_path / "acjob.db")
    _varied_jobs(store)
    older = json.loads(SPECS[2].model_dump_json())
    del older["labels"], older["resources"]["account"]
    conn = store._database.conn
    conn.execute("UPDATE jobs SET spec = ? WHERE name = ''", (json.dumps(older),))
    assert spec_forms_from_json([json.dumps(older)]) == [None]
    jobs, _ = store.list_jobs()
    assert store.list_jobs_json()[0] == [job_json(j) for j in jobs]


@pytest.mark.parametrize("spec", SPECS)
def test_a_spec_form_from_its_text_is_the_models(spec: JobSpec) -> None:
    text = spec.model_dump_json()
    assert spec_forms_from_json([text, text]) == [spec_form(spec)] * 2


@pytest.mark.parametrize("spec", [*SPECS, JobSpec(command="x", resources={
    "cpus": None, "extra_args": [], "memory_mb": 1, "queue": "q"})])
def test_a_spec_forms_resources_are_pydantics_dump_without_defaults(spec: JobSpec) -> None:
    # Read without pydantic's serializer: the same values, in the same order.
    expected = spec.resources.model_dump(exclude_none=True, exclude_defaults=True)
    resources = spec_form(spec)[3]
    assert resources == expected and list(resources) == list(expected)


def test_a_text_that_does_not_parse_alone_leaves_the_others_read() -> None:
    good = SPECS[1].model_dump_json()
    assert spec_forms_from_json([good, "{", good]) == [spec_form(SPECS[1]), None,
                                                       spec_form(SPECS[1])]
