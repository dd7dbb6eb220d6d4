"""Findings of the security review (issue 12), each kept by a test over the real daemon."""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

import acjob
from tests.conftest import Daemon, free_port, tool_env, wait_for


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
    assert body["error"]["message"].startswith("deliveries.0.email.to: ")
    assert http.get("/v1/jobs").json()["jobs"] == []


@pytest.mark.parametrize("url", ["https://user:pw-secret@hooks.example.org/done",
                                 "http://user@hooks.example.org/", "http://:pw-secret@h/",
                                 "https://a@b@hooks.example.org/"])
def test_webhook_urls_with_credentials_are_refused(http: httpx.Client, url: str) -> None:
    response = http.post("/v1/jobs", json={"command": "true",
                                           "deliveries": [{"type": "webhook", "url": url}]})
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["message"].startswith("deliveries.0.webhook.url: ")
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


@pytest.mark.parametrize("url", ["http://h/\r\nX-Evil: 1", "http://h/x\nHost: evil",
                                 "file:///etc/passwd", "ftp://h/x", "gopher://h:70/_x",
                                 "http://h/a b", "http://h/\u00e9", "HTTP://h/"])
def test_webhook_urls_that_are_not_plain_http_are_refused(http: httpx.Client,
                                                          url: str) -> None:
    response = http.post("/v1/jobs", json={"command": "true",
                                           "deliveries": [{"type": "webhook", "url": url}]})
    assert response.status_code == 422, response.text
    assert response.json()["error"]["message"].startswith("deliveries.0.webhook.url: ")


@pytest.mark.parametrize("path", ["/v1/jobs", "/v1/jobs/batch"])
def test_deeply_nested_bodies_are_400_not_500(held: Daemon, http: httpx.Client,
                                              path: str) -> None:
    depth = 200_000  # far beyond any recursion limit, within the size limit
    body = '{"command": "x", "labels": ' + "[" * depth + "]" * depth + "}"
    response = http.post(path, content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 400, response.text
    assert response.json()["error"]["message"]
    assert http.get("/v1/health").status_code == 200
    held.stop()
    assert "internal error" not in held.log.read_text()


def test_no_secret_in_metrics_openapi_service_info_or_a_jobs_environment(
        short_tmp: Path) -> None:
    token, hook, password = "tok-5e1f-secret", "hook-9b2e-secret", "smtp-7d3a-secret"
    port = free_port()
    config = short_tmp / "secrets.toml"
    config.write_text(f'[server]\nstate_dir = "{short_tmp}/st"\ntoken = "{token}"\n'
                      f'[webhook]\nsecret = "{hook}"\n'
                      f'[mail]\nhost = "127.0.0.1"\nport = {free_port()}\nuser = "u"\n'
                      f'password = "{password}"\n')
    url = f"http://127.0.0.1:{port}"
    # The token is in the daemon's own environment too, as a user's shell would have it.
    d = Daemon(state_dir=short_tmp / "st", url=url, config=config,
               env=tool_env(short_tmp, ACJOB_URL=url, ACJOB_TOKEN=token))
    d.start()
    try:
        with acjob.Client(url, token) as client:
            job = client.submit("env", deliveries=[
                {"type": "email", "to": "a@b.org"},
                {"type": "webhook", "url": f"http://127.0.0.1:{free_port()}/hook"}])
            client.wait(job.id, timeout=60)
            seen = [b"".join(client.stream(job.id, "stdout")).decode(),
                    b"".join(client.stream(job.id, "stderr")).decode()]
        assert "ACJOB_JOB_ID=" in seen[0]  # the job's environment was printed
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}) as http:
            for path in ("/metrics", "/openapi.json", "/docs", "/v1/health",
                         "/ga4gh/tes/v1/service-info", f"/v1/jobs/{job.id}",
                         f"/v1/jobs/{job.id}/events?follow=false", "/v1/jobs"):
                response = http.get(path)
                assert response.status_code == 200, path
                seen.append(response.text)
    finally:
        d.stop()
    for text in seen:
        for secret in (token, hook, password):
            assert secret not in text
