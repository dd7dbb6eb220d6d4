"""A web service that turns sequences into a tree, through acjob.

Run it with ``python examples/webservice/app.py --port 8000`` and open
http://127.0.0.1:8000/. With no option it uses the private acjob daemon (started on
first use) and learns results by asking acjob; see README.md for a shared daemon, Slurm
and signed callbacks.

acjob is used only through its public Python client (``acjob.Client``): the web service
keeps nothing but the ids of its jobs, so it can be restarted, as can the daemon, at
any time.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import re
import socket
import sys
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, TypeVar

import uvicorn
from fastapi import FastAPI, File, Form, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, RedirectResponse
from starlette.exceptions import HTTPException
from starlette.responses import Response

import acjob

sys.path.insert(0, str(Path(__file__).resolve().parent))
import blast
import fasta
import newick
import pages
import pipeline
from records import Records

T = TypeVar("T")
LABEL = {"app": "webservice"}
HOOK_PATH = "/hooks/acjob"
RETRY_AFTER = 5                 # seconds, for pages when acjob cannot be reached
_TOKEN = re.compile(r"[0-9a-f]{32}")


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    acjob_url: str | None = None
    backend: str | None = None
    webhook_secret: str | None = None
    public_url: str | None = None
    retry_for: float = 3.0
    clustalw: str = "clustalw"
    fasttree: str | None = None
    blastn: str = "blastn"
    blast_db: Path | None = None    # default: built from data/demo-db.fa at start-up

    @property
    def webhook(self) -> bool:
        return bool(self.webhook_secret and self.public_url)


class Unreachable(Exception):
    """acjob did not answer within the page's patience."""


class Refused(Exception):
    """acjob answered with an error that is not ours to retry."""


def create_app(settings: Settings) -> FastAPI:
    """The web application: pages, the JSON status its pages follow, the callback."""
    records = Records(settings.data_dir / "jobs.sqlite")
    blast_db = settings.blast_db or blast.build_database(settings.data_dir / "blastdb")
    # One client for every request thread (it keeps a connection per thread). A short
    # retry_for: a page says "try again" rather than hang while acjob is away.
    client = acjob.Client(settings.acjob_url, retry_for=settings.retry_for, timeout=10)
    results: OrderedDict[str, pipeline.Result] = OrderedDict()   # a cache, not state
    lock = threading.Lock()
    refused_callbacks = [0]
    app = FastAPI(title="Sequences to tree", docs_url=None, redoc_url=None,
                  openapi_url=None)

    def ask(call: Callable[[], T]) -> T:
        try:
            return call()
        except acjob.TransientError as exc:
            raise Unreachable(str(exc)) from exc
        except acjob.AcjobError as exc:
            raise Refused(str(exc)) from exc

    # -- errors are pages -------------------------------------------------------------

    @app.exception_handler(Unreachable)
    def unreachable(request: Request, exc: Exception) -> Response:
        headers = {"Retry-After": str(RETRY_AFTER)}
        message = ("acjob, which runs the jobs, cannot be reached just now. Nothing is lost: "
                   "your job (if it was submitted) goes on, and this page will find it.")
        if request.url.path.endswith(".json"):
            return JSONResponse({"error": "acjob cannot be reached"}, 503, headers=headers)
        return HTMLResponse(pages.error("Service unavailable", message, detail=str(exc),
                                        refresh=RETRY_AFTER), 503, headers=headers)

    @app.exception_handler(Refused)
    def refused(request: Request, exc: Exception) -> Response:
        return HTMLResponse(pages.error("acjob refused", "acjob refused the request.",
                                        detail=str(exc)), 502)

    @app.exception_handler(HTTPException)
    def http_error(request: Request, exc: HTTPException) -> Response:
        return HTMLResponse(pages.error(f"Error {exc.status_code}", str(exc.detail)),
                            exc.status_code)

    @app.exception_handler(RequestValidationError)
    def bad_request(request: Request, exc: Exception) -> Response:
        return HTMLResponse(pages.error("Bad request", "The form was not filled in right."),
                            400)

    @app.exception_handler(Exception)
    def server_error(request: Request, exc: Exception) -> Response:
        return HTMLResponse(pages.error("Internal error",
                                        f"Something went wrong here ({type(exc).__name__})."),
                            500)

    # -- the form and submission ------------------------------------------------------

    @app.get("/", response_class=HTMLResponse)
    def index() -> str:
        return pages.form(uuid.uuid4().hex)

    @app.post("/jobs")
    def submit(sequences: Annotated[str, Form()] = "", token: Annotated[str, Form()] = "",
               file: Annotated[UploadFile | None, File()] = None) -> Response:
        token = token if _TOKEN.fullmatch(token) else uuid.uuid4().hex
        text = sequences
        if file is not None and file.filename:
            raw = file.file.read(fasta.MAX_BYTES + 1)
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                return HTMLResponse(pages.form(token, error="The file is not text."), 400)
        try:
            parsed = fasta.parse(text)
        except fasta.FastaError as exc:
            return HTMLResponse(pages.form(token, sequences=text[:fasta.MAX_BYTES],
                                           error=str(exc)), 400)
        command = pipeline.script(nucleotide=parsed.nucleotide, clustalw=settings.clustalw,
                                  fasttree=settings.fasttree)
        # The form's token and the sequences make the idempotency key: the same form
        # sent twice (a double click, again after an error page) is one job; edited
        # sequences are a new one. (acjob compares the job's spec under a key, not its
        # stdin: the sequences must be in the key.)
        return start("tree", command, parsed.to_fasta(), token)

    def start(kind: str, command: str, stdin: bytes, token: str) -> Response:
        """Submit one job, remember its id, send the browser to its page."""
        deliveries = ([{"type": "webhook", "url": settings.public_url.rstrip("/") + HOOK_PATH}]
                      if settings.webhook and settings.public_url else None)
        digest = hashlib.sha256(stdin).hexdigest()[:32]
        handle = ask(lambda: client.submit(
            command, stdin=stdin, backend=settings.backend, labels={**LABEL, "tool": kind},
            name=f"webservice-{kind}", deliveries=deliveries,
            idempotency_key=f"webservice-{kind}-{token}-{digest}"))
        records.add(handle.id, kind)
        return RedirectResponse(f"/jobs/{handle.id}", status_code=303)

    @app.get("/blast", response_class=HTMLResponse)
    def blast_form() -> str:
        return pages.blast_form(uuid.uuid4().hex, available=blast_db is not None)

    @app.post("/blast")
    def blast_submit(query: Annotated[str, Form()] = "",
                     token: Annotated[str, Form()] = "") -> Response:
        token = token if _TOKEN.fullmatch(token) else uuid.uuid4().hex
        if blast_db is None:
            raise HTTPException(503, "BLAST is not installed here (makeblastdb is missing).")
        try:
            parsed = blast.parse_query(query)
        except fasta.FastaError as exc:
            return HTMLResponse(pages.blast_form(token, query=query[:fasta.MAX_BYTES],
                                                 error=str(exc)), 400)
        return start("blast", blast.script(blast_db, settings.blastn), parsed.to_fasta(), token)

    # -- a job ------------------------------------------------------------------------

    def known(job_id: str) -> str:
        """The kind of one of our jobs ('tree' or 'blast'); 404 for any other id."""
        entry = records.get(job_id)
        if entry is None:
            raise HTTPException(404, "No such job here.")
        return entry.kind

    def status_of(job_id: str) -> dict[str, Any]:
        """The job's state and progress, from acjob; a final state is remembered."""
        known(job_id)
        try:
            info = ask(lambda: client.get(job_id))
        except Refused as exc:
            if isinstance(exc.__cause__, acjob.NotFound):
                raise HTTPException(404, "acjob does not know this job (another daemon?).") \
                    from exc
            raise
        progress = info.progress
        record = records.get(job_id)
        if info.is_final and record is not None and record.state is None:
            records.finish(job_id, info.state.value, info.exit_code, "poll")
            record = records.get(job_id)
        return {"id": job_id, "state": info.state.value, "final": info.is_final,
                "exit_code": info.exit_code, "reason": info.reason,
                "percent": progress.percent if progress else None,
                "message": progress.message if progress else None,
                "learned_by": record.learned_by if record else None}

    def output(job_id: str, which: str) -> bytes:
        try:
            return b"".join(ask(lambda: list(client.stream(job_id, which,  # type: ignore[arg-type]
                                                           follow=False))))
        except Refused as exc:
            if isinstance(exc.__cause__, acjob.Gone):
                raise HTTPException(410, "The job's output is no longer kept.") from exc
            raise

    def result_of(job_id: str) -> pipeline.Result:
        with lock:
            if job_id in results:
                return results[job_id]
        try:
            result = pipeline.parse_output(output(job_id, "stdout"))
        except ValueError as exc:
            raise HTTPException(502, f"The job's output cannot be read: {exc}.") from exc
        with lock:
            results[job_id] = result
            while len(results) > 128:
                results.popitem(last=False)
        return result

    def stderr_of(job_id: str) -> str:
        data = output(job_id, "stderr")
        tail = data[-65536:].decode("utf-8", errors="replace")
        return tail if len(data) <= 65536 else "…\n" + tail

    @app.get("/jobs/{job_id}/status.json")
    def status(job_id: str) -> dict[str, Any]:
        return status_of(job_id)

    @app.get("/jobs/{job_id}", response_class=HTMLResponse)
    def job_page(job_id: str) -> str:
        current = status_of(job_id)
        if not current["final"]:
            return pages.job(job_id, current)
        if current["state"] == "COMPLETE" and known(job_id) == "blast":
            try:
                hits = blast.parse_hits(output(job_id, "stdout"))
            except ValueError as exc:
                raise HTTPException(502, f"The job's hits cannot be read: {exc}.") from exc
            return pages.job(job_id, current, hits=pages.hits(job_id, hits))
        if current["state"] == "COMPLETE":
            result = result_of(job_id)
            try:
                svg = newick.to_svg(newick.parse(result.tree))
            except newick.NewickError as exc:
                raise HTTPException(502, f"The job's tree cannot be read: {exc}.") from exc
            return pages.job(job_id, current, svg=svg)
        return pages.job(job_id, current, stderr=stderr_of(job_id))

    def finished(job_id: str) -> tuple[dict[str, Any], Response | None]:
        """The job's status, and the answer to give instead of its output, if any."""
        current = status_of(job_id)
        if not current["final"]:
            return current, PlainTextResponse(
                f"The job is {current['state']}; ask again later.\n", 202,
                headers={"Retry-After": str(RETRY_AFTER)})
        if current["state"] != "COMPLETE":
            code = 422 if current["state"] == "EXECUTOR_ERROR" else 502
            return current, HTMLResponse(pages.error(
                "The job failed", f"The job ended {current['state']} "
                f"(exit status {current['exit_code']}): {current['reason'] or 'see below'}.",
                detail=stderr_of(job_id)), code)
        return current, None

    @app.get("/jobs/{job_id}/result")
    def result(job_id: str) -> Response:
        _, instead = finished(job_id)
        if instead is not None:
            return instead
        if known(job_id) == "blast":
            return PlainTextResponse(output(job_id, "stdout"))
        return PlainTextResponse(result_of(job_id).tree + "\n")

    @app.get("/jobs/{job_id}/alignment")
    def alignment(job_id: str) -> Response:
        if known(job_id) != "tree":
            raise HTTPException(404, "A search has no alignment.")
        _, instead = finished(job_id)
        if instead is not None:
            return instead
        return PlainTextResponse(result_of(job_id).alignment, headers={
            "Content-Disposition": f'inline; filename="{job_id}.aln.fa"'})

    # -- results pushed by acjob ------------------------------------------------------

    @app.post(HOOK_PATH)
    async def hook(request: Request) -> Response:
        if not settings.webhook_secret:
            raise HTTPException(404, "Callbacks are not enabled.")
        body = await request.body()
        expected = "sha256=" + hmac.new(settings.webhook_secret.encode(), body,
                                        hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, request.headers.get("x-acjob-signature", "")):
            refused_callbacks[0] += 1
            return PlainTextResponse("bad signature\n", 403)
        try:
            event = json.loads(body)
            job = event["job"]
            job_id, state, exit_code = job["id"], job["state"], job.get("exit_code")
        except (ValueError, KeyError, TypeError):
            return PlainTextResponse("not an acjob callback\n", 400)
        if event.get("event") != "result" or records.get(job_id) is None:
            return Response(status_code=204)   # progress, or not one of ours: nothing to do
        delivery = str(event.get("delivery_id") or request.headers.get("x-acjob-delivery"))
        records.callback(delivery, job_id, state, exit_code)
        return Response(status_code=204)

    @app.get("/status.json")
    def service_status() -> dict[str, Any]:
        return {"mode": "webhook" if settings.webhook else "polling",
                "refused_callbacks": refused_callbacks[0], **records.counts()}

    @app.get("/jobs/{job_id}/record.json")
    def record(job_id: str) -> dict[str, Any]:
        known(job_id)
        # Callbacks first: one counted was recorded with its state, so the state read
        # after it is never older than the count.
        callbacks = records.callbacks_for(job_id)
        entry = records.get(job_id)
        return {**(entry.__dict__ if entry else {}), "callbacks": callbacks}

    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--acjob-url", help="the acjob daemon (default: ACJOB_URL, the "
                        "configuration file, else the private daemon)")
    parser.add_argument("--backend", help="the acjob backend for the jobs (e.g. slurm)")
    parser.add_argument("--webhook-secret", default=os.environ.get("WEBSERVICE_WEBHOOK_SECRET"),
                        help="the daemon's [webhook] secret (or WEBSERVICE_WEBHOOK_SECRET)")
    parser.add_argument("--public-url", help="this service's URL as acjob reaches it, for "
                        "callbacks (e.g. http://127.0.0.1:8000)")
    parser.add_argument("--data-dir", type=Path, default=Path("webservice-data"))
    parser.add_argument("--retry-for", type=float, default=3.0,
                        help="seconds a page waits for an unreachable acjob")
    parser.add_argument("--clustalw", default="clustalw", help="clustalw on the compute nodes")
    parser.add_argument("--fasttree", help="FastTree on the compute nodes (default: "
                        "FastTree or fasttree, found there)")
    parser.add_argument("--blastn", default="blastn", help="blastn on the compute nodes")
    parser.add_argument("--blast-db", type=Path, help="a nucleotide BLAST database the "
                        "compute nodes can read (default: the demonstration database, "
                        "built in the data directory)")
    parser.add_argument("--ready-fd", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if bool(args.webhook_secret) != bool(args.public_url):
        print("note: callbacks need both --webhook-secret and --public-url; polling only",
              file=sys.stderr)
    settings = Settings(data_dir=args.data_dir.resolve(), acjob_url=args.acjob_url,
                        backend=args.backend,
                        webhook_secret=args.webhook_secret, public_url=args.public_url,
                        retry_for=args.retry_for, clustalw=args.clustalw,
                        fasttree=args.fasttree, blastn=args.blastn,
                        blast_db=args.blast_db and args.blast_db.resolve())
    app = create_app(settings)
    # Listen before saying ready: a supervisor (or a test) may connect at once.
    sock = socket.socket(socket.AF_INET6 if ":" in args.host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((args.host, args.port))
    sock.listen(128)
    if args.ready_fd is not None:
        os.write(args.ready_fd, b"1")
        os.close(args.ready_fd)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    server.run(sockets=[sock])


if __name__ == "__main__":
    main()
