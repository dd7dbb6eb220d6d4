"""What an operator needs from ``ac``: finding jobs (labels, names, pages), removing
finished jobs' files before retention does, submitting many jobs at once (issue 15)."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import Daemon, client_for


def _ids(daemon: Daemon, *args: str) -> list[str]:
    result = daemon.run("ac", "jobs", "--json", *args)
    assert result.returncode == 0, result.stderr
    return [job["id"] for job in json.loads(result.stdout)]


def test_ac_jobs_filters_by_label_and_name_and_pages(daemon: Daemon) -> None:
    made = [daemon.run("acjob", "-t", "poll", "-l", f"team={team}", "--name", name,
                       "true").stdout.decode().strip()
            for team, name in (("a", "build-1"), ("b", "build-2"), ("a", "test-1"))]
    assert _ids(daemon, "--label", "team=a") == [made[2], made[0]]
    assert _ids(daemon, "--name", "build-") == [made[1], made[0]]
    assert _ids(daemon, "--label", "team=a", "--name", "build") == [made[0]]
    first = daemon.run("ac", "jobs", "--json", "--limit", "2")
    assert [j["id"] for j in json.loads(first.stdout)] == [made[2], made[1]]
    said = first.stderr.decode()
    assert said.startswith("ac: more jobs follow: add --cursor ")
    cursor = said.split("--cursor ")[1].split()[0]
    assert _ids(daemon, "--limit", "2", "--cursor", cursor) == [made[0]]
    everything = daemon.run("ac", "jobs", "--json", "--limit", "1", "--all")
    assert [j["id"] for j in json.loads(everything.stdout)] == made[::-1]
    assert everything.stderr == b""
    bad = daemon.run("ac", "jobs", "--label", "team")
    assert bad.returncode == 2 and b"a label filter is KEY=VALUE" in bad.stderr


def test_ac_rm_removes_a_finished_jobs_files_and_keeps_its_record(daemon: Daemon) -> None:
    done = daemon.run("acjob", "-t", "poll", "echo out").stdout.decode().strip()
    running = daemon.run("acjob", "-t", "poll", "sleep 300").stdout.decode().strip()
    with client_for(daemon) as client:
        client.wait(done, timeout=60)
    spool = daemon.state_dir / "spool"
    assert (spool / done).is_dir()
    removed = daemon.run("ac", "rm", done)
    assert removed.returncode == 0 and removed.stdout == f"{done} files removed\n".encode()
    assert not (spool / done).exists()
    assert json.loads(daemon.run("ac", "show", "--json", done).stdout)["files_removed_at"]
    logs = daemon.run("ac", "logs", done)
    assert logs.returncode == 1 and b"were removed" in logs.stderr
    assert daemon.run("ac", "rm", done).returncode == 0  # again: nothing changes
    refused = daemon.run("ac", "rm", running)
    assert refused.returncode == 1 and b"has not ended (RUNNING)" in refused.stderr
    assert (spool / running).is_dir()
    daemon.run("ac", "cancel", running)


def test_ac_prune_removes_the_files_of_jobs_ended_long_enough_ago(daemon: Daemon) -> None:
    done = daemon.run("acjob", "-t", "poll", "true").stdout.decode().strip()
    running = daemon.run("acjob", "-t", "poll", "sleep 300").stdout.decode().strip()
    with client_for(daemon) as client:
        client.wait(done, timeout=60)
    spool = daemon.state_dir / "spool"
    kept = daemon.run("ac", "prune", "--older-than", "1d")
    assert kept.stdout == b"removed the files of 0 finished job(s)\n" and (spool / done).is_dir()
    pruned = daemon.run("ac", "prune", "--older-than", "0")
    assert pruned.stdout == b"removed the files of 1 finished job(s)\n", pruned.stderr
    assert not (spool / done).exists() and (spool / running).is_dir()
    bad = daemon.run("ac", "prune", "--older-than", "soon")
    assert bad.returncode == 2 and b"'soon' is not an age" in bad.stderr
    daemon.run("ac", "cancel", running)


def test_ac_submit_batch_is_one_transaction(daemon: Daemon, short_tmp: Path) -> None:
    batch = short_tmp / "jobs.jsonl"
    batch.write_text('{"command": "echo one"}\n\n{"command": ["printf", "two\\\\n"]}\n')
    submitted = daemon.run("ac", "submit", "--batch", str(batch))
    assert submitted.returncode == 0, submitted.stderr
    polled = daemon.run("acpoll", input=submitted.stdout)
    assert (polled.returncode, polled.stdout) == (0, b"one\ntwo\n")
    from_stdin = daemon.run("ac", "submit", "--batch", "-", input=b'{"command": "true"}\n')
    assert len(from_stdin.stdout.split()) == 1
    before = _ids(daemon)
    batch.write_text('{"command": "true"}\n{"command": "true", "backend": "nope"}\n')
    refused = daemon.run("ac", "submit", "--batch", str(batch))
    assert refused.returncode == 1 and b"no backend named 'nope'" in refused.stderr
    assert _ids(daemon) == before  # neither job was made
    batch.write_text('{"command": "true"}\n{"command": ""}\n')
    bad = daemon.run("ac", "submit", "--batch", str(batch))
    assert bad.returncode == 2 and f"{batch} line 2: command: ".encode() in bad.stderr
    batch.write_text("echo hi\n")
    assert b"line 1 is not a job as JSON" in daemon.run("ac", "submit", "--batch",
                                                        str(batch)).stderr


def test_removal_routes_answer_bad_input_with_4xx_json(daemon: Daemon) -> None:
    import httpx

    transport = httpx.HTTPTransport(uds=daemon.url.removeprefix("unix:"))
    with httpx.Client(transport=transport, base_url="http://acjob") as http:
        for body in ({"older_than_s": -1}, {"older_than_s": "x"}, {}, {"older": 1}):
            response = http.post("/v1/jobs/prune", json=body)
            assert response.status_code == 422 and response.json()["error"]["code"] == \
                "invalid_request", body
        assert http.delete(f"/v1/jobs/{'a' * 26}/files").status_code == 404
        assert http.delete("/v1/jobs/nope/files").json()["error"]["code"] == "invalid_job_id"


def test_a_restart_logs_the_jobs_it_picks_up(daemon: Daemon) -> None:
    from acjob.model import State
    from tests.conftest import wait_for
    from tests.integration.schedulers import until

    job_id = daemon.run("acjob", "-t", "poll", "sleep 300").stdout.decode().strip()
    with client_for(daemon) as client:
        until(client, job_id, State.RUNNING)
    daemon.stop()
    daemon.start()
    wait_for(lambda: "picking up 1 unfinished job(s); re-attaching 1 attempt(s) under way"
             in daemon.log.read_text(), what="the log line")
    with client_for(daemon) as client:
        assert client.get(job_id).state is State.RUNNING
        client.cancel(job_id)
