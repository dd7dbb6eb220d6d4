"""``ac``: the operator's tool. ``ac serve`` runs the daemon; the rest inspect it."""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from pathlib import Path
from typing import Any

import click

from ..client import Client, JobInfo, Which
from ..config import DEFAULT_IDLE_TIMEOUT, load_config
from ..daemon import resolve_settings, serve
from ..errors import AcjobError, ConnectionFailed
from ..model import State, check_job_id
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


@cli.command("jobs")
@click.option("--state", "states", multiple=True,
              type=click.Choice([s.value for s in State], case_sensitive=False))
@click.option("--limit", type=click.IntRange(1, 1000), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@reports_errors(code=1)
def jobs_command(states: tuple[str, ...], limit: int, as_json: bool) -> None:
    """List jobs, newest first."""
    with Client(on_wait=say_waiting) as client:
        jobs, _ = client.list(state=[s.upper() for s in states], limit=limit)
    if as_json:
        print_json([dict(j.data) for j in jobs])
        return
    now = time.time()
    print(f"{'ID':26}  {'STATE':14}  {'EXIT':>4}  {'AGE':>4}  COMMAND")
    for job in jobs:
        code = "" if job.exit_code is None else str(job.exit_code)
        age = _age(now - job.data["created_at"])
        print(f"{job.id:26}  {job.state.value:14}  {code:>4}  {age:>4}  "
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


def main() -> None:
    """Entry point of the ``ac`` command."""
    run_tool(cli, "ac")


if __name__ == "__main__":
    main()
