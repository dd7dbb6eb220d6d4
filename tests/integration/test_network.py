"""TCP with a token, and connections cut mid-transfer: output still exact."""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

import acjob
from tests.conftest import Daemon, free_port, tool_env
from tests.proxy import cutting_proxy

TOKEN = "s3cret-token-for-tests"



@pytest.fixture
def tcp_daemon(short_tmp: Path) -> Iterator[Daemon]:
    port = free_port()
    state = short_tmp / "state-tcp"
    config = short_tmp / "tcp.toml"
    config.write_text(f'[server]\nstate_dir = "{state}"\ntoken = "{TOKEN}"\n')
    env = tool_env(short_tmp, ACJOB_URL=f"http://127.0.0.1:{port}", ACJOB_TOKEN=TOKEN)
    d = Daemon(state_dir=state, url=f"http://127.0.0.1:{port}", env=env, config=config)
    d.start()
    try:
        yield d
    finally:
        d.stop()


def test_tcp_needs_the_token(tcp_daemon: Daemon) -> None:
    with httpx.Client(base_url=tcp_daemon.url) as http:
        assert http.get("/v1/health").status_code == 200
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
            response = http.get("/v1/jobs", headers=headers)
            assert response.status_code == 401
            assert response.json()["error"]["code"] == "unauthorized"
        assert http.post("/v1/jobs", json={"command": "true"}).status_code == 401
        ok = http.get("/v1/jobs", headers={"Authorization": f"Bearer {TOKEN}"})
        assert ok.status_code == 200
    env = dict(tcp_daemon.env)
    env.pop("ACJOB_TOKEN")
    denied = tcp_daemon.run("acjob", "true", env=env)
    assert denied.returncode == 255
    assert b"Error:" in denied.stderr and b"Try:" in denied.stderr
    assert tcp_daemon.run("acjob", "echo ok").stdout == b"ok\n"
    # The daemon's token (in its environment) never reaches a job.
    assert tcp_daemon.run("acjob", "echo ${ACJOB_TOKEN:-none}").stdout == b"none\n"


def _raw_get(url: str, target: str) -> int:
    """Send ``GET target`` exactly as given (no client normalises it); return the status."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=60) as conn:
        conn.sendall(f"GET {target} HTTP/1.1\r\nHost: acjob\r\nConnection: close\r\n\r\n"
                     .encode())
        head = conn.makefile("rb").readline()
    return int(head.split()[1])


@pytest.mark.parametrize("target", [
    "/v1/health/../jobs", "/v1/health/..%2Fjobs", "/v1/health%2F..%2Fjobs", "//v1/jobs",
    "/v1/./jobs", "/v1/health/", "/v1/health;/../jobs", "/V1/HEALTH", "/v1/jobs?/v1/health",
    "/v1/jobs#/v1/health", "/v1/health%00", "/./v1/health/../../metrics",
])
def test_path_tricks_do_not_pass_the_token_check(tcp_daemon: Daemon, target: str) -> None:
    assert _raw_get(tcp_daemon.url, "/v1/health") == 200
    assert _raw_get(tcp_daemon.url, target) == 401


def test_the_bearer_scheme_is_case_insensitive(tcp_daemon: Daemon) -> None:
    # RFC 7235: the scheme is case-insensitive; the token itself is not.
    with httpx.Client(base_url=tcp_daemon.url) as http:
        for given in (f"bearer {TOKEN}", f"BEARER {TOKEN}", f"bEaReR  {TOKEN}"):
            assert http.get("/v1/jobs", headers={"Authorization": given}).status_code == 200
        for given in (f"bearer {TOKEN.upper()}", f"Basic {TOKEN}", f"bearer{TOKEN}",
                      f"bearer {TOKEN}x", f"bearer x{TOKEN}", "bearer", f"{TOKEN} bearer"):
            response = http.get("/v1/jobs", headers={"Authorization": given})
            assert response.status_code == 401, given


def test_the_token_is_taken_as_an_http_basic_password(tcp_daemon: Daemon) -> None:
    """For TES clients that can only send Basic credentials (Toil, Nextflow, a URL with
    user:password@): any user name, the token as the password; nothing else passes."""
    import base64

    def basic(user: str, password: str) -> str:
        return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()

    tasks = "/ga4gh/tes/v1/tasks"
    with httpx.Client(base_url=tcp_daemon.url, auth=("toil", TOKEN)) as http:
        assert http.get(tasks).status_code == 200
        assert http.get("/v1/jobs").status_code == 200
    host = tcp_daemon.url.removeprefix("http://")
    assert httpx.get(f"http://anyone:{TOKEN}@{host}{tasks}").status_code == 200
    with httpx.Client(base_url=tcp_daemon.url) as http:
        for given in (basic("u", TOKEN + "x"), basic(TOKEN, ""), basic("", TOKEN[:-1]),
                      "Basic " + base64.b64encode(TOKEN.encode()).decode(),  # no colon
                      f"Basic {TOKEN}", "Basic !!!", basic("u", TOKEN) + "!"):
            response = http.get(tasks, headers={"Authorization": given})
            assert response.status_code == 401, given
            assert "Basic" in response.headers["www-authenticate"]
        assert http.get(tasks, headers={"Authorization": basic("", TOKEN)}).status_code == 200


@pytest.mark.parametrize("host", ["0.0.0.0", "127.0.0.1"])
def test_refuses_tcp_without_token(short_tmp: Path, host: str) -> None:
    env = tool_env(short_tmp)
    result = subprocess.run(
        [sys.executable, "-m", "acjob.cli.ac", "serve", "--listen", f"{host}:{free_port()}"],
        env=env, capture_output=True, timeout=60)
    assert result.returncode == 1
    assert b"without a token" in result.stderr and b"Try:" in result.stderr


def test_cut_connections_lose_and_repeat_nothing(tcp_daemon: Daemon) -> None:
    data = os.urandom(24 << 20)
    port = int(tcp_daemon.url.rsplit(":", 1)[1])
    with cutting_proxy("127.0.0.1", port, cut_after=3 << 20) as proxy:
        env = dict(tcp_daemon.env, ACJOB_URL=f"http://127.0.0.1:{proxy.port}")
        result = tcp_daemon.run("acjob", "cat", input=data, env=env, timeout=300)
        assert result.returncode == 0, result.stderr[-2000:]
        assert hashlib.sha256(result.stdout).hexdigest() == hashlib.sha256(data).hexdigest()
        assert proxy.cuts >= 10  # both the upload and the download were cut repeatedly


def test_python_client_through_cuts(tcp_daemon: Daemon) -> None:
    data = os.urandom(10 << 20)
    port = int(tcp_daemon.url.rsplit(":", 1)[1])
    with cutting_proxy("127.0.0.1", port, cut_after=2 << 20) as proxy, \
            acjob.Client(f"http://127.0.0.1:{proxy.port}", TOKEN) as client:
        job = client.submit(["sha256sum"], stdin=data)
        info = job.wait()
        assert info.state is acjob.State.COMPLETE
        out = b"".join(job.stdout())
        assert out.split()[0].decode() == hashlib.sha256(data).hexdigest()
        again = b"".join(client.stream(job.id, "stdout", offset=10))
        assert again == out[10:]
        assert proxy.cuts >= 4


def test_unusable_spool_is_refused_at_start(short_tmp: Path) -> None:
    blocker = short_tmp / "a-file"
    blocker.write_text("not a directory")
    config = short_tmp / "bad.toml"
    config.write_text(f'[server]\nstate_dir = "{short_tmp}/st"\nspool = "{blocker}/spool"\n')
    result = subprocess.run(
        [sys.executable, "-m", "acjob.cli.ac", "serve", "--config", str(config), "--listen",
         f"unix:{short_tmp}/x.sock"], env=tool_env(short_tmp), capture_output=True, timeout=60)
    assert result.returncode == 1
    assert result.stderr.startswith(b"Error: cannot create the spool")
    assert b"Traceback" not in result.stderr


def test_another_local_user_cannot_connect(daemon, short_tmp: Path) -> None:  # type: ignore[no-untyped-def]
    """Unix-socket mode: the socket's mode is the access control."""
    import os
    import pwd

    if os.geteuid() != 0:
        pytest.skip("needs root to act as a second user")
    name = "acjobtest"
    if subprocess.run(["id", name], capture_output=True).returncode != 0:
        subprocess.run(["useradd", "--system", "--no-create-home", name], check=True)
    user = pwd.getpwnam(name)
    sock = daemon.url.removeprefix("unix:")
    # The probe first proves that it runs as nobody privileged: not root, and not in
    # root's groups either (which a plain setuid would keep).
    probe = ("import os,socket,sys\n"
             "if os.geteuid() == 0 or os.getegid() == 0 or 0 in os.getgroups(): sys.exit(3)\n"
             "s=socket.socket(socket.AF_UNIX)\n"
             f"try:\n s.connect({sock!r})\nexcept PermissionError:\n sys.exit(13)\n"
             "sys.exit(0)\n")
    # Let the user reach the socket's directory, so only the socket's own mode decides.
    os.chmod(short_tmp, 0o755)
    # The system Python: the test's own may live where the other user cannot read.
    python = "/usr/bin/python3"
    if not os.access(python, os.X_OK):
        pytest.skip("no system python3 to run as the second user")
    result = subprocess.run([python, "-c", probe], user=user.pw_uid, group=user.pw_gid,
                            extra_groups=[], capture_output=True, timeout=60)
    assert result.returncode == 13, result.stderr
    # The same probe as the daemon's own user (root here) connects: the socket is usable.
    own = probe.replace("sys.exit(3)", "pass")
    assert subprocess.run([sys.executable, "-c", own], timeout=60).returncode == 0


def test_token_never_in_the_log(tcp_daemon: Daemon) -> None:
    assert tcp_daemon.run("acjob", "true").returncode == 0
    with httpx.Client(base_url=tcp_daemon.url) as http:
        http.get("/v1/jobs", headers={"Authorization": "Bearer wrong-token"})
    tcp_daemon.stop()
    log = tcp_daemon.log.read_text()
    assert TOKEN not in log and "wrong-token" not in log


def test_every_endpoint_but_health_needs_the_token(tcp_daemon: Daemon) -> None:
    with httpx.Client(base_url=tcp_daemon.url) as http:
        spec = http.get("/openapi.json", headers={"Authorization": f"Bearer {TOKEN}"}).json()
        for path, operations in spec["paths"].items():
            for method in operations:
                url = path.replace("{job_id}", "a" * 26)
                response = http.request(method.upper(), url)
                if path == "/v1/health":
                    assert response.status_code == 200
                else:
                    assert response.status_code == 401, (method, path)
        for extra in ("/openapi.json", "/docs", "/metrics"):
            assert http.get(extra).status_code == 401
