"""The Slurm backend: ``sbatch``, one ``squeue`` per poll, ``scancel``.

Pure functions build the command lines and parse their output; :data:`STATES` maps
every Slurm job state onto what acjob makes of it. The shared machinery (running
the commands, errors, tags) is :mod:`acjob.backends.batch`.

Facts this relies on (Slurm 22.05): ``sbatch --parsable`` prints ``ID`` or
``ID;CLUSTER``; ``squeue --me -t all -h -r -o FORMAT`` lists every job of the user
whatever its state, array tasks one per line, in about 6 ms for 60 jobs; Slurm
forgets a finished job after ``MinJobAge`` (300 s by default), which is why the
wrapper's exit file, not squeue, says how a job ended. Jobs are submitted with
``--no-requeue``: after a node failure acjob's retry policy, not Slurm, decides,
and every attempt gets files of its own.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import InvalidRequest
from ..model import FailureKind, Observation, Resources
from ..spool import Spool
from .batch import ArraySubmission, BatchBackend, BatchOptions, ErrorKind, Submission

#: The squeue columns acjob reads: id, state, reason, name, comment.
SQUEUE_FORMAT = "%i|%T|%r|%j|%k"

_PENDING = Observation("pending")
_RUNNING = Observation("running")
_GONE = Observation("gone")

#: Slurm job state -> what acjob observes. ``gone`` hands the decision to the exit
#: file (and, without one, to the lost-grace timer).
STATES: dict[str, Observation] = {
    "PENDING": _PENDING,
    "CONFIGURING": _PENDING,
    "REQUEUED": _PENDING,
    "REQUEUE_HOLD": _PENDING,
    "REQUEUE_FED": _PENDING,
    "RESV_DEL_HOLD": _PENDING,
    "SUSPENDED": _PENDING,
    "STOPPED": _PENDING,
    "RUNNING": _RUNNING,
    "COMPLETING": _RUNNING,
    "SIGNALING": _RUNNING,
    "STAGE_OUT": _RUNNING,
    "RESIZING": _RUNNING,
    "COMPLETED": _GONE,
    "FAILED": _GONE,
    "SPECIAL_EXIT": _GONE,
    "CANCELLED": Observation("canceled", reason="canceled in Slurm (scancel)"),
    "REVOKED": Observation("canceled", reason="revoked by Slurm (federation)"),
    "TIMEOUT": Observation("failed", FailureKind.TIMEOUT, "Slurm's time limit was reached"),
    "DEADLINE": Observation("failed", FailureKind.TIMEOUT, "Slurm's deadline was reached"),
    "NODE_FAIL": Observation("failed", FailureKind.NODE_FAIL, "the node failed (NODE_FAIL)"),
    "BOOT_FAIL": Observation("failed", FailureKind.BOOT_FAIL, "the node failed to boot"),
    "PREEMPTED": Observation("failed", FailureKind.PREEMPTED, "preempted by Slurm"),
    "OUT_OF_MEMORY": Observation("failed", FailureKind.EXIT, "out of memory (Slurm)"),
}

#: sbatch options acjob sets itself; a job may not pass them raw.
RESERVED = frozenset({
    "--output", "--error", "--input", "--job-name", "--comment", "--chdir", "--parsable",
    "--wrap", "--array", "--requeue", "--no-requeue", "--export", "--uid", "--gid",
    # These change what sbatch does, not what it asks for: nothing would be submitted
    # (--test-only, --help, --usage, --version), no job id printed (--quiet) or sbatch
    # would block (--wait).
    "--test-only", "--help", "--usage", "--version", "--quiet", "--wait",
})


_OPTION = re.compile(r"^--[a-z][a-z0-9-]*(=.*)?$")


def check_extra_args(args: Sequence[str]) -> None:
    """Refuse raw sbatch options that are malformed or that acjob itself sets.

    Each option is one string, ``--name`` or ``--name=value``.

    Raises:
        InvalidRequest: naming the offending option.
    """
    for arg in args:
        if not _OPTION.match(arg):
            raise InvalidRequest(f"extra option {arg[:64]!r} is not of the form --name[=value]",
                                 code="invalid_resources")
        name = arg.split("=", 1)[0]
        # sbatch accepts any unambiguous prefix of an option (--outp for --output).
        if any(option.startswith(name) for option in RESERVED):
            raise InvalidRequest(f"extra option {name} is set by acjob itself",
                                 hint="remove it; acjob sets it for every job",
                                 code="invalid_resources")


def format_time_limit(seconds: int) -> str:
    """Return a Slurm time limit (``D-HH:MM:SS``), rounded up to whole minutes as
    Slurm does."""
    minutes = -(-seconds // 60)
    days, rest = divmod(minutes, 1440)
    return f"{days}-{rest // 60:02d}:{rest % 60:02d}:00"


def resource_args(res: Resources, options: BatchOptions) -> list[str]:
    """Return the sbatch options for a job's resources and the backend's defaults."""
    argv: list[str] = []
    queue = res.queue or options.queue
    account = res.account or options.account
    if queue:
        argv.append(f"--partition={queue}")
    if account:
        argv.append(f"--account={account}")
    if res.cpus is not None:
        argv.append(f"--cpus-per-task={res.cpus}")
    if res.memory_mb is not None:
        argv.append(f"--mem={res.memory_mb}M")
    if res.time_limit_s is not None:
        argv.append(f"--time={format_time_limit(res.time_limit_s)}")
    return [*argv, *options.extra_args, *res.extra_args]


def sbatch_argv(sub: Submission, options: BatchOptions) -> list[str]:
    """Return the ``sbatch`` command line that runs the attempt's wrapper."""
    out = sub.attempt_dir / "slurm.out"
    return [
        "sbatch", "--parsable", "--no-requeue",
        f"--job-name={sub.tag}", f"--comment={sub.tag}",
        f"--chdir={sub.attempt_dir}", f"--output={out}", f"--error={out}",
        *resource_args(sub.job.spec.resources, options), str(sub.wrapper),
    ]


def sbatch_array_argv(array: ArraySubmission, options: BatchOptions) -> list[str]:
    """Return the ``sbatch`` command line that runs an array of wrappers (tasks 0..n-1)."""
    out = array.directory / f"{array.tag}-%a.out"
    return [
        "sbatch", "--parsable", "--no-requeue", f"--array=0-{array.count - 1}",
        f"--job-name={array.tag}", f"--comment={array.tag}",
        f"--chdir={array.directory}", f"--output={out}", f"--error={out}",
        *resource_args(array.resources, options), str(array.script),
    ]


def find_array_task(stdout: str, tag: str, index: int) -> str | None:
    """Return the id of task ``index`` of the newest array named ``tag``."""
    bases = [fields[0].split("_", 1)[0] for line in stdout.splitlines()
             if len(fields := line.strip().split("|")) >= 4 and fields[3] == tag]
    bases = [b for b in bases if b.isdigit()]
    return f"{max(bases, key=int)}_{index}" if bases else None


def parse_sbatch(stdout: str) -> str:
    """Return the job id from ``sbatch --parsable`` output (``ID`` or ``ID;CLUSTER``).

    Raises:
        ValueError: the output holds no job id.
    """
    line = stdout.strip().splitlines()[-1] if stdout.strip() else ""
    job_id = line.split(";", 1)[0].strip()
    if not job_id.isdigit():
        raise ValueError(f"no job id in {stdout.strip()[:200]!r}")
    return job_id


def parse_squeue(stdout: str) -> dict[str, Observation]:
    """Parse ``squeue -o '%i|%T|%r|%j|%k'`` lines into observations by job id.

    An unknown state is taken as pending: never as an end.
    """
    seen: dict[str, Observation] = {}
    for line in stdout.splitlines():
        fields = line.strip().split("|")
        if len(fields) < 2 or not fields[0]:
            continue
        job_id, state = fields[0], fields[1].split()[0].rstrip("+") if fields[1] else ""
        observed = STATES.get(state, _PENDING)
        reason = fields[2] if len(fields) > 2 and fields[2] not in ("", "None") else None
        if observed.state == "pending" and reason:
            observed = Observation("pending", reason=reason)
        seen[job_id] = observed
    return seen


def find_in_squeue(stdout: str, tag: str) -> str | None:
    """Return the id of the newest job named ``tag`` in squeue output."""
    ids = [fields[0] for line in stdout.splitlines()
           if len(fields := line.strip().split("|")) >= 4 and fields[3] == tag
           and fields[0].isdigit()]
    return max(ids, key=int) if ids else None


class SlurmDialect:
    """Slurm's command lines and output; see the module docstring."""

    name = "slurm"
    aliases: Mapping[str, str] = {"partition": "queue"}

    def check_extra_args(self, args: Sequence[str]) -> None:
        """Refuse malformed or reserved sbatch options."""
        check_extra_args(args)

    def check_resources(self, res: Resources, options: BatchOptions) -> None:
        """Slurm takes every resource acjob knows."""

    def submit_argv(self, sub: Submission, options: BatchOptions) -> list[str]:
        """Return the sbatch command."""
        return sbatch_argv(sub, options)

    def parse_submit(self, stdout: str) -> str:
        """Return the id sbatch printed."""
        return parse_sbatch(stdout)

    def poll_argv(self) -> list[str]:
        """Every job of this user, in every state, array tasks expanded."""
        return ["squeue", "--me", "-t", "all", "-h", "-r", "-o", SQUEUE_FORMAT]

    def parse_poll(self, stdout: str) -> dict[str, Observation]:
        """Parse the listing."""
        return parse_squeue(stdout)

    def find_argv(self, tag: str) -> list[str]:
        """This user's jobs named ``tag``."""
        return ["squeue", "--me", "-t", "all", "-h", "-n", tag, "-o", SQUEUE_FORMAT]

    def parse_find(self, stdout: str, tag: str) -> str | None:
        """The newest job named ``tag``."""
        return find_in_squeue(stdout, tag)

    def cancel_argv(self, native_id: str) -> list[str]:
        """scancel the job."""
        return ["scancel", native_id]

    #: How a task of an array finds its (0-based) index.
    array_index = "$SLURM_ARRAY_TASK_ID"

    def array_argv(self, array: ArraySubmission, options: BatchOptions) -> list[str]:
        """Return the sbatch command for a job array."""
        return sbatch_array_argv(array, options)

    def array_task_id(self, native_id: str, index: int) -> str:
        """Slurm names task ``index`` of array ``ID`` as ``ID_index``."""
        return f"{native_id}_{index}"

    def parse_find_task(self, stdout: str, tag: str, index: int) -> str | None:
        """The id of task ``index`` of the newest array named ``tag``."""
        return find_array_task(stdout, tag, index)

    def classify_error(self, argv: list[str], returncode: int, stderr: str) -> ErrorKind:
        """``Invalid job id`` means gone; the controller away (refused, timed out) is
        transient; a refusal of the job's options is permanent; any other refusal of a
        submission is ``unknown`` (that job alone waits); anything else is transient."""
        text = stderr.lower()
        if "invalid job id" in text or "already completing or completed" in text:
            return "gone"
        if argv[0] != "sbatch" or any(p in text for p in _OUTAGE):
            return "transient"
        if any(p in text for p in _PERMANENT):
            return "permanent"
        return "unknown"


_PERMANENT = (
    "invalid partition", "invalid account", "invalid qos", "requested node configuration is "
    "not available", "unrecognized option", "invalid option", "invalid time limit",
    "can not be satisfied", "more processors requested than permitted",
    "invalid --", "unable to allocate resources: invalid", "invalid generic resource",
    "invalid license", "reservation is invalid", "invalid feature", "invalid node name",
    "invalid job array", "requested time limit is invalid",
)
#: Words of the controller being away, or of a limit every job of the user meets alike
#: (how many jobs may be submitted): all jobs wait, with the backend held.
_OUTAGE = (
    "unable to contact slurm controller", "connection refused", "timed out", "time out",
    "temporarily unavailable", "temporarily unable", "communication", "zero bytes were",
    "slurmctld", "try again", "busy", "submit limit", "maxsubmitjob", "violates accounting",
)


class SlurmBackend(BatchBackend):
    """Jobs as Slurm batch jobs.

    Options (``[backends.slurm]``): ``partition``, ``account``, ``extra_args``,
    ``poll_interval`` (1 s), ``max_poll_interval`` (30 s), ``lost_grace`` (120 s),
    ``command_timeout`` (30 s).
    """

    def __init__(self, spool: Spool, options: Mapping[str, Any]) -> None:
        super().__init__(SlurmDialect(), spool, options)
