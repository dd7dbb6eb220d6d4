"""The daemon: one process holding the store, the monitor and the HTTP server.

:func:`serve` opens the state directory (taking an exclusive lock on it, so two
daemons never share a store), binds the listening socket itself (a Unix socket is
made 0600 inside a 0700 directory; TCP is refused without a token), then runs the
monitor and the server until SIGINT/SIGTERM, a shutdown request, or — when
``idle_timeout`` is set — a quiet spell with no request, no active job and no pending
delivery.
Running jobs are never stopped by the daemon stopping.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import gc
import logging
import os
import resource
import socket
import time
from dataclasses import dataclass
from pathlib import Path

import uvicorn

from .backends.base import Backend, load_backend
from .config import Config, Endpoint, default_state_dir, parse_endpoint, private_socket
from .delivery.mail import MailChannel
from .delivery.webhook import WebhookChannel
from .errors import ConfigError
from .hub import Hub
from .janitor import run_janitor, watch_uploads
from .locations import handoff_socket
from .monitor import Monitor
from .notifier import Notifier
from .receiver import Receiver, ReceiverSettings
from .sender import Sender
from .server.app import create_app
from .server.handoff import serve_handoffs
from .server.services import Services
from .spool import Spool
from .store import GroupCommit, Store

log = logging.getLogger("acjob.daemon")

#: File systems that no other machine can see.
_LOCAL_FS = frozenset({"tmpfs", "ramfs", "devtmpfs"})


#: The cyclic garbage collector's thresholds in the daemon (Python's are 700, 10, 10):
#: requests make many short-lived objects and few cycles.
GC_THRESHOLDS = (50_000, 20, 20)

@dataclass(frozen=True, slots=True)
class DaemonSettings:
    """Everything :func:`serve` needs, resolved from config file and flags."""

    endpoint: Endpoint
    state_dir: Path
    spool: Path
    token: str | None
    config: Config
    idle_timeout: float


def resolve_settings(
    config: Config, *, listen: str | None = None, token: str | None = None,
    idle_timeout: float | None = None,
) -> DaemonSettings:
    """Combine the configuration file with command-line overrides.

    Raises:
        ConfigError: a TCP address without a token.
    """
    server = config.server
    text = listen or server.listen
    endpoint = parse_endpoint(text) if text else Endpoint(unix=private_socket())
    token = token or server.token or os.environ.get("ACJOB_TOKEN") or None
    if endpoint.unix is None and token is None:
        # Even on loopback: every local user could otherwise run commands as this one.
        raise ConfigError(
            f"refusing to listen on {endpoint.url} without a token: anyone who can reach "
            "it could run commands here",
            hint="set [server] token in the config (or --token), or listen on a Unix socket",
        )
    state_dir = server.state_dir or Path(default_state_dir())
    return DaemonSettings(
        endpoint=endpoint,
        state_dir=state_dir,
        spool=server.spool or state_dir / "spool",
        token=token,
        config=config,
        idle_timeout=server.idle_timeout if idle_timeout is None else idle_timeout,
    )


def _lock_state_dir(state_dir: Path) -> int:
    state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(state_dir / "daemon.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError as exc:
        os.close(fd)
        raise ConfigError(
            f"another acjob daemon already uses {state_dir}",
            hint="stop it (ac shutdown), or give this one its own state_dir",
            code="already_running",
        ) from exc
    os.set_inheritable(fd, False)
    return fd


def _bind(endpoint: Endpoint) -> socket.socket:
    if endpoint.unix is not None:
        path = Path(endpoint.unix)
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        if path.exists():
            probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                probe.connect(str(path))
            except OSError:
                path.unlink()  # a stale socket left by a daemon that died
            else:
                raise ConfigError(f"a daemon already listens on {path}",
                                  hint="stop it (ac shutdown) or listen elsewhere",
                                  code="already_running")
            finally:
                probe.close()
        return _listen_unix(path)
    else:
        family = socket.AF_INET6 if ":" in (endpoint.host or "") else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((endpoint.host or "127.0.0.1", endpoint.port or 0))
        except OSError as exc:
            sock.close()
            raise ConfigError(f"cannot listen on {endpoint.url}: {exc.strerror}",
                              hint="choose a free port") from exc
    sock.listen(1024)
    sock.set_inheritable(False)
    return sock


def _bind_handoff(endpoint: Endpoint) -> socket.socket | None:
    """Bind the handoff socket beside a Unix endpoint; ``None`` on TCP, or when
    it cannot be bound (clients then read output over HTTP, as they always can)."""
    if endpoint.unix is None:
        return None
    path = Path(handoff_socket(endpoint.unix))
    with contextlib.suppress(FileNotFoundError):
        path.unlink()  # ours: the main socket's bind proved no daemon listens here
    try:
        return _listen_unix(path)
    except OSError as exc:
        log.warning("cannot listen on %s (%s): job files go over HTTP only", path, exc)
        return None


def _listen_unix(path: Path) -> socket.socket:
    """Listen on a Unix socket at ``path``, mode 0600 from the moment it exists.

    Raises:
        OSError: it cannot be bound.
    """
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)
    try:
        sock.bind(str(path))
        path.chmod(0o600)
        sock.listen(1024)
    except OSError:
        sock.close()
        raise
    finally:
        os.umask(old)
    sock.set_inheritable(False)
    return sock


def build_backends(config: Config, spool: Spool) -> dict[str, Backend]:
    """Load the default backend and every backend with a ``[backends.NAME]`` table.

    Raises:
        ConfigError: a backend is unknown or its options are invalid; the message names
            the configuration file.
    """
    names = {config.server.backend, "local", *config.backends}
    try:
        return {name: load_backend(name, spool, config.backends.get(name, {}))
                for name in sorted(names)}
    except ConfigError as exc:
        where = f"{config.source}: " if config.source else ""
        raise ConfigError(f"{where}{exc.message}",
                          hint=exc.hint or "the backends' keys are in docs/backends.md",
                          code=exc.code) from exc


#: File descriptors a request may hold: its connection and the file it streams.
_FDS_PER_REQUEST = 2
#: Kept for the store, the spool, the backends' pipes and the jobs' own starts.
_FDS_RESERVED = 256


def _request_limit(wanted: int) -> int:
    """Raise this process's limit of open files to its ceiling, and return how many
    requests may be served at once: ``wanted``, or fewer if the files would not do."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
    room = (soft - _FDS_RESERVED) // _FDS_PER_REQUEST if soft != resource.RLIM_INFINITY \
        else wanted
    if room < wanted:
        log.warning("[server] max_requests is %d, but %d open files allow %d requests at "
                    "once: serving %d (raise the open-files limit, ulimit -n)", wanted, soft,
                    max(room, 1), max(room, 1))
    return max(1, min(wanted, room))


async def serve(settings: DaemonSettings, ready_fd: int | None = None) -> None:
    """Run the daemon until it is told to stop; see the module docstring.

    Args:
        settings: Where to listen and keep state.
        ready_fd: A file descriptor to write one byte to (and close) once the socket
            accepts connections: how a parent that started the daemon waits for it.
    """
    # Whatever the daemon creates (spool, store, sockets) is private to its user.
    job_umask = os.umask(0o077)
    lock_fd = _lock_state_dir(settings.state_dir)
    store = Store(settings.state_dir / "acjob.db",
                  synchronous=settings.config.server.synchronous)
    spool = Spool(settings.spool)
    spool.check_usable()
    hub = Hub()
    store.subscribe(hub.publish)
    store.subscribe_progress(lambda job: hub.wake(job.id))
    backends = build_backends(settings.config, spool)
    commits = GroupCommit(store.database)
    monitor = Monitor(store, spool, backends, job_umask=job_umask,
                      hold=settings.config.server.hold, commits=commits)
    if any(b.capacity is None for b in backends.values()) and spool.file_system() in _LOCAL_FS:
        log.warning("the spool %s is on a %s file system: cluster jobs can only reach it if "
                    "they run on this machine", spool.root, spool.file_system())
    sock = _bind(settings.endpoint)
    handoff = _bind_handoff(settings.endpoint)
    receiver = Receiver(store, spool, backends, ReceiverSettings(
        default_backend=settings.config.server.backend,
        webhook_signing=bool(settings.config.webhook.secret),
        # A [mail] table, even an empty one (a mail server on localhost:25), is a choice;
        # none at all is not: no mail is accepted that nobody set up a server for.
        mail_sending="mail" in settings.config.model_fields_set,
        config_file=str(settings.config.source) if settings.config.source else None,
        max_stdin_bytes=settings.config.server.max_stdin_bytes,
    ), wake=monitor.wake)
    stopping = asyncio.Event()
    services = Services(
        store=store, spool=spool, hub=hub, receiver=receiver, tes=settings.config.tes,
        token=settings.token, max_request_bytes=settings.config.server.max_request_bytes,
        max_requests=_request_limit(settings.config.server.max_requests),
        shutdown=stopping.set, commits=commits,
    )
    commits.crowded = lambda: services.activity.in_flight > 1
    mail = MailChannel(spool, settings.config.mail)
    webhook = WebhookChannel(spool, settings.config.webhook)
    sender = Sender(store, {mail.kind: mail, webhook.kind: webhook}, settings.config.delivery,
                    commits=commits)
    notifier = Notifier(store, webhook)
    app = create_app(services)
    server = uvicorn.Server(uvicorn.Config(
        app, log_config=None, access_log=False, lifespan="off",
        timeout_graceful_shutdown=3, timeout_keep_alive=30,
        http="httptools",
    ))

    async def stop_when_asked() -> None:
        await stopping.wait()
        server.should_exit = True

    stop_task = asyncio.create_task(stop_when_asked(), name="acjob-stop")
    monitor_task = asyncio.create_task(monitor.run(), name="acjob-monitor")
    sender_task = asyncio.create_task(sender.run(), name="acjob-sender")
    janitor_task = asyncio.create_task(
        run_janitor(store, spool, settings.config.server.retention_days * 86400),
        name="acjob-janitor")
    stdin_timeout = settings.config.server.stdin_timeout
    uploads_task = (asyncio.create_task(
        watch_uploads(store, spool, receiver.is_uploading, stdin_timeout, monitor.wake),
        name="acjob-uploads") if stdin_timeout > 0 else None)
    handoff_task = (asyncio.create_task(serve_handoffs(handoff, services),
                                        name="acjob-handoff") if handoff else None)
    idle_task = (asyncio.create_task(_stop_when_idle(services, settings.idle_timeout))
                 if settings.idle_timeout > 0 else None)
    log.info("acjob daemon listening on %s (state %s)", settings.endpoint.url,
             settings.state_dir)
    if ready_fd is not None:
        with contextlib.suppress(OSError):
            os.write(ready_fd, b"1")
            os.close(ready_fd)
    # Everything made so far lives as long as the daemon: keep the cyclic collector from
    # walking it again and again, and let it run less often. A full collection over the
    # imported frameworks took tens of milliseconds, in the middle of some request.
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
    try:
        await server.serve(sockets=[sock])
    finally:
        for task in (monitor_task, sender_task, janitor_task, uploads_task, idle_task,
                     handoff_task, stop_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        notifier.close()
        await webhook.aclose()
        sock.close()
        if settings.endpoint.unix is not None:
            with contextlib.suppress(FileNotFoundError):
                Path(settings.endpoint.unix).unlink()
        if handoff is not None:
            handoff.close()
            with contextlib.suppress(FileNotFoundError):
                Path(handoff_socket(settings.endpoint.unix or "")).unlink()
        store.close()
        os.close(lock_fd)
        log.info("acjob daemon stopped")


async def _stop_when_idle(services: Services, idle_timeout: float) -> None:
    """Stop the daemon after ``idle_timeout`` seconds without requests, active jobs or
    pending deliveries."""
    check = max(0.5, min(idle_timeout / 4, 30.0))
    while True:
        await asyncio.sleep(check)
        store = services.store
        activity = services.activity
        busy = activity.in_flight > 0 or store.active_jobs_exist() or store.deliveries_pending()
        if busy:
            activity.last_activity = time.monotonic()
        elif time.monotonic() - activity.last_activity >= idle_timeout:
            log.info("idle for %.0f s: stopping", idle_timeout)
            services.shutdown()
            return
