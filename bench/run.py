"""acjob's speed, each figure beside a baseline measured in the same run.

    python bench/run.py [--size-mib 1024] [--runs 20] [--jobs 500]

Starts its own daemon (local backend, a temporary state directory, a Unix socket),
then measures:

- stream: ``acjob cat < FILE > /dev/null`` against plain ``cat < FILE > /dev/null``
  (what acjob adds to moving the bytes: upload, spool, download);
- latency: ``acjob -n true`` against ``sh -c true`` (a whole CLI round trip against
  starting a process), and the Python client's submit + wait + read for ``true``
  against ``subprocess.run(["true"])``;
- submission: N jobs through one batch call and through N single calls, both until
  every job has ended.

Prints one line per figure: acjob's time, the baseline's, and the ratio. Numbers vary
with the machine; the ratios are what to compare between versions.
"""

from __future__ import annotations

import argparse
import os
import select
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import acjob


def _start_daemon(tmp: Path) -> tuple[subprocess.Popen[bytes], dict[str, str]]:
    sock = tmp / "d.sock"
    config = tmp / "bench.toml"
    config.write_text(f'[server]\nstate_dir = "{tmp / "state"}"\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ACJOB_", "XDG_"))}
    env.update(ACJOB_URL=f"unix:{sock}", XDG_RUNTIME_DIR=str(tmp),
               XDG_CONFIG_HOME=str(tmp / "config"))
    read_fd, write_fd = os.pipe()
    proc = subprocess.Popen(
        [sys.executable, "-m", "acjob.cli.ac", "serve", "--listen", f"unix:{sock}",
         "--config", str(config), "--ready-fd", str(write_fd)],
        env=env, pass_fds=(write_fd,), stdout=subprocess.DEVNULL,
        stderr=(tmp / "daemon.log").open("wb"))
    os.close(write_fd)
    ready, _, _ = select.select([read_fd], [], [], 60)
    if not ready or os.read(read_fd, 1) != b"1":
        proc.kill()
        sys.exit(f"the daemon did not start; see {tmp / 'daemon.log'}")
    os.close(read_fd)
    return proc, env


def _timed(action: Callable[[], object]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def _median(action: Callable[[], object], runs: int) -> float:
    return statistics.median(_timed(action) for _ in range(runs))


def _report(name: str, value: float, baseline: float, unit: str = "s") -> None:
    print(f"{name:<44} acjob {value:9.3f} {unit}   baseline {baseline:9.3f} {unit}"
          f"   ratio {value / baseline:7.2f}")


def _run(argv: list[str], env: dict[str, str], stdin: Path | None = None) -> None:
    with (stdin.open("rb") if stdin else open(os.devnull, "rb")) as source:
        result = subprocess.run(argv, stdin=source, stdout=subprocess.DEVNULL, env=env,
                                check=False)
    if result.returncode != 0:
        sys.exit(f"{argv} failed with {result.returncode}")


def main() -> None:
    """Run the benchmarks and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--jobs", type=int, default=500)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="acjob-bench") as name:
        tmp = Path(name)
        proc, env = _start_daemon(tmp)
        try:
            data = tmp / "data"
            with data.open("wb") as out:
                for _ in range(args.size_mib):
                    out.write(os.urandom(1 << 20))
            acjob_cli = [sys.executable, "-c", "from acjob.cli.acjob import main; main()"]
            _run([*acjob_cli, "-n", "true"], env)  # warm the daemon
            stream = _timed(lambda: _run([*acjob_cli, "cat"], env, data))
            raw = _timed(lambda: _run(["cat"], env, data))
            mib = args.size_mib
            _report(f"stream {mib} MiB through cat", stream, raw)
            print(f"{'':<44} acjob {mib / stream:9.1f} MiB/s baseline {mib / raw:9.1f} MiB/s")
            _report("CLI round trip: acjob -n true vs sh -c true",
                    _median(lambda: _run([*acjob_cli, "-n", "true"], env), args.runs),
                    _median(lambda: _run(["sh", "-c", "true"], env), args.runs))
            with acjob.Client(env["ACJOB_URL"]) as client:

                def round_trip() -> None:
                    job = client.submit(["true"])
                    job.wait()
                    b"".join(job.stdout())

                _report("client submit+wait+read vs subprocess.run",
                        _median(round_trip, args.runs),
                        _median(lambda: subprocess.run(["true"], check=True), args.runs))
                specs = [{"command": ["true"]} for _ in range(args.jobs)]

                def batch() -> None:
                    for job in client.submit_many(specs):
                        job.wait()

                def singles() -> None:
                    for job in [client.submit(["true"]) for _ in range(args.jobs)]:
                        job.wait()

                one_call = _timed(batch)
                many_calls = _timed(singles)
                _report(f"{args.jobs} jobs: one batch call vs single calls", one_call,
                        many_calls)
                print(f"{'':<44} {args.jobs / one_call:.0f} jobs/s batched, "
                      f"{args.jobs / many_calls:.0f} jobs/s one by one")
        finally:
            proc.terminate()
            proc.wait(timeout=30)


if __name__ == "__main__":
    main()
