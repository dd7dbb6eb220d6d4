"""The Grid Engine backend: ``qsub``, one ``qstat -xml`` per poll, ``qdel``, ``qacct``.

Pure functions build the command lines and parse their output; :data:`STATE_LETTERS`
says what each letter of a Grid Engine job state means to acjob. The shared
machinery (running the commands, errors, tags, arrays) is :mod:`acjob.backends.batch`.

Facts this relies on (Son of Grid Engine 8.1.9, Debian's ``gridengine-*``):

- ``qsub -terse`` prints ``ID`` (``ID.1-N:1`` for an array); ``qstat -u USER -g d -xml``
  lists every pending and running job of the user, array tasks one per element;
  a job that ended is no longer listed, and ``qacct -j ID`` then has its record
  (``failed`` and ``exit_status``) once the accounting file is flushed.
- A job in error state (``Eqw``: it could not be started, e.g. its output file could
  not be opened) waits for an operator for ever; ``qstat -j ID`` gives the reason.
  acjob deletes it (so it can never start later) and ends the attempt with the
  reason; the job's retry policy decides the rest (failure kind ``boot_fail``).
- Jobs are submitted with ``-notify``: before it kills a job (``qdel``, a limit)
  Grid Engine sends SIGUSR2 to the job's process group. The wrapper notes it in its
  exit file (``140 USR2``); with an accounting record that names no limit, that is
  how an external ``qdel`` of a running job is told from a crash. A pending job
  deleted before its wrapper ever ran leaves no record at all; the attempt is fenced
  and the job counts as canceled.
- Ids are recycled when a cluster's spool is reset, so ``qacct`` records are matched
  by job name (the attempt's tag) as well as by id.
"""

from __future__ import annotations

import getpass
import re
import xml.etree.ElementTree as ET
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import InvalidRequest, TransientError
from ..model import Attempt, AttemptState, ExitRecord, FailureKind, Job, Observation, Resources
from ..spool import Spool
from .batch import ArraySubmission, BatchBackend, BatchOptions, ErrorKind, Submission, tag_for

_PENDING = Observation("pending")

#: What each letter of a Grid Engine state code means, strongest first: ``Eqw`` is an
#: error, ``dr`` is running (being deleted), ``hqw`` is pending (held).
STATE_LETTERS: tuple[tuple[str, Observation], ...] = (
    ("E", Observation("failed", FailureKind.BOOT_FAIL)),
    ("r", Observation("running")),
    ("t", Observation("running")),
    ("s", Observation("pending", reason="suspended")),
    ("S", Observation("pending", reason="suspended (queue)")),
    ("T", Observation("pending", reason="suspended (threshold)")),
    ("h", Observation("pending", reason="held")),
    ("q", _PENDING),
    ("w", _PENDING),
)

#: qsub options acjob sets itself; a job may not pass them raw.
RESERVED = frozenset({
    "-N", "-o", "-e", "-j", "-i", "-wd", "-cwd", "-S", "-terse", "-t", "-r", "-notify",
    "-b", "-sync", "-@", "-C", "-v", "-V", "-shell", "-now", "-hold_jid", "-hold_jid_ad",
    "-tc", "-a", "-dl", "-M", "-m", "-pty", "-clear",
})
#: The qsub options a job may pass raw, with how many values each takes. Only these:
#: others would change what qsub does rather than what it asks for (``-verify`` and
#: ``-w v`` submit nothing, ``-jsv`` runs a script that may rewrite the job, ``-help``).
ALLOWED: Mapping[str, int] = {
    "-l": 1, "-q": 1, "-P": 1, "-pe": 2, "-p": 1, "-A": 1, "-R": 1, "-ckpt": 1, "-c": 1,
    "-ar": 1, "-masterq": 1, "-binding": 1, "-js": 1, "-h": 0, "-hard": 0, "-soft": 0,
}
_OPTION = re.compile(r"^-[A-Za-z@][A-Za-z_]*$")

#: ``qacct`` ``failed`` codes: 0 ran and exited; 100 killed by a signal (``qdel``
#: or ``kill -9``); 37 stopped at a limit (h_rt, h_cpu, h_vmem). Any other code
#: means Grid Engine could not start or finish the job (see sge_status(5)).
_FAILED_OK = frozenset({0, 100})
_FAILED_LIMIT = 37


def check_extra_args(args: Sequence[str]) -> None:
    """Refuse raw qsub options that are malformed or that acjob controls.

    Each option and each of its values is one string: ``["-l", "h_vmem=2G", "-h"]``.

    Raises:
        InvalidRequest: naming the offending option.
    """
    i = 0
    while i < len(args):
        option = args[i]
        if not _OPTION.match(option):
            raise InvalidRequest(f"extra option {option[:64]!r} is not a qsub option",
                                 hint='give each option and each value as its own string, '
                                      'e.g. ["-l", "h_vmem=2G"]', code="invalid_resources")
        if option in RESERVED:
            raise InvalidRequest(f"extra option {option} is set by acjob itself",
                                 hint="remove it; acjob sets it for every job",
                                 code="invalid_resources")
        if option not in ALLOWED:
            raise InvalidRequest(f"extra option {option} is not one acjob passes on",
                                 hint=f"use one of {' '.join(sorted(ALLOWED))}",
                                 code="invalid_resources")
        arity = ALLOWED[option]
        if option == "-binding" and args[i + 1:i + 2] in (["set"], ["env"], ["pe"]):
            arity = 2  # -binding [set|env|pe] STRATEGY
        values = args[i + 1:i + 1 + arity]
        if len(values) < arity or any(_OPTION.match(v) or not v for v in values):
            raise InvalidRequest(f"extra option {option} needs {arity} value(s)",
                                 code="invalid_resources")
        i += 1 + arity


def resource_args(res: Resources, options: BatchOptions) -> list[str]:
    """Return the qsub options for a job's resources and the backend's defaults.

    Memory is per slot in Grid Engine, so ``memory_mb`` is divided among the cpus.
    """
    argv: list[str] = []
    queue = res.queue or options.queue
    project = res.account or options.account
    if queue:
        argv += ["-q", queue]
    if project:
        argv += ["-P", project]
    cpus = res.cpus or 1
    if cpus > 1 and options.parallel_environment:
        argv += ["-pe", options.parallel_environment, str(cpus)]
    if res.memory_mb is not None:
        argv += ["-l", f"h_vmem={-(-res.memory_mb // cpus)}M"]
    if res.time_limit_s is not None:
        argv += ["-l", f"h_rt={res.time_limit_s}"]
    return [*argv, *options.extra_args, *res.extra_args]


def _common(name: str, directory: str, out: str) -> list[str]:
    return ["qsub", "-terse", "-notify", "-r", "n", "-S", "/bin/sh", "-N", name,
            "-wd", directory, "-o", out, "-j", "y"]


def qsub_argv(sub: Submission, options: BatchOptions) -> list[str]:
    """Return the ``qsub`` command line that runs the attempt's wrapper."""
    return [*_common(sub.tag, str(sub.attempt_dir), str(sub.attempt_dir / "sge.out")),
            *resource_args(sub.job.spec.resources, options), str(sub.wrapper)]


def qsub_array_argv(array: ArraySubmission, options: BatchOptions) -> list[str]:
    """Return the ``qsub`` command line for an array of wrappers (tasks 1..n)."""
    out = f"{array.directory}/{array.tag}-$TASK_ID.out"  # $TASK_ID is Grid Engine's
    return [*_common(array.tag, str(array.directory), out), "-t", f"1-{array.count}",
            *resource_args(array.resources, options), str(array.script)]


def parse_qsub(stdout: str) -> str:
    """Return the job id from ``qsub -terse`` output (``ID`` or ``ID.1-N:1``).

    Raises:
        ValueError: the output holds no job id.
    """
    line = stdout.strip().splitlines()[-1] if stdout.strip() else ""
    job_id = line.split(".", 1)[0].strip()
    if not job_id.isdigit():
        raise ValueError(f"no job id in {stdout.strip()[:200]!r}")
    return job_id


def observe_state(code: str) -> Observation:
    """Return what a Grid Engine state code (``qw``, ``r``, ``Eqw``, ``dr``…) means.

    An unknown code is taken as pending: never as an end.
    """
    for letter, observation in STATE_LETTERS:
        if letter in code:
            return observation
    return _PENDING


@dataclass(frozen=True, slots=True)
class Listed:
    """One job (or array task) in ``qstat -xml`` output."""

    native_id: str
    name: str
    state: str


def _tasks(text: str) -> list[int]:
    """Expand ``3``, ``2,3`` or ``2-6:2`` into task numbers."""
    tasks: list[int] = []
    for part in text.split(","):
        match = re.fullmatch(r"(\d+)(?:-(\d+)(?::(\d+))?)?", part.strip())
        if match:
            first = int(match[1])
            last = int(match[2] or first)
            tasks += range(first, last + 1, int(match[3] or 1))
    return tasks


def parse_qstat(xml: str) -> list[Listed]:
    """Parse ``qstat -g d -xml`` output.

    Raises:
        ValueError: the output is not qstat's XML.
    """
    try:
        # qstat's own output on this host, not data from a client.
        root = ET.fromstring(xml)  # noqa: S314
    except ET.ParseError as exc:
        raise ValueError(f"qstat printed no XML: {exc}") from exc
    listed: list[Listed] = []
    for element in root.iter("job_list"):
        number = (element.findtext("JB_job_number") or "").strip()
        if not number.isdigit():
            continue
        name = (element.findtext("JB_name") or "").strip()
        state = (element.findtext("state") or "").strip()
        tasks = (element.findtext("tasks") or "").strip()
        if tasks:
            listed += [Listed(f"{number}.{t}", name, state) for t in _tasks(tasks)]
        else:
            listed.append(Listed(number, name, state))
    return listed


def find_listed(listed: Sequence[Listed], tag: str) -> str | None:
    """Return the id of the newest job named ``tag``."""
    numbers = [int(item.native_id.split(".")[0]) for item in listed if item.name == tag]
    return str(max(numbers)) if numbers else None


def parse_error_reason(stdout: str) -> str | None:
    """Return the first ``error reason`` of ``qstat -j ID`` output, without its time stamp."""
    for line in stdout.splitlines():
        if line.startswith("error reason"):
            text = line.split(":", 1)[1].strip() if ":" in line else line
            # "11/28/2026 21:49:31 [0:5501]: error: can't open output file ..."
            return re.sub(r"^.*?\]:\s*", "", text) or text
    return None


@dataclass(frozen=True, slots=True)
class AccountingRecord:
    """The parts of a ``qacct -j`` record acjob reads."""

    name: str
    failed: int
    failed_text: str
    exit_status: int | None


def parse_qacct(stdout: str) -> list[AccountingRecord]:
    """Parse ``qacct -j ID`` output: one record per ``====`` separated block."""
    records: list[AccountingRecord] = []
    for block in re.split(r"^=+\s*$", stdout, flags=re.M):
        fields: dict[str, str] = {}
        for line in block.splitlines():
            key, _, value = line.partition(" ")
            if key:
                fields[key] = value.strip()
        if "jobname" not in fields or "failed" not in fields:
            continue
        code, _, text = fields["failed"].partition(":")
        status = fields.get("exit_status", "").split()
        records.append(AccountingRecord(
            name=fields["jobname"], failed=int(code) if code.strip().isdigit() else -1,
            failed_text=text.strip(),
            exit_status=int(status[0]) if status and status[0].isdigit() else None))
    return records


def accounting_observation(record: AccountingRecord) -> Observation | None:
    """Say what an accounting record tells of an attempt that left no exit status."""
    if record.failed == _FAILED_LIMIT:
        return Observation("failed", FailureKind.TIMEOUT,
                           f"Grid Engine stopped it at a limit ({record.failed_text})")
    if record.failed in _FAILED_OK:
        return None  # it ran; the exit file (or its absence) tells the rest
    return Observation("failed", FailureKind.BOOT_FAIL,
                       f"Grid Engine could not run it (failed {record.failed}: "
                       f"{record.failed_text})")


def split_native(native_id: str) -> tuple[str, str | None]:
    """Split ``ID`` or ``ID.TASK`` into the job id and the task number."""
    job, _, task = native_id.partition(".")
    return job, task or None


class GridEngineDialect:
    """Grid Engine's command lines and output; see the module docstring."""

    name = "gridengine"
    aliases: Mapping[str, str] = {"project": "account", "pe": "parallel_environment"}
    #: How a task of an array finds its (0-based) index.
    array_index = "($SGE_TASK_ID - 1)"

    def __init__(self) -> None:
        self._user = getpass.getuser()

    def check_extra_args(self, args: Sequence[str]) -> None:
        """Refuse malformed or reserved qsub options."""
        check_extra_args(args)

    def check_resources(self, res: Resources, options: BatchOptions) -> None:
        """Several cpus need a parallel environment."""
        if (res.cpus or 1) > 1 and not options.parallel_environment:
            raise InvalidRequest(
                "Grid Engine gives a job several cpus only through a parallel environment",
                hint="set parallel_environment in [backends.gridengine] (e.g. \"smp\")",
                code="invalid_resources")

    def submit_argv(self, sub: Submission, options: BatchOptions) -> list[str]:
        """Return the qsub command."""
        return qsub_argv(sub, options)

    def parse_submit(self, stdout: str) -> str:
        """Return the id qsub printed."""
        return parse_qsub(stdout)

    def poll_argv(self) -> list[str]:
        """Every pending and running job of this user, array tasks one by one."""
        return ["qstat", "-u", self._user, "-g", "d", "-xml"]

    def parse_poll(self, stdout: str) -> dict[str, Observation]:
        """Parse the listing."""
        return {item.native_id: observe_state(item.state) for item in parse_qstat(stdout)}

    def find_argv(self, tag: str) -> list[str]:
        """The same listing: qstat cannot filter by name."""
        return self.poll_argv()

    def parse_find(self, stdout: str, tag: str) -> str | None:
        """The newest job named ``tag``."""
        return find_listed(parse_qstat(stdout), tag)

    def cancel_argv(self, native_id: str) -> list[str]:
        """qdel the job or the array task."""
        job, task = split_native(native_id)
        return ["qdel", job, "-t", task] if task else ["qdel", job]

    def array_argv(self, array: ArraySubmission, options: BatchOptions) -> list[str]:
        """Return the qsub command for a job array."""
        return qsub_array_argv(array, options)

    def array_task_id(self, native_id: str, index: int) -> str:
        """Grid Engine numbers array tasks from 1: task ``index`` is ``ID.index+1``."""
        return f"{native_id}.{index + 1}"

    def parse_find_task(self, stdout: str, tag: str, index: int) -> str | None:
        """The id of task ``index`` of the newest array named ``tag``."""
        job = find_listed(parse_qstat(stdout), tag)
        return self.array_task_id(job, index) if job else None

    def classify_error(self, argv: list[str], returncode: int, stderr: str) -> ErrorKind:
        """``does not exist`` means gone; the qmaster away (or a quota of jobs) is
        transient; a refusal of the job is permanent; any other refusal of a submission
        is ``unknown`` (that job alone waits); anything else is transient."""
        text = stderr.lower()
        if any(word in text for word in _TRANSIENT):
            return "transient"
        if "does not exist" in text and argv[0] in ("qdel", "qstat"):
            return "gone"
        if argv[0] != "qsub":
            return "transient"
        return "permanent" if any(p in text for p in _PERMANENT) else "unknown"


#: Words of a qsub refusal that asking again cannot change (an unknown queue, project,
#: parallel environment or resource; a malformed value). Anything else (a quota of
#: jobs per user, a time-out) may pass, so it is transient.
_PERMANENT = ("rejected because", "job rejected", "does not exist", "unknown resource",
              "unknown option", "invalid option", "is not a memory value", "is not a valid",
              "is invalid", "error: error!")
#: Words that make a refusal transient whatever else it says.
_TRANSIENT = ("qmaster", "commlib", "timeout", "time-out", "timed out", "are allowed",
              "quota", "gdi request")


class GridEngineBackend(BatchBackend):
    """Jobs as Grid Engine batch jobs.

    Options (``[backends.gridengine]``): ``queue``, ``project``,
    ``parallel_environment`` (for cpus > 1), ``extra_args``, ``poll_interval`` (1 s),
    ``max_poll_interval`` (30 s), ``lost_grace`` (120 s), ``command_timeout`` (30 s).
    """

    #: Sent (with ``-notify``) to the whole job before a suspension, which the job
    #: must survive.
    ignored_signals = ("USR1",)

    def __init__(self, spool: Spool, options: Mapping[str, Any]) -> None:
        super().__init__(GridEngineDialect(), spool, options)
        self._ran: set[str] = set()

    async def poll(self, native_ids: Collection[str]) -> Mapping[str, Observation]:
        """List the jobs; delete those in error state, reporting them failed with the
        reason Grid Engine gives."""
        seen = dict(await super().poll(native_ids))
        for native_id, observed in seen.items():
            if observed.state == "failed" and observed.reason is None:
                seen[native_id] = await self._clear_error(native_id)
        return seen

    async def _clear_error(self, native_id: str) -> Observation:
        job = split_native(native_id)[0]
        result = await self._call(["qstat", "-j", job])
        reason = parse_error_reason(result.stdout) if result.returncode == 0 else None
        try:
            await self.cancel(native_id)  # so that it never starts later
        except TransientError:
            return Observation("pending", reason="in error state; deleting it")
        return Observation("failed", FailureKind.BOOT_FAIL,
                           f"Grid Engine could not start it: {reason or 'error state (Eqw)'}")

    async def explain(self, job: Job, attempt: Attempt,
                      record: ExitRecord | None) -> Observation | None:
        """Tell how an attempt that left no clean exit status ended.

        The accounting record says whether a limit stopped it (``failed 37``) or Grid
        Engine could not run it; otherwise SIGUSR2 in the exit file means ``qdel``
        (``-notify`` warns before any kill, a limit's included, hence the record
        first), and another signal noted in it means the job was stopped from outside
        (lost). A job gone before its wrapper ever ran, with no record, was deleted
        while pending. While the record is not yet written (the accounting file is
        flushed periodically) the answer is ``None``: the monitor asks again at each
        poll until the lost grace is over.
        """
        native_id = attempt.native_id or ""
        if native_id in self._ran and record is None:
            return None
        found = await self._accounting(job, attempt)
        if found is None:
            if record is None and attempt.state is AttemptState.SUBMITTED:
                # Gone with no record and no sign of a start: deleted while pending,
                # if it never started. The monitor fences it to be sure.
                return Observation("canceled", reason="deleted in Grid Engine before it started",
                                   if_never_started=True)
            return None
        explained = accounting_observation(found)
        if explained is not None and explained.failure is FailureKind.BOOT_FAIL \
                and attempt.state is AttemptState.RUNNING:
            # It was seen running: not a start that failed, a host that lost it (its
            # execution daemon and shepherd died, and said so once back).
            return Observation("failed", FailureKind.NODE_FAIL,
                               f"its host lost it while it ran (Grid Engine: failed "
                               f"{found.failed}: {found.failed_text})")
        if explained is not None:
            return explained
        if record is not None and record.signal == "USR2":
            return Observation("canceled", reason="deleted in Grid Engine (qdel)")
        if record is not None and record.signal is not None:
            # Accounted for, and no limit or qdel: nothing more will come to wait for.
            return Observation("failed", FailureKind.LOST,
                               f"the job was stopped from outside (SIG{record.signal})")
        # It ran: no need to read the accounting file again while the exit file is
        # awaited.
        if len(self._ran) > 10_000:
            self._ran.clear()
        self._ran.add(native_id)
        return None

    async def _accounting(self, job: Job, attempt: Attempt) -> AccountingRecord | None:
        job_number, task = split_native(attempt.native_id or "")
        argv = ["qacct", "-j", job_number, *(["-t", task] if task else [])]
        try:
            result = await self._call(argv)
        except TransientError:
            return None
        tag = self._tag(job, attempt)
        matching = [r for r in parse_qacct(result.stdout) if r.name == tag]
        return matching[-1] if matching else None

    def _tag(self, job: Job, attempt: Attempt) -> str:
        marker = self._spool.attempt_dir(job.id, attempt.number) / "array"
        try:
            return marker.read_text().split()[0]
        except (FileNotFoundError, IndexError):
            return tag_for(job.id, attempt.number)
