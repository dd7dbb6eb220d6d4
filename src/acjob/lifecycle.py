"""The rules of a job's life: how an attempt's end is judged, and what follows it.

Everything here is pure: no I/O, no clock reads, no store. The monitor gathers the
facts (the wrapper's exit file, what a backend observed, how long an attempt has been
gone, whether the spool is full) and asks this module; the store persists the answer
as it is. Keeping the rules in one place, as plain functions over plain values, is
what lets one table test every case that makes "exactly once" true.

Two steps decide an attempt's end:

1. :func:`judge` turns what was observed of the attempt into a :data:`Verdict`: it
   is alive, it exited with a status, the infrastructure failed it, it was
   canceled, or its fate is not known yet (wait, at most the backend's grace).
2. :func:`conclude` (or :func:`conclude_exit`) turns a verdict and the job as it is
   *now* (the store calls it inside the transaction that records the end) into an
   :class:`AttemptEnd`: the job's next state, whether another attempt
   follows, the failure kind and the reason people read.

The smaller rules (cancelling, failing, abandoning, time limits, the claim grace)
sit beside them.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import Conflict
from .model import (
    OWN_FAILURES,
    Attempt,
    AttemptState,
    ExitRecord,
    FailureKind,
    Job,
    Observation,
    State,
)

#: What a wrapper notes beside the status when its feeder failed (see acjob.wrapper).
FEED_FAILED = "FEED"
#: How long a wrapper may hold its claim without recording its pid before the
#: attempt counts as lost (at least; a backend's lost_grace may be longer).
CLAIM_GRACE = 30.0


@dataclass(frozen=True, slots=True)
class Alive:
    """The backend still has the attempt (``running``: it has started)."""

    running: bool


@dataclass(frozen=True, slots=True)
class Exited:
    """The command ran and ended with its own exit status."""

    code: int


@dataclass(frozen=True, slots=True)
class Failed:
    """The infrastructure ended the attempt: the command's status is not its verdict."""

    failure: FailureKind
    reason: str


@dataclass(frozen=True, slots=True)
class Canceled:
    """The attempt was canceled: by request, or (``outside``) behind acjob's back."""

    reason: str
    outside: bool = False


@dataclass(frozen=True, slots=True)
class Waiting:
    """The attempt is gone and its end not known yet: look again until ``until``.

    Attributes:
        since: When it was first seen gone (kept by the monitor between polls).
        until: When the grace is over and it will count as lost.
    """

    since: float
    until: float


Verdict = Alive | Exited | Failed | Canceled | Waiting


@dataclass(frozen=True, slots=True)
class AttemptEnd:
    """How an attempt ended and what becomes of its job: what the store records.

    Attributes:
        state: The job's next state (``PREEMPTED`` when another attempt follows).
        exit_code: The command's exit status, if it exited by itself.
        failure: Why the attempt failed (``None`` for a clean exit or a cancel).
        reason: For people; ``None`` when there is nothing to say.
    """

    state: State
    exit_code: int | None = None
    failure: FailureKind | None = None
    reason: str | None = None

    @property
    def retry(self) -> bool:
        """True if another attempt follows."""
        return self.state is State.PREEMPTED


def tries(job: Job) -> int:
    """Return how many attempts really ran or may have (abandoned ones never started)."""
    return sum(1 for a in job.attempts if a.state is not AttemptState.ABANDONED)


# -- judging an attempt -------------------------------------------------------------------


def awaits_verdict(code: int, attempt: Attempt, *, notifies_exits: bool) -> bool:
    """Tell whether to hear the scheduler before taking a death by signal as the job's own.

    A scheduler that kills a job (a cancel, a node failure, preemption) may hit the
    command before the wrapper, which then records a plain ``143``. A batch scheduler
    still lists such a job with its verdict, so the next poll decides (see
    :func:`judge`); backends that notify exits (local processes) need no such wait.
    """
    return code > 128 and not notifies_exits and attempt.native_id is not None


def judge(job: Job, attempt: Attempt, seen: Observation, record: ExitRecord | None, *,
          timed_out: bool, gone_since: float | None, now: float,
          lost_grace: float) -> Verdict:
    """Judge one polled attempt from what its backend saw and what its wrapper wrote.

    Args:
        job: The job, as it is now.
        attempt: Its current attempt.
        seen: What the backend observed (after its explanation, for a gone attempt).
        record: The wrapper's exit file, if it wrote one.
        timed_out: The monitor stopped the attempt at the job's time limit.
        gone_since: When the attempt was first seen gone, if it was before.
        now: The monitor's clock.
        lost_grace: How long a gone attempt may lack an exit file (the backend's).

    The rules, in order: an attempt the backend still has is alive; a clean exit
    status is the truth (unless the scheduler says it failed or canceled a job whose
    status says it died by a signal); a job being canceled was canceled; a scheduler's
    cancel or failure stands; an attempt stopped at its time limit timed out; anything
    else is lost once the grace is over, and waits until then.
    """
    if seen.state in ("running", "pending"):
        return Alive(running=seen.state == "running")
    if record is not None and record.signal is None and not (
            record.code > 128 and seen.state in ("failed", "canceled")):
        return Exited(record.code)
    if job.state is State.CANCELING:
        # Why it is being canceled (a request, an upload given up) is why it ended.
        return Canceled(job.reason or "canceled by request")
    if seen.state == "canceled":
        return Canceled(seen.reason or "canceled outside acjob", outside=True)
    if seen.state == "failed":
        return Failed(seen.failure or FailureKind.LOST,
                      seen.reason or "the scheduler reported a failure")
    if record is not None and record.signal == FEED_FAILED:
        # The wrapper says its feeder failed: the command read a cut stdin.
        return Failed(FailureKind.LOST, "the job's stdin could not be fed to it "
                      "(its attempt's feed.log says why)")
    if timed_out:
        limit = job.spec.resources.time_limit_s
        return Failed(FailureKind.TIMEOUT, f"the time limit of {limit} s was reached")
    # A signal noted in the exit file waits too: a scheduler may need a while to tell
    # how a job it no longer lists ended (Grid Engine flushes its accounting late).
    since = now if gone_since is None else gone_since
    if now - since >= lost_grace:
        return Failed(FailureKind.LOST,
                      f"the job was stopped from outside (SIG{record.signal})" if record else
                      "the job's process vanished without recording an exit status")
    return Waiting(since, since + lost_grace)


def judge_claim(gone_since: float | None, now: float, lost_grace: float) -> Failed | Waiting:
    """Judge an attempt whose wrapper claimed it but never recorded its process.

    It is starting right now, or it died in between: it gets a grace of at least
    :data:`CLAIM_GRACE`, then counts as lost.
    """
    since = now if gone_since is None else gone_since
    grace = max(lost_grace, CLAIM_GRACE)
    if now - since >= grace:
        return Failed(FailureKind.LOST,
                      "the job's wrapper started but its process was never found")
    return Waiting(since, since + grace)


def time_left(job: Job, attempt: Attempt, now: float) -> float | None:
    """Return the seconds an attempt may still run (``<= 0``: stop it), ``None``: no limit."""
    limit = job.spec.resources.time_limit_s
    if limit is None or attempt.started_at is None:
        return None
    return attempt.started_at + limit - now


# -- concluding -----------------------------------------------------------------------


def conclude_exit(job: Job, code: int, spool_full: str | None = None) -> AttemptEnd:
    """Decide what follows an attempt that exited with ``code``.

    Status 0 completes the job. Another status ends it in ``EXECUTOR_ERROR``, or
    ``PREEMPTED`` when its retry policy lists ``exit`` and attempts are left; a job
    being canceled is never retried. A non-zero status while the spool is full
    (``spool_full`` says why) is not the job's own verdict: it ends as
    :data:`~acjob.model.FailureKind.SPOOL_FULL`.
    """
    if code != 0 and spool_full is not None:
        return conclude(job, Failed(FailureKind.SPOOL_FULL, spool_full))
    if code == 0:
        return AttemptEnd(State.COMPLETE, exit_code=0)
    retry = job.state is not State.CANCELING and job.spec.retry.allows(
        tries(job), FailureKind.EXIT)
    return AttemptEnd(State.PREEMPTED if retry else State.EXECUTOR_ERROR,
                      exit_code=code, failure=FailureKind.EXIT,
                      reason=f"exited with status {code}")


def conclude(job: Job, verdict: Failed | Canceled, spool_full: str | None = None, *,
             count_tries: bool = True) -> AttemptEnd:
    """Decide what follows an attempt that left no exit status of its own.

    A job being canceled (or a cancel verdict) ends ``CANCELED``. A failure is retried
    (``PREEMPTED``) if the retry policy lists its kind and attempts are left. Else the
    job ends ``EXECUTOR_ERROR`` for a failure of its own (a time limit reached, a
    scheduler's out-of-memory kill: :data:`~acjob.model.OWN_FAILURES`) and
    ``SYSTEM_ERROR`` for the infrastructure's. The reason says which attempt it was
    when the policy allows several (``count_tries``), except for a failure of the
    job's own that the policy never retries: "attempt 1 of 3" would promise a retry.
    A loss while the spool is full is reported as the full spool, which is what lost it.
    """
    if isinstance(verdict, Canceled) or job.state is State.CANCELING:
        reason = verdict.reason
        return AttemptEnd(State.CANCELED, reason=reason)
    failure, reason = verdict.failure, verdict.reason
    if failure is FailureKind.LOST and spool_full is not None:
        failure, reason = FailureKind.SPOOL_FULL, spool_full
    retry = job.spec.retry.allows(tries(job), failure)
    own = failure in OWN_FAILURES
    if count_tries and job.spec.retry.max_attempts > 1 and (
            not own or failure in job.spec.retry.on):
        reason = (f"{reason} (attempt {tries(job)} of {job.spec.retry.max_attempts}"
                  f"{'; retrying' if retry else ''})")
    final = State.EXECUTOR_ERROR if own else State.SYSTEM_ERROR
    return AttemptEnd(State.PREEMPTED if retry else final, failure=failure, reason=reason)


def conclude_refusal(job: Job, reason: str) -> AttemptEnd:
    """Decide what follows a backend's refusal of an attempt (``submit`` failure).

    Retried only if the job's policy lists ``submit``; the reason is the backend's
    own words.
    """
    return conclude(job, Failed(FailureKind.SUBMIT, reason), count_tries=False)


def conclude_unprepared(job: Job, reason: str) -> AttemptEnd:
    """Decide what follows an attempt whose files could not be written: never retried."""
    end = conclude(job, Failed(FailureKind.SUBMIT, reason), count_tries=False)
    if end.state is State.PREEMPTED:
        return AttemptEnd(State.SYSTEM_ERROR, failure=end.failure,
                          reason=end.reason)
    return end


# -- the job as a whole -----------------------------------------------------------------


def after_cancel_request(job: Job) -> State | None:
    """Return the state a cancel request moves the job to (``None``: no change).

    A job that never started is canceled at once; one with an attempt under way
    becomes ``CANCELING`` until the backend has stopped it. Canceling a canceled or
    canceling job changes nothing.

    Raises:
        Conflict: the job already ended otherwise.
    """
    if job.state in (State.CANCELED, State.CANCELING):
        return None
    if job.state.is_final:
        raise Conflict(f"the job already ended ({job.state.value})", code="job_final")
    started = job.state in (State.INITIALIZING, State.RUNNING)
    return State.CANCELING if started else State.CANCELED


def after_failure(job: Job) -> State | None:
    """Return the state of a job that cannot go on (``None``: it already ended).

    ``SYSTEM_ERROR``, except that a job being canceled ends ``CANCELED``.
    """
    if job.state.is_final:
        return None
    return State.CANCELED if job.state is State.CANCELING else State.SYSTEM_ERROR


def after_abandon(job: Job) -> State:
    """Return the state of a job whose attempt provably never started: queued again,
    or ``CANCELED`` if a cancel came meanwhile."""
    return State.CANCELED if job.state is State.CANCELING else State.QUEUED


def after_abandoned_upload(job: Job) -> State | None:
    """Return the state of a job whose stdin upload stopped for good (``None``: none).

    A job that has not started ends ``SYSTEM_ERROR``; one that started (it was reading
    its stdin as it arrived) is stopped: ``CANCELING``, then ``CANCELED``.
    """
    if job.state.is_final or job.state is State.CANCELING:
        return None
    if job.state in (State.INITIALIZING, State.RUNNING):
        return State.CANCELING
    return State.SYSTEM_ERROR
