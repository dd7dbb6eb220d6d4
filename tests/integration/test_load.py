"""Load (issue 18): past the daemon's limit of requests at once, a client is told at
once with a 503 (never left hanging), and served again once there is room."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

import acjob
from tests.conftest import Daemon, configured_daemon


@pytest.fixture
def small(short_tmp: Path) -> Iterator[Daemon]:
    """A daemon that serves three requests at once."""
    yield from configured_daemon(short_tmp, "max_requests = 3\n")


def test_past_the_limit_a_client_gets_503_at_once_then_room_again(small: Daemon) -> None:
    transport = httpx.HTTPTransport(uds=small.url.removeprefix("unix:"))
    with httpx.Client(base_url="http://acjob", transport=transport, timeout=60) as http, \
            contextlib.ExitStack() as held:
        job = http.post("/v1/jobs", json={"command": "sleep 300"}).json()
        while job["state"] != "RUNNING":  # each answer comes as soon as the job changes
            job = http.get(f"/v1/jobs/{job['id']}", params={"wait": 30, "since": job["seq"]}
                           ).json()
        # Three follows of a running job: each holds its request open.
        streams = [held.enter_context(http.stream(
            "GET", f"/v1/jobs/{job['id']}/{which}", params={"follow": "true"}))
            for which in ("stdout", "stderr", "stdout")]
        assert all(s.status_code == 200 for s in streams)
        busy = http.get(f"/v1/jobs/{job['id']}")
        assert busy.status_code == 503 and busy.headers["retry-after"] == "1"
        assert busy.json()["error"]["code"] == "too_busy"
        assert "max_requests" in busy.json()["error"]["hint"]
        assert http.get("/v1/health").status_code == 200  # liveness is always answered
        streams[0].close()
        # The daemon notices the closed stream by itself; the next request is served.
        with acjob.Client(small.url, retry_for=30) as client:
            client.cancel(job["id"])
            assert client.wait(job["id"], timeout=60).state.value == "CANCELED"
