"""The spool's file system fills up: the daemon keeps serving, the jobs hit end in
SYSTEM_ERROR with a clear reason, and nothing else is lost."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from acjob.model import State
from tests.conftest import Daemon, client_for, tool_env


@pytest.fixture
def small_spool(short_tmp: Path) -> Iterator[Path]:
    if os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip("needs root to mount a small tmpfs")
    spool = short_tmp / "spool"
    spool.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m,mode=0700", "tmpfs", str(spool)],
                   check=True)
    try:
        yield spool
    finally:
        subprocess.run(["umount", "-l", str(spool)], check=False)


def test_full_spool(short_tmp: Path, small_spool: Path) -> None:
    state = short_tmp / "state"
    config = short_tmp / "full.toml"
    config.write_text(f'[server]\nstate_dir = "{state}"\nspool = "{small_spool}"\n'
                      "[backends.local]\nslots = 2\n")
    sock = short_tmp / "d.sock"
    daemon = Daemon(state_dir=state, url=f"unix:{sock}",
                    env=tool_env(short_tmp, ACJOB_URL=f"unix:{sock}"), config=config)
    daemon.start()
    try:
        with client_for(daemon) as client:
            before = client.submit("echo before")
            assert before.wait(timeout=60).state is State.COMPLETE
            # It holds one of the two slots from before the spool fills up: a job that
            # needs both waits for room, its stdin still wanted, while the spool is full.
            blocker = client.submit("sleep 600")
            info = blocker.status()
            while info.state is not State.RUNNING:
                info = client.get(blocker.id, wait=30, since=info.seq)
            filler = client.submit("head -c 10000000 /dev/zero")
            info = filler.wait(timeout=60)
            assert info.state is State.SYSTEM_ERROR
            assert info.reason is not None and "full" in info.reason
            # Still serving, and what was there before is intact.
            transport = httpx.HTTPTransport(uds=str(sock))
            with httpx.Client(transport=transport, base_url="http://acjob") as http:
                assert http.get("/v1/health").status_code == 200
                upload = http.post("/v1/jobs", json={"command": "cat", "stdin": "upload",
                                                     "resources": {"cpus": 2}})
                assert upload.status_code == 201
                big = http.put(f"/v1/jobs/{upload.json()['id']}/stdin",
                               content=b"x" * (1 << 20))
                assert big.status_code == 507
                assert big.json()["error"]["code"] == "storage_full"
            client.cancel(upload.json()["id"])
            client.cancel(blocker.id)
            assert b"".join(before.stdout()) == b"before\n"
            during = client.submit("echo during").wait(timeout=60)
            assert during.state is not State.COMPLETE or b"".join(
                client.stream(during.id)) == b"during\n"
            # An operator frees space: jobs run again.
            for path in small_spool.glob(f"{filler.id}/*/stdout"):
                path.unlink()
            after = client.submit("echo after")
            assert after.wait(timeout=60).state is State.COMPLETE
            assert b"".join(after.stdout()) == b"after\n"
    finally:
        daemon.stop()
    assert "internal error" not in daemon.log.read_text()
