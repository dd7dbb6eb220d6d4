"""``ac``: the operator's tool. ``ac serve`` runs the daemon; the rest inspect it."""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

import click
from pydantic import ValidationError

from ..client import Client, JobInfo, Which
from ..config import DEFAULT_IDLE_TIMEOUT, load_config
from ..errors import AcjobError, ConnectionFailed
from ..model import JobSpec, State, check_job_id, describe_errors
from ..version import __version__
from .common import (
    EXIT_BROKEN_PIPE,
    fail,
    print_json,
    reports_errors,
    run_tool,
    say_waiting,
    write_all,
)
from .options import UsageError


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "-V", "--version", prog_name="ac",
                      message="%(prog)s %(version)s")
def cli() -> None:
    """Run and inspect the acjob daemon."""


@cli.command("serve")
@click.option("--config", "config_file", type=click.Path(dir_okay=False, path_type=Path),
              help="The configuration file (default: ACJOB_CONFIG, then the usual places).")
@click.option("--listen", help="unix:/path.sock or HOST:PORT (default: the private socket).")
@click.option("--token", help="Bearer token clients must send (required for TCP).")
@click.option("--private", is_flag=True, help="Run as the per-user daemon (stops when idle).")
@click.option("--idle-timeout", type=click.FloatRange(min=0),
              help="Stop after this many idle seconds (0: never).")
@click.option("--ready-fd", type=int, hidden=True)
@reports_errors(code=1)
def serve_command(config_file: Path | None, listen: str | None, token: str | None,
                  private: bool, idle_timeout: float | None, ready_fd: int | None) -> None:
    """Run the daemon in the foreground until SIGTERM, Ctrl-C or 'ac shutdown'."""
    import asyncio  # the daemon's side, loaded only to serve: the other commands start fast

    from ..daemon import resolve_settings, serve

    config = load_config(config_file)
    if private:
        listen = None
        config.server.listen = None
        if idle_timeout is None and not config.server.idle_timeout:
            idle_timeout = DEFAULT_IDLE_TIMEOUT
    settings = resolve_settings(config, listen=listen, token=token, idle_timeout=idle_timeout)
    logging.basicConfig(
        level=config.server.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    asyncio.run(serve(settings, ready_fd=ready_fd))


def _age(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"


def _command_text(data: dict[str, Any]) -> str:
    command = data["command"]
    text = command if isinstance(command, str) else " ".join(command)
    return text if len(text) <= 60 else text[:57] + "..."


def _label_filter(ctx: click.Context, param: click.Parameter,
                  values: tuple[str, ...]) -> dict[str, str]:
    result: dict[str, str] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"--label {item}: a label filter is KEY=VALUE",
                             hint="ac jobs --label project=x")
        result[key] = value
    return result


@cli.command("jobs")
@click.option("--state", "states", multiple=True,
              type=click.Choice([s.value for s in State], case_sensitive=False),
              help="Only jobs in this state (repeat for several).")
@click.option("--label", "labels", multiple=True, metavar="KEY=VALUE", callback=_label_filter,
              help="Only jobs with this label (repeat: every one must match).")
@click.option("--name", "name_prefix", metavar="PREFIX",
              help="Only jobs whose name starts with PREFIX.")
@click.option("--limit", type=click.IntRange(1, 1000), default=50, show_default=True,
              help="Jobs per page.")
@click.option("--cursor", help="The page after the one that printed this cursor.")
@click.option("--all", "all_pages", is_flag=True, help="Every page, not only the first.")
@click.option("--json", "as_json", is_flag=True)
@reports_errors(code=1)
def jobs_command(states: tuple[str, ...], labels: dict[str, str], name_prefix: str | None,
                 limit: int, cursor: str | None, all_pages: bool, as_json: bool) -> None:
    """List jobs, newest first, a page at a time (the next page's cursor on stderr)."""
    jobs: list[JobInfo] = []
    with Client(on_wait=say_waiting) as client:
        while True:
            page, cursor = client.list(state=[s.upper() for s in states], label=labels,
                                       name_prefix=name_prefix, limit=limit, cursor=cursor)
            jobs += page
            if not all_pages or cursor is None:
                break
    if cursor is not None:
        # On stderr, so that stdout (a table, or JSON) stays what a script reads.
        print(f"ac: more jobs follow: add --cursor {cursor} for the next page, or --all",
              file=sys.stderr)
    if as_json:
        print_json([dict(j.data) for j in jobs])
        return
    now = time.time()
    print(f"{'ID':26}  {'STATE':14}  {'EXIT':>4}  {'AGE':>4}  {'PROGRESS':>8}  COMMAND")
    for job in jobs:
        code = "" if job.exit_code is None else str(job.exit_code)
        age = _age(now - job.data["created_at"])
        done = "" if job.progress is None else f"{job.progress.percent:.0f}%"
        print(f"{job.id:26}  {job.state.value:14}  {code:>4}  {age:>4}  {done:>8}  "
              f"{_command_text(dict(job.data))}")


@cli.command("show")
@click.argument("job_id")
@click.option("--json", "as_json", is_flag=True)
@reports_errors(code=1)
def show_command(job_id: str, as_json: bool) -> None:
    """Show one job with its attempts."""
    with Client(on_wait=say_waiting) as client:
        info = client.get(check_job_id(job_id))
    if as_json:
        print_json(dict(info.data))
        return
    _describe(info)


def _describe(info: JobInfo) -> None:
    data = info.data
    print(f"job       {info.id}")
    print(f"state     {info.state.value}" + (f" ({info.reason})" if info.reason else ""))
    if info.exit_code is not None:
        print(f"exit      {info.exit_code}")
    if info.failure is not None:
        print(f"failure   {info.failure.value}")
    if (progress := info.progress) is not None:
        said = f" {progress.message}" if progress.message else ""
        when = time.strftime('%H:%M:%S', time.localtime(progress.updated_at))
        print(f"progress  {progress.percent:g}%{said} (at {when})")
    print(f"command   {_command_text(dict(data))}")
    print(f"backend   {data['backend']}")
    print(f"created   {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(data['created_at']))}")
    for delivery in data.get("deliveries", []):
        error = f"  ({delivery['last_error']})" if delivery["last_error"] else ""
        print(f"delivery  {delivery['type']} {delivery['target']}: {delivery['state']} after "
              f"{delivery['attempts']} tries{error}")
    for attempt in data["attempts"]:
        detail = attempt["reason"] or ""
        code = "" if attempt["exit_code"] is None else f"exit {attempt['exit_code']}"
        print(f"attempt {attempt['number']}  {attempt['state']:10} {attempt['native_id'] or '-'}"
              f"  {code} {detail}".rstrip())


@cli.command("cancel")
@click.argument("job_ids", nargs=-1, required=True)
@click.option("--json", "as_json", is_flag=True, help="Print each job as a line of JSON.")
@reports_errors(code=1)
def cancel_command(job_ids: tuple[str, ...], as_json: bool) -> None:
    """Cancel jobs."""
    with Client(on_wait=say_waiting) as client:
        for job_id in job_ids:
            info = client.cancel(check_job_id(job_id))
            if as_json:
                print_json(dict(info.data))
            else:
                print(f"{info.id} {info.state.value}")


@cli.command("rm")
@click.argument("job_ids", nargs=-1, required=True)
@reports_errors(code=1)
def rm_command(job_ids: tuple[str, ...]) -> None:
    """Remove finished jobs' files now (stdin, output, default working directory), as
    retention would later; their records stay. Stops at the first job that runs."""
    with Client(on_wait=say_waiting) as client:
        for job_id in job_ids:
            info = client.remove_files(check_job_id(job_id))
            print(f"{info.id} files removed")


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _age_option(ctx: click.Context, param: click.Parameter, value: str) -> float:
    """Return an age given as seconds, or a number with s, m, h or d (``90m``, ``7d``)."""
    text = value.strip().lower()
    unit = _UNITS.get(text[-1:], 0)
    try:
        seconds = float(text[:-1] if unit else text) * (unit or 1)
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds < float("inf"):
        raise click.BadParameter(f"{value!r} is not an age (such as 90m, 12h or 7d)")
    return seconds


@cli.command("prune")
@click.option("--older-than", "age", required=True, metavar="AGE", callback=_age_option,
              help="Jobs that ended at least this long ago: 90m, 12h, 7d (0: every one).")
@reports_errors(code=1)
def prune_command(age: float) -> None:
    """Remove the files of every job that ended long enough ago, before retention would;
    their records stay. Jobs whose result is still to be delivered keep theirs."""
    with Client(on_wait=say_waiting) as client:
        removed = client.prune(age)
    print(f"removed the files of {removed} finished job(s)")


@cli.command("submit")
@click.option("--batch", "batch", type=click.File("r"), required=True, metavar="FILE",
              help="One job per line, as JSON (the body of POST /v1/jobs); '-' is stdin.")
@reports_errors(code=1)
def submit_command(batch: Any) -> None:
    """Submit many jobs at once, in one transaction: all of them, or none. Prints their
    ids, one per line, in order (acpoll reads them)."""
    specs: list[dict[str, Any]] = []
    for number, line in enumerate(batch, 1):
        if line.strip():
            specs.append(_batch_line(batch.name, number, line))
    if not specs:
        raise UsageError(f"{batch.name} holds no job", hint='one per line: {"command": "CMD"}')
    if len(specs) > 1000:
        raise UsageError(f"{batch.name} holds {len(specs)} jobs; one batch takes at most 1000",
                         hint="split the file (split -l 1000)")
    with Client(on_wait=say_waiting) as client:
        for job in client.submit_many(specs):
            print(job.id)


def _batch_line(name: str, number: int, line: str) -> dict[str, Any]:
    """Return one line of a batch as a job spec the daemon will take.

    Raises:
        UsageError: not a JSON object, or not a job the job model accepts.
    """
    try:
        spec = json.loads(line)
        if not isinstance(spec, dict):
            raise ValueError("not a JSON object")
        JobSpec.model_validate(spec)
    except ValidationError as exc:
        raise UsageError(f"{name} line {number}: {describe_errors(exc.errors())}",
                         hint="the fields of a job are in docs/api.md") from None
    except ValueError as exc:
        raise UsageError(f"{name} line {number} is not a job as JSON: {exc}",
                         hint='one job per line: {"command": "sort", "labels": {"k": "v"}}'
                         ) from None
    return spec


@cli.command("logs")
@click.argument("job_id")
@click.option("--stderr", "which", flag_value="stderr", help="Show stderr instead of stdout.")
@click.option("--stdout", "which", flag_value="stdout", default=True, hidden=True)
@click.option("-f", "--follow", is_flag=True, help="Keep following while the job runs.")
@click.option("--attempt", type=click.IntRange(min=1), help="An earlier attempt's output.")
@reports_errors(code=1)
def logs_command(job_id: str, which: str, follow: bool, attempt: int | None) -> None:
    """Write a job's stdout (or stderr) as it is now."""
    stream: Which = "stderr" if which == "stderr" else "stdout"
    with Client(on_wait=say_waiting) as client:
        try:
            for chunk in client.stream(check_job_id(job_id), stream, follow=follow,
                                       attempt=attempt):
                write_all(1, chunk)
        except BrokenPipeError:
            sys.exit(EXIT_BROKEN_PIPE)


@cli.command("shutdown")
@reports_errors(code=1)
def shutdown_command() -> None:
    """Stop the daemon; running jobs go on and are picked up at its next start."""
    with Client(retry_for=0, autostart=False) as client:
        try:
            client.shutdown()
        except ConnectionFailed as exc:
            fail(AcjobError(exc.message, hint="if no daemon runs, there is nothing to stop; "
                            "else check ACJOB_URL"), code=1)
        except AcjobError as exc:
            fail(exc, code=1)
    print("acjob daemon stopping", file=sys.stderr)


@cli.command("dashboard")
@click.option("--port", type=click.IntRange(0, 65535), default=0, show_default=True,
              help="The loopback port to serve on (0: a free one).")
@click.option("--no-browser", is_flag=True, help="Print the URL only; open no browser.")
@reports_errors(code=1)
def dashboard_command(port: int, no_browser: bool) -> None:
    """Serve the daemon's dashboard on 127.0.0.1 until Ctrl-C.

    The first line of stdout is the URL to open: it holds a one-time token that the
    first visit trades for a session cookie.
    """
    import secrets
    import socket
    import threading
    import webbrowser

    import uvicorn

    from ..client.core import resolve
    from ..private import ensure_private_daemon
    from .relay import Relay

    target = resolve(None, None)
    if target.autostart is not None:
        ensure_private_daemon(target.autostart)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(("127.0.0.1", port))
    except OSError as exc:
        fail(AcjobError(f"cannot listen on 127.0.0.1:{port}: {exc.strerror}",
                        hint="choose another --port, or 0 for a free one"), code=1)
    sock.listen(128)
    port = sock.getsockname()[1]
    one_time = secrets.token_urlsafe(32)
    url = f"http://127.0.0.1:{port}/ui/login?token={one_time}"
    print(url, flush=True)
    print(f"acjob dashboard of {target.where}: open the URL above (it works once); "
          "Ctrl-C stops it", file=sys.stderr)
    if not no_browser:
        threading.Thread(target=webbrowser.open, args=(url,), daemon=True).start()
    # No access log: the first request's URL holds the token.
    config = uvicorn.Config(Relay(target, port, one_time), log_level="warning",
                            access_log=False, timeout_graceful_shutdown=1, lifespan="on")
    uvicorn.Server(config).run(sockets=[sock])


def main() -> None:
    """Entry point of the ``ac`` command."""
    run_tool(cli, "ac")


if __name__ == "__main__":
    main()
