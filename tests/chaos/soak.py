"""The long soak: the chaos driver's mixed workload, round after round on one daemon, for
a given time, with periodic kills (every third round) and connection cuts throughout; then
the same invariants, and the daemon's memory round by round.

    python -m tests.chaos.soak --minutes 30

Not in the default suite (see docs/reliability.md). Each round submits ``--jobs`` jobs of
the driver's mix (numbered on, so that every job has a witness of its own), every third
round while the daemon is killed ``--kills`` times, and checks every job as the driver
does. After each
round it records the daemon's resident memory; memory is flat when the last third of the
rounds stays within 25 % (and 20 MB) of the first third's highest.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import time
from pathlib import Path

from tests.chaos.driver import Figures, chaos_daemon, chaos_round, make_jobs


def _rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    found = re.search(r"^VmRSS:\s+(\d+)", status, re.MULTILINE)
    return int(found.group(1)) / 1024 if found else 0.0


def soak(minutes: float, workdir: Path, jobs: int, kills: int) -> tuple[Figures, list[float]]:
    """Run rounds until ``minutes`` passed; return the figures and the memory per round."""
    started = time.monotonic()
    figures = Figures()
    memory: list[float] = []
    with chaos_daemon(workdir) as (daemon, hooks, proxy):
        first = 0
        while time.monotonic() - started < minutes * 60:
            expected = make_jobs(jobs, workdir / "witness", hooks.url, 2.0, first=first)
            # Kills every third round: between them the daemon lives on for rounds, and
            # its memory shows whether anything accumulates.
            rounds = first // jobs
            chaos_round(daemon, hooks, proxy.port, figures, expected,
                        kills if rounds % 3 == 2 else 0, seed=first)
            figures.jobs += jobs
            first += jobs
            assert daemon.proc is not None
            memory.append(round(_rss_mb(daemon.proc.pid), 1))
            print(f"{(time.monotonic() - started) / 60:5.1f} min: {figures.jobs} jobs, "
                  f"{figures.kills} kills, {proxy.cuts} cuts, daemon {memory[-1]} MB, "
                  f"{'ok' if figures.ok else 'PROBLEMS'}", flush=True)
        figures.cuts = proxy.cuts
    figures.server_errors = daemon.log.read_text().count("internal error on")
    figures.seconds = round(time.monotonic() - started, 1)
    return figures, memory


def flat(memory: list[float]) -> bool:
    """Tell whether the memory of the last third of the rounds stayed near the first's."""
    third = max(1, len(memory) // 3)
    early, late = max(memory[:third]), max(memory[-third:])
    return late <= max(early * 1.25, early + 20)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=30)
    parser.add_argument("--jobs", type=int, default=200, help="jobs per round")
    parser.add_argument("--kills", type=int, default=3, help="daemon kills per round")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="acs") as tmp:
        figures, memory = soak(args.minutes, Path(tmp), args.jobs, args.kills)
    report = {k: v for k, v in figures.__dict__.items() if k != "problems"}
    report.update(rounds=len(memory), daemon_rss_mb_by_round=memory, memory_flat=flat(memory))
    print(json.dumps(report, indent=1))
    for problem in figures.problems[:50]:
        print("problem:", problem)
    sys.exit(0 if figures.ok and flat(memory) else 1)


if __name__ == "__main__":
    main()
