"""The native HTTP API over the daemon's real socket: contracts and bad input."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import Daemon


@pytest.fixture
def http(daemon: Daemon) -> Iterator[httpx.Client]:
    transport = httpx.HTTPTransport(uds=daemon.url.removeprefix("unix:"))
    with httpx.Client(base_url="http://acjob", transport=transport, timeout=60) as client:
        yield client


def _error(response: httpx.Response, status: int, code: str | None = None) -> dict:
    assert response.status_code == status, response.text
    body = response.json()["error"]
    assert body["message"]
    if code is not None:
        assert body["code"] == code
    return body


def test_health_and_openapi(http: httpx.Client) -> None:
    health = http.get("/v1/health").json()
    assert health["status"] == "ok"
    paths = http.get("/openapi.json").json()["paths"]
    assert "/v1/jobs" in paths and "/v1/jobs/{job_id}/stdout" in paths


def test_prometheus_metrics(http: httpx.Client) -> None:
    job = http.post("/v1/jobs", json={"command": "true"}).json()
    http.get(f"/v1/jobs/{job['id']}/stdout", params={"follow": "true"})
    text = http.get("/metrics").text
    assert 'acjob_jobs{state="COMPLETE"} 1.0' in text
    assert 'acjob_job_events_total{state="QUEUED"} 1.0' in text
    assert "acjob_spool_free_bytes" in text


def _metric(text: str, name: str) -> float:
    line = next(x for x in text.splitlines() if x.startswith(name + " "))
    return float(line.split()[1])


def test_concurrent_submissions_are_flushed_in_groups(daemon: Daemon) -> None:
    """Submissions at once are acknowledged after group flushes, never more than
    themselves (how many share one depends on timing; tests/unit/test_commits.py shows
    the sharing, and that no answer leaves before its flush)."""
    import concurrent.futures

    def connect() -> httpx.Client:
        transport = httpx.HTTPTransport(uds=daemon.url.removeprefix("unix:"))
        return httpx.Client(base_url="http://acjob", transport=transport, timeout=60)

    def submit(n: int) -> list[str]:
        with connect() as c:
            return [c.post("/v1/jobs", json={"command": "true"}).json()["id"]
                    for _ in range(n)]

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        ids = [i for batch in pool.map(submit, [25] * 8) for i in batch]
    assert len(set(ids)) == 200
    with connect() as c:
        text = c.get("/metrics").text
        assert all(c.get(f"/v1/jobs/{i}").status_code == 200 for i in ids[::20])
    commits = _metric(text, "acjob_grouped_commits_total")
    flushes = _metric(text, "acjob_group_flushes_total")
    assert commits >= 200 and 1 <= flushes <= commits


def test_submit_get_and_idempotency(http: httpx.Client) -> None:
    headers = {"Idempotency-Key": "key-1"}
    first = http.post("/v1/jobs", json={"command": "echo hi"}, headers=headers)
    assert first.status_code == 201
    again = http.post("/v1/jobs", json={"command": "echo hi"}, headers=headers)
    assert again.status_code == 200
    assert again.json()["id"] == first.json()["id"]
    other = http.post("/v1/jobs", json={"command": "echo other"}, headers=headers)
    _error(other, 409, "idempotency_conflict")
    job = http.get(f"/v1/jobs/{first.json()['id']}", params={"wait": 30}).json()
    while job["state"] != "COMPLETE":
        job = http.get(f"/v1/jobs/{job['id']}", params={"wait": 30, "since": job["seq"]}).json()
    assert job["exit_code"] == 0
    out = http.get(f"/v1/jobs/{job['id']}/stdout")
    assert out.content == b"hi\n" and out.headers["x-acjob-attempt"] == "1"
    assert http.get(f"/v1/jobs/{job['id']}/stdout", params={"offset": 1}).content == b"i\n"


def test_idempotent_retry_gets_its_job_even_if_the_workdir_went(
    http: httpx.Client, tmp_path
) -> None:
    workdir = tmp_path / "w"
    workdir.mkdir()
    body = {"command": "pwd", "workdir": str(workdir)}
    first = http.post("/v1/jobs", json=body, headers={"Idempotency-Key": "k-w"})
    assert first.status_code == 201
    workdir.rmdir()
    again = http.post("/v1/jobs", json=body, headers={"Idempotency-Key": "k-w"})
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"]


def test_events_as_server_sent_events(http: httpx.Client) -> None:
    job = http.post("/v1/jobs", json={"command": "true"}).json()
    text = http.get(f"/v1/jobs/{job['id']}/events").text
    states = [line.removeprefix("event: ") for line in text.splitlines()
              if line.startswith("event: ")]
    assert states[0] == "QUEUED" and states[-1] == "COMPLETE"
    last_id = [line for line in text.splitlines() if line.startswith("id: ")][-2]
    tail = http.get(f"/v1/jobs/{job['id']}/events",
                    headers={"Last-Event-ID": last_id.removeprefix("id: ")}).text
    assert [line for line in tail.splitlines() if line.startswith("event: ")] == [
        "event: COMPLETE"]


def test_list_with_cursor_and_filters(http: httpx.Client) -> None:
    ids = [http.post("/v1/jobs", json={"command": "true", "labels": {"batch": "b1"}}).json()["id"]
           for _ in range(5)]
    http.post("/v1/jobs", json={"command": "true", "labels": {"batch": "b2"}})
    seen: list[str] = []
    cursor = None
    while True:
        params: dict = {"limit": 2, "label": "batch=b1"}
        if cursor:
            params["cursor"] = cursor
        page = http.get("/v1/jobs", params=params).json()
        seen += [j["id"] for j in page["jobs"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == list(reversed(ids))
    _error(http.get("/v1/jobs", params={"cursor": "garbage!"}), 400, "invalid_cursor")
    _error(http.get("/v1/jobs", params={"state": "NOPE"}), 422, "invalid_request")


def test_resumable_stdin_upload(http: httpx.Client) -> None:
    job = http.post("/v1/jobs", json={"command": "cat", "stdin": "upload"}).json()
    url = f"/v1/jobs/{job['id']}/stdin"
    assert http.put(url, params={"offset": 0}, content=b"hello wor").json()["bytes"] == 9
    # A retry after a broken upload: resend from an earlier offset; no duplication.
    assert http.put(url, params={"offset": 6}, content=b"world").json()["bytes"] == 11
    _error(http.put(url, params={"offset": 99}, content=b"x"), 409, "bad_offset")
    done = http.put(url, params={"offset": 11, "final": "true"}, content=b"!\n").json()
    assert done == {"bytes": 13, "closed": True}
    # Closing again at the same size is idempotent; writing more is refused.
    assert http.put(url, params={"offset": 13, "final": "true"}).status_code == 200
    _error(http.put(url, params={"offset": 13}, content=b"more"), 409, "stdin_closed")
    _error(http.put(url, params={"offset": 13, "final": "true"}, content=b"more"), 409,
           "stdin_closed")
    out = http.get(f"/v1/jobs/{job['id']}/stdout", params={"follow": "true"}).content
    assert out == b"hello world!\n"


@pytest.mark.parametrize("body", [
    b"{not json", b"[]", b'{"command": 5}', b'{"command": ""}', b'{"command": []}',
    b'{"command": "x", "unknown": 1}', b'{"command": "x", "env": {"1BAD": "v"}}',
    b'{"command": "x", "workdir": "relative"}', b'{"command": "x", "resources": {"cpus": -1}}',
    b'{"command": "a\\u0000b"}',
])
def test_bad_submissions_get_a_json_4xx(http: httpx.Client, body: bytes) -> None:
    response = http.post("/v1/jobs", content=body, headers={"Content-Type": "application/json"})
    assert 400 <= response.status_code < 500, response.text
    assert response.json()["error"]["code"]


def test_local_resources_are_checked(http: httpx.Client) -> None:
    _error(http.post("/v1/jobs", json={"command": "x", "resources": {"cpus": 4000}}), 400,
           "invalid_resources")
    _error(http.post("/v1/jobs", json={"command": "x", "resources": {"queue": "q"}}), 400,
           "invalid_resources")


def test_unknown_backend_and_workdir(http: httpx.Client) -> None:
    _error(http.post("/v1/jobs", json={"command": "x", "backend": "nope"}), 400,
           "unknown_backend")
    _error(http.post("/v1/jobs", json={"command": "x", "workdir": "/does/not/exist"}), 400,
           "invalid_workdir")


def test_ids_are_validated_before_anything_else(http: httpx.Client) -> None:
    _error(http.get("/v1/jobs/" + "a" * 26), 404, "not_found")
    for bad in ("..", "..%2F..%2Fetc", "A" * 26, "short", "%2e%2e"):
        response = http.get(f"/v1/jobs/{bad}/stdout")
        assert response.status_code in (400, 404), (bad, response.text)
        assert response.json()["error"]["code"] in ("invalid_job_id", "not_found")


def test_oversized_body_is_413(http: httpx.Client) -> None:
    huge = b'{"command": "' + b"x" * (2 << 20) + b'"}'
    _error(http.post("/v1/jobs", content=huge, headers={"Content-Type": "application/json"}),
           413, "payload_too_large")


def test_unknown_route_is_json_404(http: httpx.Client) -> None:
    _error(http.get("/v1/nothing"), 404)
    _error(http.delete("/v1/jobs"), 405)


def test_cancel_final_job_is_a_conflict(http: httpx.Client) -> None:
    job = http.post("/v1/jobs", json={"command": "true"}).json()
    final = http.get(f"/v1/jobs/{job['id']}", params={"wait": 30}).json()
    while final["state"] != "COMPLETE":
        final = http.get(f"/v1/jobs/{job['id']}", params={"wait": 30, "since": final["seq"]}).json()
    _error(http.post(f"/v1/jobs/{job['id']}/cancel"), 409, "job_final")


def test_batch_submission_is_all_or_nothing(http: httpx.Client) -> None:
    good = {"jobs": [{"command": "echo 1"}, {"command": ["echo", "2"]}]}
    first = http.post("/v1/jobs/batch", json=good, headers={"Idempotency-Key": "b1"})
    assert first.status_code == 201
    ids = [j["id"] for j in first.json()["jobs"]]
    again = http.post("/v1/jobs/batch", json=good, headers={"Idempotency-Key": "b1"})
    assert again.status_code == 200 and [j["id"] for j in again.json()["jobs"]] == ids
    before = len(http.get("/v1/jobs", params={"limit": 1000}).json()["jobs"])
    bad = {"jobs": [{"command": "echo fine"}, {"command": "x", "backend": "nope"}]}
    _error(http.post("/v1/jobs/batch", json=bad), 400, "unknown_backend")
    assert len(http.get("/v1/jobs", params={"limit": 1000}).json()["jobs"]) == before
    _error(http.post("/v1/jobs/batch", json={"jobs": []}), 422)


def test_batch_answer_is_what_each_job_reads(http: httpx.Client) -> None:
    # The batch answer has an encoder of its own: the same bytes as the standard
    # library's (as every other answer is encoded), with any text a spec may hold.
    specs = [{"command": ["printf", "%s", "é \u2028 \x01 \"q\" \\"], "name": "n\u00e9",
              "labels": {"k": "v\u2029"}, "env": {"A": "\t"},
              "retry": {"max_attempts": 2, "on": ["exit", "lost"]},
              "resources": {"time_limit_s": 60}},
             {"command": "true", "stdin": "upload"}]
    answer = http.post("/v1/jobs/batch", json={"jobs": specs * 3})
    assert answer.status_code == 201
    assert answer.headers["content-type"] == "application/json"
    body = answer.json()
    assert answer.content == json.dumps(body, ensure_ascii=False, allow_nan=False,
                                        separators=(",", ":")).encode()
    jobs = body["jobs"]
    assert len(jobs) == 6 and len({job["id"] for job in jobs}) == 6
    queued = [http.get(f"/v1/jobs/{job['id']}").json() for job in jobs]
    for job, now in zip(jobs, queued, strict=True):
        # As read back, but for what the job did since (it may have started).
        keep = {"id", "command", "name", "backend", "labels", "resources", "retry",
                "created_at"}
        assert {k: job[k] for k in keep} == {k: now[k] for k in keep}
        assert job["state"] == "QUEUED" and job["attempts"] == [] and job["attempt"] == 0
    assert jobs[0]["retry"] == {"max_attempts": 2, "on": ["exit", "lost"]}
    assert jobs[0]["resources"] == {"time_limit_s": 60}
    assert jobs[1]["stdin"] == {"mode": "upload", "closed": False, "bytes": None}
    assert jobs[0]["stdin"] == {"mode": "none", "closed": True, "bytes": 0}
    seqs = [job["seq"] for job in jobs]
    assert seqs == sorted(seqs) and len(set(seqs)) == 6


@pytest.mark.parametrize(("path", "params", "headers"), [
    ("/v1/jobs", {"cursor": "cDk5OTk5OTk5OTk5OTk5OTk5OTk5OTk5OTk5OTk5OTk5OTk5OQ"}, {}),
    ("/v1/jobs/{id}/stdout", {"offset": str(10**20)}, {}),
    ("/v1/jobs/{id}/events", {"after": str(10**20)}, {}),
    ("/v1/jobs/{id}/events", {}, {"Last-Event-ID": "\u00b2"}),
    ("/v1/jobs/{id}", {"since": str(10**20)}, {}),
])
def test_out_of_range_input_is_4xx_not_500(http: httpx.Client, path: str, params: dict,
                                          headers: dict) -> None:
    job = http.post("/v1/jobs", json={"command": "true"}).json()
    headers = {k: v.encode() for k, v in headers.items()}
    response = http.get(path.format(id=job["id"]), params=params, headers=headers)
    assert response.status_code < 500, response.text


def test_overlong_workdir_is_400(http: httpx.Client) -> None:
    _error(http.post("/v1/jobs", json={"command": "x", "workdir": "/" + "a" * 300}), 400,
           "invalid_workdir")


def test_huge_numbers_of_list_parameters(http: httpx.Client) -> None:
    labels = "&".join(f"label=k{i}%3Dv" for i in range(2000))
    response = http.get(f"/v1/jobs?{labels}")
    assert response.status_code == 422
    states = "&".join("state=QUEUED" for _ in range(2000))
    assert http.get(f"/v1/jobs?{states}").status_code == 422


def test_slow_reader_does_not_grow_the_daemon(daemon: Daemon, http: httpx.Client) -> None:
    import time
    from pathlib import Path

    pid = daemon.proc.pid if daemon.proc else 0

    def rss() -> int:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        return 0

    job = http.post("/v1/jobs", json={"command": "head -c 300000000 /dev/zero"}).json()
    final = http.get(f"/v1/jobs/{job['id']}", params={"wait": 60}).json()
    while final["state"] not in ("COMPLETE", "EXECUTOR_ERROR", "SYSTEM_ERROR"):
        final = http.get(f"/v1/jobs/{job['id']}", params={"wait": 60,
                                                          "since": final["seq"]}).json()
    before = rss()
    with http.stream("GET", f"/v1/jobs/{job['id']}/stdout") as response:
        stream = response.iter_raw(65536)
        got = len(next(stream))
        time.sleep(2)  # a slow reader: the daemon must not read ahead into memory
        during = rss()
        got += sum(len(c) for c in stream)
    assert got == 300_000_000
    assert during - before < 64 << 20, (before, during)
