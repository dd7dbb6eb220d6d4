"""The real batch schedulers the tests run against, behind one small description each.

scripts/slurm-up and scripts/gridengine-up bring them up (root on Debian). A
scheduler that does not answer makes its tests skip with the reason; in CI
(CI=true) it fails them instead.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import acjob
from acjob.model import State
from tests.conftest import Daemon, client_for, tool_env, wait_for


def _answers(argv: list[str]) -> bool:
    try:
        return subprocess.run(argv, capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _stop_by_pid_file(pid_file: Path, sig: signal.Signals) -> None:
    pid = int(pid_file.read_text().split()[0])
    os.kill(pid, sig)
    wait_for(lambda: not Path(f"/proc/{pid}").exists(), what=f"{pid_file.name} to stop")


@dataclass(frozen=True)
class Scheduler:
    """What the contract tests need to know of one scheduler.

    Attributes:
        name: The acjob backend.
        probe: A command that succeeds when the scheduler answers.
        install_hint: What to run where it does not.
        options: The ``[backends.NAME]`` table for a fast test daemon.
        task_separator: Between an array's id and a task's number in native ids.
        cancel: The scheduler's own cancel command for a native id.
        stop_controller: Kill the controller (it must not come back by itself).
        start_controller: Start it again.
        refused_args: Raw options that make the scheduler refuse a job in words acjob
            does not know (recorded from the versions tested here).
        execd_pid_file: The execution daemon's pid file (slurmd, sge_execd).
        start_execd: Start the execution daemon again.
        declares_dead_hosts: Whether the controller declares a silent host dead by
            itself (Slurm, after SlurmdTimeout), failing its jobs; Grid Engine keeps them
            running until the host's daemon comes back and reports them gone.
    """

    name: str
    probe: list[str]
    install_hint: str
    options: str
    task_separator: str
    cancel: Callable[[str], list[str]]
    stop_controller: Callable[[], None]
    start_controller: Callable[[], None]
    refused_args: tuple[str, ...] = ()
    execd_pid_file: Callable[[], Path] = lambda: Path("/nonexistent")
    start_execd: Callable[[], None] = lambda: None
    declares_dead_hosts: bool = False

    def kill_host(self, wrapper_pid: int) -> None:
        """A compute host dies: SIGKILL its execution daemon, the job's own daemon
        process (slurmstepd, sge_shepherd: the wrapper's parent) and the job's processes
        (the wrapper's process group)."""
        step = int(Path(f"/proc/{wrapper_pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        group = os.getpgid(wrapper_pid)
        execd = int(self.execd_pid_file().read_text().split()[0])
        for pid in (execd, step):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signal.SIGKILL)
        for pid in (execd, step, wrapper_pid):
            wait_for(lambda pid=pid: not Path(f"/proc/{pid}").exists(), what=f"{pid} to die")

    def problem(self) -> str | None:
        """Say why the scheduler cannot be used here, if it cannot."""
        if not shutil.which(self.probe[0]):
            return f"{self.name} is not installed (run {self.install_hint} as root on Debian)"
        if not _answers(self.probe):
            return f"{self.name} does not answer ({' '.join(self.probe)} failed)"
        return None

    def require(self) -> None:
        """Skip (fail in CI) when the scheduler cannot be used."""
        problem = self.problem()
        if problem:
            if os.environ.get("CI") == "true":
                pytest.fail(f"{self.name} must run in CI: {problem}")
            pytest.skip(problem)


def _start_slurmctld() -> None:
    subprocess.run(["slurmctld"], timeout=60, check=True)
    wait_for(lambda: _answers(["squeue", "-h"]), timeout=60, what="slurmctld to answer")


def _start_execd(argv: list[str], state: str, probe: list[str] | None) -> None:
    """Start an execution daemon (if it is not running) and, with ``probe``, wait until
    the scheduler shows its host in ``state`` again."""
    if subprocess.run(["pgrep", "-x", Path(argv[0]).name], capture_output=True).returncode:
        subprocess.run(argv, timeout=60, check=True)
    if probe is not None:
        wait_for(lambda: subprocess.run(probe, capture_output=True, text=True)
                 .stdout.strip().rstrip("*") in (state, "mixed", "allocated"),
                 timeout=120, what=f"{argv[0]}'s host to come back")


def _start_qmaster() -> None:
    subprocess.run(["/usr/sbin/sge_qmaster"], timeout=60, check=True)
    wait_for(lambda: _answers(["qstat"]), timeout=60, what="sge_qmaster to answer")


SLURM = Scheduler(
    name="slurm",
    probe=["sinfo", "-h"],
    install_hint="scripts/slurm-up",
    options="",
    task_separator="_",
    cancel=lambda native: ["scancel", native],
    stop_controller=lambda: _stop_by_pid_file(Path("/run/slurmctld.pid"), signal.SIGTERM),
    start_controller=_start_slurmctld,
    # "Incompatible begin and deadline time specification"
    refused_args=("--begin=2099-01-01", "--deadline=2000-01-01"),
    execd_pid_file=lambda: Path("/run/slurmd.pid"),
    start_execd=lambda: _start_execd(["slurmd"], "idle", ["sinfo", "-h", "-o", "%T"]),
    declares_dead_hosts=True,
)

GRIDENGINE = Scheduler(
    name="gridengine",
    probe=["qstat"],
    install_hint="scripts/gridengine-up",
    options='parallel_environment = "smp"\n',
    task_separator=".",
    cancel=lambda native: ["qdel", *native.replace(".", " -t ").split()],
    stop_controller=lambda: _stop_by_pid_file(
        Path("/var/spool/gridengine/qmaster/qmaster.pid"), signal.SIGKILL),
    start_controller=_start_qmaster,
    refused_args=("-p", "99999"),  # 'invalid priority "99999". Must be an integer from …'
    execd_pid_file=lambda: next(Path("/var/spool/gridengine/execd").glob("*/execd.pid")),
    start_execd=lambda: _start_execd(["/usr/sbin/sge_execd"], "", None),
)

SCHEDULERS = [SLURM, GRIDENGINE]


def scheduler_daemon(sched: Scheduler, short_tmp: Path, options: str = "") -> Iterator[Daemon]:
    """Run a daemon whose default backend is ``sched``, polling it fast (``options``: more
    of its ``[backends.NAME]`` table); cancel what is left of its jobs afterwards."""
    sched.require()
    state = short_tmp / "state"
    config = short_tmp / "daemon.toml"
    config.write_text(
        f'[server]\nstate_dir = "{state}"\nbackend = "{sched.name}"\n'
        f"[backends.{sched.name}]\npoll_interval = 0.2\nmax_poll_interval = 2\n"
        f"lost_grace = 10\ncommand_timeout = 10\n{sched.options}{options}")
    sock = short_tmp / "d.sock"
    d = Daemon(state_dir=state, url=f"unix:{sock}",
               env=tool_env(short_tmp, ACJOB_URL=f"unix:{sock}"), config=config)
    d.start()
    try:
        yield d
    finally:
        cancel_leftovers(d)
        d.stop()


def cancel_leftovers(d: Daemon) -> None:
    """Cancel the daemon's unfinished jobs, so none is left in the scheduler."""
    if d.proc is None or d.proc.poll() is not None:
        return
    with client_for(d) as client:
        active = [s.value for s in State if not s.is_final]
        for info in client.list(state=active, limit=1000)[0]:
            client.cancel(info.id)


def until(client: acjob.Client, job_id: str, *states: State) -> acjob.JobInfo:
    """Wait for the job to reach one of ``states``; fail if it ends elsewhere."""
    info = client.get(job_id)
    while info.state not in states:
        assert not info.is_final, (info.state, info.reason)
        info = client.get(job_id, wait=30, since=info.seq)
    return info


def native_id_of(client: acjob.Client, job_id: str) -> str:
    """Wait until the job's first attempt has been submitted; return its native id."""

    def submitted() -> str | None:
        attempts = client.get(job_id).data["attempts"]
        return attempts[0]["native_id"] if attempts else None

    wait_for(submitted, what="the job to be submitted")
    native = submitted()
    assert native is not None
    return native
