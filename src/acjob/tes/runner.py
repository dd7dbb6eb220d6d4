"""Run one attempt of a TES task, inside the job: ``python -m acjob.tes.runner PLAN AREA``.

The daemon makes every TES task an ordinary acjob job whose command is this module,
so a task gets what any job gets (durable state, retries, every backend). The plan
(written by the daemon) holds the task and the container runtime, if any; AREA is
the task's own directory. For each attempt the runner:

1. empties ``AREA/root``, the task's file system: container path ``/data/x`` is
   ``AREA/root/data/x``, so tasks never collide and none writes outside its area;
2. places the inputs (inline content, ``file://`` and ``http(s)://`` URLs) and creates
   the volumes and the outputs' directories;
3. runs the executors in order, stopping at the first failure unless it has
   ``ignore_error``. Without a runtime they run on the host, with the task's paths
   in their arguments and environment rewritten to the area; with one, each runs
   inside ``runtime`` (e.g. apptainer) with the area's directories mounted;
4. copies the outputs to their ``file://`` URLs (only when the executors succeeded);
5. records all of it in ``AREA/logs/attempt-N.json`` (rewritten atomically after each
   step), which the daemon reads to build the task's logs.

It exits with the first failing executor's status, 0 on success, or
:data:`SYSTEM_ERROR_EXIT` when staging or copying failed (the log says why).
"""

from __future__ import annotations

import contextlib
import datetime
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, BinaryIO, Literal

import httpx

from .container import image_problem, runtime_argv
from .model import Executor, Task, declared_paths, normalize

#: The exit status for a failure of the runner itself (inputs, outputs), not an executor's.
SYSTEM_ERROR_EXIT = 250
#: How much of an executor's stdout and stderr the task log carries.
LOG_TAIL_BYTES = 64 * 1024
#: The most copied files an attempt's record lists (the rest are counted in a system
#: log): the daemon refuses to parse a record much larger (see :mod:`acjob.tes.view`).
MAX_LISTED_OUTPUTS = 10_000
#: Top-level directories a task may not map: rewriting them would break the host's tools.
PROTECTED_ROOTS = frozenset({"/bin", "/sbin", "/usr", "/lib", "/lib32", "/lib64", "/etc",
                             "/proc", "/sys", "/dev", "/boot", "/run"})


class StagingError(Exception):
    """An input or output could not be moved; the task ends in SYSTEM_ERROR."""


def rfc3339(t: float) -> str:
    """Return a time as RFC 3339 (UTC)."""
    return datetime.datetime.fromtimestamp(t, datetime.UTC).isoformat()


def roots_of(paths: list[str]) -> list[str]:
    """Return the top-level directories of container paths, longest first.

    Paths are normalized first (``//etc/x`` and ``/./etc/x`` are under ``/etc``), so
    that no spelling of a path hides its root from the protected-roots check.
    """
    roots = {"/" + first for p in paths if (first := normalize(p).split("/")[1])}
    return sorted(roots, key=lambda r: (-len(r), r))


def rewrite(text: str, roots: list[str], root_dir: Path) -> str:
    """Replace container paths under ``roots`` in ``text`` by the area's host paths.

    A root matches only as a whole path component (``/data`` in ``/data/x`` and
    ``--in=/data``, not in ``/database`` or ``/usr/data``). All roots are replaced in
    one pass, each occurrence once: the area's own path may contain a root (a spool
    under ``/scratch`` with ``/scratch`` a task volume), and must not be rewritten again.
    """
    if not roots:
        return text
    alternatives = "|".join(re.escape(r) for r in sorted(roots, key=len, reverse=True))
    pattern = re.compile(r"(?<![\w./-])(?:" + alternatives + r")(?=/|$|[^\w.-])")
    return pattern.sub(lambda match: str(root_dir) + match.group(0), text)


class Runner:
    """One attempt of one task; see the module docstring."""

    def __init__(self, plan: dict[str, Any], area: Path, attempt: int) -> None:
        self.task = Task.model_validate(plan["task"])
        self.runtime: list[str] | None = plan.get("runtime")
        self.mount_flag: str = plan.get("mount_flag", "-v")
        self.area = area
        self.root = area / "root"
        self.logs = area / "logs"
        self.attempt = attempt
        self.log: dict[str, Any] = {"attempt": attempt, "start_time": rfc3339(time.time()),
                                    "executors": [], "outputs": [], "system_logs": []}
        self.unlisted = 0  # files copied beyond MAX_LISTED_OUTPUTS
        self.roots = roots_of(declared_paths(self.task))

    def host(self, path: str) -> Path:
        """Return the host path of a container path."""
        return self.root / path.lstrip("/")

    def inside(self, path: Path) -> Path:
        """Return ``path`` once it is sure to lie inside the task's file system.

        An executor may leave symbolic links behind (a container's ``/data/x`` pointing
        at ``/etc``); the runner, outside any container, must not follow them out.

        Raises:
            StagingError: the path leads outside the area.
        """
        try:
            resolved = path.resolve()
        except (OSError, RuntimeError) as exc:  # RuntimeError: a loop of links
            raise StagingError(f"/{path.relative_to(self.root)} cannot be resolved: "
                               f"{exc}") from None
        if not resolved.is_relative_to(self.root.resolve()):
            raise StagingError(f"/{path.relative_to(self.root)} leads outside the task's "
                               "file system")
        return resolved

    def open_inside(self, path: Path, mode: Literal["rb", "wb"]) -> BinaryIO:
        """Open a file of the task's file system, never one outside it.

        The path is resolved first (:meth:`inside`); the file actually opened is checked
        again, so a link swapped in meanwhile (by a process an executor left running)
        is caught as well. A file opened for writing is emptied only after that check.

        Raises:
            StagingError: the file lies outside the area.
            OSError: it cannot be opened.
        """
        flags = os.O_RDONLY if mode == "rb" else os.O_WRONLY | os.O_CREAT
        fd = os.open(self.inside(path), flags | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666)
        try:
            opened = Path(f"/proc/self/fd/{fd}").readlink()
            if not opened.is_relative_to(self.root.resolve()):
                raise StagingError(f"/{path.relative_to(self.root)} leads outside the "
                                   "task's file system")
            if mode == "wb":
                os.ftruncate(fd, 0)
            return os.fdopen(fd, mode)
        except BaseException:
            os.close(fd)
            raise

    def run(self) -> int:
        """Run the attempt; return the runner's exit status.

        Never raises: a failure of the runner itself (a bug included) is recorded as
        the attempt's system error.
        """
        try:
            return self._run()
        except Exception as exc:  # whatever it is, the task must say so
            return self._system_error(f"the task runner failed: {exc!r}")

    def _run(self) -> int:
        try:
            self._prepare()
        except (StagingError, OSError, httpx.HTTPError) as exc:
            return self._system_error(f"cannot place the inputs: {exc}")
        status = 0
        for index, executor in enumerate(self.task.executors):
            code = self._execute(index, executor)
            if code != 0 and not executor.ignore_error:
                status = code
                break
        if status == 0:
            failure = None
            try:
                self._collect()
            except (StagingError, OSError) as exc:
                failure = f"cannot copy the outputs: {exc}"
            if self.unlisted:
                self.log["system_logs"].append(
                    f"{self.unlisted} more output files were copied (not listed)")
            if failure:
                return self._system_error(failure)
        self.log["end_time"] = rfc3339(time.time())
        self._save()
        return status

    def _system_error(self, message: str) -> int:
        self.log["system_error"] = message
        self.log["system_logs"].append(message)
        self.log["end_time"] = rfc3339(time.time())
        self._save()
        print(f"acjob tes: {message}", file=sys.stderr)
        return SYSTEM_ERROR_EXIT

    def _save(self) -> None:
        save_log(self.logs, self.attempt, self.log)

    # -- inputs --------------------------------------------------------------------

    def _prepare(self) -> None:
        if self.root.exists():
            shutil.rmtree(self.root)  # a retried attempt starts from nothing
        self.root.mkdir(parents=True)
        (self.logs / f"attempt-{self.attempt}").mkdir(parents=True, exist_ok=True)
        self._save()
        for volume in self.task.volumes:
            self.host(volume).mkdir(parents=True, exist_ok=True)
        for output in self.task.outputs:
            parent = output.path_prefix if output.is_glob and output.path_prefix \
                else str(Path(output.path).parent)
            self.host(parent).mkdir(parents=True, exist_ok=True)
        for item in self.task.inputs:
            target = self.host(item.path)
            target.parent.mkdir(parents=True, exist_ok=True)
            if item.content is not None:
                target.write_text(item.content)
            elif item.url is not None and item.url.startswith(("http://", "https://")):
                self._download(item.url, target)
            elif item.url is not None:
                source = Path(item.url.removeprefix("file://"))
                if item.type == "DIRECTORY":
                    shutil.copytree(source, target, dirs_exist_ok=True)
                elif not source.is_file():
                    raise StagingError(f"{item.url} is not a file")
                else:
                    shutil.copyfile(source, target)

    @staticmethod
    def _download(url: str, target: Path) -> None:
        with httpx.stream("GET", url, follow_redirects=True, timeout=60) as response:
            if response.status_code != 200:
                raise StagingError(f"{url} answered {response.status_code}")
            with target.open("wb") as out:
                for chunk in response.iter_bytes(1 << 20):
                    out.write(chunk)

    # -- executors -----------------------------------------------------------------

    def _argv(self, executor: Executor) -> list[str]:
        """Return the executor's argv: on the host, its command with the task's paths
        rewritten; else the runtime template around it.

        Raises:
            StagingError: the image is not one the template can take (the daemon
                refuses such a task; this guards a plan written before it did).
        """
        if self.runtime is None:
            return [rewrite(a, self.roots, self.root) for a in executor.command]
        problem = image_problem(executor.image, self.runtime)
        if problem is not None:
            raise StagingError(f"the image {executor.image[:100]!r} {problem}")
        return runtime_argv(self.runtime, self.mount_flag, self.roots,
                            lambda root: str(self.host(root)), executor.image,
                            executor.workdir, executor.command)

    def _execute(self, index: int, executor: Executor) -> int:
        own = self.logs / f"attempt-{self.attempt}"
        entry: dict[str, Any] = {"start_time": rfc3339(time.time())}
        self.log["executors"].append(entry)
        with contextlib.ExitStack() as files:
            try:
                stdout, out = self._output_file(files, executor.stdout, own / f"{index}.stdout")
                stderr, err = self._output_file(files, executor.stderr, own / f"{index}.stderr")
                stdin = files.enter_context(self.open_inside(
                    self._task_file(executor.stdin), "rb")) if executor.stdin else None
                cwd = self.root
                if executor.workdir and self.runtime is None:
                    cwd = self._task_file(executor.workdir)
                    cwd.mkdir(parents=True, exist_ok=True)
                argv = self._argv(executor)
            except (StagingError, OSError) as exc:
                # The executor's own doing (a missing stdin, a link an earlier one left,
                # an image the runtime cannot take): it fails, as a command that cannot
                # open its files does.
                self.log["system_logs"].append(f"executor {index}: {exc}")
                entry.update(exit_code=1, end_time=rfc3339(time.time()))
                self._save()
                return 1
            entry.update(stdout_file=str(stdout), stderr_file=str(stderr))
            env = dict(os.environ)
            for key, value in executor.env.items():
                env[key] = value if self.runtime else rewrite(value, self.roots, self.root)
            self._save()
            code = self._spawn(argv, stdin, out, err, cwd, env)
        # A command killed by signal N reports -N; a shell would say 128+N.
        entry.update(exit_code=128 - code if code < 0 else code, end_time=rfc3339(time.time()))
        self._save()
        return int(entry["exit_code"])

    def _output_file(self, files: contextlib.ExitStack, path: str | None,
                     default: Path) -> tuple[Path, BinaryIO]:
        """Open an executor's stdout or stderr: a task path, or the runner's own file."""
        if path is None:
            return default, files.enter_context(default.open("wb"))
        host = self._task_file(path)
        return host, files.enter_context(self.open_inside(host, "wb"))

    def _task_file(self, path: str) -> Path:
        """Return the host path of a container path, inside the area, with its parent
        directory made."""
        host = self.inside(self.host(path))
        host.parent.mkdir(parents=True, exist_ok=True)
        return host

    @staticmethod
    def _spawn(argv: list[str], stdin: BinaryIO | None, out: BinaryIO, err: BinaryIO,
               cwd: Path, env: dict[str, str]) -> int:
        try:
            return subprocess.run(argv, stdin=stdin or subprocess.DEVNULL, stdout=out,
                                  stderr=err, cwd=cwd, env=env, check=False).returncode
        except OSError as exc:
            err.write(f"acjob tes: cannot run {argv[0]}: {exc}\n".encode())
            return 127

    # -- outputs -------------------------------------------------------------------

    def _collect(self) -> None:
        for output in self.task.outputs:
            destination = Path(output.url.removeprefix("file://"))
            if output.is_glob:
                prefix = self.host(output.path_prefix or "/")
                # The pattern is the task's own, matched inside its area only.
                matches = sorted(glob.glob(str(self.host(output.path))))  # noqa: PTH207
                for match in matches:
                    relative = Path(match).relative_to(prefix)
                    self._copy(Path(match), destination / relative,
                               "/" + str(Path(match).relative_to(self.root)))
                continue
            source = self.host(output.path)
            if output.type == "DIRECTORY":
                if not source.is_dir():
                    raise StagingError(f"the output directory {output.path} does not exist")
                for file in sorted(p for p in source.rglob("*") if p.is_file()):
                    relative = file.relative_to(source)
                    self._copy(file, destination / relative, f"{output.path}/{relative}")
            else:
                if not source.is_file():
                    raise StagingError(f"the output file {output.path} does not exist")
                self._copy(source, destination, output.path)

    def _copy(self, source: Path, destination: Path, container_path: str) -> None:
        destination.parent.mkdir(parents=True, exist_ok=True)
        tmp = destination.with_name(f".{destination.name}.acjob-tmp")
        with self.open_inside(source, "rb") as reader, tmp.open("wb") as writer:
            shutil.copyfileobj(reader, writer, 1 << 20)
        tmp.replace(destination)  # readers never see half a file
        if len(self.log["outputs"]) >= MAX_LISTED_OUTPUTS:
            self.unlisted += 1
            return
        self.log["outputs"].append({"url": f"file://{destination}", "path": container_path,
                                    "size_bytes": str(destination.stat().st_size)})


def save_log(logs: Path, attempt: int, log: dict[str, Any]) -> None:
    """Write an attempt's record, whole or not at all (the daemon reads it any time)."""
    target = logs / f"attempt-{attempt}.json"
    tmp = target.with_suffix(".tmp")
    tmp.write_text(json.dumps(log))
    tmp.replace(target)


def main() -> None:
    """Entry point: ``python -m acjob.tes.runner PLAN AREA``."""
    area = Path(sys.argv[2])
    attempt = int(os.environ.get("ACJOB_ATTEMPT", "1"))
    try:
        runner = Runner(json.loads(Path(sys.argv[1]).read_text()), area, attempt)
    except Exception as exc:  # an unreadable plan is the task's system error
        message = f"cannot read the task's plan: {exc!r}"
        now = rfc3339(time.time())
        (area / "logs").mkdir(parents=True, exist_ok=True)
        save_log(area / "logs", attempt, {
            "attempt": attempt, "start_time": now, "end_time": now, "executors": [],
            "outputs": [], "system_logs": [message], "system_error": message})
        print(f"acjob tes: {message}", file=sys.stderr)
        sys.exit(SYSTEM_ERROR_EXIT)
    sys.exit(runner.run())


if __name__ == "__main__":
    main()
