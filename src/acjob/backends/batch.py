"""What every batch scheduler backend shares: running its commands, tags, options, errors.

A scheduler is described by a :class:`Dialect`: pure functions that build command
lines and parse their output, plus a state table. :class:`BatchBackend` runs those
commands (in a thread, with a time-out), and turns their failures into the two
kinds the monitor understands: :class:`~acjob.errors.BackendUnavailable` (look
again later: the controller is down, the command timed out) and
:class:`~acjob.errors.SubmitFailed` (the scheduler refused the job for good).

Every attempt is tagged ``ac-<job id>-<attempt>`` (in the scheduler's job name and,
where it has one, its comment), so a daemon that crashed between submitting and
recording the native id finds the attempt again instead of submitting it twice.

The spool must be on a file system that the compute nodes share with the daemon:
the wrapper runs there and writes its output and exit status there.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import shlex
import subprocess
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from ..errors import BackendUnavailable, ConfigError, InvalidRequest, JobRefused, SubmitFailed
from ..model import Attempt, ExitRecord, Job, JobSpec, Observation, Resources
from ..spool import Spool
from .base import job_environment

log = logging.getLogger("acjob.backends")

#: How a scheduler command failed: ``gone`` (the job no longer exists), ``permanent``
#: (refused for good), ``transient`` (the scheduler is away: every job waits) or
#: ``unknown`` (a submission refused in words not known: that job alone waits).
ErrorKind = Literal["transient", "permanent", "gone", "unknown"]

def tag_for(job_id: str, attempt: int) -> str:
    """Return the tag that names an attempt in the scheduler."""
    return f"ac-{job_id}-{attempt}"


@dataclass(frozen=True, slots=True)
class Submission:
    """Everything a dialect needs to build a submit command.

    Attributes:
        job: The job.
        attempt: The attempt number.
        tag: The attempt's tag (:func:`tag_for`).
        wrapper: The wrapper script to run.
        attempt_dir: Where the scheduler's own output file may go.
        workdir: The job's working directory.
    """

    job: Job
    attempt: int
    tag: str
    wrapper: Path
    attempt_dir: Path
    workdir: Path


@dataclass(frozen=True, slots=True)
class ArraySubmission:
    """A job array: ``count`` wrappers that share their resources.

    Attributes:
        tag: The array's tag (``ac-array-<random>``).
        script: The array script; task ``i`` runs line ``i + 1`` of the manifest.
        directory: Where the array's files (and the scheduler's own output) go.
        count: How many tasks.
        resources: The resources every task asks for.
    """

    tag: str
    script: Path
    directory: Path
    count: int
    resources: Resources


@dataclass(frozen=True, slots=True)
class BatchOptions:
    """Options every batch backend accepts (``[backends.NAME]`` in the config).

    Attributes:
        queue: The partition (Slurm) or queue (Grid Engine) to submit to.
        account: The account (Slurm) or project (Grid Engine) to charge.
        extra_args: Raw options added to every submission.
        poll_interval: Seconds between polls while attempts are young.
        max_poll_interval: The ceiling the interval grows to for old attempts.
        lost_grace: Seconds an attempt may be unknown to the scheduler, without an
            exit file, before it is declared lost (covers shared file system lag).
        command_timeout: Seconds a scheduler command may take before it counts as
            "scheduler unavailable".
        parallel_environment: Grid Engine's parallel environment for cpus > 1.
        refusal_tries: How many times a job the scheduler refuses in words acjob does
            not know is submitted (alone, with growing pauses, while the other jobs go
            on) before it ends ``SYSTEM_ERROR`` with the scheduler's words.
    """

    queue: str | None = None
    account: str | None = None
    extra_args: tuple[str, ...] = ()
    poll_interval: float = 1.0
    max_poll_interval: float = 30.0
    lost_grace: float = 120.0
    command_timeout: float = 30.0
    parallel_environment: str | None = None
    refusal_tries: int = 5
    extra: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def parse(cls, backend: str, options: Mapping[str, Any],
              aliases: Mapping[str, str]) -> BatchOptions:
        """Validate ``[backends.NAME]`` options; ``aliases`` maps native names
        (``partition``, ``project``) onto ``queue``/``account``.

        Raises:
            ConfigError: an unknown option or a value of the wrong kind.
        """
        known = {"queue", "account", "extra_args", "poll_interval", "max_poll_interval",
                 "lost_grace", "command_timeout", "parallel_environment", "refusal_tries",
                 *aliases}
        unknown = set(options) - known
        if unknown:
            raise ConfigError(f"unknown option(s) for the {backend} backend: {sorted(unknown)}",
                              hint=f"known options: {', '.join(sorted(known))}")
        values = {aliases.get(k, k): v for k, v in options.items()}
        extra = values.get("extra_args", [])
        if not isinstance(extra, list) or not all(isinstance(a, str) for a in extra):
            raise ConfigError(f"backends.{backend}.extra_args must be a list of strings")
        try:
            result = cls(
                queue=_opt_str(values, "queue"), account=_opt_str(values, "account"),
                extra_args=tuple(extra),
                poll_interval=float(values.get("poll_interval", 1.0)),
                max_poll_interval=float(values.get("max_poll_interval", 30.0)),
                lost_grace=float(values.get("lost_grace", 120.0)),
                command_timeout=float(values.get("command_timeout", 30.0)),
                parallel_environment=_opt_str(values, "parallel_environment"),
                refusal_tries=_opt_count(values, "refusal_tries", 5),
            )
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"backends.{backend}: {exc}") from exc
        if min(result.poll_interval, result.command_timeout) <= 0 or result.lost_grace < 0:
            raise ConfigError(f"backends.{backend}: intervals and time-outs must be positive")
        if result.max_poll_interval < result.poll_interval:
            raise ConfigError(f"backends.{backend}: max_poll_interval must not be below "
                              "poll_interval")
        return result


def _opt_count(values: Mapping[str, Any], key: str, default: int) -> int:
    value = values.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{key} must be a whole number from 1")
    return value


def _opt_str(values: Mapping[str, Any], key: str) -> str | None:
    value = values.get(key)
    if value is not None and not isinstance(value, str):
        raise TypeError(f"{key} must be a string")
    return value


class Dialect(Protocol):
    """The pure, scheduler-specific half of a batch backend."""

    name: str
    #: Config-option aliases onto :class:`BatchOptions` fields.
    aliases: Mapping[str, str]

    def check_extra_args(self, args: Sequence[str]) -> None:
        """Refuse raw options that are malformed or that acjob itself sets.

        Raises:
            InvalidRequest: naming the offending option.
        """
        ...

    def check_resources(self, res: Resources, options: BatchOptions) -> None:
        """Refuse resources this scheduler cannot be asked for.

        Raises:
            InvalidRequest: naming what is wrong.
        """
        ...

    def submit_argv(self, sub: Submission, options: BatchOptions) -> list[str]:
        """Return the command that submits the wrapper."""
        ...

    def parse_submit(self, stdout: str) -> str:
        """Return the native id printed by the submit command."""
        ...

    def poll_argv(self) -> list[str]:
        """Return the command that lists all of this user's jobs in one call."""
        ...

    def parse_poll(self, stdout: str) -> dict[str, Observation]:
        """Return what the listing says of each job, by native id."""
        ...

    def find_argv(self, tag: str) -> list[str]:
        """Return the command that lists jobs carrying ``tag``."""
        ...

    def parse_find(self, stdout: str, tag: str) -> str | None:
        """Return the native id of the newest job carrying ``tag``, if any."""
        ...

    def cancel_argv(self, native_id: str) -> list[str]:
        """Return the command that cancels a job."""
        ...

    def classify_error(self, argv: list[str], returncode: int, stderr: str) -> ErrorKind:
        """Tell a failed command's kind (see :data:`ErrorKind`)."""
        ...

    #: The shell expression of a task's 0-based index inside an array job.
    array_index: str

    def array_argv(self, array: ArraySubmission, options: BatchOptions) -> list[str]:
        """Return the command that submits an array job."""
        ...

    def array_task_id(self, native_id: str, index: int) -> str:
        """Return the native id of task ``index`` of the array ``native_id``."""
        ...

    def parse_find_task(self, stdout: str, tag: str, index: int) -> str | None:
        """Return the native id of task ``index`` of the newest array named ``tag``."""
        ...


Runner = Callable[[list[str], float], subprocess.CompletedProcess[str]]


def run_command(argv: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    """Run a scheduler command, capturing its output (the default runner)."""
    # Schedulers pass the submitting environment on to the job: never the secrets.
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL, check=False, env=job_environment())


class BatchBackend:
    """A backend over a batch scheduler's command-line tools; see the module docstring."""

    capacity: int | None = None
    notifies_exits = False
    enforces_time_limits = True
    runs_on_submit = False
    ignored_signals: tuple[str, ...] = ()
    supports_arrays = True

    def __init__(self, dialect: Dialect, spool: Spool, options: Mapping[str, Any],
                 runner: Runner = run_command) -> None:
        self.dialect = dialect
        self.name = dialect.name
        self.options = BatchOptions.parse(dialect.name, options, dialect.aliases)
        try:
            dialect.check_extra_args(self.options.extra_args)
        except InvalidRequest as exc:
            raise ConfigError(f"backends.{self.name}.extra_args: {exc.message}") from exc
        self.poll_interval = self.options.poll_interval
        self.max_poll_interval = self.options.max_poll_interval
        self.lost_grace = self.options.lost_grace
        self.refusal_tries = self.options.refusal_tries
        self._spool = spool
        self._run = runner

    async def start(self, wake: Callable[[], None]) -> None:
        """Nothing to start: the scheduler runs on its own."""

    async def close(self) -> None:
        """Nothing to release."""

    def validate(self, spec: JobSpec) -> None:
        """Check the job's resources and raw options for this scheduler.

        Raises:
            InvalidRequest: naming what is wrong.
        """
        self.dialect.check_extra_args(spec.resources.extra_args)
        self.dialect.check_resources(spec.resources, self.options)

    async def _call(self, argv: list[str]) -> subprocess.CompletedProcess[str]:
        try:
            return await asyncio.to_thread(self._run, argv, self.options.command_timeout)
        except subprocess.TimeoutExpired as exc:
            raise BackendUnavailable(
                f"{argv[0]} did not answer within {self.options.command_timeout:g} s"
            ) from exc
        except OSError as exc:
            raise BackendUnavailable(f"cannot run {argv[0]}: {exc.strerror or exc}") from exc

    def _failure(self, argv: list[str], result: subprocess.CompletedProcess[str]) -> ErrorKind:
        kind = self.dialect.classify_error(argv, result.returncode, result.stderr)
        log.debug("%s exited %d: %s", argv[0], result.returncode, result.stderr.strip())
        return kind

    async def submit(self, job: Job, attempt: int, wrapper: Path) -> str:
        """Submit the wrapper; return the scheduler's job id."""
        sub = Submission(job=job, attempt=attempt, tag=tag_for(job.id, attempt),
                         wrapper=wrapper, attempt_dir=wrapper.parent,
                         workdir=self._workdir(job))
        return await self._submit_command(self.dialect.submit_argv(sub, self.options), "job")

    async def _submit_command(self, argv: list[str], what: str) -> str:
        """Run a submit command; return the id it printed."""
        result = await self._call(argv)
        if result.returncode != 0:
            message = result.stderr.strip() or f"{argv[0]} exited {result.returncode}"
            kind = self._failure(argv, result)
            if kind == "permanent":
                raise SubmitFailed(f"{self.name} refused the {what}: {message}")
            if kind == "unknown":
                raise JobRefused(f"{self.name} refused the {what}: {message}")
            raise BackendUnavailable(f"{self.name} submission failed: {message}")
        try:
            return self.dialect.parse_submit(result.stdout)
        except ValueError as exc:
            # The job may exist; the monitor fences the attempt and finds it by tag.
            raise BackendUnavailable(f"unexpected answer from {argv[0]}: {exc}") from exc

    async def submit_array(self, items: Sequence[tuple[Job, int, Path]]) -> list[str]:
        """Submit several wrappers (whose jobs share their resources) as one job array.

        Every attempt directory gets an ``array`` file naming the array and its task,
        so :meth:`find` can find a task again after a crash. Returns the native ids,
        in order.
        """
        directory = self._spool.root / "arrays"
        directory.mkdir(mode=0o700, exist_ok=True)
        tag = f"ac-array-{secrets.token_hex(8)}"
        manifest = directory / f"{tag}.list"
        manifest.write_text("".join(f"{wrapper}\n" for _, _, wrapper in items))
        script = directory / f"{tag}.sh"
        script.write_text(
            "#!/bin/sh\n"
            f"# acjob job array {tag}: task N runs the wrapper on line N+1 of the manifest.\n"
            f'exec /bin/sh "$(sed -n "$(({self.dialect.array_index} + 1))p" '
            f'{shlex.quote(str(manifest))})"\n')
        for index, (_, _, wrapper) in enumerate(items):
            (wrapper.parent / "array").write_text(f"{tag} {index}\n")
        array = ArraySubmission(tag=tag, script=script, directory=directory, count=len(items),
                                resources=items[0][0].spec.resources)
        base = await self._submit_command(self.dialect.array_argv(array, self.options),
                                          "job array")
        return [self.dialect.array_task_id(base, i) for i in range(len(items))]

    async def poll(self, native_ids: Collection[str]) -> Mapping[str, Observation]:
        """List every job of this user in one call; unknown ids are ``gone``."""
        argv = self.dialect.poll_argv()
        result = await self._call(argv)
        if result.returncode != 0:
            self._failure(argv, result)
            raise BackendUnavailable(
                f"{argv[0]} failed: {result.stderr.strip() or result.returncode}")
        seen = self.dialect.parse_poll(result.stdout)
        return {i: seen.get(i, Observation("gone")) for i in native_ids}

    async def find(self, job: Job, attempt: int) -> str | None:
        """Find the attempt by its tag (or, for an array task, its array's tag)."""
        tag, index = tag_for(job.id, attempt), None
        try:
            text = (self._spool.attempt_dir(job.id, attempt) / "array").read_text().split()
            tag, index = text[0], int(text[1])
        except (FileNotFoundError, IndexError, ValueError):
            pass
        argv = self.dialect.find_argv(tag)
        result = await self._call(argv)
        if result.returncode != 0:
            if self._failure(argv, result) == "gone":
                return None
            raise BackendUnavailable(
                f"{argv[0]} failed: {result.stderr.strip() or result.returncode}")
        if index is not None:
            return self.dialect.parse_find_task(result.stdout, tag, index)
        return self.dialect.parse_find(result.stdout, tag)

    async def cancel(self, native_id: str) -> None:
        """Ask the scheduler to cancel; a job it no longer knows counts as canceled."""
        argv = self.dialect.cancel_argv(native_id)
        result = await self._call(argv)
        if result.returncode != 0 and self._failure(argv, result) != "gone":
            raise BackendUnavailable(
                f"{argv[0]} failed: {result.stderr.strip() or result.returncode}")

    async def explain(self, job: Job, attempt: Attempt,
                      record: ExitRecord | None) -> Observation | None:
        """Nothing more to tell than the listing did (schedulers may know more)."""
        return None

    def _workdir(self, job: Job) -> Path:
        if job.spec.workdir is not None:
            return Path(job.spec.workdir)
        return self._spool.work_dir(job.id)
