"""Findings of the security review (issue 12), each kept by a test over the real daemon."""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import Daemon, tool_env, wait_for


@pytest.fixture
def held(short_tmp: Path) -> Iterator[Daemon]:
    """A daemon on a Unix socket that accepts jobs but starts none (so it never calls back)."""
    state = short_tmp / "held-state"
    sock = short_tmp / "h.sock"
    config = short_tmp / "held.toml"
    config.write_text(f'[server]\nstate_dir = "{state}"\nhold = true\n'
                      '[webhook]\nsecret = "held-webhook-secret"\n')
    d = Daemon(state_dir=state, url=f"unix:{sock}",
               env=tool_env(short_tmp, ACJOB_URL=f"unix:{sock}"), config=config)
    d.start()
    try:
        yield d
    finally:
        d.stop()


@pytest.fixture
def http(held: Daemon) -> Iterator[httpx.Client]:
    transport = httpx.HTTPTransport(uds=held.url.removeprefix("unix:"))
    with httpx.Client(base_url="http://acjob", transport=transport, timeout=60) as client:
        yield client


def _gauges(http: httpx.Client) -> tuple[int, int]:
    """Return (hub waiters, requests in flight), this scrape included."""
    text = http.get("/metrics").text
    found = dict(re.findall(r"^(acjob_waiters|acjob_http_requests_in_flight) (\S+)$", text,
                            re.MULTILINE))
    return int(float(found["acjob_waiters"])), int(float(found["acjob_http_requests_in_flight"]))


def test_requests_whose_clients_left_stop_waiting(held: Daemon, http: httpx.Client) -> None:
    job = http.post("/v1/jobs", json={"command": "true"}).json()
    assert job["attempt"] == 0  # held: it never starts, so every wait below lasts
    # Before the response starts (a follow of a job with no attempt yet, a long-poll) and
    # after it started (the event stream has sent the job's first event).
    paths = [f"/v1/jobs/{job['id']}/stdout?follow=true",
             f"/v1/jobs/{job['id']}/stderr?follow=true",
             f"/v1/jobs/{job['id']}?wait=600",
             f"/v1/jobs/{job['id']}/events"] * 5
    clients = []
    for path in paths:
        client = socket.socket(socket.AF_UNIX)
        client.connect(held.url.removeprefix("unix:"))
        client.sendall(f"GET {path} HTTP/1.1\r\nHost: acjob\r\n\r\n".encode())
        clients.append(client)
    waiting = (len(paths), len(paths) + 1)
    wait_for(lambda: _gauges(http) == waiting, what=f"{waiting} waiters and requests")
    for client in clients:
        client.close()
    wait_for(lambda: _gauges(http) == (0, 1), what="no waiter and no request but this one")
    assert http.get(f"/v1/jobs/{job['id']}").json()["state"] == "QUEUED"


@pytest.mark.parametrize("address", ["=?utf-8?q?a=0ABcc:=20evil?=@x.com", "a\u0000b@x.com"])
def test_mail_addresses_that_cannot_be_sent_are_refused(http: httpx.Client,
                                                         address: str) -> None:
    response = http.post("/v1/jobs", json={"command": "true",
                                           "deliveries": [{"type": "email", "to": address}]})
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["error"]["code"] == "invalid_request"
    assert body["error"]["message"].startswith("body.deliveries.0.email.to: ")
    assert http.get("/v1/jobs").json()["jobs"] == []


@pytest.mark.parametrize("url", ["https://user:pw-secret@hooks.example.org/done",
                                 "http://user@hooks.example.org/", "http://:pw-secret@h/",
                                 "https://a@b@hooks.example.org/"])
def test_webhook_urls_with_credentials_are_refused(http: httpx.Client, url: str) -> None:
    response = http.post("/v1/jobs", json={"command": "true",
                                           "deliveries": [{"type": "webhook", "url": url}]})
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["message"].startswith("body.deliveries.0.webhook.url: ")
    assert "credentials" in error["message"] and "[webhook] secret" in error["message"]
    assert "pw-secret" not in response.text
    assert http.get("/v1/jobs").json()["jobs"] == []


@pytest.mark.parametrize("url", ["https://hooks.example.org/a@b", "http://h:8080/?to=a@b",
                                 "https://h/#a@b"])
def test_an_at_sign_outside_the_authority_is_no_credential(http: httpx.Client,
                                                           url: str) -> None:
    response = http.post("/v1/jobs", json={"command": "true",
                                           "deliveries": [{"type": "webhook", "url": url}]})
    assert response.status_code == 201, response.text
