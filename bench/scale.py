"""acjob at scale: a store with many jobs, and how the daemon answers over it.

    python bench/scale.py [--jobs 1000000] [--samples 300]

Fills a fresh store with ``--jobs`` queued jobs (each with a name and two labels, in
transactions of 1000, as a batch submission writes them), then starts a *held* daemon
on it (it accepts and answers, and starts nothing) and measures over its Unix socket:

- ``get``: one job by id, random ids;
- ``list``: the first page (100 jobs) with no filter, by state, by label, by name
  prefix;
- the daemon's resident memory after those requests;
- the store's bytes on disk per job (the jobs have no spool directory until they are
  dispatched).

Prints p50 and p99 of each request beside the health request's (the floor of any
request over the same socket), and writes the figures as JSON with ``--json FILE``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import select
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from acjob.model import JobSpec, NewJob, new_job_id
from acjob.store import Store


def fill(path: Path, count: int) -> list[str]:
    """Write ``count`` queued jobs into a new store at ``path``; return their ids."""
    store = Store(path)
    ids: list[str] = []
    batch = 1000
    for start in range(0, count, batch):
        items = []
        for i in range(start, min(start + batch, count)):
            spec = JobSpec(command=["true"], name=f"run-{i % 1000:03d}-{i}",
                           labels={"group": str(i % 100), "owner": f"user{i % 7}"})
            job_id = new_job_id()
            ids.append(job_id)
            items.append(NewJob(spec, "local", job_id))
        store.create_jobs(items)
    store.close()
    return ids


def start_held_daemon(tmp: Path, state: Path) -> tuple[subprocess.Popen[bytes], str]:
    """Start a held daemon (it answers and starts nothing) on the store in ``state``;
    return it and its socket once the socket accepts connections."""
    sock = tmp / "d.sock"
    config = tmp / "scale.toml"
    config.write_text(f'[server]\nstate_dir = "{state}"\nhold = true\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ACJOB_", "XDG_"))}
    env.update(XDG_RUNTIME_DIR=str(tmp), XDG_CONFIG_HOME=str(tmp / "config"))
    read_fd, write_fd = os.pipe()
    proc = subprocess.Popen(
        [sys.executable, "-m", "acjob.cli.ac", "serve", "--listen", f"unix:{sock}",
         "--config", str(config), "--ready-fd", str(write_fd)],
        env=env, pass_fds=(write_fd,), stdout=subprocess.DEVNULL,
        stderr=(tmp / "daemon.log").open("wb"))
    os.close(write_fd)
    ready, _, _ = select.select([read_fd], [], [], 120)
    if not ready or os.read(read_fd, 1) != b"1":
        proc.kill()
        sys.exit(f"the daemon did not start; see {tmp / 'daemon.log'}")
    os.close(read_fd)
    return proc, str(sock)


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _percentiles(times: list[float]) -> dict[str, float]:
    ordered = sorted(times)
    return {"p50_ms": statistics.median(ordered) * 1000,
            "p99_ms": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000}


def measure(http: httpx.Client, path: str, samples: int,
            params: list[dict[str, str]] | None = None) -> dict[str, float]:
    """Time ``samples`` GETs of ``path`` (formatted with each of ``params`` in turn)."""
    times = []
    for i in range(samples):
        args = params[i % len(params)] if params else {}
        start = time.perf_counter()
        response = http.get(path.format(**args))
        times.append(time.perf_counter() - start)
        if response.status_code != 200:
            sys.exit(f"GET {path.format(**args)}: {response.status_code} {response.text[:200]}")
    return _percentiles(times)


def main() -> None:
    """Fill, start, measure, print."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--samples", type=int, default=300)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="acjob-scale") as name:
        tmp = Path(name)
        state = tmp / "state"
        state.mkdir(mode=0o700)
        started = time.perf_counter()
        ids = fill(state / "acjob.db", args.jobs)
        filled = time.perf_counter() - started
        disk = sum(p.stat().st_size for p in state.iterdir() if p.name.startswith("acjob.db"))
        proc, sock = start_held_daemon(tmp, state)
        try:
            figures: dict[str, object] = {
                "jobs": args.jobs, "fill_jobs_per_s": args.jobs / filled,
                "disk_bytes_per_job": disk / args.jobs,
            }
            with httpx.Client(transport=httpx.HTTPTransport(uds=sock),
                              base_url="http://acjob", timeout=60) as http:
                chosen = [{"id": random.choice(ids)} for _ in range(args.samples)]
                figures["health"] = measure(http, "/v1/health", args.samples)
                figures["get"] = measure(http, "/v1/jobs/{id}", args.samples, chosen)
                figures["list"] = measure(http, "/v1/jobs?limit=100", args.samples)
                figures["list_by_state"] = measure(http, "/v1/jobs?limit=100&state=QUEUED",
                                                   args.samples)
                figures["list_by_label"] = measure(
                    http, "/v1/jobs?limit=100&label=group%3D{g}", args.samples,
                    [{"g": str(g)} for g in range(100)])
                figures["list_by_name"] = measure(
                    http, "/v1/jobs?limit=100&name_prefix=run-{n}", args.samples,
                    [{"n": f"{n:03d}"} for n in range(1000)])
            figures["daemon_rss_mib"] = _rss_mib(proc.pid)
        finally:
            proc.terminate()
            proc.wait(timeout=60)
    print(f"{args.jobs} queued jobs: {figures['fill_jobs_per_s']:.0f} jobs/s written, "
          f"{figures['disk_bytes_per_job']:.0f} bytes on disk each, daemon RSS "
          f"{figures['daemon_rss_mib']:.0f} MiB")
    floor = figures["health"]
    assert isinstance(floor, dict)
    for key in ("health", "get", "list", "list_by_state", "list_by_label", "list_by_name"):
        value = figures[key]
        assert isinstance(value, dict)
        print(f"{key:<15} p50 {value['p50_ms']:7.2f} ms  p99 {value['p99_ms']:7.2f} ms"
              f"   (p99 / health p99: {value['p99_ms'] / floor['p99_ms']:.1f})")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
