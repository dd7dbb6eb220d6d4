"""acjob on Slurm beside raw ``sbatch``, where a Slurm controller answers.

The raw baselines: one trivial job through ``sbatch --wait`` (the round trip), and
``sbatch`` called once per job in sequence (the submission rate). acjob's figures come
from a daemon of the bench's own whose default backend is ``slurm`` (an empty
``[backends.slurm]`` table: the defaults a user gets). Every job the bench submits is
waited for, or canceled if the bench is interrupted.
"""

from __future__ import annotations

import contextlib
import functools
import shutil
import statistics
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from harness.acjob_side import AcjobSystem, daemon
from harness.common import median_seconds
from harness.processes import run_checked, wait_until

WRAP = "sh -c true"
CONFIG = 'backend = "slurm"\n[backends.slurm]\n'


def problem() -> str | None:
    """Why Slurm cannot be used here, or None."""
    if shutil.which("sbatch") is None:
        return "Slurm is not installed (scripts/slurm-up brings up a single node as root)"
    try:
        answered = subprocess.run(["sinfo", "-h"], capture_output=True, timeout=20,
                                  check=False).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        answered = False
    return None if answered else "Slurm does not answer (sinfo -h failed)"


def _sbatch(work: Path, *extra: str) -> str:
    result = run_checked(["sbatch", "--parsable", "--output=/dev/null", *extra,
                          f"--wrap={WRAP}"], cwd=work, timeout=600)
    return result.stdout.decode().strip().split(";")[0]


@contextlib.contextmanager
def _canceled_unless_done(ids: list[str]) -> Iterator[None]:
    """Cancel the jobs in ``ids`` (appended to meanwhile) if the block fails."""
    try:
        yield
    except BaseException:
        if ids:
            subprocess.run(["scancel", *ids], capture_output=True, timeout=60, check=False)
        raise


def _gone(ids: list[str]) -> bool:
    listed = subprocess.run(["squeue", "-h", "-o", "%i", "-j", ",".join(ids)],
                            capture_output=True, timeout=60, check=False)
    return not listed.stdout.strip()


def raw_figures(work: Path, *, runs: int, jobs: int) -> dict[str, float]:
    """``sbatch --wait`` (median seconds) and sequential ``sbatch`` (jobs per second)."""
    ids: list[str] = []
    with _canceled_unless_done(ids):
        _sbatch(work, "--wait")  # warm up
        round_trip = median_seconds(lambda: _sbatch(work, "--wait"), runs)
        start = time.perf_counter()
        for _ in range(jobs):
            ids.append(_sbatch(work))
        rate = jobs / (time.perf_counter() - start)
        wait_until(lambda: _gone(ids), timeout=600, what="the sbatch jobs to end")
    return {"slurm_round_trip": round_trip, "slurm_submit": rate}


def _native_id(system: AcjobSystem, job_id: str) -> str | None:
    attempts = system.client.get(job_id).data.get("attempts") or []
    return attempts[0].get("native_id") if attempts else None


def _handed_over(system: AcjobSystem, job_id: str) -> bool:
    return _native_id(system, job_id) is not None


def acjob_figures(home: Path, *, runs: int, jobs: int) -> dict[str, float]:
    """acjob on Slurm: one job's round trip through the Python client (median seconds),
    how long after its exit file acjob recorded its end (median seconds, of the same
    jobs), and ``jobs`` jobs submitted one request each until every one was handed to
    Slurm (its first attempt has a Slurm job id), in jobs per second."""
    with daemon(home, CONFIG) as d:
        system = AcjobSystem(d.url)
        handles: list[str] = []
        try:
            system.wait(system.submit())  # warm up
            timed: list[str] = []

            def one_job() -> None:
                handle = system.submit()
                system.wait(handle)
                timed.append(system.ident(handle))

            round_trip = median_seconds(one_job, runs)
            notice = statistics.median(_noticed_after(d.home, system, ident) for ident in timed)
            start = time.perf_counter()
            handles = [system.ident(system.submit()) for _ in range(jobs)]
            for ident in handles:
                wait_until(functools.partial(_handed_over, system, ident), timeout=600,
                           what="acjob to hand its jobs to Slurm", interval=0.01)
            rate = jobs / (time.perf_counter() - start)
            for ident in handles:
                system.wait_ident(ident)
        except BaseException:
            for ident in handles:
                with contextlib.suppress(Exception):
                    system.client.cancel(ident)
            raise
        finally:
            system.client.close()
    return {"slurm_round_trip": round_trip, "slurm_notice": notice, "slurm_submit": rate}


def _noticed_after(home: Path, system: AcjobSystem, job_id: str) -> float:
    """Seconds from the job's exit file (written by its wrapper as the command ended)
    to the end of its attempt in acjob's store."""
    exit_file = home / "state" / "spool" / job_id / "1" / "exit"
    ended_at = system.client.get(job_id).data["attempts"][0]["ended_at"]
    return float(ended_at) - exit_file.stat().st_mtime
