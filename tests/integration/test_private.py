"""The private per-user daemon: started on demand, private, stopped on request or when idle."""

from __future__ import annotations

import stat
import subprocess
import sys
from pathlib import Path

from tests.conftest import tool_env, wait_for


def _tool(tool: str, *args: str, env: dict[str, str],
          input: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    module = {"acjob": "acjob.cli.acjob", "acpoll": "acjob.cli.acpoll", "ac": "acjob.cli.ac"}
    return subprocess.run([sys.executable, "-c", f"from {module[tool]} import main; main()",
                           *args], env=env, input=input, capture_output=True, timeout=120)


def test_first_use_starts_a_private_daemon(short_tmp: Path) -> None:
    env = tool_env(short_tmp)
    result = _tool("acjob", "-t", "pipe", "sort", env=env, input=b"b\na\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"a\nb\n"
    sock = short_tmp / "run" / "acjob" / "acjob.sock"
    assert stat.S_ISSOCK(sock.stat().st_mode)
    assert stat.S_IMODE(sock.stat().st_mode) == 0o600
    assert stat.S_IMODE(sock.parent.stat().st_mode) == 0o700
    spool = short_tmp / "state" / "acjob" / "spool"
    assert stat.S_IMODE(spool.stat().st_mode) == 0o700
    job_dir = next(spool.iterdir())
    assert stat.S_IMODE(job_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE((job_dir / "1" / "stdout").stat().st_mode) == 0o600
    # poll mode reuses the same daemon; a handle works with acpoll.
    handle = _tool("acjob", "-t", "poll", "echo again", env=env).stdout
    assert _tool("acpoll", env=env, input=handle).stdout == b"again\n"
    down = _tool("ac", "shutdown", env=env)
    assert down.returncode == 0, down.stderr
    wait_for(lambda: not sock.exists(), what="the daemon to stop")
    # The next use starts it again, with the same store.
    again = _tool("acpoll", handle.decode().strip(), env=env)
    assert again.stdout == b"again\n"
    _tool("ac", "shutdown", env=env)


def test_private_daemon_stops_when_idle(short_tmp: Path) -> None:
    config = short_tmp / "config" / "acjob" / "config.toml"
    config.parent.mkdir(parents=True)
    config.write_text("[server]\nidle_timeout = 1\n")
    env = tool_env(short_tmp)
    assert _tool("acjob", "true", env=env).returncode == 0
    sock = short_tmp / "run" / "acjob" / "acjob.sock"
    wait_for(lambda: not sock.exists(), timeout=60, what="the idle daemon to stop")
    log = (short_tmp / "state" / "acjob" / "daemon.log").read_text()
    assert "idle for" in log


def test_concurrent_first_uses_start_one_daemon(short_tmp: Path) -> None:
    env = tool_env(short_tmp)
    module = "from acjob.cli.acjob import main; main()"
    procs = [subprocess.Popen([sys.executable, "-c", module, "-n", f"echo {i}"], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for i in range(4)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [o for o, _ in outs] == [f"{i}\n".encode() for i in range(4)]
    log = (short_tmp / "state" / "acjob" / "daemon.log").read_text()
    assert log.count("acjob daemon listening") == 1
    assert "already" not in log
    _tool("ac", "shutdown", env=env)
