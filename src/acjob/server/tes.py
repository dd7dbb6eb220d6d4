"""GA4GH TES v1.1 under ``/ga4gh/tes/v1`` (and ``/v1/tasks`` for older clients).

A task is an acjob job whose command is :mod:`acjob.tes.runner`; the task document is
kept in the store beside the job, in the same transaction. States are acjob's own
(they are TES's names), logs come from the runner's records, and every response
holds only fields the TES schema defines.
"""

from __future__ import annotations

import json
import math
import re
import sys
from collections.abc import Callable
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ValidationError

from ..config import TesConfig
from ..errors import AcjobError, Conflict, InvalidRequest, NotFound
from ..model import JobSpec, Resources, State, check_job_id, describe_errors, new_job_id
from ..receiver import Submission
from ..tes.container import task_problem
from ..tes.model import Task, View, declared_paths
from ..tes.runner import PROTECTED_ROOTS, roots_of
from ..tes.view import DOCUMENT, LIST_BUDGET, Budget, task_document
from ..version import __version__
from .errors import Status400Route
from .native import ErrorBody, Svc
from .services import Services

PREFIXES = ("/ga4gh/tes/v1", "/v1")
TesState = Literal["UNKNOWN", "QUEUED", "INITIALIZING", "RUNNING", "PAUSED", "COMPLETE",
                   "EXECUTOR_ERROR", "SYSTEM_ERROR", "CANCELED", "PREEMPTED", "CANCELING"]
#: The file in a task's job directory that tells the runner what to do.
PLAN_FILE = "tes-plan.json"
#: ``tesResources.backend_parameters`` acjob understands (keys are case-insensitive).
BACKEND_PARAMETERS = ("backend", "queue", "account", "time_limit_s")


class CreateTaskResponse(BaseModel):
    """The id of the task just created."""

    id: str


def _backend_parameters(task: Task) -> dict[str, str]:
    """Return the supported backend parameters (lower-cased keys).

    Raises:
        InvalidRequest: an unsupported key while ``backend_parameters_strict`` is set.
    """
    resources = task.resources
    if resources is None or not resources.backend_parameters:
        return {}
    params = {k.lower(): v for k, v in resources.backend_parameters.items()}
    unknown = sorted(set(params) - set(BACKEND_PARAMETERS))
    if unknown and resources.backend_parameters_strict:
        raise InvalidRequest(f"unsupported backend_parameters: {', '.join(unknown)}",
                             hint=f"supported: {', '.join(BACKEND_PARAMETERS)}")
    return {k: v for k, v in params.items() if k in BACKEND_PARAMETERS}


def job_spec(task: Task, params: dict[str, str], command: list[str]) -> JobSpec:
    """Return the job that runs ``task`` (resources mapped, the runner as command).

    Raises:
        InvalidRequest: a resource acjob cannot express.
    """
    res = task.resources
    fields: dict[str, Any] = {}
    if res is not None and res.cpu_cores is not None:
        fields["cpus"] = res.cpu_cores
    if res is not None and res.ram_gb is not None:
        fields["memory_mb"] = math.ceil(res.ram_gb * 1024)
    if "queue" in params or (res is not None and res.zones):
        fields["queue"] = params.get("queue") or (res.zones[0] if res and res.zones else None)
    if "account" in params:
        fields["account"] = params["account"]
    if "time_limit_s" in params:
        if not re.fullmatch(r"[0-9]{1,12}", params["time_limit_s"]):
            raise InvalidRequest("backend_parameters.time_limit_s must be whole seconds")
        fields["time_limit_s"] = int(params["time_limit_s"])
    try:
        return JobSpec(command=command, name=task.name[:256] if task.name else None,
                       backend=params.get("backend"), resources=Resources(**fields),
                       labels={"tes": "task"})
    except ValidationError as exc:
        raise InvalidRequest(f"the task cannot run here: {describe_errors(exc.errors())}",
                             hint=f"backend_parameters acjob reads: "
                                  f"{', '.join(BACKEND_PARAMETERS)}") from exc


def stored_task(task: Task, params: dict[str, str]) -> dict[str, Any]:
    """Return the task as kept and returned: only set fields, no unsupported parameters."""
    document = task.model_dump(mode="json", exclude_none=True)
    resources = document.get("resources")
    if resources and "backend_parameters" in resources:
        resources["backend_parameters"] = {
            k: v for k, v in resources["backend_parameters"].items()
            if k.lower() in params}
    return document


def _task_id(task_id: str) -> str:
    try:
        return check_job_id(task_id)
    except AcjobError:
        raise NotFound(f"no task {task_id[:64]!r}") from None


def _document(svc: Services, task_id: str) -> tuple[Any, dict[str, Any]]:
    job_id = _task_id(task_id)
    body = svc.store.document(job_id, DOCUMENT)
    if body is None:
        raise NotFound(f"no task {job_id}", hint="native jobs are not TES tasks")
    return svc.store.get(job_id), json.loads(body)


async def service_info(svc: Svc, request: Request) -> dict[str, Any]:
    """Describe the service (GA4GH service-info, TES flavour).

    The organization's URL is ``[tes] organization_url``, else the service's own (the
    base URL it was asked at): service-info requires an http(s) URL there.
    """
    settings: TesConfig = svc.tes
    where = ("on the host; images are ignored" if settings.runtime is None
             else f"inside {settings.runtime[0]}")
    return {
        "id": "org.acjob.tes",
        "name": "acjob",
        "type": {"group": "org.ga4gh", "artifact": "tes", "version": "1.1.0"},
        "description": f"acjob: durable jobs on local processes or batch schedulers. "
                       f"Executors run {where}. Inputs: content, file://, http(s)://; "
                       f"outputs: file://.",
        "organization": {"name": settings.organization_name,
                         "url": settings.organization_url or str(request.base_url)},
        "version": __version__,
        "storage": ["file:///"],
        "tesResources_backend_parameters": list(BACKEND_PARAMETERS),
    }


async def create_task(task: Task, svc: Svc) -> CreateTaskResponse:
    """Accept a task: it is committed (and will run) before the answer."""
    settings: TesConfig = svc.tes
    params = _backend_parameters(task)
    roots = roots_of(declared_paths(task))
    if settings.runtime is None:
        clash = sorted(set(roots) & PROTECTED_ROOTS)
        if clash:
            raise InvalidRequest(
                f"paths under {', '.join(clash)} cannot be mapped while executors run on "
                "the host", hint="use task paths such as /data or /outputs")
    elif (problem := task_problem(task, settings.runtime, roots)) is not None:
        raise InvalidRequest(problem, hint="executors run in a container runtime here: "
                             "images must be image references, paths plain names")
    job_id = new_job_id()
    area = svc.spool.work_dir(job_id)
    plan = svc.spool.job_dir(job_id) / PLAN_FILE
    spec = job_spec(task, params, [sys.executable, "-m", "acjob.tes.runner", str(plan),
                                   str(area)])
    if spec.backend is None and settings.backend is not None:
        spec = spec.model_copy(update={"backend": settings.backend})
    document = stored_task(task, params)
    plan_text = json.dumps({"task": document, "runtime": settings.runtime,
                            "mount_flag": settings.mount_flag})
    svc.receiver.accept([Submission(spec, job_id=job_id,
                                    document=(DOCUMENT, json.dumps(document)),
                                    files=((plan.name, plan_text.encode()),))])
    return CreateTaskResponse(id=job_id)


async def list_tasks(
    svc: Svc,
    name_prefix: Annotated[str | None, Query(max_length=256)] = None,
    state: TesState | None = None,
    tag_key: Annotated[list[str] | None, Query(max_length=64)] = None,
    tag_value: Annotated[list[str] | None, Query(max_length=64)] = None,
    page_size: Annotated[int, Query(ge=1, le=2047)] = 256,
    page_token: Annotated[str | None, Query(max_length=64)] = None,
    view: View = "MINIMAL",
) -> dict[str, Any]:
    """List tasks, newest first, filtered by name prefix, state and tags.

    A page may hold fewer than ``page_size`` tasks while ``next_page_token`` says more
    may follow (a state filter is checked after the page is read). What the tasks carry
    from their runners' records is bounded by :data:`~acjob.tes.view.LIST_BUDGET` in all
    (once it is spent, later tasks' logs have empty stdout and stderr, and no outputs).
    """
    keys, values = tag_key or [], tag_value or []
    if len(values) > len(keys):
        raise InvalidRequest("more tag_value than tag_key parameters")
    tags = {k: (values[i] if i < len(values) else "") for i, k in enumerate(keys)}
    states: list[State] = []
    if state is not None:
        if state not in State.__members__:
            return {"tasks": []}  # UNKNOWN, PAUSED: acjob never has tasks in these
        # A runner's own failure shows an EXECUTOR_ERROR job as a SYSTEM_ERROR task.
        states = [State[state]]
        if state in ("EXECUTOR_ERROR", "SYSTEM_ERROR"):
            states = [State.EXECUTOR_ERROR, State.SYSTEM_ERROR]
    jobs, cursor = svc.store.list_jobs(states=states, name_prefix=name_prefix,
                                       limit=page_size, cursor=page_token,
                                       document=DOCUMENT, tags=tags)
    tasks = []
    budget = Budget(LIST_BUDGET)
    for job in jobs:
        body = svc.store.document(job.id, DOCUMENT)
        if body is not None:
            document = task_document(job, json.loads(body), svc.spool, view, budget)
            if state is None or document["state"] == state:
                tasks.append(document)
    result: dict[str, Any] = {"tasks": tasks}
    if cursor:
        result["next_page_token"] = cursor
    return result


async def get_task(task_id: str, svc: Svc, view: View = "MINIMAL") -> dict[str, Any]:
    """Return one task in the asked view."""
    job, document = _document(svc, task_id)
    return task_document(job, document, svc.spool, view)


async def cancel_task(task_id: str, svc: Svc) -> dict[str, Any]:
    """Cancel the task (a no-op for a task already canceled).

    Raises:
        Conflict: the task already ended otherwise.
    """
    job, _ = _document(svc, task_id)
    if job.state is not State.CANCELED:
        try:
            svc.receiver.cancel(job.id)
        except Conflict:
            raise Conflict(f"the task already ended ({job.state.value})",
                           code="task_final") from None
    return {}


_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": text}
    for status, text in [(400, "Invalid task or parameter"), (401, "Missing or wrong token"),
                         (404, "No such task"), (409, "The task already ended"),
                         (413, "Request body too large")]
}
router = APIRouter(tags=["tes"], responses=_ERRORS, route_class=Status400Route)
_ROUTES: list[tuple[str, str, Callable[..., Any], dict[str, Any]]] = [
    ("GET", "/service-info", service_info, {}),
    ("GET", "/tasks", list_tasks, {}),
    ("POST", "/tasks", create_task, {}),
    ("GET", "/tasks/{task_id}", get_task, {}),
    ("POST", "/tasks/{task_id}:cancel", cancel_task, {}),
]
for _prefix in PREFIXES:
    for _method, _path, _endpoint, _extra in _ROUTES:
        # Older clients asked for /v1/tasks/service-info, not /v1/service-info.
        _full = (f"{_prefix}/tasks/service-info" if _prefix == "/v1" and
                 _path == "/service-info" else _prefix + _path)
        router.add_api_route(_full, _endpoint, methods=[_method],
                             operation_id=f"tes_{_endpoint.__name__}"
                             f"{'' if _prefix == PREFIXES[0] else '_v1'}",
                             include_in_schema=True, **_extra)
