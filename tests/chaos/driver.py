"""The chaos driver: many jobs, a daemon killed with SIGKILL again and again, client
connections cut at random, then a check that nothing was lost, repeated or changed.

Run the full version (see docs/reliability.md):

    python -m tests.chaos.driver --jobs 1000 --kills 12

The suite runs a short version (tests/chaos/test_chaos.py).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import random
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import acjob
from tests.conftest import Daemon, tool_env
from tests.proxy import cutting_proxy

TOKEN = "chaos-token"


@dataclass
class Expected:
    """What one job must produce."""

    index: int
    command: str
    stdin: bytes | None
    stdout: bytes
    exit_code: int
    via_cli: bool = False
    webhook: bool = False
    #: The progress the job reports last (percent, message), if it reports any.
    progress: tuple[float, str] | None = None


@dataclass
class Figures:
    jobs: int = 0
    kills: int = 0
    cuts: int = 0
    duplicates: int = 0
    losses: int = 0
    mismatches: int = 0
    wrong_status: int = 0
    not_final: int = 0
    server_errors: int = 0
    deliveries_missing: int = 0
    progress_wrong: int = 0
    followers: int = 0
    seconds: float = 0.0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.duplicates or self.losses or self.mismatches or self.wrong_status
                    or self.not_final or self.server_errors or self.deliveries_missing
                    or self.progress_wrong)


def make_jobs(n: int, witness: Path, hook_url: str | None, slow: float,
              first: int = 0) -> list[Expected]:
    """A deterministic mix: instant, slow (reporting progress), big stdin, big binary
    stdout, failures, signals; numbered from ``first``."""
    rng = random.Random(42 + first)
    jobs = []
    for i in range(first, first + n):
        mark = f"echo x >> {witness}/{i}; "
        kind = i % 6
        if kind == 0:
            job = Expected(i, mark + f"echo job-{i}", None, f"job-{i}\n".encode(), 0)
        elif kind == 1:
            pause = round(rng.uniform(0.1, slow), 2)
            job = Expected(i, mark + f'echo "25 started-{i}" > "$ACJOB_PROGRESS"; '
                           f'sleep {pause}; echo "75 slept-{i}" > "$ACJOB_PROGRESS"; '
                           f"echo slow-{i}", None, f"slow-{i}\n".encode(), 0,
                           progress=(75.0, f"slept-{i}"))
        elif kind == 2:
            data = rng.randbytes(rng.randrange(1 << 20, 3 << 20))
            digest = hashlib.sha256(data).hexdigest()
            job = Expected(i, mark + "sha256sum | cut -d' ' -f1", data,
                           f"{digest}\n".encode(), 0)
        elif kind == 3:
            size = rng.randrange(1 << 20, 4 << 20)
            job = Expected(i, mark + f"head -c {size} /dev/zero | tr '\\0' '\\377'", None,
                           b"\xff" * size, 0)
        elif kind == 4:
            code = 1 + i % 120
            job = Expected(i, mark + f"echo fail-{i}; exit {code}", None,
                           f"fail-{i}\n".encode(), code)
        else:
            job = Expected(i, mark + "kill -9 $$", None, b"", 137)
        job.via_cli = i % 10 == 7
        job.webhook = hook_url is not None and i % 7 == 3
        jobs.append(job)
    return jobs


class Hooks:
    """Counts callbacks per delivery id."""

    def __init__(self) -> None:
        self.by_job: dict[str, set[str]] = {}
        hooks = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                doc = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                hooks.by_job.setdefault(doc["job"]["id"], set()).add(doc["delivery_id"])
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def run(jobs_count: int, kills: int, workdir: Path, slow: float = 2.0,
        backend: str = "local") -> Figures:
    """Run the chaos and return the figures."""
    started = time.monotonic()
    figures = Figures(jobs=jobs_count)
    with chaos_daemon(workdir, backend) as (daemon, hooks, proxy):
        chaos_round(daemon, hooks, proxy.port, figures,
                    make_jobs(jobs_count, workdir / "witness", hooks.url, slow), kills)
        figures.cuts = proxy.cuts
    figures.server_errors = daemon.log.read_text().count("internal error on")
    figures.seconds = round(time.monotonic() - started, 1)
    return figures


@contextlib.contextmanager
def chaos_daemon(workdir: Path, backend: str = "local") -> Iterator[tuple[Daemon, Hooks, Any]]:
    """A daemon on TCP with a token, a webhook receiver, and a proxy in front of the daemon
    that cuts connections; all stopped at the end."""
    (workdir / "witness").mkdir()
    port = _free_port()
    state = workdir / "state"
    config = workdir / "chaos.toml"
    scheduler = "" if backend == "local" else (
        f"[backends.{backend}]\npoll_interval = 0.5\nmax_poll_interval = 5\n")
    config.write_text(f'[server]\nstate_dir = "{state}"\ntoken = "{TOKEN}"\n'
                      f'backend = "{backend}"\n{scheduler}'
                      "[backends.local]\nslots = 4\n"
                      '[webhook]\nsecret = "chaos"\n[delivery]\nfirst_retry = 0.2\n'
                      "max_retry = 1\n")
    daemon = Daemon(state_dir=state, url=f"http://127.0.0.1:{port}",
                    env=tool_env(workdir, ACJOB_TOKEN=TOKEN), config=config)
    daemon.start()
    hooks = Hooks()
    try:
        with cutting_proxy("127.0.0.1", port, cut_after=256 << 10, jitter=4 << 20) as proxy:
            yield daemon, hooks, proxy
    finally:
        daemon.stop()
        hooks.server.shutdown()


def chaos_round(daemon: Daemon, hooks: Hooks, proxy_port: int, figures: Figures,
                expected: list[Expected], kills: int, seed: int = 7) -> None:
    """Submit ``expected`` through the proxy while the daemon is killed ``kills`` times;
    check every job; add what was found to ``figures``."""
    witness = daemon.state_dir.parent / "witness"
    stop = threading.Event()

    def killer() -> None:
        rng = random.Random(seed)
        for _ in range(kills):
            if stop.wait(rng.uniform(0.5, 3.0)):
                return
            daemon.kill9()
            figures.kills += 1
            daemon.start()

    url = f"http://127.0.0.1:{proxy_port}"
    env = dict(daemon.env, ACJOB_URL=url)
    kill_thread = threading.Thread(target=killer)
    kill_thread.start()
    ids: dict[int, str] = {}

    def submit(job: Expected) -> None:
        deliveries = [{"type": "webhook", "url": hooks.url}] if job.webhook else None
        if job.via_cli:
            result = subprocess.run(
                [sys.executable, "-c", "from acjob.cli.acjob import main; main()",
                 "-t", "poll", *(["--webhook", hooks.url] if job.webhook else []),
                 job.command], input=job.stdin or b"", capture_output=True, env=env,
                timeout=600)
            if result.returncode != 0:
                figures.problems.append(f"job {job.index}: acjob said {result.stderr!r}")
                return
            ids[job.index] = result.stdout.decode().strip()
            return
        stdin: bytes | Iterator[bytes] | None = job.stdin
        if job.stdin and job.index % 2:
            # Sent live, piece by piece, while the job may already read it.
            stdin = (job.stdin[i:i + (64 << 10)] for i in range(0, len(job.stdin), 64 << 10))
        with acjob.Client(url, TOKEN, retry_for=300) as client:
            handle = client.submit(job.command, stdin=stdin, deliveries=deliveries)
            ids[job.index] = handle.id

    followed: dict[int, list[tuple[float, str | None]]] = {}

    def follow(job: Expected) -> None:
        """Follow a job's progress on its event stream, through kills and cuts, to
        its end: what the dashboard's job page does."""
        seen = followed.setdefault(job.index, [])
        with acjob.Client(url, TOKEN, retry_for=300) as client:
            seen.extend((p.percent, p.message) for p in client.progress(ids[job.index]))
        seen.append((-1.0, "ended"))

    followers: list[threading.Thread] = []

    def submit_and_follow(job: Expected) -> None:
        submit(job)
        if job.progress is not None and job.index in ids and job.index % 4 == 1:
            thread = threading.Thread(target=follow, args=(job,), daemon=True)
            thread.start()
            followers.append(thread)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(submit_and_follow, expected))
    with acjob.Client(url, TOKEN, retry_for=300) as client:
        for job in expected:
            job_id = ids.get(job.index)
            if job_id is None:
                figures.losses += 1
                continue
            info = client.wait(job_id, timeout=600)
            if not info.is_final:
                figures.not_final += 1
                continue
            code = 0 if info.state is acjob.State.COMPLETE else info.exit_code
            if code != job.exit_code:
                figures.wrong_status += 1
                figures.problems.append(f"job {job.index}: {info.state} {info.exit_code}"
                                        f" ({info.reason}), expected {job.exit_code}")
            if job.progress is not None and (
                    info.progress is None
                    or (info.progress.percent, info.progress.message) != job.progress):
                figures.progress_wrong += 1
                figures.problems.append(f"job {job.index}: progress {info.progress}, "
                                        f"expected {job.progress}")
            out = b"".join(client.stream(job_id, attempt=info.attempt or None))
            if out != job.stdout:
                figures.mismatches += 1
                figures.problems.append(f"job {job.index}: stdout differs")
            lines = (witness / str(job.index)).read_text().count("x") if (
                witness / str(job.index)).exists() else 0
            if lines != 1:
                if lines == 0:
                    figures.losses += 1
                else:
                    figures.duplicates += 1
                figures.problems.append(f"job {job.index} ran {lines} times")
        deadline = time.monotonic() + 120
        while True:
            missing = [j for j in expected if j.webhook and j.index in ids
                       and not hooks.by_job.get(ids[j.index])]
            if not missing or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        figures.deliveries_missing += len(missing)
        for thread in followers:
            thread.join(timeout=120)
        figures.followers += len(followers)
        for index, seen in followed.items():
            want = next(j.progress for j in expected if j.index == index)
            # It ended, and the last value it saw is the job's last report.
            if seen[-1:] != [(-1.0, "ended")] or want not in seen[:-1]:
                figures.progress_wrong += 1
                figures.problems.append(f"job {index}: progress followed {seen[-3:]}")
    stop.set()
    kill_thread.join()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--kills", type=int, default=12)
    parser.add_argument("--slow", type=float, default=3.0, help="longest 'slow' job (s)")
    parser.add_argument("--backend", default="local",
                        help="local, slurm or gridengine (scripts/slurm-up, gridengine-up)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="acc") as tmp:
        figures = run(args.jobs, args.kills, Path(tmp), args.slow, args.backend)
    print(json.dumps({k: v for k, v in figures.__dict__.items() if k != "problems"}, indent=1))
    for problem in figures.problems[:50]:
        print("problem:", problem)
    sys.exit(0 if figures.ok else 1)


if __name__ == "__main__":
    main()
