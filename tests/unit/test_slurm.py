"""The Slurm dialect's pure functions, on output recorded from Slurm 22.05."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import pytest

from acjob.backends.batch import BatchBackend, BatchOptions, Submission
from acjob.backends.slurm import (
    SlurmDialect,
    check_extra_args,
    find_in_squeue,
    format_time_limit,
    parse_sbatch,
    parse_squeue,
    sbatch_argv,
)
from acjob.errors import BackendUnavailable, ConfigError, InvalidRequest, SubmitFailed
from acjob.model import FailureKind, Job, JobSpec, Resources, State
from acjob.spool import Spool

SQUEUE = """\
1|COMPLETED|None|ac-test-1|ac-test-1
3|FAILED|NonZeroExitCode|ac-ajsmu377i4epikf6ijv3cgjkjm-1|ac-ajsmu377i4epikf6ijv3cgjkjm-1
6|NODE_FAIL|NodeDown|ac-6s3rw5lebqsoh6u6mib6rsnkj4-1|ac-6s3rw5lebqsoh6u6mib6rsnkj4-1
7|RUNNING|None|ac-6s3rw5lebqsoh6u6mib6rsnkj4-2|ac-6s3rw5lebqsoh6u6mib6rsnkj4-2
8_0|PENDING|Resources|t.sh|(null)
9|CANCELLED|None|ac-x-1|ac-x-1
10|TIMEOUT|TimeLimit|ac-y-1|ac-y-1
11|PREEMPTED|None|ac-z-1|ac-z-1
12|SOME_FUTURE_STATE|None|ac-w-1|ac-w-1
13|COMPLETING|None|ac-v-1|ac-v-1
"""


def test_parse_squeue_states() -> None:
    seen = parse_squeue(SQUEUE)
    assert seen["1"].state == "gone" and seen["3"].state == "gone"
    assert seen["6"].state == "failed" and seen["6"].failure is FailureKind.NODE_FAIL
    assert seen["7"].state == "running" and seen["13"].state == "running"
    assert seen["8_0"].state == "pending" and seen["8_0"].reason == "Resources"
    assert seen["9"].state == "canceled"
    assert seen["10"].failure is FailureKind.TIMEOUT
    assert seen["11"].failure is FailureKind.PREEMPTED
    # Unknown states are never taken as an end.
    assert seen["12"].state == "pending"
    assert parse_squeue("") == {}
    assert parse_squeue("garbage\n\n|x\n") == {}


def test_find_by_tag_takes_the_newest() -> None:
    text = SQUEUE + "14|PENDING|None|ac-test-1|ac-test-1\n"
    assert find_in_squeue(text, "ac-test-1") == "14"
    assert find_in_squeue(text, "ac-nothing-1") is None


@pytest.mark.parametrize(("out", "job_id"), [("42\n", "42"), ("42;cluster\n", "42"),
                                             ("sbatch: warning: x\n43\n", "43")])
def test_parse_sbatch(out: str, job_id: str) -> None:
    assert parse_sbatch(out) == job_id


@pytest.mark.parametrize("out", ["", "Submitted batch job\n", "abc\n"])
def test_parse_sbatch_rejects_garbage(out: str) -> None:
    with pytest.raises(ValueError):
        parse_sbatch(out)


def test_time_limits_round_up_to_minutes() -> None:
    assert format_time_limit(1) == "0-00:01:00"
    assert format_time_limit(60) == "0-00:01:00"
    assert format_time_limit(3601) == "0-01:01:00"
    assert format_time_limit(2 * 86400 + 90) == "2-00:02:00"


def _job(**resources: object) -> Job:
    spec = JobSpec(command="true", resources=Resources.model_validate(resources))
    return Job(id="a" * 26, spec=spec, state=State.QUEUED, backend="slurm", created_at=0,
               updated_at=0, seq=1)


def test_sbatch_argv_maps_resources(tmp_path: Path) -> None:
    sub = Submission(job=_job(cpus=4, memory_mb=512, time_limit_s=90, partition="p",
                              extra_args=["--qos=high"]),
                     attempt=2, tag="ac-x-2", wrapper=tmp_path / "job.sh",
                     attempt_dir=tmp_path, workdir=tmp_path)
    argv = sbatch_argv(sub, BatchOptions(account="acct", extra_args=("--nice=5",)))
    assert argv[0] == "sbatch" and argv[-1] == str(tmp_path / "job.sh")
    for expected in ("--parsable", "--no-requeue", "--job-name=ac-x-2", "--comment=ac-x-2",
                     "--cpus-per-task=4", "--mem=512M", "--time=0-00:02:00",
                     "--partition=p", "--account=acct", "--nice=5", "--qos=high"):
        assert expected in argv
    default = sbatch_argv(Submission(job=_job(), attempt=1, tag="t", wrapper=tmp_path / "w",
                                     attempt_dir=tmp_path, workdir=tmp_path), BatchOptions())
    assert not any(a.startswith(("--cpus", "--mem", "--time", "--partition")) for a in default)


@pytest.mark.parametrize("arg", ["--output=/etc/x", "--job-name=x", "--array=1-3", "-o",
                                 "--wrap", "; rm -rf /", "--Bad", "--test-only", "--test", "--wait",
                                 "--version", "--help", "--quiet"])
def test_reserved_or_malformed_extra_args_are_refused(arg: str) -> None:
    with pytest.raises(InvalidRequest):
        check_extra_args([arg])


def test_options_that_only_share_a_prefix_with_reserved_ones_are_accepted() -> None:
    check_extra_args(["--wckey=x", "--wait-all-nodes=1", "--hint=nomultithread", "--hold",
                      "--verbose", "--qos=normal", "--gres=gpu:1"])


def test_classify_errors() -> None:
    dialect = SlurmDialect()
    sbatch = ["sbatch"]
    assert dialect.classify_error(
        sbatch, 1, "sbatch: error: Batch job submission failed: Invalid partition name "
        "specified") == "permanent"
    assert dialect.classify_error(
        sbatch, 1, "sbatch: error: Batch job submission failed: Unable to contact slurm "
        "controller (connect failure)") == "transient"
    assert dialect.classify_error(["squeue"], 1, "slurm_load_jobs error: Invalid job id "
                                  "specified") == "gone"
    assert dialect.classify_error(["squeue"], 1, "slurm_load_jobs error: Unable to contact "
                                  "slurm controller (connect failure)") == "transient"
    # Refusals recorded from sbatch 22.05: this job's own, for good.
    for refusal in ("Invalid generic resource (gres) specification",
                    "Batch job submission failed: Requested reservation is invalid",
                    "Batch job submission failed: Invalid feature specification",
                    "Batch job submission failed: Invalid node name specified",
                    "Temporary disk specification can not be satisfied"):
        assert dialect.classify_error(sbatch, 1, f"sbatch: error: {refusal}") == "permanent"
    # A limit every job of the user meets: the backend waits, every job alike.
    assert dialect.classify_error(
        sbatch, 1, "sbatch: error: Batch job submission failed: Job violates accounting/QOS "
        "policy (job submit limit, user's size and/or time limits)") == "transient"
    # Words acjob does not know: that job alone waits, and ends after a few tries.
    assert dialect.classify_error(
        sbatch, 1, "sbatch: error: Incompatible begin and deadline time specification") \
        == "unknown"


def _backend(tmp_path: Path, runner) -> BatchBackend:  # type: ignore[no-untyped-def]
    return BatchBackend(SlurmDialect(), Spool(tmp_path / "spool"), {}, runner=runner)


def _completed(code: int, out: str = "", err: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.CompletedProcess([], code, out, err)


def test_backend_turns_command_failures_into_error_kinds(tmp_path: Path) -> None:
    asyncio.run(_command_failures(tmp_path))


async def _command_failures(tmp_path: Path) -> None:
    job = _job()
    down = _backend(tmp_path, lambda argv, t: _completed(
        1, err="slurm_load_jobs error: Unable to contact slurm controller"))
    with pytest.raises(BackendUnavailable):
        await down.poll(["1"])
    with pytest.raises(BackendUnavailable):
        await down.submit(job, 1, tmp_path / "job.sh")
    refused = _backend(tmp_path, lambda argv, t: _completed(
        1, err="sbatch: error: Batch job submission failed: Invalid account"))
    with pytest.raises(SubmitFailed):
        await refused.submit(job, 1, tmp_path / "job.sh")

    def hang(argv: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
        raise subprocess.TimeoutExpired(argv, timeout)

    with pytest.raises(BackendUnavailable):
        await _backend(tmp_path, hang).poll(["1"])
    listing = _backend(tmp_path, lambda argv, t: _completed(0, out=SQUEUE))
    seen = await listing.poll(["7", "99"])
    assert seen["7"].state == "running" and seen["99"].state == "gone"


def test_backend_options_are_validated(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    with pytest.raises(ConfigError):
        BatchBackend(SlurmDialect(), spool, {"partitoin": "x"})
    with pytest.raises(ConfigError):
        BatchBackend(SlurmDialect(), spool, {"extra_args": "--qos=x"})
    with pytest.raises(ConfigError, match="extra_args"):
        BatchBackend(SlurmDialect(), spool, {"extra_args": ["--output=/tmp/x"]})
    ok = BatchBackend(SlurmDialect(), spool, {"partition": "main", "poll_interval": 2})
    assert ok.options.queue == "main" and ok.poll_interval == 2


def test_array_argv_and_task_ids(tmp_path: Path) -> None:
    from acjob.backends.batch import ArraySubmission
    from acjob.backends.slurm import find_array_task, sbatch_array_argv

    array = ArraySubmission(tag="ac-array-ab", script=tmp_path / "a.sh", directory=tmp_path,
                            count=5, resources=Resources(cpus=2))
    argv = sbatch_array_argv(array, BatchOptions())
    assert "--array=0-4" in argv and "--job-name=ac-array-ab" in argv
    assert "--cpus-per-task=2" in argv and argv[-1] == str(tmp_path / "a.sh")
    listing = ("20_0|COMPLETED|None|ac-array-ab|ac-array-ab\n"
               "20_1|RUNNING|None|ac-array-ab|ac-array-ab\n"
               "21|RUNNING|None|ac-other|ac-other\n")
    assert find_array_task(listing, "ac-array-ab", 3) == "20_3"
    assert find_array_task(listing, "ac-array-zz", 0) is None
    assert parse_squeue(listing)["20_1"].state == "running"
