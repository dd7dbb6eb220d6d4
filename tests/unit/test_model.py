"""The pure rules: states, transitions, ids, specs, retry policy."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from acjob.errors import InvalidRequest
from acjob.model import (
    FINAL_STATES,
    TRANSITIONS,
    FailureKind,
    JobSpec,
    RetryPolicy,
    State,
    can_transition,
    check_job_id,
    describe_errors,
    new_job_id,
)


def test_final_states_allow_nothing() -> None:
    for state in FINAL_STATES:
        assert TRANSITIONS[state] == frozenset()
        assert state.is_final


def test_every_state_has_a_row_and_no_self_loops() -> None:
    assert set(TRANSITIONS) == set(State)
    for state, targets in TRANSITIONS.items():
        assert state not in targets


@pytest.mark.parametrize(("old", "new", "allowed"), [
    (State.QUEUED, State.INITIALIZING, True),
    (State.INITIALIZING, State.RUNNING, True),
    (State.RUNNING, State.COMPLETE, True),
    (State.RUNNING, State.PREEMPTED, True),
    (State.PREEMPTED, State.INITIALIZING, True),
    (State.CANCELING, State.CANCELED, True),
    (State.QUEUED, State.COMPLETE, False),
    (State.COMPLETE, State.RUNNING, False),
    (State.CANCELED, State.QUEUED, False),
    (State.RUNNING, State.QUEUED, False),
])
def test_transition_table(old: State, new: State, allowed: bool) -> None:
    assert can_transition(old, new) is allowed


def test_every_non_final_state_can_reach_a_final_one() -> None:
    for start in set(State) - FINAL_STATES - {State.PAUSED}:
        seen, todo = {start}, [start]
        while todo:
            for nxt in TRANSITIONS[todo.pop()]:
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        assert seen & FINAL_STATES, start


def test_job_ids_are_random_and_validated() -> None:
    ids = {new_job_id() for _ in range(1000)}
    assert len(ids) == 1000
    for job_id in ids:
        assert check_job_id(job_id) == job_id
    for bad in ("", "../etc/passwd", "A" * 26, "a" * 25, "a" * 27, "a" * 25 + "/", "a" * 25 + "1"):
        with pytest.raises(InvalidRequest):
            check_job_id(bad)


def test_retry_policy() -> None:
    policy = RetryPolicy()
    assert policy.allows(1, FailureKind.LOST)
    assert policy.allows(2, FailureKind.NODE_FAIL)
    assert not policy.allows(3, FailureKind.LOST)
    assert not policy.allows(1, FailureKind.EXIT)
    on_exit = RetryPolicy(max_attempts=2, on=frozenset({FailureKind.EXIT}))
    assert on_exit.allows(1, FailureKind.EXIT) and not on_exit.allows(2, FailureKind.EXIT)


@pytest.mark.parametrize("data", [
    {"command": ""}, {"command": []}, {"command": "a\0b"}, {"command": ["a", "b\0"]},
    {"command": "x", "env": {"A=B": "1"}}, {"command": "x", "workdir": "rel/dir"},
    {"command": "x", "labels": {"bad key": "v"}}, {"command": "x", "backend": "../x"},
    {"command": "x", "retry": {"max_attempts": 0}}, {"command": "x", "extra": 1},
])
def test_invalid_specs_are_refused(data: dict) -> None:
    with pytest.raises(ValidationError):
        JobSpec.model_validate(data)


def test_spec_round_trips_through_json() -> None:
    spec = JobSpec(command=["printf", "%s"], stdin="upload", env={"A": "1"},
                   labels={"k": "v"}, retry=RetryPolicy(max_attempts=5))
    assert JobSpec.model_validate_json(spec.model_dump_json()) == spec


ERRORS = {
    "an empty command": ({"command": ""}, "command: String should have at least 1 character"),
    "too long an argv, not 'a valid string'": (
        {"command": ["x"] * 70000},
        "command: List should have at most 65536 items after validation, not 70000"),
    "a variable name, without '[key]'": (
        {"command": "x", "env": {"1X": "y"}},
        "env.1X: String should match pattern '^[A-Za-z_][A-Za-z0-9_]*$'"),
    "a relative working directory, in words": (
        {"command": "x", "workdir": "rel"},
        "workdir: Value error, must be an absolute path: the daemon cannot know where a "
        "relative one starts"),
}


@pytest.mark.parametrize("data,said", ERRORS.values(), ids=ERRORS.keys())
def test_validation_errors_are_said_without_pydantics_branch_names(data: dict,
                                                                    said: str) -> None:
    with pytest.raises(ValidationError) as raised:
        JobSpec.model_validate(data)
    assert describe_errors(raised.value.errors()) == said
    fastapi_form = [{**e, "loc": ("body", *e["loc"])} for e in raised.value.errors()]
    assert describe_errors(fastapi_form) == said
