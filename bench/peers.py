"""acjob beside its peers (Huey, Celery, RQ) and raw baselines, measured in one run.

    python bench/peers.py [--quick] [--out DIR] [--cache DIR]
                          [--no-peers] [--no-ssh] [--no-slurm] [sizes...]

Run it with the Python that has acjob installed (e.g. ``.venv/bin/python``). It

- installs the peers (Celery, RQ, Huey, the redis client, matplotlib) in a virtual
  environment of their own under ``--cache`` (once), and starts Debian's ``redis-server``
  on a free loopback port, in a temporary directory, without persistence;
- starts acjob's daemon (local backend, 2 slots, a temporary state directory and Unix
  socket) and measures it through its Python client and its CLI;
- runs each peer with two worker processes (Huey with result notification) on the same
  work, ``sh -c true``: round trip of one job, submissions per second from one client
  and from concurrent clients, jobs one by one end to end; and acjob's batch;
- takes the raw baselines in the same run: a ``cat`` pipe, spawning ``sh -c true``,
  ``python3 -c pass``, ``ssh localhost`` (an sshd of its own on a loopback port, where
  one can be had) and raw ``sbatch`` (where Slurm answers), beside acjob doing the same;
- prints every figure beside its baselines with acjob's ratio, checks issue 14's goals,
  and writes ``results.json``, ``table.md`` and ``chart.png`` to ``--out``.

Everything it starts is stopped at the end, also on errors and Ctrl-C. ``--quick`` is a
small run for CI (seconds, not minutes); there, peers that cannot be installed are
skipped with a note. ssh and Slurm are skipped, with the reason, where they cannot be
had. docs/performance.md explains each figure and holds the latest full run.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import functools
import json
import os
import platform
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

import acjob

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from harness import report, services, slurm  # noqa: E402
from harness.acjob_side import (  # noqa: E402
    AcjobSystem,
    daemon,
    first_byte_seconds,
    queue_figures,
    shell,
)
from harness.common import measure_queue, median_seconds, paired_median_seconds  # noqa: E402
from harness.processes import Started  # noqa: E402

LOCAL = "[backends.local]\nslots = 2\n"
"""The daemon's local backend: two slots, as the peers have two worker processes."""

FULL = {"runs": 50, "jobs": 500, "clients": 16, "repeat": 3, "size_mib": 1024,
        "pause": 3.0, "slurm_runs": 5, "slurm_jobs": 20}
QUICK = {"runs": 3, "jobs": 20, "clients": 4, "repeat": 1, "size_mib": 8, "pause": 0.5,
         "slurm_runs": 1, "slurm_jobs": 3}

Values = defaultdict[str, dict[str, float]]


class Run:
    """One bench run: its settings, what it measured, what it skipped and why."""

    def __init__(self, args: argparse.Namespace) -> None:
        defaults = QUICK if args.quick else FULL
        self.settings: dict[str, Any] = {
            key: getattr(args, key) if getattr(args, key) is not None else default
            for key, default in defaults.items()}
        self.settings["quick"] = args.quick
        self.settings["size"] = _size_name(self.settings["size_mib"])
        self.values: Values = defaultdict(dict)
        self.skipped: dict[str, str] = {}
        self.failures: list[str] = []
        self.versions: dict[str, str] = {"acjob": acjob.__version__}
        self.load_before = os.getloadavg()
        self.commit = _commit()  # what is measured: the tree as the run starts
        self.cache: Path = args.cache
        self.out: Path = args.out

    @property
    def size_bytes(self) -> int:
        """The stream size in bytes."""
        return int(self.settings["size_mib"]) << 20

    def skip(self, what: str, reason: str, *, failure: bool = False) -> None:
        """Record (and say) that ``what`` was not measured; a failure fails the run."""
        self.skipped[what] = reason
        print(f"\n!! {what} skipped: {reason}\n", file=sys.stderr, flush=True)
        if failure:
            self.failures.append(what)


def _size_name(mib: int) -> str:
    return f"{mib >> 10} GiB" if mib % 1024 == 0 else f"{mib} MiB"


def _say(message: str) -> None:
    print(f"== {message}", flush=True)


def _mb_per_s(size: int, seconds: float) -> float:
    return size / seconds / 1e6


def _producer(pause: float) -> str:
    return f"(echo a; sleep {pause}; echo b)"


# -- the raw baselines and acjob ---------------------------------------------------------


def measure_raw(run: Run, tmp: Path) -> None:
    """Spawning ``sh -c true``, the ``cat`` pipe, and durable writes (``fdatasync``) where
    the daemons keep their state (``python3 -c pass`` is timed in turn with acjob's CLI)."""
    values, runs, jobs = run.values, run.settings["runs"], run.settings["jobs"]
    _say("raw baselines: spawn, cat pipe, fdatasync")
    values["submit_one_client"]["fsync"] = durable_appends_per_second(tmp, jobs)

    def spawn() -> None:
        subprocess.run(["sh", "-c", "true"], check=True)

    one = median_seconds(spawn, runs)
    values["round_trip_ms"]["spawn"] = one * 1000
    values["cli_start_ms"]["sh"] = one * 1000
    start = time.perf_counter()
    for _ in range(jobs):
        spawn()
    rate = jobs / (time.perf_counter() - start)
    values["e2e_one_by_one"]["spawn"] = values["e2e_batch"]["spawn"] = rate
    seconds, _ = shell(f"head -c {run.size_bytes} /dev/zero | cat > /dev/null")
    values["stream_out"]["pipe"] = values["stream_through"]["pipe"] = _mb_per_s(
        run.size_bytes, seconds)
    values["live_pipe_first_byte"]["pipe"] = first_byte_seconds(
        ["sh", "-c", f"{_producer(run.settings['pause'])} | cat"])


def durable_appends_per_second(directory: Path, count: int) -> float:
    """Append 4 KiB to a file in ``directory`` and ``fdatasync`` it, ``count`` times: the
    rate of a writer that waits for each write to reach the disk, as a client waits for
    each acknowledged submission (goal 7). No Python, HTTP or database work is in it."""
    path = directory / "fsync-baseline"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        block = b"\0" * 4096
        start = time.perf_counter()
        for _ in range(count):
            os.write(fd, block)
            os.fdatasync(fd)
        return count / (time.perf_counter() - start)
    finally:
        os.close(fd)
        path.unlink()


def measure_acjob(run: Run, tmp: Path) -> None:
    """acjob's CLI, streams and job figures, on a daemon of its own; then the job figures
    again on a daemon that fsyncs every commit (``synchronous = "full"``)."""
    values, settings = run.values, run.settings
    with daemon(tmp / "acjob", LOCAL) as d:
        cli = shlex.join(d.cli())
        _say(f"acjob: CLI start, streams of {settings['size']}, live pipe")
        # Started as python3 -c pass is, with no shell before it, and in turn with it:
        # their ratio is the goal's.
        trivial = [*d.cli(), "-n", "true"]
        shell(trivial, d.env)  # the first job warms the daemon up
        cli_s, python_s = paired_median_seconds(
            lambda: shell(trivial, d.env),
            lambda: subprocess.run([sys.executable, "-c", "pass"], check=True),
            min(settings["runs"], 20))
        values["cli_start_ms"]["acjob"] = cli_s * 1000
        values["cli_start_ms"]["python"] = python_s * 1000
        head = f"head -c {run.size_bytes} /dev/zero"
        seconds, rss_out = shell(f"{cli} -n {shlex.quote(head)} > /dev/null", d.env)
        values["stream_out"]["acjob"] = _mb_per_s(run.size_bytes, seconds)
        seconds, rss_through = shell(f"{head} | {cli} -t pipe cat > /dev/null", d.env)
        values["stream_through"]["acjob"] = _mb_per_s(run.size_bytes, seconds)
        values["stream_out_client_rss"]["acjob"] = rss_out
        values["stream_through_client_rss"]["acjob"] = rss_through
        values["daemon_rss"]["acjob"] = d.peak_rss_mb()
        values["live_pipe_first_byte"]["acjob"] = first_byte_seconds(
            ["sh", "-c", f"{_producer(settings['pause'])} | {cli} -t pipe cat"], env=d.env)
        _say(f"acjob: jobs through the Python client ({settings['jobs']} jobs, "
             f"{settings['clients']} concurrent clients)")
        for key, value in queue_figures(d, runs=settings["runs"], jobs=settings["jobs"],
                                        clients=settings["clients"],
                                        repeat=settings["repeat"]).items():
            values[key]["acjob"] = value
    _say("acjob with synchronous = \"full\" (an fsync per commit): the same job figures")
    with daemon(tmp / "acjob-full", f'synchronous = "full"\n{LOCAL}') as d:
        system = AcjobSystem(d.url)
        try:
            figures = measure_queue(system, functools.partial(AcjobSystem, d.url),
                                    runs=settings["runs"], jobs=settings["jobs"],
                                    clients=settings["clients"], repeat=settings["repeat"])
        finally:
            system.client.close()
        for key, value in figures.items():
            values[key]["acjob_fsync"] = value


# -- ssh ---------------------------------------------------------------------------------


def measure_ssh(run: Run, tmp: Path) -> None:
    """The same streams and live pipe through ``ssh`` to an sshd of the bench's own."""
    _say("ssh localhost: streams and live pipe")
    try:
        with services.sshd(tmp, run.cache) as ssh:
            command = shlex.join(ssh.argv)
            head = f"head -c {run.size_bytes} /dev/zero"
            seconds, _ = shell(f"{command} {shlex.quote(head)} > /dev/null")
            run.values["stream_out"]["ssh"] = _mb_per_s(run.size_bytes, seconds)
            seconds, _ = shell(f"{head} | {command} cat > /dev/null")
            run.values["stream_through"]["ssh"] = _mb_per_s(run.size_bytes, seconds)
            run.values["live_pipe_first_byte"]["ssh"] = first_byte_seconds(
                ["sh", "-c", f"{_producer(run.settings['pause'])} | {command} cat"])
            version = subprocess.run(["ssh", "-V"], capture_output=True, check=False)
            run.versions["ssh"] = version.stderr.decode().strip()
    except services.Unavailable as exc:
        run.skip("ssh", str(exc))


# -- the peers ---------------------------------------------------------------------------


def _redis_version() -> str:
    out = subprocess.run(["redis-server", "--version"], capture_output=True, check=False)
    return out.stdout.decode().split(" sha=")[0].strip()


def measure_peers(run: Run, tmp: Path) -> None:
    """Huey, Celery and RQ, one after the other, each through the peer driver in the
    peers' virtual environment, on one Redis (a database each)."""
    settings = run.settings
    failure = not settings["quick"]
    try:
        python = services.peers_venv(run.cache, tmp / "peers-install.log")
        with services.redis_server(tmp) as url:
            run.versions["redis-server"] = _redis_version()
            for database, name in enumerate(report.PEERS, 1):
                _say(f"{name}: two worker processes on Redis")
                result = tmp / f"{name}.json"
                env = {**os.environ, "PYTHONPATH": str(BENCH),
                       "BENCH_REDIS_URL": f"{url}/{database}"}
                driver = Started(
                    f"{name} driver",
                    [str(python), "-m", "harness.peer_driver", name,
                     "--runs", str(settings["runs"]), "--jobs", str(settings["jobs"]),
                     "--clients", str(settings["clients"]),
                     "--repeat", str(settings["repeat"]), "--logs", str(tmp),
                     "--out", str(result)],
                    tmp / f"{name}-driver.log", env=env, cwd=tmp)
                try:
                    code = driver.proc.wait(timeout=1800)
                finally:
                    driver.stop(grace=30)
                if code != 0 or not result.exists():
                    run.skip(name, f"its measurement failed ({code}):\n{driver.log_tail()}",
                             failure=True)
                    continue
                answer = json.loads(result.read_text())
                run.versions[name] = answer["version"]
                for key, value in answer["figures"].items():
                    run.values[key][name] = value
    except services.Unavailable as exc:
        for name in report.PEERS:
            run.skip(name, str(exc), failure=failure)


# -- Slurm -------------------------------------------------------------------------------


def measure_slurm(run: Run, tmp: Path) -> None:
    """acjob on Slurm beside raw ``sbatch``, where Slurm answers."""
    problem = slurm.problem()
    if problem:
        run.skip("slurm", problem)
        return
    _say("Slurm: sbatch --wait and sequential sbatch, then acjob on Slurm")
    version = subprocess.run(["sbatch", "--version"], capture_output=True, check=False)
    run.versions["slurm"] = version.stdout.decode().strip()
    # How soon Slurm starts a job submitted while its node is busy is the cluster's own
    # setting (batch_sched_delay); the round trip depends on it, so the run records it.
    config = subprocess.run(["scontrol", "show", "config"], capture_output=True, check=False)
    run.versions["slurm SchedulerParameters"] = next(
        (line.split("=", 1)[1].strip() for line in config.stdout.decode().splitlines()
         if line.startswith("SchedulerParameters")), "unknown")
    work = tmp / "sbatch"
    work.mkdir()
    runs, jobs = run.settings["slurm_runs"], run.settings["slurm_jobs"]
    for key, value in slurm.raw_figures(work, runs=runs, jobs=jobs).items():
        run.values[key]["sbatch"] = value
    for key, value in slurm.acjob_figures(tmp / "acjob-slurm", runs=runs, jobs=jobs).items():
        run.values[key]["acjob"] = value


# -- the report --------------------------------------------------------------------------


def _commit() -> str:
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(BENCH.parent), *args], capture_output=True,
                              check=False, text=True).stdout.strip()

    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    return commit + ("-dirty" if git("status", "--porcelain", "--untracked-files=no") else "")


def results_of(run: Run, started: float) -> dict[str, Any]:
    """The run as the JSON document the bench writes."""
    values = {key: dict(measured) for key, measured in run.values.items()}
    return {
        "meta": {
            "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "commit": run.commit, "acjob_version": acjob.__version__,
            "host": platform.node(), "cpus": os.cpu_count(),
            "platform": platform.platform(), "python": platform.python_version(),
            "versions": run.versions, "seconds": round(time.monotonic() - started, 1),
            # The machine may be shared: its load says how quiet the run had it.
            "load_average_before": run.load_before, "load_average_after": os.getloadavg(),
        },
        "settings": run.settings,
        "figures": {f.key: {"title": report.title(f, run.settings), "unit": f.unit,
                            "higher_is_better": f.higher_is_better,
                            "values": values[f.key]}
                    for f in report.FIGURES if f.key in values},
        "ratios": report.ratios(values),
        "goals": report.check_goals(values, run.settings),
        "skipped": run.skipped,
    }


def draw_chart(run: Run, results_file: Path, chart: Path) -> str | None:
    """Draw the chart with a Python that has matplotlib (the peers', else this one);
    return why not, if it could not be drawn."""
    candidates = [p for p in run.cache.glob("peers-*/bin/python")
                  if (p.parent.parent / ".installed").exists()] + [Path(sys.executable)]
    for python in candidates:
        has = subprocess.run([str(python), "-c", "import matplotlib"], capture_output=True,
                             check=False)
        if has.returncode == 0:
            drawn = subprocess.run(
                [str(python), "-m", "harness.chart", str(results_file), str(chart)],
                env={**os.environ, "PYTHONPATH": str(BENCH)}, capture_output=True, text=True,
                check=False)
            if drawn.returncode == 0:
                return None
            return f"matplotlib failed: {drawn.stderr.strip()[-1000:]}"
    return "no Python with matplotlib (it comes with the peers' environment)"


# -- the command -------------------------------------------------------------------------


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def parse(argv: list[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="Sizes default to a full run (runs 50, jobs 500, clients 16, repeat 3, "
               "size 1024 MiB, pause 3, Slurm runs 5 and jobs 20), or with --quick to runs 3, "
               "jobs 20, clients 4, repeat 1, size 8 MiB, pause 0.5, Slurm runs 1 and jobs 3.")
    parser.add_argument("--quick", action="store_true",
                        help="a small run for CI; peers that cannot be installed are skipped")
    parser.add_argument("--out", type=Path, default=BENCH / "results",
                        help="where results.json, table.md and chart.png go "
                             "(default: bench/results)")
    parser.add_argument("--cache", type=Path,
                        default=Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
                        / "acjob-bench",
                        help="where the peers' virtual environment and an unpacked sshd are "
                             "kept between runs (default: ~/.cache/acjob-bench)")
    parser.add_argument("--no-peers", action="store_true",
                        help="measure acjob and the raw baselines only (no install, no Redis)")
    parser.add_argument("--no-ssh", action="store_true", help="skip the ssh baseline")
    parser.add_argument("--no-slurm", action="store_true", help="skip Slurm")
    sizes = parser.add_argument_group("sizes")
    sizes.add_argument("--runs", type=int, help="round trips per median")
    sizes.add_argument("--jobs", type=int, help="jobs per throughput figure")
    sizes.add_argument("--clients", type=int, help="concurrent submitting clients")
    sizes.add_argument("--repeat", type=int,
                       help="passes of the job figures; each figure is their median")
    sizes.add_argument("--size-mib", type=int, help="MiB per stream")
    sizes.add_argument("--pause", type=float, help="seconds the live-pipe producer pauses")
    sizes.add_argument("--slurm-runs", type=int, help="Slurm round trips per median")
    sizes.add_argument("--slurm-jobs", type=int, help="jobs per Slurm submission figure")
    args = parser.parse_args(argv)
    for key in FULL:
        value = getattr(args, key)
        if value is not None and value <= 0:
            parser.error(f"--{key.replace('_', '-')} must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the bench; return the exit status (1 if a peer could not be measured in a
    full run)."""
    args = parse(argv)
    run = Run(args)
    started = time.monotonic()
    signal.signal(signal.SIGTERM, _terminate)
    args.out.mkdir(parents=True, exist_ok=True)
    args.cache.mkdir(parents=True, exist_ok=True)
    phases: list[tuple[str, Callable[[Run, Path], None]]] = [
        ("acjob", measure_acjob)]
    if args.no_ssh:
        run.skip("ssh", "not asked for (--no-ssh)")
    else:
        phases.append(("ssh", measure_ssh))
    if args.no_peers:
        for name in report.PEERS:
            run.skip(name, "not asked for (--no-peers)")
    else:
        phases.append(("peers", measure_peers))
    if args.no_slurm:
        run.skip("slurm", "not asked for (--no-slurm)")
    else:
        phases.append(("slurm", measure_slurm))
    try:
        with tempfile.TemporaryDirectory(prefix="acb") as name:
            tmp = Path(name)
            measure_raw(run, tmp)
            for _, phase in phases:
                phase(run, tmp)
    except KeyboardInterrupt:
        print("\ninterrupted: everything the bench started has been stopped", file=sys.stderr)
        return 130
    results = results_of(run, started)
    results_file = args.out / "results.json"
    results_file.write_text(json.dumps(results, indent=2) + "\n")
    (args.out / "table.md").write_text(report.markdown_report(results))
    print()
    print(report.text_report(results))
    problem = draw_chart(run, results_file, args.out / "chart.png")
    if problem:
        results["skipped"]["chart"] = problem
        results_file.write_text(json.dumps(results, indent=2) + "\n")
        print(f"chart not drawn: {problem}", file=sys.stderr)
    with contextlib.suppress(ValueError):
        shown = args.out.resolve().relative_to(Path.cwd())
        args.out = shown
    print(f"\nwrote {args.out / 'results.json'}, {args.out / 'table.md'}"
          + ("" if problem else f", {args.out / 'chart.png'}"))
    if run.failures:
        print(f"failed: {', '.join(run.failures)} could not be measured", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
