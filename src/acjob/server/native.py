"""The native HTTP API under ``/v1``.

Submit (JSON, with ``Idempotency-Key``), upload stdin (resumable by offset), get
(long-poll with ``wait``), list (filters, cursor), cancel, stream stdout/stderr
(``offset``, ``follow``), events (server-sent events), health and shutdown.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from pydantic_core import to_json
from starlette.requests import ClientDisconnect

from ..errors import Gone, InvalidRequest
from ..model import JobSpec, State, check_job_id
from ..receiver import Submission
from ..removal import prune, remove_files
from ..spool import Stream
from ..version import __version__
from ..wire import job_json
from .services import Services
from .stream import event_stream, output_stream


class ErrorDetail(BaseModel):
    """What went wrong, with a stable code and a hint."""

    code: str
    message: str
    hint: str | None = None


class ErrorBody(BaseModel):
    """Every error response's body."""

    error: ErrorDetail


_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": text}
    for status, text in [(400, "Invalid request (a malformed id, an unknown backend, …)"),
                         (401, "Missing or wrong bearer token"), (404, "No such job"),
                         (409, "Conflicts with the job's state"), (410, "Output expired"),
                         (413, "Request body too large")]
}

router = APIRouter(responses=_ERRORS)

_MAX_WAIT = 600.0
#: Bound on byte offsets and sequence numbers (SQLite and pread take 63-bit values).
_MAX_OFFSET = 1 << 62


async def services(request: Request) -> Services:
    """Return the daemon's services (a FastAPI dependency).

    A coroutine, as every dependency here: FastAPI runs a plain function in its thread
    pool, two thread switches per request for a dictionary look-up."""
    svc: Services = request.app.state.services
    return svc


Svc = Annotated[Services, Depends(services)]


async def _job_id(job_id: str) -> str:
    """Return the path's job id once checked (a coroutine: see :func:`services`)."""
    return check_job_id(job_id)


JobId = Annotated[str, Depends(_job_id)]


class _Reply(JSONResponse):
    """A JSON answer, encoded as :class:`JSONResponse` encodes it (the same bytes), by
    one encoder made once, which does not look for circles (the wire forms are
    trees)."""

    _encode = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"),
                               check_circular=False).encode

    def render(self, content: Any) -> bytes:
        """Return ``content`` as JSON bytes."""
        return self._encode(content).encode()


def _reply(data: Any, status: int = 200) -> JSONResponse:
    """Answer with ``data`` as it is: the wire forms are plain JSON values already, so
    FastAPI's generic encoder (a walk over every value of every job) is not needed."""
    return _Reply(data, status_code=status)


@router.get("/v1/health", tags=["service"])
async def health(svc: Svc) -> dict[str, Any]:
    """Tell that the daemon is up, with its version and job counts."""
    return {"status": "ok", "version": __version__, "jobs": svc.store.count_by_state()}


IdempotencyKey = Annotated[str | None, Header(max_length=255, pattern=r"^[\x21-\x7e]+$")]


class JobBatch(BaseModel):
    """Several jobs submitted in one call."""

    model_config = ConfigDict(extra="forbid")

    jobs: Annotated[list[JobSpec], Field(min_length=1, max_length=1000)]


@router.post("/v1/jobs", status_code=201, tags=["jobs"],
             responses={200: {"description": "The job made earlier with this Idempotency-Key"}})
async def submit(spec: JobSpec, svc: Svc,
                 idempotency_key: IdempotencyKey = None) -> JSONResponse:
    """Accept a job. It is committed before this returns.

    The same ``Idempotency-Key`` returns the same job (200), so a client may retry
    a submission whose answer it lost. With ``stdin: "upload"`` the job waits until
    its stdin is uploaded and closed.
    """
    [(job, created)] = svc.receiver.accept([Submission(spec)], idempotency_key)
    return _reply(job_json(job), 201 if created else 200)


@router.post("/v1/jobs/batch", status_code=201, tags=["jobs"],
             responses={200: {"description": "The jobs made earlier with this Idempotency-Key"}})
async def submit_batch(batch: JobBatch, svc: Svc,
                       idempotency_key: IdempotencyKey = None) -> Response:
    """Accept up to 1000 jobs in one transaction: all of them, or none (4xx).

    Jobs accepted together for a batch scheduler are submitted together as a job
    array where the scheduler has them.
    """
    accepted = svc.receiver.accept([Submission(spec) for spec in batch.jobs], idempotency_key)
    created = any(created for _, created in accepted)
    # Up to a thousand jobs: encoded by pydantic's encoder, five times as fast as the
    # standard library's and with the same bytes for a job's values (but a float below
    # 1e-4, a progress of a job made earlier under this key: 0.00001 for 1e-05).
    return Response(to_json({"jobs": [job_json(job) for job, _ in accepted]}),
                    201 if created else 200, media_type="application/json")


@router.get("/v1/jobs", tags=["jobs"])
async def list_jobs(
    svc: Svc,
    state: Annotated[list[State] | None, Query(max_length=16)] = None,
    label: Annotated[list[Annotated[str, Query(pattern=r"^[^=]+=.*$")]] | None,
                     Query(max_length=16)] = None,
    name_prefix: Annotated[str | None, Query(max_length=256)] = None,
    backend: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[str | None, Query(max_length=64)] = None,
) -> JSONResponse:
    """List jobs, newest first; ``label=key=value`` filters (all must match), and
    ``state`` (any of them), ``name_prefix`` and ``backend``."""
    labels: dict[str, str] = {}
    for item in label or ():
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InvalidRequest(f"label filter {item[:64]!r} is not KEY=VALUE")
        labels[key] = value
    jobs, next_cursor = svc.store.list_jobs_json(
        states=state or (), labels=labels, name_prefix=name_prefix, backend=backend,
        limit=limit, cursor=cursor)
    return _reply({"jobs": jobs, "next_cursor": next_cursor})


@router.get("/v1/jobs/{job_id}", tags=["jobs"])
async def get_job(
    job_id: JobId,
    svc: Svc,
    wait: Annotated[float, Query(ge=0, le=_MAX_WAIT)] = 0,
    since: Annotated[int | None, Query(ge=0, le=_MAX_OFFSET)] = None,
    final: bool = False,
) -> JSONResponse:
    """Return the job. With ``wait``, hold the answer until the job has an event newer
    than ``since`` (default: its latest when the request arrived), it is final, or
    ``wait`` seconds passed; with ``final`` too, until it is final (or ``wait``
    seconds passed), whatever events come before."""
    job = svc.store.get(job_id)
    deadline = time.monotonic() + wait
    seen = job.seq if since is None else since
    while (final or job.seq <= seen) and not job.state.is_final:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        await svc.hub.wait(job_id, left, final=final)
        job = svc.store.get(job_id)
    return _reply(job_json(job))


@router.post("/v1/jobs/{job_id}/cancel", status_code=202, tags=["jobs"])
async def cancel(job_id: JobId, svc: Svc) -> JSONResponse:
    """Cancel the job; a running job passes through CANCELING to CANCELED."""
    return _reply(job_json(svc.receiver.cancel(job_id)), 202)


@router.delete("/v1/jobs/{job_id}/files", tags=["jobs"])
async def remove_job_files(job_id: JobId, svc: Svc) -> dict[str, Any]:
    """Remove a finished job's files now (stdin, output, its default working directory),
    as retention would later; the job's record stays, its output answers ``410`` from
    then on. ``409 job_active`` while it runs, ``409 delivery_pending`` while a delivery
    of its result still needs them."""
    return job_json(remove_files(svc.store, svc.spool, job_id))


class Prune(BaseModel):
    """Which finished jobs lose their files."""

    model_config = ConfigDict(extra="forbid")

    older_than_s: Annotated[float, Field(ge=0, le=_MAX_OFFSET, allow_inf_nan=False)]


@router.post("/v1/jobs/prune", tags=["jobs"])
async def prune_jobs(body: Prune, svc: Svc) -> dict[str, int]:
    """Remove the files of every job that ended more than ``older_than_s`` seconds ago
    (by the daemon's clock), but for those a pending delivery still needs; answer how
    many jobs' files were removed."""
    return {"removed": prune(svc.store, svc.spool, time.time() - body.older_than_s)}


@router.get("/v1/jobs/{job_id}/stdin", tags=["jobs"])
async def stdin_status(job_id: JobId, svc: Svc) -> dict[str, Any]:
    """Tell how many stdin bytes have arrived (where a broken upload resumes)."""
    state = svc.receiver.stdin_state(job_id)
    return {"bytes": state.bytes, "closed": state.closed}


@router.put("/v1/jobs/{job_id}/stdin", tags=["jobs"])
async def upload_stdin(
    job_id: JobId,
    request: Request,
    svc: Svc,
    offset: Annotated[int, Query(ge=0, le=_MAX_OFFSET)] = 0,
    final: bool = False,
) -> dict[str, Any]:
    """Write the body into the job's stdin at ``offset``; ``final=true`` closes it.

    Resumable: after a broken upload, ``GET /v1/jobs/{id}/stdin`` tells how many
    bytes arrived; send again from there (or from any earlier offset: bytes after
    ``offset`` are discarded first). Closing flushes stdin to disk before the job
    may start.
    """
    try:
        state = await svc.receiver.write_stdin(job_id, offset, request.stream(), final=final)
    except ClientDisconnect:
        # The client resumes from what arrived (GET .../stdin); nothing to answer.
        return {"bytes": svc.spool.stdin_size(job_id), "closed": False}
    return {"bytes": state.bytes, "closed": state.closed}


def _output_route(stream: Stream) -> Any:
    async def route(
        job_id: JobId,
        svc: Svc,
        offset: Annotated[int, Query(ge=0, le=_MAX_OFFSET)] = 0,
        follow: bool = False,
        attempt: Annotated[int | None, Query(ge=1, le=1000)] = None,
        tail: Annotated[int | None, Query(ge=0, le=_MAX_OFFSET)] = None,
    ) -> StreamingResponse:
        job = svc.store.get(job_id)
        if job.purged_at is not None:
            raise Gone(f"the files of job {job_id} were removed (after the retention time, "
                       "or on request)",
                       hint="raise [server] retention_days to keep output longer",
                       code="output_expired")
        while follow and attempt is None and job.attempt == 0 and not job.state.is_final:
            await svc.hub.wait(job_id, 30.0)
            job = svc.store.get(job_id)
        number = attempt or job.attempt
        if number > job.attempt:
            raise InvalidRequest(f"the job has no attempt {number}", code="no_attempt")
        if tail is not None and number > 0:
            # Start no earlier than `tail` bytes before the end as it is now (a page
            # showing the end of a long log need not read all of it).
            try:
                size = svc.spool.output_path(job_id, number, stream).stat().st_size
            except FileNotFoundError:
                size = 0
            offset = max(offset, size - tail)
        headers = {"X-Acjob-Attempt": str(number), "X-Acjob-Offset": str(offset)}
        if job.state.is_final and number == job.attempt:
            # What follows is all there will ever be: a client need not ask again.
            headers["X-Acjob-Final"] = "true"
        return StreamingResponse(output_stream(svc, job_id, stream, number, offset, follow),
                                 media_type="application/octet-stream", headers=headers)

    route.__name__ = f"get_{stream}"
    route.__doc__ = (
        f"Stream the job's {stream} from byte ``offset`` (latest attempt unless "
        "``attempt`` is given; with ``tail``, from no earlier than ``tail`` bytes before "
        "the file's current end, the start in ``X-Acjob-Offset``). With ``follow``, keep "
        "streaming until the job ends; the attempt served is in ``X-Acjob-Attempt``, and "
        "``X-Acjob-Final: true`` says the job had ended when the answer began (the body "
        "is then the whole output)."
    )
    return route


router.add_api_route("/v1/jobs/{job_id}/stdout", _output_route("stdout"), methods=["GET"],
                     tags=["output"], response_class=StreamingResponse)
router.add_api_route("/v1/jobs/{job_id}/stderr", _output_route("stderr"), methods=["GET"],
                     tags=["output"], response_class=StreamingResponse)


@router.get("/v1/jobs/{job_id}/events", tags=["jobs"], response_class=StreamingResponse)
async def events(
    job_id: JobId,
    svc: Svc,
    after: Annotated[int, Query(ge=0, le=_MAX_OFFSET)] = 0,
    follow: bool = True,
    last_event_id: Annotated[str | None, Header(max_length=18)] = None,
) -> StreamingResponse:
    """Stream the job's events as server-sent events, until it is final."""
    svc.store.get(job_id)
    if last_event_id is not None and last_event_id.isascii() and last_event_id.isdigit():
        after = max(after, int(last_event_id))
    return StreamingResponse(event_stream(svc, job_id, after, follow),
                             media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache"})


@router.post("/v1/shutdown", status_code=202, tags=["service"])
async def shutdown(svc: Svc) -> JSONResponse:
    """Stop the daemon. Running jobs go on and are re-attached at the next start."""
    asyncio.get_running_loop().call_soon(svc.shutdown)
    return JSONResponse({"status": "stopping"}, status_code=202)
