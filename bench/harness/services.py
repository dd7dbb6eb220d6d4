"""What the peers and baselines need: their virtual environment, Redis, an sshd.

Each service is the bench's own: started on a free loopback port, in a temporary
directory, and stopped when its ``with`` block ends. Nothing here changes the system's
configuration; where a Debian package is missing, the bench says what it needs.
"""

from __future__ import annotations

import contextlib
import getpass
import hashlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from harness.processes import Started, free_port, run_checked, wait_until

PEER_REQUIREMENTS = (
    "celery[redis]>=5.4",
    "rq>=2.0",
    "huey>=3.0.2",  # 3.0.2 fixed waiting on notify_result's timeouts
    "redis>=5.0",
    "matplotlib>=3.8",
)
"""The peers, their Redis client and the chart's plotting library: the lower bounds the
bench was written against (pip takes the newest releases above them)."""


class Unavailable(Exception):
    """A service cannot be had on this machine; the message says why."""


def peers_venv(cache: Path, log: Path) -> Path:
    """The peers' virtual environment's Python, installed under ``cache`` the first time
    (and again whenever :data:`PEER_REQUIREMENTS` change).

    Raises:
        Unavailable: the virtual environment or the packages could not be installed.
    """
    key = hashlib.sha256("\n".join((sys.version, *PEER_REQUIREMENTS)).encode()).hexdigest()
    venv = cache / f"peers-{key[:12]}"
    python = venv / "bin" / "python"
    stamp = venv / ".installed"
    if stamp.exists():
        return python
    shutil.rmtree(venv, ignore_errors=True)
    print(f"installing the peers into {venv} (once): {' '.join(PEER_REQUIREMENTS)}",
          flush=True)
    try:
        with log.open("ab") as out:
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True,
                           stdout=out, stderr=out, timeout=300)
            subprocess.run([str(python), "-m", "pip", "install", "--quiet",
                            *PEER_REQUIREMENTS], check=True, stdout=out, stderr=out,
                           timeout=900)
    except (OSError, subprocess.SubprocessError) as exc:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-5:])
        raise Unavailable(f"the peers could not be installed ({exc}):\n{tail}") from exc
    stamp.write_text("\n".join(PEER_REQUIREMENTS) + "\n")
    return python


def _redis_answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


@contextlib.contextmanager
def redis_server(work: Path) -> Iterator[str]:
    """Debian's ``redis-server`` on a free loopback port, without persistence; yields
    its URL (``redis://127.0.0.1:PORT``).

    Raises:
        Unavailable: ``redis-server`` is not installed, or did not start.
    """
    program = shutil.which("redis-server")
    if program is None:
        raise Unavailable("redis-server is not installed (apt-get install redis-server)")
    port = free_port()
    home = work / "redis"
    home.mkdir()
    argv = [program, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(home),
            "--save", "", "--appendonly", "no", "--daemonize", "no", "--protected-mode", "yes",
            "--logfile", ""]
    proc = Started("redis-server", argv, work / "redis.log")
    try:
        try:
            wait_until(lambda: _redis_answers(port), timeout=30, what="redis-server",
                       proc=proc.proc)
        except RuntimeError as exc:
            raise Unavailable(f"{exc}\n{proc.log_tail()}") from exc
        yield f"redis://127.0.0.1:{port}"
    finally:
        proc.stop()


@dataclass(frozen=True)
class Ssh:
    """An sshd of the bench's own, and the ``ssh`` command that reaches it.

    Attributes:
        argv: ``ssh`` with every option, up to and including the destination; the
            remote command follows.
    """

    argv: tuple[str, ...]


def _openssh_server(cache: Path) -> tuple[Path, dict[str, str]]:
    """An ``sshd`` binary: the system's, else Debian's package unpacked under ``cache``
    (``apt-get download``, never installed). Returns it and the environment it needs."""
    system = Path("/usr/sbin/sshd")
    if system.exists():
        return system, {}
    root = cache / "openssh"
    sshd = root / "usr" / "sbin" / "sshd"

    def env() -> dict[str, str]:
        libs = {str(lib.parent) for lib in root.rglob("libwrap.so*")}
        return {"LD_LIBRARY_PATH": ":".join(sorted(libs))}

    if sshd.exists():
        return sshd, env()
    if not (shutil.which("apt-get") and shutil.which("dpkg-deb")):
        raise Unavailable("no sshd, and no apt-get to fetch Debian's openssh-server")
    with tempfile.TemporaryDirectory() as name:
        download = Path(name)
        download.chmod(0o755)
        try:
            # libwrap0 is the only library of openssh-server's that a base system lacks.
            run_checked(["apt-get", "download", "openssh-server", "libwrap0"], cwd=download,
                        timeout=300)
        except (OSError, RuntimeError, subprocess.TimeoutExpired) as exc:
            raise Unavailable(f"could not fetch openssh-server: {exc}") from exc
        unpacked = Path(tempfile.mkdtemp(dir=cache))
        for deb in download.glob("*.deb"):
            run_checked(["dpkg-deb", "-x", str(deb), str(unpacked)])
        shutil.rmtree(root, ignore_errors=True)
        unpacked.rename(root)
    return sshd, env()


@contextlib.contextmanager
def sshd(work: Path, cache: Path) -> Iterator[Ssh]:
    """An sshd on a free loopback port, with its own host key, client key and
    configuration in ``work``; the system's ``/etc/ssh`` is not read or changed.

    As root, sshd needs its privilege-separation user and ``/run/sshd``: they are given
    to it inside a mount namespace of its own (``unshare``), with a copy of
    ``/etc/passwd`` that adds the user and an empty ``/run``. As another user, sshd runs
    unprivileged and takes logins for that user only.

    Raises:
        Unavailable: no ssh client, no sshd to be had, or it did not start.
    """
    if shutil.which("ssh") is None or shutil.which("ssh-keygen") is None:
        raise Unavailable("no ssh client (apt-get install openssh-client)")
    program, env = _openssh_server(cache)
    home = work / "sshd"
    home.mkdir(mode=0o700)
    for key in ("host_key", "client_key"):
        run_checked(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(home / key)])
    shutil.copy(home / "client_key.pub", home / "authorized_keys")
    port = free_port()
    (home / "sshd_config").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {home / 'host_key'}\n"
        f"PidFile none\nAuthorizedKeysFile {home / 'authorized_keys'}\n"
        "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n"
        "PermitRootLogin prohibit-password\nStrictModes no\n")
    command = [str(program), "-D", "-e", "-f", str(home / "sshd_config")]
    if os.geteuid() == 0:
        if shutil.which("unshare") is None:
            raise Unavailable("sshd as root needs unshare (util-linux) to stay apart")
        passwd = home / "passwd"
        passwd.write_text(Path("/etc/passwd").read_text()
                          + "sshd:x:65534:65534:privilege separation:/run/sshd:"
                          "/usr/sbin/nologin\n")
        setup = (f"mount --bind {passwd} /etc/passwd && mount -t tmpfs -o mode=755 none /run"
                 " && mkdir -m 755 /run/sshd && exec \"$@\"")
        command = ["unshare", "--mount", "--propagation", "private", "sh", "-c", setup,
                   "sshd", *command]
    proc = Started("sshd", command, work / "sshd.log", env={**os.environ, **env})
    try:
        user = getpass.getuser()
        ssh = Ssh(("ssh", "-F", "/dev/null", "-p", str(port), "-i", str(home / "client_key"),
                   "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
                   "-o", f"UserKnownHostsFile={home / 'known_hosts'}",
                   "-o", "LogLevel=ERROR", f"{user}@127.0.0.1"))

        def answers() -> bool:
            return subprocess.run([*ssh.argv, "true"], capture_output=True, timeout=30,
                                  check=False).returncode == 0

        try:
            wait_until(answers, timeout=30, what="sshd", proc=proc.proc)
        except RuntimeError as exc:
            raise Unavailable(f"{exc}\n{proc.log_tail()}") from exc
        yield ssh
    finally:
        proc.stop()
