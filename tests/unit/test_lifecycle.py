"""Every rule of a job's life, one table row each (acjob.lifecycle is pure).

The rows include the cases the integration tests found on real schedulers: Slurm's
kill reaching the command before the wrapper (a plain 143 that is not the job's own
verdict), Grid Engine's accounting written late (a deletion awaited, not a loss), a
full spool, a cancel racing an end.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import pytest

from acjob import lifecycle
from acjob.errors import Conflict
from acjob.lifecycle import Alive, AttemptEnd, Canceled, Exited, Failed, Verdict, Waiting
from acjob.model import (
    Attempt,
    AttemptState,
    ExitRecord,
    FailureKind,
    Job,
    JobSpec,
    Observation,
    RetryPolicy,
    State,
    can_transition,
)

LOST, NODE_FAIL, TIMEOUT = FailureKind.LOST, FailureKind.NODE_FAIL, FailureKind.TIMEOUT
FULL = "the spool's file system is full (0 bytes free): the job's output could not be written"


def _job(state: State = State.RUNNING, *, tries: int = 1, abandoned: int = 0,
         retry: RetryPolicy | None = None, time_limit: int | None = None,
         native_id: str | None = "7", attempt_state: AttemptState = AttemptState.RUNNING,
         started_at: float | None = 100.0) -> Job:
    """A job whose current attempt is number ``abandoned + tries``."""
    spec = JobSpec(command="work", retry=retry or RetryPolicy(),
                   resources={"time_limit_s": time_limit} if time_limit else {})
    attempts = [Attempt("j", n + 1, state=AttemptState.ABANDONED) for n in range(abandoned)]
    attempts += [Attempt("j", abandoned + n + 1, state=AttemptState.ENDED)
                 for n in range(tries - 1)]
    attempts.append(Attempt("j", abandoned + tries, native_id=native_id, state=attempt_state,
                            started_at=started_at))
    return Job(id="j", spec=spec, state=state, backend="b", created_at=0.0, updated_at=0.0,
               seq=1, attempt=len(attempts), attempts=tuple(attempts))


# -- judge: what was seen becomes a verdict ------------------------------------------


@dataclass(frozen=True)
class Seen:
    observation: Observation
    record: ExitRecord | None = None
    job: Job = field(default_factory=_job)
    timed_out: bool = False
    gone_since: float | None = None
    now: float = 1000.0
    grace: float = 0.0


JUDGE = {
    "running": (Seen(Observation("running")), Alive(running=True)),
    "pending": (Seen(Observation("pending")), Alive(running=False)),
    "alive even with an exit file (the wrapper is still finishing)":
        (Seen(Observation("running"), ExitRecord(0)), Alive(running=True)),
    "exit 0": (Seen(Observation("gone"), ExitRecord(0)), Exited(0)),
    "exit 3": (Seen(Observation("gone"), ExitRecord(3)), Exited(3)),
    "killed by a signal of its own (137) is the job's status":
        (Seen(Observation("gone"), ExitRecord(137)), Exited(137)),
    "a scheduler's node failure beats the 143 its kill left (Slurm)":
        (Seen(Observation("failed", NODE_FAIL, "NODE_FAIL"), ExitRecord(143)),
         Failed(NODE_FAIL, "NODE_FAIL")),
    "a scheduler's cancel beats the 143 its kill left (scancel)":
        (Seen(Observation("canceled", reason="CANCELLED"), ExitRecord(143)),
         Canceled("CANCELLED", outside=True)),
    "a clean status beats a scheduler's failure":
        (Seen(Observation("failed", NODE_FAIL, "x"), ExitRecord(0)), Exited(0)),
    "a status up to 128 stands whatever the scheduler says":
        (Seen(Observation("canceled"), ExitRecord(1)), Exited(1)),
    "canceling, gone without a status":
        (Seen(Observation("gone"), job=_job(State.CANCELING)), Canceled("canceled by request")),
    "canceling for a reason of the daemon's, which stays the reason":
        (Seen(Observation("gone"), job=replace(_job(State.CANCELING),
                                               reason="its stdin upload stopped at 3 bytes")),
         Canceled("its stdin upload stopped at 3 bytes")),
    "canceling, but it exited first":
        (Seen(Observation("gone"), ExitRecord(0), job=_job(State.CANCELING)), Exited(0)),
    "canceled outside acjob, no reason given":
        (Seen(Observation("canceled")), Canceled("canceled outside acjob", outside=True)),
    "a failure without a kind or words is a loss":
        (Seen(Observation("failed")), Failed(LOST, "the scheduler reported a failure")),
    "Grid Engine could not start it (Eqw)":
        (Seen(Observation("failed", FailureKind.BOOT_FAIL, "can't open output")),
         Failed(FailureKind.BOOT_FAIL, "can't open output")),
    "stopped at its time limit by the monitor":
        (Seen(Observation("gone"), ExitRecord(143, "TERM"), job=_job(time_limit=60),
              timed_out=True), Failed(TIMEOUT, "the time limit of 60 s was reached")),
    "vanished, no grace (local processes)":
        (Seen(Observation("gone")),
         Failed(LOST, "the job's process vanished without recording an exit status")),
    "vanished, first seen now, within the grace (a shared file system lags)":
        (Seen(Observation("gone"), grace=120.0), Waiting(1000.0, 1120.0)),
    "vanished, still within the grace":
        (Seen(Observation("gone"), gone_since=950.0, grace=120.0), Waiting(950.0, 1070.0)),
    "vanished, grace over":
        (Seen(Observation("gone"), gone_since=880.0, grace=120.0),
         Failed(LOST, "the job's process vanished without recording an exit status")),
    "signalled (qdel's USR2), accounting not written yet: wait (Grid Engine)":
        (Seen(Observation("gone"), ExitRecord(140, "USR2"), grace=120.0),
         Waiting(1000.0, 1120.0)),
    "signalled from outside, grace over":
        (Seen(Observation("gone"), ExitRecord(143, "TERM"), gone_since=0.0, grace=120.0),
         Failed(LOST, "the job was stopped from outside (SIGTERM)")),
}


@pytest.mark.parametrize("seen,expected", JUDGE.values(), ids=JUDGE.keys())
def test_judge(seen: Seen, expected: Verdict) -> None:
    verdict = lifecycle.judge(seen.job, seen.job.attempts[-1], seen.observation, seen.record,
                              timed_out=seen.timed_out, gone_since=seen.gone_since,
                              now=seen.now, lost_grace=seen.grace)
    assert verdict == expected


AWAITS = {
    "a batch scheduler's job died by a signal: hear the scheduler": (143, "7", False, True),
    "an ordinary failure needs no verdict": (1, "7", False, False),
    "exactly 128 is no signal": (128, "7", False, False),
    "local processes report their own exits": (143, "7", True, False),
    "never submitted: no scheduler to ask": (143, None, False, False),
}


@pytest.mark.parametrize("code,native_id,notifies,expected", AWAITS.values(), ids=AWAITS.keys())
def test_awaits_verdict(code: int, native_id: str | None, notifies: bool,
                        expected: bool) -> None:
    attempt = Attempt("j", 1, native_id=native_id)
    assert lifecycle.awaits_verdict(code, attempt, notifies_exits=notifies) is expected


def test_a_claim_without_a_process_gets_at_least_the_claim_grace() -> None:
    assert lifecycle.judge_claim(None, 10.0, 0.0) == Waiting(10.0, 10.0 + lifecycle.CLAIM_GRACE)
    assert lifecycle.judge_claim(10.0, 20.0, 120.0) == Waiting(10.0, 130.0)
    assert lifecycle.judge_claim(10.0, 10.0 + lifecycle.CLAIM_GRACE, 0.0) == Failed(
        LOST, "the job's wrapper started but its process was never found")


def test_time_left() -> None:
    assert lifecycle.time_left(_job(time_limit=60), _job().attempts[-1], 130.0) == 30.0
    assert lifecycle.time_left(_job(time_limit=60), _job().attempts[-1], 170.0) == -10.0
    assert lifecycle.time_left(_job(), _job().attempts[-1], 1e9) is None
    unstarted = _job(time_limit=60, started_at=None)
    assert lifecycle.time_left(unstarted, unstarted.attempts[-1], 1e9) is None


# -- conclude: a verdict and the job as it is now become the job's next state -----------

ON_EXIT = RetryPolicy(on=frozenset({FailureKind.EXIT}))
ON_TIMEOUT = RetryPolicy(on=frozenset({TIMEOUT}))
ON_SUBMIT = RetryPolicy(on=frozenset({FailureKind.SUBMIT}))
ONCE = RetryPolicy(max_attempts=1)

CONCLUDE: dict[str, tuple[Job, Verdict, str | None, AttemptEnd]] = {
    "exit 0 completes": (_job(), Exited(0), None, AttemptEnd(State.COMPLETE, exit_code=0)),
    "exit 1 is the command's failure":
        (_job(), Exited(1), None, AttemptEnd(State.EXECUTOR_ERROR, 1, FailureKind.EXIT,
                                              "exited with status 1")),
    "exit 1 retried when the policy lists exit":
        (_job(retry=ON_EXIT), Exited(1), None,
         AttemptEnd(State.PREEMPTED, 1, FailureKind.EXIT, "exited with status 1")),
    "exit 1 on the last attempt: retries exhausted":
        (_job(retry=ON_EXIT, tries=3), Exited(1), None,
         AttemptEnd(State.EXECUTOR_ERROR, 1, FailureKind.EXIT, "exited with status 1")),
    "a job being canceled is never retried":
        (_job(State.CANCELING, retry=ON_EXIT), Exited(1), None,
         AttemptEnd(State.EXECUTOR_ERROR, 1, FailureKind.EXIT, "exited with status 1")),
    "a job being canceled that completed first is complete":
        (_job(State.CANCELING), Exited(0), None, AttemptEnd(State.COMPLETE, exit_code=0)),
    "a failure while the spool is full is the spool's":
        (_job(), Exited(1), FULL,
         AttemptEnd(State.SYSTEM_ERROR, None, FailureKind.SPOOL_FULL,
                    f"{FULL} (attempt 1 of 3)")),
    "success while the spool is full is success":
        (_job(), Exited(0), FULL, AttemptEnd(State.COMPLETE, exit_code=0)),
    "lost, attempts left: retried":
        (_job(), Failed(LOST, "gone"), None,
         AttemptEnd(State.PREEMPTED, None, LOST, "gone (attempt 1 of 3; retrying)")),
    "lost on the last attempt: system error":
        (_job(tries=3), Failed(LOST, "gone"), None,
         AttemptEnd(State.SYSTEM_ERROR, None, LOST, "gone (attempt 3 of 3)")),
    "lost with a single attempt allowed: the reason stays plain":
        (_job(retry=ONCE), Failed(LOST, "gone"), None,
         AttemptEnd(State.SYSTEM_ERROR, None, LOST, "gone")),
    "abandoned attempts never ran and do not count":
        (_job(abandoned=5, tries=2), Failed(LOST, "gone"), None,
         AttemptEnd(State.PREEMPTED, None, LOST, "gone (attempt 2 of 3; retrying)")),
    "lost because the spool is full: not retried by default":
        (_job(), Failed(LOST, "gone"), FULL,
         AttemptEnd(State.SYSTEM_ERROR, None, FailureKind.SPOOL_FULL,
                    f"{FULL} (attempt 1 of 3)")),
    "a node failure is retried":
        (_job(retry=RetryPolicy(max_attempts=2)), Failed(NODE_FAIL, "NODE_FAIL"), None,
         AttemptEnd(State.PREEMPTED, None, NODE_FAIL, "NODE_FAIL (attempt 1 of 2; retrying)")),
    "a time-out is the job's own failure, final by default":
        (_job(retry=ONCE), Failed(TIMEOUT, "limit"), None,
         AttemptEnd(State.EXECUTOR_ERROR, None, TIMEOUT, "limit")),
    "a time-out with attempts left is final too, and its reason promises no retry":
        (_job(), Failed(TIMEOUT, "limit"), None,
         AttemptEnd(State.EXECUTOR_ERROR, None, TIMEOUT, "limit")),
    "a time-out on the last attempt of a policy that retries it":
        (_job(retry=ON_TIMEOUT, tries=3), Failed(TIMEOUT, "limit"), None,
         AttemptEnd(State.EXECUTOR_ERROR, None, TIMEOUT, "limit (attempt 3 of 3)")),
    "a scheduler's out-of-memory kill is the command's own failure (Slurm)":
        (_job(), Failed(FailureKind.EXIT, "out of memory (Slurm)"), None,
         AttemptEnd(State.EXECUTOR_ERROR, None, FailureKind.EXIT, "out of memory (Slurm)")),
    "a time-out while canceling ends canceled":
        (_job(State.CANCELING), Failed(TIMEOUT, "limit"), None,
         AttemptEnd(State.CANCELED, reason="limit")),
    "a time-out is retried when the policy lists it":
        (_job(retry=ON_TIMEOUT), Failed(TIMEOUT, "limit"), None,
         AttemptEnd(State.PREEMPTED, None, TIMEOUT, "limit (attempt 1 of 3; retrying)")),
    "a failure while canceling ends canceled":
        (_job(State.CANCELING), Failed(LOST, "gone"), None,
         AttemptEnd(State.CANCELED, reason="gone")),
    "canceled by request":
        (_job(State.CANCELING), Canceled("canceled by request"), None,
         AttemptEnd(State.CANCELED, reason="canceled by request")),
    "canceled outside acjob, recorded as canceling first":
        (_job(State.CANCELING), Canceled("scancel", outside=True), None,
         AttemptEnd(State.CANCELED, reason="scancel")),
    "canceled while still initializing":
        (_job(State.CANCELING, attempt_state=AttemptState.SUBMITTED),
         Canceled("deleted in Grid Engine before it started"), None,
         AttemptEnd(State.CANCELED, reason="deleted in Grid Engine before it started")),
}


@pytest.mark.parametrize("job,verdict,full,expected", CONCLUDE.values(), ids=CONCLUDE.keys())
def test_conclude(job: Job, verdict: Verdict, full: str | None, expected: AttemptEnd) -> None:
    if isinstance(verdict, Exited):
        end = lifecycle.conclude_exit(job, verdict.code, full)
    else:
        assert isinstance(verdict, Failed | Canceled)
        end = lifecycle.conclude(job, verdict, full)
    assert end == expected
    assert end.retry is (end.state is State.PREEMPTED)
    assert can_transition(job.state, end.state), "the table must allow every conclusion"


def test_a_final_job_tells_its_failure() -> None:
    job = _job(State.EXECUTOR_ERROR)
    ended = Attempt("j", 1, state=AttemptState.ENDED, failure=TIMEOUT)
    assert replace(job, attempts=(ended,)).failure is TIMEOUT
    assert replace(job, state=State.COMPLETE, attempts=(ended,)).failure is None
    assert replace(job, state=State.SYSTEM_ERROR, attempts=()).failure is None


REFUSED = {
    "a refusal is final by default": (_job(State.INITIALIZING), State.SYSTEM_ERROR),
    "retried when the policy lists submit": (_job(State.INITIALIZING, retry=ON_SUBMIT),
                                             State.PREEMPTED),
    "never on the last attempt": (_job(State.INITIALIZING, retry=ON_SUBMIT, tries=3),
                                  State.SYSTEM_ERROR),
    "canceled meanwhile": (_job(State.CANCELING), State.CANCELED),
}


@pytest.mark.parametrize("job,state", REFUSED.values(), ids=REFUSED.keys())
def test_a_refused_submission(job: Job, state: State) -> None:
    end = lifecycle.conclude_refusal(job, "sbatch: error: invalid partition")
    assert end.state is state and can_transition(job.state, end.state)
    if state is not State.CANCELED:
        assert end.failure is FailureKind.SUBMIT
        assert end.reason == "sbatch: error: invalid partition"  # the scheduler's own words


def test_files_that_cannot_be_written_are_never_retried() -> None:
    end = lifecycle.conclude_unprepared(_job(State.INITIALIZING, retry=ON_SUBMIT), "ENOSPC")
    assert end == AttemptEnd(State.SYSTEM_ERROR, None, FailureKind.SUBMIT, "ENOSPC")


# -- the job as a whole -------------------------------------------------------------

CANCEL = {
    State.QUEUED: State.CANCELED,
    State.PREEMPTED: State.CANCELED,
    State.INITIALIZING: State.CANCELING,
    State.RUNNING: State.CANCELING,
    State.CANCELING: None,
    State.CANCELED: None,
}


@pytest.mark.parametrize("state", list(State))
def test_cancel_in_every_state(state: State) -> None:
    if state is State.PAUSED:
        return  # acjob never pauses a job
    job = _job(state)
    if state in CANCEL:
        target = lifecycle.after_cancel_request(job)
        assert target is CANCEL[state]
        assert target is None or can_transition(state, target)
    else:
        assert state.is_final
        with pytest.raises(Conflict):
            lifecycle.after_cancel_request(job)


@pytest.mark.parametrize("state", [s for s in State if s is not State.PAUSED])
def test_a_job_that_cannot_go_on(state: State) -> None:
    target = lifecycle.after_failure(_job(state))
    if state.is_final:
        assert target is None
    else:
        assert target is (State.CANCELED if state is State.CANCELING else State.SYSTEM_ERROR)
        assert can_transition(state, target)


def test_an_abandoned_attempt_requeues_its_job_unless_it_is_being_canceled() -> None:
    assert lifecycle.after_abandon(_job(State.INITIALIZING)) is State.QUEUED
    assert lifecycle.after_abandon(_job(State.CANCELING)) is State.CANCELED
    for state in (State.INITIALIZING, State.CANCELING):
        assert can_transition(state, lifecycle.after_abandon(_job(state)))


@pytest.mark.parametrize("state", [s for s in State if s is not State.PAUSED])
def test_a_job_whose_upload_was_abandoned(state: State) -> None:
    target = lifecycle.after_abandoned_upload(_job(state))
    expected = {State.QUEUED: State.SYSTEM_ERROR, State.PREEMPTED: State.SYSTEM_ERROR,
                State.INITIALIZING: State.CANCELING, State.RUNNING: State.CANCELING}
    assert target is expected.get(state)
    assert target is None or can_transition(state, target)


def test_a_failed_feeder_is_a_loss_not_the_jobs_verdict() -> None:
    job = _job()
    verdict = lifecycle.judge(job, job.attempts[-1], Observation("gone"),
                              ExitRecord(0, lifecycle.FEED_FAILED), timed_out=False,
                              gone_since=None, now=0.0, lost_grace=120.0)
    assert isinstance(verdict, Failed) and verdict.failure is LOST
    assert "could not be fed" in verdict.reason
    assert lifecycle.conclude(job, verdict).state is State.PREEMPTED  # retried
