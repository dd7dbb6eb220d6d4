"""Results pushed by mail (to a real SMTP server) and by signed HTTP callbacks."""

from __future__ import annotations

import email
import email.policy
import hashlib
import hmac
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller

from tests.conftest import Daemon, client_for, free_port, tool_env, wait_for

SECRET = "webhook-secret-for-tests"



class Inbox:
    """An aiosmtpd handler that keeps every message it receives."""

    def __init__(self) -> None:
        self.messages: list[bytes] = []

    async def handle_DATA(self, server, session, envelope):  # type: ignore[no-untyped-def]
        self.messages.append(envelope.original_content or envelope.content)
        return "250 OK"


class SMTP:
    def __init__(self, port: int) -> None:
        self.port = port
        self.inbox = Inbox()
        self.controller: Controller | None = None

    def start(self) -> None:
        self.controller = Controller(self.inbox, hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None


class Receiver:
    """An HTTP callback receiver answering the statuses it is given, then 200.

    With ``location``, every answer carries that ``Location`` header (a redirect).
    """

    def __init__(self, statuses: list[int], location: str | None = None) -> None:
        self.statuses = list(statuses)
        self.requests: list[tuple[dict[str, str], bytes]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.requests.append(({k.lower(): v for k, v in self.headers.items()},
                                          body))
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(status)
                if location is not None:
                    self.send_header("Location", location)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def smtp() -> Iterator[SMTP]:
    server = SMTP(free_port())
    server.start()
    yield server
    server.stop()


def _daemon(short_tmp: Path, smtp_port: int, attach_limit: int = 10 << 20) -> Daemon:
    state = short_tmp / "state"
    config = short_tmp / "d.toml"
    config.write_text(
        f'[server]\nstate_dir = "{state}"\n'
        f'[mail]\nhost = "127.0.0.1"\nport = {smtp_port}\nsender = "acjob@test"\n'
        f"max_attachment_bytes = {attach_limit}\n"
        f'[webhook]\nsecret = "{SECRET}"\n'
        "[delivery]\nfirst_retry = 0.2\nmax_retry = 0.5\n")
    sock = short_tmp / "d.sock"
    return Daemon(state_dir=state, url=f"unix:{sock}",
                  env=tool_env(short_tmp, ACJOB_URL=f"unix:{sock}"), config=config)


@pytest.fixture
def ddaemon(short_tmp: Path, smtp: SMTP) -> Iterator[Daemon]:
    d = _daemon(short_tmp, smtp.port)
    d.start()
    yield d
    d.stop()


def _delivery(client, job_id: str) -> dict:  # type: ignore[no-untyped-def]
    return client.get(job_id).data["deliveries"][0]


def test_mail_carries_binary_stdout_exactly(ddaemon: Daemon, smtp: SMTP,
                                            short_tmp: Path) -> None:
    data = os.urandom(200_000) + b"\r\n.\r\n\x00end"
    (short_tmp / "in.bin").write_bytes(data)
    handle = ddaemon.run("acjob", "-t", "email", "me@example.org", f"cat {short_tmp}/in.bin; "
                         "echo note >&2; exit 3")
    assert handle.returncode == 0, handle.stderr
    job_id = handle.stdout.decode().strip()
    with client_for(ddaemon) as client:
        client.wait(job_id, timeout=60)
        wait_for(lambda: _delivery(client, job_id)["state"] == "sent", what="the mail")
    assert len(smtp.inbox.messages) == 1
    message = smtp.inbox.messages[0]
    parsed = email.message_from_bytes(message, policy=email.policy.default)
    assert parsed["Subject"] == f"acjob job {job_id} failed (EXECUTOR_ERROR, exit status 3)"
    assert parsed["X-Acjob-Job"] == job_id and parsed["To"] == "me@example.org"
    (short_tmp / "message.eml").write_bytes(message)
    with (short_tmp / "message.eml").open("rb") as eml:
        extracted = subprocess.run(
            [sys.executable, "-c", "from acjob.cli.acpoll import main; main()", "--from-mail"],
            stdin=eml, capture_output=True, env=ddaemon.env, timeout=60)
    assert extracted.stdout == data
    assert extracted.returncode == 3
    shown = ddaemon.run("ac", "show", job_id).stdout.decode()
    assert "delivery  email me@example.org: sent after 1 tries" in shown


def test_large_output_is_not_mailed_whole(short_tmp: Path, smtp: SMTP) -> None:
    d = _daemon(short_tmp, smtp.port, attach_limit=1000)
    d.start()
    try:
        handle = d.run("acjob", "-t", "email", "me@example.org", "head -c 5000 /dev/zero")
        job_id = handle.stdout.decode().strip()
        with client_for(d) as client:
            client.wait(job_id, timeout=60)
            wait_for(lambda: _delivery(client, job_id)["state"] == "sent", what="the mail")
        message = smtp.inbox.messages[0]
        parsed = email.message_from_bytes(message, policy=email.policy.default)
        body = parsed.get_body(("plain",))
        assert body is not None and "too large to mail" in body.get_content()
        assert f"acpoll --no-stderr {job_id}" in body.get_content()
        result = d.run("acpoll", "--from-mail", input=message)
        assert result.returncode == 0 and result.stdout == b"\0" * 5000
    finally:
        d.stop()


def test_mail_server_down_then_up_delivers_once(short_tmp: Path) -> None:
    port = free_port()
    d = _daemon(short_tmp, port)
    d.start()
    smtp = SMTP(port)
    try:
        with client_for(d) as client:
            job = client.submit("echo late", deliveries=[{"type": "email", "to": "a@b.org"}])
            client.wait(job.id, timeout=60)
            wait_for(lambda: _delivery(client, job.id)["attempts"] >= 2,
                     what="failed tries while the mail server is down")
            assert _delivery(client, job.id)["state"] == "pending"
            smtp.start()
            wait_for(lambda: _delivery(client, job.id)["state"] == "sent", what="the mail")
        assert len(smtp.inbox.messages) == 1
    finally:
        smtp.stop()
        d.stop()


def test_daemon_killed_before_delivery_delivers_after_restart(short_tmp: Path) -> None:
    port = free_port()
    d = _daemon(short_tmp, port)
    d.start()
    smtp = SMTP(port)
    receiver = Receiver([503])
    try:
        with client_for(d) as client:
            job = client.submit("echo result", deliveries=[
                {"type": "email", "to": "a@b.org"}, {"type": "webhook", "url": receiver.url}])
            client.wait(job.id, timeout=60)
            wait_for(lambda: _delivery(client, job.id)["attempts"] >= 1, what="a failed try")
            wait_for(lambda: len(receiver.requests) >= 1, what="a failed callback")
        d.kill9()
        smtp.start()
        d.start()
        with client_for(d) as client:
            wait_for(lambda: [x["state"] for x in client.get(job.id).data["deliveries"]]
                     == ["sent", "sent"], what="both deliveries after the restart")
        assert len(smtp.inbox.messages) == 1
        ids = {headers["x-acjob-delivery"] for headers, _ in receiver.requests}
        assert len(ids) == 1 and len(receiver.requests) == 2
    finally:
        receiver.stop()
        smtp.stop()
        d.stop()


def test_webhook_retried_with_one_delivery_id_and_valid_signatures(ddaemon: Daemon) -> None:
    receiver = Receiver([500, 502, 429])
    try:
        handle = ddaemon.run("acjob", "-t", "webhook", receiver.url, "echo hooked; exit 2")
        job_id = handle.stdout.decode().strip()
        with client_for(ddaemon) as client:
            wait_for(lambda: client.get(job_id).data["deliveries"] and
                     _delivery(client, job_id)["state"] == "sent", what="the callback")
            assert _delivery(client, job_id)["attempts"] == 4
        assert len(receiver.requests) == 4
        ids = {headers["x-acjob-delivery"] for headers, _ in receiver.requests}
        assert len(ids) == 1
        for headers, body in receiver.requests:
            expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
            assert hmac.compare_digest(headers["x-acjob-signature"], expected)
            doc = json.loads(body)
            assert doc["delivery_id"] in ids
            assert doc["job"]["id"] == job_id and doc["job"]["exit_code"] == 2
            assert doc["job"]["state"] == "EXECUTOR_ERROR"
            assert doc["stdout"] == {"path": f"/v1/jobs/{job_id}/stdout", "bytes": 7}
    finally:
        receiver.stop()


def test_a_time_out_is_told_by_mail_and_by_callback(ddaemon: Daemon, smtp: SMTP,
                                                   short_tmp: Path) -> None:
    receiver = Receiver([])
    try:
        handle = ddaemon.run("acjob", "--time-limit", "1", "--webhook", receiver.url,
                             "-t", "email", "me@example.org", "echo started; sleep 60")
        assert handle.returncode == 0, handle.stderr
        job_id = handle.stdout.decode().strip()
        wait_for(lambda: smtp.inbox.messages and receiver.requests, what="both deliveries")
    finally:
        receiver.stop()
    message = email.message_from_bytes(smtp.inbox.messages[0], policy=email.policy.default)
    assert message["X-Acjob-Failure"] == "timeout"
    assert json.loads(receiver.requests[0][1])["job"]["failure"] == "timeout"
    extracted = ddaemon.run("acpoll", "--from-mail", input=smtp.inbox.messages[0])
    assert (extracted.returncode, extracted.stdout) == (124, b"started\n")
    assert f"job {job_id} timed out".encode() in extracted.stderr


def test_webhook_404_is_not_retried(ddaemon: Daemon) -> None:
    receiver = Receiver([404, 404, 404])
    try:
        with client_for(ddaemon) as client:
            job = client.submit("true", deliveries=[{"type": "webhook", "url": receiver.url}])
            client.wait(job.id, timeout=60)
            wait_for(lambda: _delivery(client, job.id)["state"] == "failed", what="failure")
            delivery = _delivery(client, job.id)
            assert delivery["attempts"] == 1 and "404" in delivery["last_error"]
            # Another job's delivery goes through the whole outbox after it: the 404
            # one was not tried again meanwhile.
            later = client.submit("true", deliveries=[{"type": "webhook",
                                                        "url": receiver.url}])
            client.wait(later.id, timeout=60)
            wait_for(lambda: _delivery(client, later.id)["state"] != "pending", what="next")
        assert len(receiver.requests) == 2
    finally:
        receiver.stop()


def test_webhook_redirects_are_not_followed(ddaemon: Daemon) -> None:
    target = Receiver([])
    # 307 keeps the method and body: followed, it would post the result elsewhere.
    redirect = Receiver([307, 307], location=target.url)
    try:
        with client_for(ddaemon) as client:
            job = client.submit("true", deliveries=[{"type": "webhook", "url": redirect.url}])
            client.wait(job.id, timeout=60)
            wait_for(lambda: _delivery(client, job.id)["state"] == "failed", what="failure")
            delivery = _delivery(client, job.id)
        assert delivery["attempts"] == 1 and "307" in delivery["last_error"]
        assert len(redirect.requests) == 1 and target.requests == []
    finally:
        redirect.stop()
        target.stop()


def test_mail_with_a_pipe(ddaemon: Daemon, smtp: SMTP) -> None:
    result = ddaemon.run("acjob", "--mail", "me@example.org", "echo both")
    assert result.returncode == 0 and result.stdout == b"both\n"
    wait_for(lambda: smtp.inbox.messages, what="the mail")
    parsed = email.message_from_bytes(smtp.inbox.messages[0], policy=email.policy.default)
    assert parsed["Subject"].endswith("succeeded (COMPLETE, exit status 0)")


def test_secrets_never_logged(short_tmp: Path, smtp: SMTP) -> None:
    d = _daemon(short_tmp, smtp.port)
    d.config.write_text(d.config.read_text().replace(
        "[mail]\n", '[mail]\nuser = "u"\npassword = "smtp-password-xyz"\n'))
    d.start()
    try:
        with client_for(d) as client:
            job = client.submit("true", deliveries=[{"type": "email", "to": "a@b.org"}])
            client.wait(job.id, timeout=60)
            wait_for(lambda: _delivery(client, job.id)["attempts"] >= 1, what="a try")
            assert "smtp-password-xyz" not in json.dumps(client.get(job.id).data)
    finally:
        d.stop()
    log = d.log.read_text()
    assert "smtp-password-xyz" not in log and SECRET not in log
