"""Many clients at once on one running job: output streams, event streams, long-polls
and dashboard pages, each kind alone and all mixed.

    python bench/load.py [--clients 1000] [--kinds stdout,events,poll,page,mixed]

Run it with the Python that has acjob installed. For each kind it starts a daemon of
its own (Unix socket, temporary state), starts one job that prints a line, waits on a
file the bench creates and prints a last line, opens ``--clients`` requests of that kind
at once (one asyncio process, one connection each), waits until the daemon counts them
all in flight (its ``/metrics``), lets the job end, and checks that every client saw the
end: the whole output, the final event, the final state. It prints, per kind, the
clients that saw the end, the errors, the seconds from the release to the last end, the
daemon's peak resident memory and its peak of open files, and writes them as JSON
(``--json``). A client beyond the daemon's ``[server] max_requests`` gets a 503, counted
as an error here: the default limit (2000) is above the default ``--clients``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from harness.acjob_side import daemon  # noqa: E402

KINDS = ("stdout", "events", "poll", "page", "mixed")


def _proc(pid: int, field: str) -> int:
    """A field of /proc/PID/status in kB."""
    text = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(rf"^{field}:\s+(\d+)", text, re.MULTILINE).group(1))  # type: ignore[union-attr]


async def _one(http: httpx.AsyncClient, kind: str, job_id: str) -> bool:
    """One client: return whether it saw the job's end."""
    if kind == "stdout":
        async with http.stream("GET", f"/v1/jobs/{job_id}/stdout",
                               params={"follow": "true"}) as response:
            body = b"".join([chunk async for chunk in response.aiter_raw()])
        return response.status_code == 200 and body == b"start\nend\n"
    if kind == "events":
        async with http.stream("GET", f"/v1/jobs/{job_id}/events") as response:
            text = "".join([chunk async for chunk in response.aiter_text()])
        return response.status_code == 200 and '"COMPLETE"' in text
    if kind == "poll":
        seq = 0
        while True:
            response = await http.get(f"/v1/jobs/{job_id}", params={"wait": 120, "since": seq})
            if response.status_code != 200:
                return False
            job = response.json()
            if job["state"] == "COMPLETE":
                return True
            seq = job["seq"]
    # page: what the dashboard's job page asks for (the page, its job, its live log)
    page = await http.get("/ui/")
    async with http.stream("GET", f"/v1/jobs/{job_id}/stdout",
                           params={"follow": "true", "tail": 65536}) as response:
        body = b"".join([chunk async for chunk in response.aiter_raw()])
    return page.status_code == 200 and body.endswith(b"end\n")


async def _run(url: str, pid: int, kind: str, clients: int, gate: Path,
               job_id: str) -> dict[str, Any]:
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=0)
    transport = httpx.AsyncHTTPTransport(uds=url.removeprefix("unix:"), limits=limits)
    async with httpx.AsyncClient(base_url="http://acjob", transport=transport,
                                 timeout=httpx.Timeout(300, connect=60)) as http:
        kinds = [KINDS[i % 4] if kind == "mixed" else kind for i in range(clients)]
        tasks = [asyncio.create_task(_one(http, k, job_id)) for k in kinds]
        peak_fds = 0
        while True:  # until the daemon counts every client in flight (or one failed)
            metrics = (await http.get("/metrics")).text
            in_flight = float(re.search(r"^acjob_http_requests_in_flight (\S+)$", metrics,
                                        re.MULTILINE).group(1))  # type: ignore[union-attr]
            peak_fds = max(peak_fds, len(os.listdir(f"/proc/{pid}/fd")))
            if in_flight - 1 >= clients or any(t.done() for t in tasks):
                break
            await asyncio.sleep(0.05)
        start = time.perf_counter()
        gate.touch()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        seconds = time.perf_counter() - start
    errors = [r for r in results if r is not True]
    return {"clients": clients, "saw_the_end": sum(r is True for r in results),
            "errors": len(errors), "first_error": repr(errors[0]) if errors else None,
            "seconds_to_last_end": round(seconds, 2), "daemon_peak_rss_mb":
            round(_proc(pid, "VmHWM") / 1024, 1), "daemon_peak_open_files": peak_fds}


def measure(kind: str, clients: int) -> dict[str, Any]:
    """Start a daemon and a gated job; measure ``clients`` requests of ``kind``."""
    with tempfile.TemporaryDirectory(prefix="acl") as tmp:
        home = Path(tmp)
        gate = home / "gate"
        with daemon(home / "d") as d:
            import acjob

            with acjob.Client(d.url, autostart=False) as client:
                job = client.submit(f"echo start; while [ ! -e {gate} ]; do sleep 0.05; done; "
                                    "echo end")
                figures = asyncio.run(_run(d.url, d.process.pid, kind, clients, gate, job.id))
                client.wait(job.id, timeout=60)
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--kinds", default=",".join(KINDS))
    parser.add_argument("--json", type=Path, help="write the figures here too")
    args = parser.parse_args()
    results = {}
    for kind in args.kinds.split(","):
        results[kind] = measure(kind, args.clients)
        print(kind, json.dumps(results[kind]), flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0 if all(r["errors"] == 0 for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
