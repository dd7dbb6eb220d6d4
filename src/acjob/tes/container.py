"""Executors in a container runtime: what a task may put in the runtime's command line.

The runtime template (``[tes] runtime``) is the operator's; the image, the mounted
paths and the command are the task's. A task value must never become an option of the
runtime (``--privileged``, ``--volume=/:/host``): the image must be an image reference,
a mounted top-level directory must not hold the separators of a mount spec, and the
runtime's options are ended with ``--`` before the image. This keeps the template's
meaning; it does not make the runtime a sandbox (see docs/tes.md).
"""

from __future__ import annotations

import re
from collections.abc import Callable

from .model import Task

#: The placeholder of the executor's image in a runtime template.
IMAGE = "{image}"

# An OCI (Docker) reference, after github.com/distribution/reference: an optional
# registry host (and port), lower-case path components, an optional tag, an optional
# digest. ASCII only, no whitespace, and it can never start with "-".
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_HOST = r"[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?"
_NAME = rf"(?:{_HOST}(?:\.{_HOST})*(?::[0-9]{{1,5}})?/)?{_COMPONENT}(?:/{_COMPONENT})*"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
_REFERENCE = rf"(?:{_NAME})(?::{_TAG})?(?:@{_DIGEST})?"
OCI_REFERENCE = re.compile(rf"(?P<name>{_NAME})(?::{_TAG})?(?:@{_DIGEST})?", re.ASCII)
#: What apptainer (singularity) also takes for an image: transport URIs and local files.
_LIBRARY = rf"/?(?:[A-Za-z0-9][A-Za-z0-9._-]*/){{0,3}}[A-Za-z0-9][A-Za-z0-9._-]*(?::{_TAG})?"
IMAGE_URI = re.compile(rf"(?:docker|oras)://{_REFERENCE}|(?:library|shub)://{_LIBRARY}",
                       re.ASCII)
#: A component never starts with a dot: no ``..``, no hidden file.
LOCAL_IMAGE = re.compile(r"(?:/[A-Za-z0-9_][A-Za-z0-9._+-]*)+\.sif", re.ASCII)
#: The longest image name a registry accepts (the reference's name part).
_MAX_NAME = 255
#: Characters a mount spec gives a meaning to: ``HOST:CONTAINER[:OPTIONS]``, and apptainer
#: separates several binds by commas.
_MOUNT_SEPARATORS = frozenset(":,")


def image_problem(image: str, runtime: list[str]) -> str | None:
    """Return why ``image`` cannot stand for ``{image}`` in ``runtime``, or ``None``.

    Where the template holds ``{image}`` as a whole item, the runtime reads the image
    itself: an OCI reference (``alpine:3.20``, ``quay.io/org/tool@sha256:…``), a
    ``docker://``, ``oras://``, ``library://`` or ``shub://`` URI, or an absolute path to
    a ``.sif`` file (apptainer). Where ``{image}`` is part of an item
    (``docker://{image}``), only an OCI reference fits. A template without ``{image}``
    ignores the image: anything goes.
    """
    items = [item for item in runtime if IMAGE in item]
    if not items:
        return None
    reference = OCI_REFERENCE.fullmatch(image)
    if reference and len(reference["name"]) <= _MAX_NAME:
        return None
    if any(item != IMAGE for item in items):
        return "is not an image reference (such as alpine:3.20 or quay.io/org/tool:1.0)"
    if IMAGE_URI.fullmatch(image) or LOCAL_IMAGE.fullmatch(image):
        return None
    return ("is not an image reference (such as alpine:3.20 or quay.io/org/tool:1.0), an "
            "image URI (docker://, oras://, library://, shub://) or the absolute path of "
            "a .sif file")


def task_problem(task: Task, runtime: list[str], roots: list[str]) -> str | None:
    """Return why ``task`` cannot run in ``runtime``, naming the field, or ``None``.

    ``roots`` are the task's top-level directories, each mounted as
    ``HOST:CONTAINER``: one holding ``:`` or ``,`` would change the mount spec.
    """
    for index, executor in enumerate(task.executors):
        problem = image_problem(executor.image, runtime)
        if problem is not None:
            return f"executors[{index}].image {executor.image[:100]!r} {problem}"
    for root in roots:
        if _MOUNT_SEPARATORS & set(root):
            return (f"the task path {root!r} cannot be mounted: a top-level directory "
                    "must not contain ':' or ','")
    return None


def runtime_argv(runtime: list[str], mount_flag: str, roots: list[str],
                 host: Callable[[str], str], image: str, workdir: str | None,
                 command: list[str]) -> list[str]:
    """Return the argv that runs ``command`` inside ``runtime``.

    ``{mounts}`` becomes ``mount_flag HOST:CONTAINER`` for each root, ``{image}`` the
    image (checked by :func:`image_problem` first), ``{workdir}`` the working directory
    (``/`` by default); the command follows the template.

    ``--`` goes right before the first item that holds ``{image}`` as an operand (an
    item that is not itself an option). ``podman run``, ``docker run`` and
    ``apptainer exec`` all read ``[OPTIONS] IMAGE [COMMAND [ARG...]]`` and stop reading
    options at the image: everything after it is the container's command, so a ``--``
    after the image would be run as the command. Before the image, ``--`` ends the
    runtime's options explicitly, and neither the image nor the command can be read as
    one. A template without such an item must end its options itself.
    """
    argv: list[str] = []
    ended = False
    for item in runtime:
        if item == "{mounts}":
            for root in roots:
                argv += [mount_flag, f"{host(root)}:{root}"]
            continue
        if IMAGE in item and not item.startswith("-") and not ended:
            argv.append("--")
            ended = True
        argv.append(item.replace(IMAGE, image).replace("{workdir}", workdir or "/"))
    return argv + command
