"""The store on a real SQLite file: commits, transitions, idempotency, cursors."""

from __future__ import annotations

from pathlib import Path

import pytest

from acjob import lifecycle
from acjob.errors import Conflict, InvalidRequest, NotFound
from acjob.model import FailureKind, Job, JobSpec, NewJob, RetryPolicy, State, new_job_id
from acjob.progress import Progress
from acjob.store import Store, listing


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "acjob.db")


def _job(store: Store, command: str = "true", **kw: object) -> str:
    job, created = store.create_job(JobSpec(command=command), "local", job_id=new_job_id(), **kw)
    assert created
    return job.id


def _exit(store: Store, job_id: str, number: int, code: int) -> Job:
    return store.end_attempt(job_id, number, lambda job: lifecycle.conclude_exit(job, code))


def _lost(store: Store, job_id: str, number: int, reason: str = "lost") -> Job:
    verdict = lifecycle.Failed(FailureKind.LOST, reason)
    return store.end_attempt(job_id, number, lambda job: lifecycle.conclude(job, verdict))


def _cancel(store: Store, job_id: str) -> Job:
    return store.change_state(job_id, lifecycle.after_cancel_request, "canceled by request")


def test_life_cycle_appends_events(store: Store) -> None:
    seen: list[tuple[str, State]] = []
    store.subscribe(lambda job_id, seq, state: seen.append((job_id, state)))
    job_id = _job(store)
    attempt = store.start_attempt(job_id)
    store.attempt_submitted(job_id, attempt.number, "native-1")
    store.attempt_running(job_id, attempt.number)
    final = _exit(store, job_id, attempt.number, 0)
    assert final.state is State.COMPLETE and final.exit_code == 0 and final.ended_at
    states = [e.state for e in store.events(job_id)]
    assert states == [State.QUEUED, State.INITIALIZING, State.RUNNING, State.COMPLETE]
    assert [s for _, s in seen] == states
    seqs = [e.seq for e in store.events(job_id)]
    assert seqs == sorted(seqs) and final.seq == seqs[-1]



def test_an_attempt_started_by_its_submission_runs_from_its_native_id(store: Store) -> None:
    """A backend whose submission starts the process (local) records the native id and
    the running state in one commit: one event, the attempt running since then."""
    seen: list[State] = []
    store.subscribe(lambda job_id, seq, state: seen.append(state))
    job_id = _job(store)
    attempt = store.start_attempt(job_id)
    store.attempt_submitted(job_id, attempt.number, "native-1", running=True)
    job = store.get(job_id)
    assert job.state is State.RUNNING and seen == [State.QUEUED, State.INITIALIZING,
                                                   State.RUNNING]
    [recorded] = job.attempts
    assert recorded.native_id == "native-1" and recorded.state.value == "running"
    assert recorded.started_at is not None
    # A job canceled meanwhile stays CANCELING; its attempt runs all the same.
    other = _job(store)
    second = store.start_attempt(other)
    assert _cancel(store, other).state is State.CANCELING
    store.attempt_submitted(other, second.number, "native-2", running=True)
    job = store.get(other)
    assert job.state is State.CANCELING and job.attempts[0].state.value == "running"

def test_persisted_across_reopen(tmp_path: Path) -> None:
    first = Store(tmp_path / "db")
    job_id = _job(first, "echo kept")
    first.close()
    again = Store(tmp_path / "db")
    assert again.get(job_id).spec.command == "echo kept"


def test_retry_and_failure_paths(store: Store) -> None:
    job_id = store.create_job(JobSpec(command="true", retry=RetryPolicy(max_attempts=2)),
                              "local", job_id=new_job_id())[0].id
    a1 = store.start_attempt(job_id)
    store.attempt_submitted(job_id, a1.number, "n1")
    job = _lost(store, job_id, a1.number)
    assert job.state is State.PREEMPTED
    assert [j.id for j in store.dispatchable(10)] == [job_id]
    a2 = store.start_attempt(job_id)
    assert a2.number == 2
    job = _lost(store, job_id, a2.number, "lost again")
    assert job.state is State.SYSTEM_ERROR and job.reason == "lost again (attempt 2 of 2)"
    # A late report about an old attempt changes nothing.
    assert _exit(store, job_id, 1, 0).state is State.SYSTEM_ERROR


def test_a_job_starts_while_its_stdin_still_arrives(store: Store) -> None:
    job, _ = store.create_job(JobSpec(command="cat", stdin="upload"), "local",
                              job_id=new_job_id())
    assert [j.id for j in store.dispatchable(10)] == [job.id]  # it reads stdin live
    store.close_stdin(job.id, 42)
    assert store.close_stdin(job.id, 42).stdin_bytes == 42
    with pytest.raises(Conflict):
        store.close_stdin(job.id, 43)


def test_idempotency(store: Store) -> None:
    spec = JobSpec(command="true")
    a, created_a = store.create_job(spec, "local", idempotency_key="k", request_hash="h1",
                                    job_id=new_job_id())
    b, created_b = store.create_job(spec, "local", idempotency_key="k", request_hash="h1",
                                    job_id=new_job_id())
    assert created_a and not created_b and a.id == b.id
    with pytest.raises(Conflict):
        store.create_job(spec, "local", idempotency_key="k", request_hash="h2",
                         job_id=new_job_id())


def test_a_batch_is_returned_as_stored_and_numbered_after_everything_before(
        store: Store) -> None:
    # The jobs of a batch are built from what was inserted, not read back: they must be
    # what a read gives, and their positions and event numbers follow every earlier
    # one, even one whose job was deleted since (AUTOINCREMENT never hands one out twice).
    seen: list[tuple[str, int, State]] = []
    store.subscribe(lambda job_id, seq, state: seen.append((job_id, seq, state)))
    before = _job(store)
    store._db.execute("DELETE FROM events WHERE job_id = ?", (before,))
    store._db.execute("DELETE FROM jobs WHERE id = ?", (before,))
    specs = [JobSpec(command="true", labels={"g": "0"}, name="b"),
             JobSpec(command=["cat"], stdin="upload"), JobSpec(command="echo 3")]
    new = [NewJob(spec, "local", new_job_id(), f"key#{i}", f"h{i}",
                  ("tes", "{}") if i == 2 else None) for i, spec in enumerate(specs * 2)]
    made = store.create_jobs(new)
    assert [created for _, created in made] == [True] * 6
    assert [job for job, _ in made] == [store.get(n.job_id) for n in new]
    seqs = [job.seq for job, _ in made]
    assert seqs == sorted(seqs) and seqs[0] > 1 and len(set(seqs)) == 6
    assert [e.seq for e in store.events(new[0].job_id)] == [seqs[0]]
    assert seen[1:] == [(n.job_id, seq, State.QUEUED) for n, seq in zip(new, seqs, strict=True)]
    assert store.document(new[2].job_id, "tes") == "{}"
    evens, _ = store.list_jobs(labels={"g": "0"})
    assert {j.id for j in evens} == {new[0].job_id, new[3].job_id}
    later = _job(store)
    assert store.get(later).seq > seqs[-1]
    # Again: the same jobs, none created; one changed request under a used key: none.
    again = store.create_jobs([NewJob(n.spec, "local", new_job_id(), n.idempotency_key,
                                      n.request_hash) for n in new])
    assert [(job.id, created) for job, created in again] == [(n.job_id, False) for n in new]
    with pytest.raises(Conflict):
        store.create_jobs([NewJob(specs[0], "local", new_job_id(), "fresh"),
                           NewJob(specs[0], "local", new_job_id(), "key#0", "other")])
    assert store.request_hashes(["fresh", "key#1"]) == {"key#1": "h1"}
    assert store.count_by_state() == {"QUEUED": 7}


def test_cancel(store: Store) -> None:
    queued = _job(store)
    assert _cancel(store, queued).state is State.CANCELED
    running = _job(store)
    attempt = store.start_attempt(running)
    assert _cancel(store, running).state is State.CANCELING
    assert _lost(store, running, attempt.number).state is State.CANCELED
    done = _job(store)
    a = store.start_attempt(done)
    _exit(store, done, a.number, 0)
    with pytest.raises(Conflict):
        _cancel(store, done)


def test_illegal_transition_is_refused_and_rolled_back(store: Store) -> None:
    job_id = _job(store)
    a = store.start_attempt(job_id)
    _exit(store, job_id, a.number, 1)
    with pytest.raises(Conflict):
        store.start_attempt(job_id)
    assert store.get(job_id).state is State.EXECUTOR_ERROR
    assert len(store.get(job_id).attempts) == 1


def test_list_pagination_and_filters(store: Store) -> None:
    ids = [store.create_job(JobSpec(command="true", name=f"n{i}", labels={"g": str(i % 2)}),
                            "local", job_id=new_job_id())[0].id for i in range(7)]
    page, cursor = store.list_jobs(limit=3)
    assert [j.id for j in page] == ids[::-1][:3] and cursor
    rest, end = store.list_jobs(limit=10, cursor=cursor)
    assert [j.id for j in rest] == ids[::-1][3:] and end is None
    evens, _ = store.list_jobs(labels={"g": "0"})
    assert {j.id for j in evens} == set(ids[0::2])
    named, _ = store.list_jobs(name_prefix="n1")
    assert [j.id for j in named] == [ids[1]]
    assert store.list_jobs(name_prefix="%")[0] == []
    assert store.list_jobs(name_prefix="N1")[0] == []  # case-sensitive
    with pytest.raises(InvalidRequest):
        store.list_jobs(cursor="nonsense")


def test_unknown_job(store: Store) -> None:
    with pytest.raises(NotFound):
        store.get(new_job_id())


def test_canceling_job_is_never_retried(store: Store) -> None:
    retried = JobSpec(command="false", retry=RetryPolicy(on=frozenset({FailureKind.EXIT})))
    job_id = store.create_job(retried, "local", job_id=new_job_id())[0].id
    attempt = store.start_attempt(job_id)
    _cancel(store, job_id)
    job = _exit(store, job_id, attempt.number, 1)
    assert job.state is State.EXECUTOR_ERROR and job.exit_code == 1
    other = _job(store)
    attempt = store.start_attempt(other)
    _cancel(store, other)
    job = _lost(store, other, attempt.number)
    assert job.state is State.CANCELED


def test_the_end_is_decided_on_the_job_as_it_is_in_the_transaction(store: Store) -> None:
    """A decision function sees the job as committed when the end is recorded, so a
    cancel that came after the caller looked is never overridden."""
    job_id = _job(store)
    attempt = store.start_attempt(job_id)
    _cancel(store, job_id)
    seen: list[State] = []

    def decide(job: Job) -> lifecycle.AttemptEnd:
        seen.append(job.state)
        return lifecycle.conclude(job, lifecycle.Failed(FailureKind.LOST, "lost"))

    assert store.end_attempt(job_id, attempt.number, decide).state is State.CANCELED
    assert seen == [State.CANCELING]


def test_a_new_attempt_clears_the_previous_exit_status(store: Store) -> None:
    policy = RetryPolicy(max_attempts=2, on=frozenset({FailureKind.EXIT, FailureKind.LOST}))
    job_id = store.create_job(JobSpec(command="exit 3", retry=policy), "local",
                              job_id=new_job_id())[0].id
    first = store.start_attempt(job_id)
    job = _exit(store, job_id, first.number, 3)
    assert job.state is State.PREEMPTED and job.exit_code == 3
    second = store.start_attempt(job_id)
    assert store.get(job_id).exit_code is None
    job = _lost(store, job_id, second.number)
    assert job.state is State.SYSTEM_ERROR and job.exit_code is None


def test_waiting_for_stdin_does_not_keep_the_daemon_busy(store: Store) -> None:
    store.create_job(JobSpec(command="cat", stdin="upload"), "local", job_id=new_job_id())
    assert not store.active_jobs_exist()
    _job(store)
    assert store.active_jobs_exist()


def test_active_jobs_are_found_by_their_states_through_the_state_index(
        store: Store) -> None:
    """Jobs not final (every state but the final ones) are read through the index by
    state and position, not by a scan of every job."""
    done = _job(store)
    _exit(store, done, store.start_attempt(done).number, 0)
    running = _job(store)
    store.attempt_running(running, store.start_attempt(running).number)
    queued = store.create_job(JobSpec(command="true"), "slurm", job_id=new_job_id())[0].id
    canceled = _job(store)
    _cancel(store, canceled)
    assert store.active_elsewhere(["local"]) == [queued]
    assert store.active_elsewhere(["slurm"]) == [running]
    assert store.active_elsewhere([]) == [running, queued]
    assert store.active_jobs_exist()
    from acjob.store import jobs

    for sql, args in [(jobs._ANY_ACTIVE, []),
                      (f"SELECT id FROM jobs WHERE {jobs._ACTIVE} AND backend NOT IN (?)"
                       " ORDER BY pos", ["local"])]:
        plan = " ".join(r[3] for r in store._db.execute(f"EXPLAIN QUERY PLAN {sql}", args))
        assert "USING INDEX jobs_state_pos" in plan and "SCAN" not in plan, plan
    assert store._db.execute("SELECT count(*) FROM sqlite_master WHERE name = 'jobs_active'"
                             ).fetchone()[0] == 0


def test_ended_jobs_with_files_are_found_through_an_index_new_jobs_are_not_in(
        store: Store) -> None:
    """The janitor's question (ended jobs whose files are kept) reads an index that holds
    only those: a new job is not written into it."""
    done = _job(store)
    _exit(store, done, store.start_attempt(done).number, 0)
    _job(store)
    assert store.expired(ended_before=float("inf")) == [done]
    store.mark_purged([done])
    assert store.expired(ended_before=float("inf")) == []
    [sql] = store._db.execute("SELECT sql FROM sqlite_master WHERE name = ?",
                              ("jobs_ended_unpurged",)).fetchone()
    assert sql.endswith("WHERE purged_at IS NULL AND ended_at IS NOT NULL")
    plan = " ".join(r[3] for r in store._db.execute(
        "EXPLAIN QUERY PLAN SELECT id FROM jobs WHERE purged_at IS NULL"
        " AND ended_at IS NOT NULL AND ended_at < 1 ORDER BY ended_at LIMIT 5"))
    assert "USING INDEX jobs_ended_unpurged" in plan, plan


def test_unusable_store_is_a_clear_error(tmp_path: Path) -> None:
    from acjob.errors import ConfigError

    path = tmp_path / "acjob.db"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(ConfigError, match="cannot open the store"):
        Store(path)


def test_documents_filtered_by_tags_whatever_their_keys(store: Store) -> None:
    import json

    tags = [{'a"b': "1", "a.b": "2"}, {"a.b": "3"}, {}]
    ids = [new_job_id() for _ in tags]
    store.create_jobs([NewJob(JobSpec(command="true"), "local", job_id,
                              document=("tes", json.dumps({"tags": t})))
                       for job_id, t in zip(ids, tags, strict=True)])
    store.create_job(JobSpec(command="true"), "local", job_id=new_job_id())

    def found(**filters: str) -> set[str]:
        return {j.id for j in store.list_jobs(document="tes", tags=filters)[0]}

    assert found(**{'a"b': ""}) == {ids[0]}
    assert found(**{"a.b": ""}) == {ids[0], ids[1]}
    assert found(**{"a.b": "3"}) == {ids[1]}
    assert found(**{'a"b': "1", "a.b": "2"}) == {ids[0]}
    assert found(**{'a"b': "2"}) == set()
    assert found() == set(ids)


def test_a_version_1_store_is_migrated(tmp_path: Path) -> None:
    """Jobs written by acjob 0.1 (no name column, no label index, no counts) are found
    by label and name, and counted, once the store is opened again."""
    import sqlite3

    from acjob.store.database import _SCHEMA

    path = tmp_path / "old.db"
    db = sqlite3.connect(path)
    db.executescript(_SCHEMA + "CREATE INDEX jobs_state ON jobs(state);"
                     "INSERT INTO meta VALUES ('schema', '1');")
    ids = [new_job_id() for _ in range(3)]
    for i, job_id in enumerate(ids):
        spec = JobSpec(command="true", name=f"n{i}", labels={"g": str(i % 2)})
        db.execute("INSERT INTO jobs (id, spec, state, backend, created_at, updated_at,"
                   " stdin_closed) VALUES (?, ?, 'QUEUED', 'local', 0, 0, 1)",
                   (job_id, spec.model_dump_json()))
    db.commit()
    db.close()
    store = Store(path)
    assert [j.id for j in store.list_jobs(labels={"g": "0"})[0]] == [ids[2], ids[0]]
    assert [j.id for j in store.list_jobs(name_prefix="n1")[0]] == [ids[1]]
    assert store.count_by_state() == {"QUEUED": 3}
    store.close()
    assert Store(path).count_by_state() == {"QUEUED": 3}  # migrated once


def test_counts_follow_the_jobs(store: Store) -> None:
    job_id = _job(store)
    _job(store)
    attempt = store.start_attempt(job_id)
    _exit(store, job_id, attempt.number, 0)
    assert store.count_by_state() == {"QUEUED": 1, "COMPLETE": 1}


def test_name_prefixes_at_the_edges(store: Store) -> None:
    names = ["a", "ab", "a\U0010ffff", "a\ud7ffz", "b", "\U0010ffffx"]
    ids = {n: store.create_job(JobSpec(command="true", name=n), "local",
                               job_id=new_job_id())[0].id for n in names}
    for prefix in ["a", "a\ud7ff", "\U0010ffff", "ab", "a\U0010ffff"]:
        found = {j.id for j in store.list_jobs(name_prefix=prefix, limit=50)[0]}
        assert found == {ids[n] for n in names if n.startswith(prefix)}, prefix


def test_several_labels_and_paging(store: Store) -> None:
    ids = [store.create_job(JobSpec(command="true", labels={"a": str(i % 2), "b": str(i % 3)}),
                            "local", job_id=new_job_id())[0].id for i in range(12)]
    expected = [ids[i] for i in reversed(range(12)) if i % 2 == 0 and i % 3 == 0]
    page, cursor = store.list_jobs(labels={"a": "0", "b": "0"}, limit=1)
    rest, end = store.list_jobs(labels={"a": "0", "b": "0"}, limit=10, cursor=cursor)
    assert [j.id for j in page + rest] == expected and end is None


def test_what_a_client_is_told_is_on_disk_before_it_is_told(tmp_path: Path) -> None:
    """Under the default mode, a submission's commit is flushed (synchronous=FULL for
    that commit) before create_jobs returns; bookkeeping the client is not told of is
    not flushed on its own."""
    store = Store(tmp_path / "db")
    statements: list[str] = []
    store._db.set_trace_callback(statements.append)
    job_id = _job(store)
    statements.append("-- returned")
    assert statements.index("PRAGMA synchronous=FULL") < statements.index("COMMIT") \
        < statements.index("PRAGMA synchronous=NORMAL") < statements.index("-- returned")
    statements.clear()
    attempt = store.start_attempt(job_id)  # the intent, before any backend is called
    assert "PRAGMA synchronous=FULL" in statements
    statements.clear()
    store.attempt_running(job_id, attempt.number)
    assert "COMMIT" in statements and "PRAGMA synchronous=FULL" not in statements


def test_a_version_2_store_is_migrated(tmp_path: Path) -> None:
    """A store of acjob before progress reports keeps its jobs and attempts, which have
    no progress, and takes progress from then on."""
    import sqlite3

    from acjob.store.database import _MIGRATIONS, _SCHEMA

    path = tmp_path / "v2.db"
    db = sqlite3.connect(path)
    db.executescript(_SCHEMA + _MIGRATIONS[2] + "INSERT INTO meta VALUES ('schema', '2');")
    job_id = new_job_id()
    db.execute("INSERT INTO jobs (id, spec, state, backend, created_at, updated_at,"
               " stdin_closed, attempt) VALUES (?, ?, 'RUNNING', 'local', 0, 0, 1, 1)",
               (job_id, JobSpec(command="true").model_dump_json()))
    db.execute("INSERT INTO attempts (job_id, number, native_id, state) VALUES"
               " (?, 1, 'n', 'running')", (job_id,))
    db.commit()
    db.close()
    store = Store(path)
    job = store.get(job_id)
    assert job.state is State.RUNNING and job.attempts[0].native_id == "n"
    assert job.progress is None
    seen: list[str] = []
    store.subscribe_progress(lambda j: seen.append(j.id))
    assert store.record_progress(job_id, 1, Progress(40.0, "half", 5.0, 1)) is not None
    assert store.get(job_id).progress == Progress(40.0, "half", 5.0, 1)
    assert seen == [job_id]
    version = store._db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()[0]
    assert version == "5"


def test_a_version_3_store_counts_new_jobs_once(tmp_path: Path) -> None:
    """Schema 4 counts new jobs in the store, not by a trigger: the jobs counted before
    stay counted, and a job made after the migration is counted once."""
    import sqlite3

    from acjob.store.database import _MIGRATIONS, _SCHEMA

    path = tmp_path / "v3.db"
    db = sqlite3.connect(path)
    db.executescript(_SCHEMA + _MIGRATIONS[2] + _MIGRATIONS[3]
                     + "INSERT INTO meta VALUES ('schema', '3');")
    db.execute("INSERT INTO jobs (id, spec, state, backend, created_at, updated_at,"
               " stdin_closed) VALUES (?, ?, 'QUEUED', 'local', 0, 0, 1)",
               (new_job_id(), JobSpec(command="true").model_dump_json()))
    db.commit()
    db.close()
    store = Store(path)
    assert store.count_by_state() == {"QUEUED": 1}
    _job(store)
    store.create_jobs([NewJob(JobSpec(command="true"), "local", new_job_id())
                       for _ in range(3)])
    assert store.count_by_state() == {"QUEUED": 5}
    assert store._db.execute("SELECT count(*) FROM sqlite_master WHERE type = 'trigger'"
                             " AND name = 'jobs_counted'").fetchone()[0] == 0


def test_a_version_4_store_finds_events_by_job_position(tmp_path: Path) -> None:
    """Schema 5 finds a job's events by the job's position, not its id: the events of
    jobs made before the migration are found as before, those of jobs made after too,
    and the index by id is gone; so is the partial index of active jobs, and the index
    of jobs whose files are kept holds ended jobs only."""
    import sqlite3

    from acjob.store import stats
    from acjob.store.database import _MIGRATIONS, _SCHEMA

    path = tmp_path / "v4.db"
    db = sqlite3.connect(path)
    db.executescript(_SCHEMA + "CREATE INDEX events_job ON events(job_id, seq);"
                     "CREATE INDEX jobs_active ON jobs(state, pos) WHERE state NOT IN"
                     " ('COMPLETE', 'EXECUTOR_ERROR', 'SYSTEM_ERROR', 'CANCELED');"
                     + _MIGRATIONS[2] + _MIGRATIONS[3] + _MIGRATIONS[4]
                     + "INSERT INTO meta VALUES ('schema', '4');")
    old = [new_job_id() for _ in range(3)]
    for i, job_id in enumerate(old):
        db.execute("INSERT INTO jobs (id, spec, state, backend, created_at, updated_at,"
                   " stdin_closed) VALUES (?, ?, 'QUEUED', 'local', ?, ?, 1)",
                   (job_id, JobSpec(command="true").model_dump_json(), i, i))
        db.execute("INSERT INTO events (job_id, at, state, attempt, detail)"
                   " VALUES (?, ?, 'QUEUED', 0, 'accepted')", (job_id, i))
    db.execute("INSERT INTO events (job_id, at, state, attempt, detail)"
               " VALUES (?, 9, 'QUEUED', 0, 'of a job deleted long ago')", (new_job_id(),))
    db.commit()
    db.close()
    store = Store(path)
    version = store._db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()[0]
    assert version == "5"
    indexes = {r[0] for r in store._db.execute(
        "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'events'")}
    assert "events_job" not in indexes and "events_job_pos" in indexes
    assert store._db.execute("SELECT count(*) FROM sqlite_master WHERE name = 'jobs_active'"
                             ).fetchone()[0] == 0
    assert "jobs_ended_unpurged" in {r[0] for r in store._db.execute(
        "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'jobs'")}
    for i, job_id in enumerate(old):
        assert [(e.state, e.detail, e.at) for e in store.events(job_id)] == [
            (State.QUEUED, "accepted", i)]
    attempt = store.start_attempt(old[0])
    _exit(store, old[0], attempt.number, 0)
    assert [e.state for e in store.events(old[0])] == [
        State.QUEUED, State.INITIALIZING, State.COMPLETE]
    later = _job(store)
    assert [e.state for e in store.events(later)] == [State.QUEUED]
    ended = store.get(old[0]).ended_at
    assert ended is not None
    history = stats.state_history(store._db, now=ended + 1, window=10, buckets=1)
    assert history["states"]["COMPLETE"] == [0, 1]
    [recent] = stats.recent_times(store._db, since=0, limit=10)
    assert recent["id"] == old[0] and recent["wait_s"] is not None
    plan = store._db.execute(
        "EXPLAIN QUERY PLAN SELECT * FROM events WHERE job_pos ="
        " (SELECT pos FROM jobs WHERE id = 'x') AND seq > 0 ORDER BY seq").fetchall()
    assert "USING INDEX events_job_pos" in " ".join(r[3] for r in plan)


def test_progress_belongs_to_the_current_attempt(store: Store) -> None:
    job_id = store.create_job(JobSpec(command="x", retry=RetryPolicy(max_attempts=2)),
                              "local", job_id=new_job_id())[0].id
    first = store.start_attempt(job_id)
    store.attempt_submitted(job_id, first.number, "n1")
    assert store.get(job_id).progress is None
    store.record_progress(job_id, 1, Progress(10.0, None, 1.0))
    store.record_progress(job_id, 1, Progress(60.0, "more", 2.0, 1))
    assert store.get(job_id).progress == Progress(60.0, "more", 2.0, 1)  # the latest only
    job = _lost(store, job_id, 1)
    assert job.state is State.PREEMPTED
    assert store.record_progress(job_id, 1, Progress(70.0, None, 3.0)) is None  # ended
    store.start_attempt(job_id)
    assert store.get(job_id).progress is None  # a new attempt starts from none
    assert store.get(job_id).attempts[0].progress == Progress(60.0, "more", 2.0, 1)
    assert store.record_progress(job_id, 1, Progress(80.0, None, 4.0)) is None  # not current
    assert store.record_progress(job_id, 2, Progress(5.0, None, 5.0, 2)) is not None
    assert store.get(job_id).progress == Progress(5.0, None, 5.0, 2)


@pytest.mark.parametrize("dense", [False, True])
def test_a_name_prefix_pages_alike_whether_its_names_are_few_or_many(
        store: Store, monkeypatch: pytest.MonkeyPatch, dense: bool) -> None:
    """Few names in a prefix's range are sorted by position from the name index; many
    are met walking the jobs newest first. Both give the same pages."""
    monkeypatch.setattr(listing, "DENSE_NAMES", 2 if dense else 1000)
    ids = [store.create_job(JobSpec(command="true", name=f"{'ab'[i % 2]}{i % 5}-{i}"),
                            "local", job_id=new_job_id())[0].id for i in range(30)]
    _cancel(store, ids[10])
    expected = [ids[i] for i in reversed(range(30)) if i % 2 == 0]
    seen: list[str] = []
    cursor = None
    while True:
        page, cursor = store.list_jobs(name_prefix="a", limit=4, cursor=cursor)
        seen += [j.id for j in page]
        if cursor is None:
            break
    assert seen == expected
    queued, _ = store.list_jobs(name_prefix="a", states=[State.QUEUED])
    assert [j.id for j in queued] == [i for i in expected if i != ids[10]]
    assert [j.id for j in store.list_jobs(name_prefix="a0")[0]] == [ids[20], ids[10], ids[0]]
