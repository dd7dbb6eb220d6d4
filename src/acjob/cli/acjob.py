"""``acjob``: run a command through the acjob daemon, ssh-like.

``acjob -t pipe "CMD"`` sends its stdin (when it is not a terminal) as it arrives, while
the job already runs and reads it, streams the job's stdout and stderr back byte for
byte, and exits with the job's status. ``acjob -t poll "CMD"`` sends its stdin, then
prints a handle for ``acpoll`` and exits. One argument is a shell string; the words
after ``--`` are an argv no shell sees.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Coroutine
from typing import Any, NoReturn, TypeVar

import click

from ..client import AsyncClient, Client, Which
from ..errors import AcjobError, Conflict
from .common import (
    EXIT_BROKEN_PIPE,
    EXIT_INTERRUPTED,
    exit_status,
    explain_failure,
    fail,
    print_json,
    write_all,
)


class _Command(click.Command):
    """Remembers whether ``--`` separated the options from the command."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        ctx.meta["acjob.dashes"] = args.count("--")
        return super().parse_args(ctx, args)


def _pairs(values: tuple[str, ...], what: str) -> dict[str, str]:
    result: dict[str, str] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{item!r} is not KEY=VALUE", param_hint=what)
        result[key] = value
    return result


@click.command(
    cls=_Command,
    context_settings={"allow_interspersed_args": False, "help_option_names": ["-h", "--help"]},
)
@click.option("-t", "--type", "mode", type=click.Choice(["pipe", "poll", "email", "webhook"]),
              default="pipe", show_default=True,
              help="How the output comes back; email and webhook take the address or URL "
                   "as the first argument.")
@click.option("--mail", "mail_to", multiple=True, metavar="ADDRESS",
              help="Also mail the result to ADDRESS when the job ends.")
@click.option("--webhook", "webhooks", multiple=True, metavar="URL",
              help="Also POST the result to URL when the job ends.")
@click.option("--backend", help="Where the job runs (default: the daemon's).")
@click.option("--workdir", help="Run in this directory (default: a fresh one per job).")
@click.option("-e", "--env", multiple=True, metavar="KEY=VALUE", help="Set a variable.")
@click.option("--cpus", type=click.IntRange(min=1), help="CPUs the job needs.")
@click.option("--memory", "memory_mb", type=click.IntRange(min=1), help="Memory (MB).")
@click.option("--time-limit", "time_limit_s", type=click.IntRange(min=1),
              help="Wall-clock limit (seconds).")
@click.option("--max-attempts", type=click.IntRange(1, 100),
              help="Attempts in all when infrastructure fails (default 3).")
@click.option("--name", help="A name for the job.")
@click.option("-l", "--label", multiple=True, metavar="KEY=VALUE", help="Label the job.")
@click.option("-n", "--no-stdin", is_flag=True, help="Give the job no stdin.")
@click.option("--cancel-on-interrupt", is_flag=True,
              help="Ctrl-C cancels the job instead of detaching from it.")
@click.option("--json", "as_json", is_flag=True, help="Print the job as JSON (poll mode).")
@click.argument("command", nargs=-1, required=True)
@click.pass_context
def cli(ctx: click.Context, /, mode: str, command: tuple[str, ...], no_stdin: bool,
        cancel_on_interrupt: bool, as_json: bool, env: tuple[str, ...],
        label: tuple[str, ...], mail_to: tuple[str, ...], webhooks: tuple[str, ...],
        **options: Any) -> None:
    """Run COMMAND as a job; its output comes back as a pipe (-t pipe), a handle for
    acpoll (-t poll), a mail (-t email ADDRESS) or an HTTP callback (-t webhook URL).

    One COMMAND argument is a shell string; after '--', the words are an argv that
    no shell sees. acjob exits with the job's status (255 if acjob failed).
    """
    argv_mode = ctx.meta.get("acjob.dashes", 0) > command.count("--")
    deliveries = [{"type": "email", "to": a} for a in mail_to]
    deliveries += [{"type": "webhook", "url": u} for u in webhooks]
    if mode in ("email", "webhook"):
        if len(command) < 2:
            raise click.UsageError(f"-t {mode} needs the {'address' if mode == 'email' else 'URL'}"
                                   " and then the command")
        target, *rest = command
        deliveries.append({"type": "email", "to": target} if mode == "email"
                          else {"type": "webhook", "url": target})
        argv_mode = rest[0] == "--"
        command = tuple(rest[1:] if argv_mode else rest)
        if not command:
            raise click.UsageError("no command given")
    job_command: str | list[str] = list(command) if argv_mode else " ".join(command)
    # Popped even when unset: what stays in options are the client's own keywords.
    resources = {k: v for k in ("cpus", "memory_mb", "time_limit_s")
                 if (v := options.pop(k)) is not None}
    max_attempts = options.pop("max_attempts")
    spec: dict[str, Any] = {
        "env": _pairs(env, "--env") or None,
        "labels": _pairs(label, "--label") or None,
        "resources": resources or None,
        "retry": {"max_attempts": max_attempts} if max_attempts else None,
        "deliveries": deliveries or None,
        **options,
    }
    use_stdin = not no_stdin and not sys.stdin.isatty()
    try:
        code = asyncio.run(_run(mode, job_command, spec, use_stdin, cancel_on_interrupt,
                                as_json))
    except AcjobError as exc:
        fail(exc)
    sys.exit(code)


async def _run(mode: str, command: str | list[str], spec: dict[str, Any], use_stdin: bool,
               cancel_on_interrupt: bool, as_json: bool) -> int:
    interrupted = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGINT, interrupted.set)
    async with AsyncClient() as client:
        info = await client.create(command, stdin_upload=use_stdin, **spec)
        job_id = info.id
        upload: asyncio.Task[int] | None = None
        if use_stdin and not info.data["stdin"]["closed"]:
            # The job may start at once and read its stdin as it arrives. The upload
            # runs in a thread of its own, with blocking reads and writes: no hop between
            # threads for every piece of a pipe.
            upload = asyncio.create_task(asyncio.to_thread(_upload, job_id))
        if mode != "pipe":
            if upload is not None and await _unless_interrupted(upload, interrupted) is None:
                await _cancel_for_stdin(client, job_id)
            if interrupted.is_set():
                await client.cancel(job_id)
                print(f"\nacjob: interrupted; job {job_id} canceled", file=sys.stderr)
                return EXIT_INTERRUPTED
            if as_json:
                print_json((await client.get(job_id)).data)
            else:
                print(job_id, flush=True)
            return 0
        status = await _unless_interrupted(_pipe_live(client, job_id, upload), interrupted)
        if status is not None:
            if upload is not None and not upload.done():
                # The job ended before its stdin did (as `head` would): like ssh, stop
                # reading; a thread may still be blocked on stdin, so leave at once.
                _leave(status)
            return status
        if upload is not None and not upload.done():
            await _cancel_for_stdin(client, job_id)
        if cancel_on_interrupt:
            await client.cancel(job_id)
            print(f"\nacjob: canceled job {job_id}", file=sys.stderr)
        else:
            print(f"\nacjob: detached; job {job_id} goes on. Pick it up with:\n"
                  f"  acpoll {job_id}", file=sys.stderr)
        return EXIT_INTERRUPTED


def _upload(job_id: str) -> int:
    """Send this process's stdin to the job (see :meth:`Client.upload_stdin`)."""
    with Client() as client:
        return client.upload_stdin(job_id, sys.stdin.buffer)


async def _cancel_for_stdin(client: AsyncClient, job_id: str) -> NoReturn:
    """Cancel a job interrupted before all of its stdin was sent: it cannot run right."""
    await client.cancel(job_id)
    print(f"\nacjob: interrupted while sending stdin; job {job_id} canceled", file=sys.stderr)
    _leave(EXIT_INTERRUPTED)  # a thread may still be blocked reading stdin


async def _pipe_live(client: AsyncClient, job_id: str,
                     upload: asyncio.Task[int] | None) -> int:
    """Stream the job's output while its stdin is still being sent; return its status.

    An upload that fails for good fails the pipe (the job would wait for the rest of
    its stdin forever); one still going when the job ends is simply left behind.
    """
    pipe = asyncio.create_task(_pipe(client, job_id))
    try:
        if upload is not None:
            await asyncio.wait({pipe, upload}, return_when=asyncio.FIRST_COMPLETED)
            if upload.done() and not pipe.done() and (error := upload.exception()):
                raise error
        return await pipe
    finally:
        if not pipe.done():
            pipe.cancel()
            with contextlib.suppress(asyncio.CancelledError, AcjobError):
                await pipe


T = TypeVar("T")


async def _unless_interrupted(work: Coroutine[Any, Any, T] | asyncio.Task[T],
                              interrupted: asyncio.Event) -> T | None:
    """Run ``work``; return its result, or ``None`` if Ctrl-C came first (it is cancelled)."""
    task = work if isinstance(work, asyncio.Task) else asyncio.create_task(work)
    stop = asyncio.create_task(interrupted.wait())
    await asyncio.wait({task, stop}, return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        stop.cancel()
        return task.result()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, AcjobError):
        await task
    return None


def _leave(code: int) -> NoReturn:
    """Exit at once, without waiting for worker threads (one may be blocked on stdin)."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


async def _pipe(client: AsyncClient, job_id: str) -> int:
    """Stream stdout and stderr until the job is final; exit with its status.

    If an attempt fails after output began and a retry starts over, the pipe
    stops with an error rather than mix two attempts' bytes.
    """
    try:
        await asyncio.gather(_copy(client, job_id, "stdout", 1),
                             _copy(client, job_id, "stderr", 2))
    except BrokenPipeError:
        return EXIT_BROKEN_PIPE
    except Conflict as exc:
        if exc.code != "attempt_retried":
            raise
        fail(exc)
    info = await client.get(job_id)
    while not info.is_final:
        info = await client.get(job_id, wait=60.0, since=info.seq)
    explain_failure(info)
    return exit_status(info)


async def _copy(client: AsyncClient, job_id: str, which: Which, fd: int) -> None:
    async for chunk in client.stream(job_id, which):
        write_all(fd, chunk)


def main() -> None:
    """Entry point of the ``acjob`` command."""
    cli(prog_name="acjob")
