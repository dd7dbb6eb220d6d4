"""A restart at scale: many finished jobs, many under way, and a daemon started on them.

    python bench/restart.py [--finished 1000000] [--active 10000]

Fills a fresh store with ``--finished`` jobs that ended (``COMPLETE``, as a long-lived
service's store holds them) and ``--active`` jobs whose attempts were running on the
local backend when the daemon stopped, and whose processes are gone since (a machine
restarted under them). Then it starts a held daemon on that store (it reconciles, and
starts nothing new) and measures:

- how long the daemon takes to be ready (its socket accepting), to answer
  ``/v1/health`` and to answer a ``GET`` of one finished job;
- how long until every active job is reconciled (none left ``RUNNING``: each attempt
  found gone, the job put back in the queue for its retry), read from ``/metrics``;
- the daemon's peak resident memory.

None of it may grow with the finished jobs: the daemon reads the jobs under way through
the store's state index, never the whole table. Writes the figures as JSON with
``--json FILE``.
"""

from __future__ import annotations

import argparse
import json
import re
import sqlite3
import tempfile
import time
from pathlib import Path

import httpx
from scale import start_held_daemon

from acjob.model import JobSpec, NewJob, new_job_id
from acjob.store import Store

#: A local attempt's id whose process cannot exist (no such pid, no such start time).
_GONE = "{boot}:4194303:1"


def fill(path: Path, finished: int, active: int) -> str:
    """Write the jobs; return the id of one finished job."""
    store = Store(path)
    some = ""
    for start in range(0, finished, 1000):
        items = [NewJob(JobSpec(command=["true"]), "local", new_job_id())
                 for _ in range(start, min(start + 1000, finished))]
        store.create_jobs(items)
        some = some or items[0].job_id
    store.close()
    with sqlite3.connect(path) as db:  # ended yesterday (within retention): final now
        db.execute("UPDATE jobs SET state = 'COMPLETE', exit_code = 0, ended_at = ? "
                   "WHERE state = 'QUEUED'", (time.time() - 86400,))
    store = Store(path)
    boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip().replace("-", "")[:12]
    for _ in range(active):
        job_id = new_job_id()
        store.create_jobs([NewJob(JobSpec(command=["sleep", "1000"]), "local", job_id)])
        number = store.start_attempt(job_id).number
        store.attempt_submitted(job_id, number, _GONE.format(boot=boot))
        store.attempt_running(job_id, number)
    store.close()
    return some


def _metric(http: httpx.Client, name: str, label: str) -> float:
    text = http.get("/metrics").text
    found = re.search(rf'^{name}\{{[^}}]*state="{label}"[^}}]*\}} (\S+)$', text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def main() -> None:
    """Fill, start, measure, print."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--finished", type=int, default=1_000_000)
    parser.add_argument("--active", type=int, default=10_000)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="acjob-restart") as name:
        tmp = Path(name)
        state = tmp / "state"
        state.mkdir(mode=0o700)
        some = fill(state / "acjob.db", args.finished, args.active)
        started = time.perf_counter()
        proc, sock = start_held_daemon(tmp, state)  # returns once its socket accepts
        figures: dict[str, float] = {"finished": args.finished, "active": args.active,
                                     "ready_s": time.perf_counter() - started}
        try:
            with httpx.Client(transport=httpx.HTTPTransport(uds=sock),
                              base_url="http://acjob", timeout=600) as http:
                http.get("/v1/health").raise_for_status()
                figures["health_s"] = time.perf_counter() - started
                http.get(f"/v1/jobs/{some}").raise_for_status()
                figures["get_s"] = time.perf_counter() - started
                while _metric(http, "acjob_jobs", "RUNNING") > 0:
                    time.sleep(0.1)
                figures["reconciled_s"] = time.perf_counter() - started
                figures["requeued"] = _metric(http, "acjob_jobs", "PREEMPTED")
            status = Path(f"/proc/{proc.pid}/status").read_text()
            figures["daemon_peak_rss_mib"] = int(
                re.search(r"^VmHWM:\s+(\d+)", status, re.MULTILINE).group(1)) / 1024  # type: ignore[union-attr]
        finally:
            proc.terminate()
            proc.wait(timeout=60)
    print(json.dumps(figures, indent=2))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
