"""The dashboard's pure parts: the session's cookie and CSRF checks, and the chart's
figures from a real store."""

from __future__ import annotations

from pathlib import Path

import pytest

from acjob import lifecycle
from acjob.model import JobSpec, new_job_id
from acjob.server import session
from acjob.server.session import Verdict, check, csrf_value, foreign_origin, session_value
from acjob.store import Store, stats

SECRET = b"the-daemon-token"
COOKIE = "acjob_session_8750"


def _headers(**named: str) -> list[tuple[bytes, bytes]]:
    return [(k.replace("_", "-").lower().encode(), v.encode()) for k, v in named.items()]


def test_a_session_needs_the_cookie_made_from_the_secret() -> None:
    good = f"{COOKIE}={session_value(SECRET)}"
    assert check(_headers(cookie=good), "GET", SECRET, COOKIE) is Verdict.ALLOWED
    assert check(_headers(cookie=f"other=1; {good}"), "GET", SECRET, COOKIE) is Verdict.ALLOWED
    assert check(_headers(), "GET", SECRET, COOKIE) is Verdict.NO_SESSION
    assert check(_headers(cookie=f"{COOKIE}={SECRET.decode()}"), "GET", SECRET,
                 COOKIE) is Verdict.NO_SESSION  # the secret itself is no cookie
    assert check(_headers(cookie=f"acjob_session_9999={session_value(SECRET)}"), "GET",
                 SECRET, COOKIE) is Verdict.NO_SESSION  # another port's
    assert check(_headers(cookie=good), "GET", b"another-token", COOKIE) is Verdict.NO_SESSION
    assert session_value(SECRET) != csrf_value(SECRET)
    assert SECRET.decode() not in session_value(SECRET)


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH"])
def test_a_state_changing_request_needs_the_proof_and_its_own_origin(method: str) -> None:
    cookie = f"{COOKIE}={session_value(SECRET)}"
    proof = csrf_value(SECRET)
    assert check(_headers(cookie=cookie), method, SECRET, COOKIE) is Verdict.FORGERY
    assert check(_headers(cookie=cookie, x_acjob_csrf="0" * 64), method, SECRET,
                 COOKIE) is Verdict.FORGERY
    assert check(_headers(cookie=cookie, x_acjob_csrf=proof), method, SECRET,
                 COOKIE) is Verdict.ALLOWED
    assert check(_headers(cookie=cookie, x_acjob_csrf=proof, host="127.0.0.1:8750",
                          origin="http://127.0.0.1:8750"), method, SECRET,
                 COOKIE) is Verdict.ALLOWED
    assert check(_headers(cookie=cookie, x_acjob_csrf=proof, host="127.0.0.1:8750",
                          origin="http://127.0.0.1:9999"), method, SECRET,
                 COOKIE) is Verdict.FORGERY


@pytest.mark.parametrize(("headers", "foreign"), [
    ({}, False),
    ({"host": "h:1", "origin": "http://h:1"}, False),
    ({"host": "H:1", "origin": "http://h:1"}, False),
    ({"host": "h:1", "origin": "https://h:1"}, False),
    ({"host": "h:1", "origin": "http://h:2"}, True),
    ({"host": "h:1", "origin": "http://evil.example"}, True),
    ({"host": "h:1", "origin": "null"}, True),
    ({"host": "h:1", "origin": "file://h:1"}, True),
    ({"sec_fetch_site": "same-origin"}, False),
    ({"sec_fetch_site": "same-site"}, True),
    ({"sec_fetch_site": "cross-site"}, True),
    ({"sec_fetch_site": "none"}, False),
    ({"sec_fetch_site": "same-origin", "host": "h:1", "origin": "null"}, False),
    ({"sec_fetch_site": "cross-site", "host": "h:1", "origin": "http://h:1"}, True),
])
def test_foreign_origins(headers: dict[str, str], foreign: bool) -> None:
    assert foreign_origin(_headers(**headers)) is foreign


def test_cookies_are_http_only_and_strict() -> None:
    value = session.set_cookie(COOKIE, "v", secure=False, max_age=60).decode()
    assert value == f"{COOKIE}=v; Path=/; HttpOnly; SameSite=Strict; Max-Age=60"
    assert session.set_cookie(COOKIE, "v", secure=True, max_age=None).decode().endswith(
        "SameSite=Strict; Secure")
    assert "Max-Age=0" in session.clear_cookie(COOKIE).decode()
    assert session.cookie_name(8750) == COOKIE


# -- the chart's figures ------------------------------------------------------------------


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "acjob.db")


def _two_jobs(store: Store) -> tuple[str, str]:
    """One job runs and completes, another is canceled while it waits; then their events
    are put at the test's own times (seq order is time order, as in the daemon)."""
    ran, _ = store.create_job(JobSpec(command="true"), "local", job_id=new_job_id())
    attempt = store.start_attempt(ran.id)
    store.attempt_submitted(ran.id, attempt.number, "n-1")
    store.attempt_running(ran.id, attempt.number)
    canceled, _ = store.create_job(JobSpec(command="true"), "local", job_id=new_job_id())
    store.end_attempt(ran.id, attempt.number, lambda job: lifecycle.conclude_exit(job, 0))
    store.change_state(canceled.id, lifecycle.after_cancel_request, "canceled by request")
    db = store._database.conn
    # ran: QUEUED 100, INITIALIZING 110, RUNNING 120, COMPLETE 200;
    # canceled: QUEUED 150, CANCELED 250.
    with db:
        for seq, at in enumerate([100, 110, 120, 150, 200, 250], 1):
            db.execute("UPDATE events SET at = ? WHERE seq = ?", (at, seq))
        db.execute("UPDATE jobs SET created_at = 100, ended_at = 200 WHERE id = ?", (ran.id,))
        db.execute("UPDATE jobs SET created_at = 150, ended_at = 250 WHERE id = ?",
                   (canceled.id,))
        db.execute("UPDATE attempts SET started_at = 120 WHERE job_id = ?", (ran.id,))
    return ran.id, canceled.id


def test_jobs_by_state_over_time(store: Store) -> None:
    _two_jobs(store)
    history = stats.state_history(store._database.conn, now=300, window=300, buckets=6)
    assert history["times"] == [0, 50, 100, 150, 200, 250, 300]
    assert history["states"] == {
        "QUEUED": [0, 0, 1, 1, 1, 0, 0],
        "RUNNING": [0, 0, 0, 1, 0, 0, 0],
        "COMPLETE": [0, 0, 0, 0, 1, 1, 1],
        "CANCELED": [0, 0, 0, 0, 0, 1, 1],
    }
    assert history["truncated"] is False


def test_a_long_history_is_cut_where_its_events_end(store: Store,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    _two_jobs(store)
    monkeypatch.setattr(stats, "MAX_EVENTS", 2)  # the two newest: 250 and 200
    history = stats.state_history(store._database.conn, now=300, window=300, buckets=6)
    assert history["truncated"] is True
    assert history["times"] == [200, 250, 300]
    assert history["states"] == {"QUEUED": [1, 0, 0], "COMPLETE": [1, 1, 1],
                                 "CANCELED": [0, 1, 1]}


def test_queue_wait_and_run_time(store: Store) -> None:
    ran, canceled = _two_jobs(store)
    figures = store.stats(300, 300, 6, 10)
    assert figures["jobs"] == [
        {"id": canceled, "state": "CANCELED", "ended_at": 250, "wait_s": None, "run_s": None},
        {"id": ran, "state": "COMPLETE", "ended_at": 200, "wait_s": 20, "run_s": 80},
    ]
    assert stats.recent_times(store._database.conn, since=210, limit=10)[0]["id"] == canceled
