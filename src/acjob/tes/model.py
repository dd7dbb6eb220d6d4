"""The GA4GH TES v1.1 task as a client sends it, validated.

Only what acjob reads is modelled; the read-only fields a client may echo back (``id``,
``state``, ``logs``, ``creation_time``) are ignored. Every path must be absolute and
free of ``..`` so that, mapped into the task's own directory, it can never point
outside it; it is kept in canonical form (:func:`normalize`), so that every check on a
path sees the path that is used.
"""

from __future__ import annotations

import posixpath
import re
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

#: Executor states and task states are TES's; these are the views of a task document.
View = Literal["MINIMAL", "BASIC", "FULL"]

_WILDCARD = re.compile(r"[*?\[]")


def normalize(path: str) -> str:
    """Return an absolute path in canonical form: no ``.`` components, no repeated or
    trailing slashes (``//etc/x`` and ``/./etc/x`` are ``/etc/x``).

    ``..`` is left alone (callers refuse it). :func:`posixpath.normpath` alone is not
    enough: POSIX lets a path start with exactly two slashes, and normpath keeps them.
    """
    return "/" + posixpath.normpath(path).lstrip("/")


def _container_path(value: str) -> str:
    """Return ``value`` normalized.

    Raises:
        ValueError: it is not absolute, holds a NUL, or has a ``..`` component.
    """
    if not value.startswith("/") or "\0" in value:
        raise ValueError("must be an absolute path")
    if ".." in value.split("/"):
        raise ValueError("must not contain '..'")
    return normalize(value)


ContainerPath = Annotated[str, Field(min_length=1, max_length=4096),
                          AfterValidator(_container_path)]


def _input_url(value: str) -> str:
    if not (value.startswith(("file:///", "http://", "https://")) or value.startswith("/")):
        raise ValueError("acjob fetches inputs from file://, http:// and https:// URLs "
                         "(or absolute paths on the daemon's host)")
    return value


def _output_url(value: str) -> str:
    if not (value.startswith("file:///") or value.startswith("/")):
        raise ValueError("acjob writes outputs to file:// URLs (or absolute paths)")
    return value


class Executor(BaseModel):
    """One command of a task; the executors run one after the other."""

    model_config = ConfigDict(extra="ignore")

    image: Annotated[str, Field(max_length=1024)]
    command: Annotated[list[Annotated[str, Field(max_length=1 << 20)]],
                       Field(min_length=1, max_length=65536)]
    workdir: ContainerPath | None = None
    stdin: ContainerPath | None = None
    stdout: ContainerPath | None = None
    stderr: ContainerPath | None = None
    env: dict[Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")],
              Annotated[str, Field(max_length=1 << 20)]] = Field(default_factory=dict,
                                                                   max_length=4096)
    ignore_error: bool = False


class Input(BaseModel):
    """A file (or directory) placed at ``path`` before the first executor runs."""

    model_config = ConfigDict(extra="ignore")

    name: str | None = None
    description: str | None = None
    url: Annotated[str, Field(max_length=4096)] | None = None
    path: ContainerPath
    type: Literal["FILE", "DIRECTORY"] = "FILE"
    content: Annotated[str, Field(max_length=1 << 20)] | None = None
    streamable: bool | None = None

    @model_validator(mode="after")
    def _source(self) -> Input:
        if self.content is None and self.url is None:
            raise ValueError("an input needs a url or a content")
        if self.content is None and self.url is not None:
            _input_url(self.url)  # with content, TES says the url is ignored
        if self.content is not None and self.type == "DIRECTORY":
            raise ValueError("a DIRECTORY input cannot have content")
        return self


class Output(BaseModel):
    """A file (or directory, or glob) copied to ``url`` after the last executor."""

    model_config = ConfigDict(extra="ignore")

    name: str | None = None
    description: str | None = None
    url: Annotated[str, Field(max_length=4096), AfterValidator(_output_url)]
    path: ContainerPath
    path_prefix: Annotated[str, Field(max_length=4096)] | None = None
    type: Literal["FILE", "DIRECTORY"] = "FILE"

    @model_validator(mode="after")
    def _prefix(self) -> Output:
        if not _WILDCARD.search(self.path):
            return self  # TES: path_prefix only matters for a path with wildcards
        if not self.path_prefix:
            raise ValueError("an output path with wildcards needs a path_prefix")
        try:
            self.path_prefix = _container_path(self.path_prefix)
        except ValueError as exc:
            raise ValueError(f"path_prefix {exc}") from None
        if not self.path.startswith(self.path_prefix.rstrip("/") + "/"):
            raise ValueError("path_prefix must be a directory that path lies in")
        if _WILDCARD.search(self.path_prefix):
            raise ValueError("path_prefix must not contain wildcards")
        return self

    @property
    def is_glob(self) -> bool:
        """Whether ``path`` selects several files."""
        return bool(_WILDCARD.search(self.path))


class TaskResources(BaseModel):
    """What a task asks of the compute resource."""

    model_config = ConfigDict(extra="ignore")

    cpu_cores: Annotated[int, Field(ge=1, le=4096)] | None = None
    preemptible: bool | None = None
    ram_gb: Annotated[float, Field(gt=0, le=1 << 20)] | None = None
    disk_gb: Annotated[float, Field(ge=0)] | None = None
    zones: list[str] | None = None
    backend_parameters: dict[str, str] | None = None
    backend_parameters_strict: bool = False


class Task(BaseModel):
    """A TES task as submitted."""

    model_config = ConfigDict(extra="ignore")

    name: Annotated[str, Field(max_length=4096)] | None = None
    description: Annotated[str, Field(max_length=1 << 16)] | None = None
    inputs: Annotated[list[Input], Field(max_length=10_000)] = Field(default_factory=list)
    outputs: Annotated[list[Output], Field(max_length=10_000)] = Field(default_factory=list)
    resources: TaskResources | None = None
    executors: Annotated[list[Executor], Field(min_length=1, max_length=1000)]
    volumes: Annotated[list[ContainerPath], Field(max_length=1000)] = Field(
        default_factory=list)
    tags: dict[Annotated[str, Field(max_length=1024)], Annotated[str, Field(max_length=4096)]] \
        = Field(default_factory=dict, max_length=1000)


def declared_paths(task: Task) -> list[str]:
    """Return every container path the task names (inputs, outputs and their prefixes,
    volumes, executors' files and working directories): what the runner maps, and the
    daemon checks."""
    paths = [i.path for i in task.inputs] + list(task.volumes)
    paths += [p for o in task.outputs for p in (o.path, o.path_prefix) if p]
    for executor in task.executors:
        paths += [p for p in (executor.workdir, executor.stdin, executor.stdout,
                              executor.stderr) if p]
    return paths
