"""The Grid Engine dialect's pure functions, on output recorded from Son of Grid Engine 8.1.9."""

from __future__ import annotations

from pathlib import Path

import pytest

from acjob.backends.batch import ArraySubmission, BatchOptions, Submission
from acjob.backends.gridengine import (
    GridEngineDialect,
    accounting_observation,
    check_extra_args,
    find_listed,
    observe_state,
    parse_error_reason,
    parse_qacct,
    parse_qstat,
    parse_qsub,
    qsub_argv,
    qsub_array_argv,
    resource_args,
)
from acjob.errors import InvalidRequest
from acjob.model import FailureKind, Job, JobSpec, Resources, State

QSTAT_XML = """<?xml version='1.0'?>
<job_info  xmlns:xsd="http://arc.liv.ac.uk/repos/darcs/sge/source/dist/util/resources/schemas/qstat/qstat.xsd">
  <queue_info>
    <job_list state="running">
      <JB_job_number>2</JB_job_number>
      <JAT_prio>0.50000</JAT_prio>
      <JB_name>ac-test-1</JB_name>
      <JB_owner>root</JB_owner>
      <state>r</state>
      <JAT_start_time>2026-11-28T21:49:14</JAT_start_time>
      <queue_name>all.q@vm</queue_name>
      <slots>1</slots>
    </job_list>
    <job_list state="running">
      <JB_job_number>3</JB_job_number>
      <JAT_prio>0.50000</JAT_prio>
      <JB_name>ac-array-x</JB_name>
      <JB_owner>root</JB_owner>
      <state>r</state>
      <JAT_start_time>2026-11-28T21:49:14</JAT_start_time>
      <queue_name>all.q@vm</queue_name>
      <slots>1</slots>
      <tasks>1</tasks>
    </job_list>
  </queue_info>
  <job_info>
    <job_list state="pending">
      <JB_job_number>3</JB_job_number>
      <JAT_prio>0.50000</JAT_prio>
      <JB_name>ac-array-x</JB_name>
      <JB_owner>root</JB_owner>
      <state>qw</state>
      <JB_submission_time>2026-11-28T21:49:13</JB_submission_time>
      <queue_name></queue_name>
      <slots>1</slots>
      <tasks>2</tasks>
    </job_list>
    <job_list state="pending">
      <JB_job_number>3</JB_job_number>
      <JAT_prio>0.50000</JAT_prio>
      <JB_name>ac-array-x</JB_name>
      <JB_owner>root</JB_owner>
      <state>qw</state>
      <JB_submission_time>2026-11-28T21:49:13</JB_submission_time>
      <queue_name></queue_name>
      <slots>1</slots>
      <tasks>3-5:2</tasks>
    </job_list>
    <job_list state="pending">
      <JB_job_number>4</JB_job_number>
      <JAT_prio>0.00000</JAT_prio>
      <JB_name>ac-held-1</JB_name>
      <JB_owner>root</JB_owner>
      <state>Eqw</state>
      <JB_submission_time>2026-11-28T21:49:13</JB_submission_time>
      <queue_name></queue_name>
      <slots>1</slots>
    </job_list>
  </job_info>
</job_info>
"""

QACCT = """==============================================================
qname        all.q
hostname     vm
jobname      ac-old-1
jobnumber    2
failed       0
exit_status  0
==============================================================
qname        all.q
hostname     vm
jobname      ac-test-1
jobnumber    2
taskid       undefined
failed       100 : assumedly after job
exit_status  137                  (Killed)
ru_wallclock 10s
"""

QSTAT_J = """==============================================================
job_number:                 4
job_name:                   ac-held-1
error reason          1:      11/28/2026 21:49:31 [0:5501]: error: can't open output file \
"/nonexistent/x": No such file or directory
scheduling info:            Job is in error state
"""


def _job(**resources: object) -> Job:
    return Job(id="a" * 26, spec=JobSpec(command="true", resources=Resources(**resources)),
               state=State.QUEUED, backend="gridengine", created_at=0.0, updated_at=0.0, seq=1)


def test_parse_qstat_expands_array_tasks() -> None:
    listed = parse_qstat(QSTAT_XML)
    assert [(i.native_id, i.state) for i in listed] == [
        ("2", "r"), ("3.1", "r"), ("3.2", "qw"), ("3.3", "qw"), ("3.5", "qw"), ("4", "Eqw")]
    assert find_listed(listed, "ac-test-1") == "2"
    assert find_listed(listed, "ac-array-x") == "3"
    assert find_listed(listed, "nothing") is None
    assert parse_qstat("<job_info><queue_info/><job_info/></job_info>") == []
    with pytest.raises(ValueError, match="no XML"):
        parse_qstat("error: commlib error: got select error (Connection refused)")


def test_dialect_poll_observations() -> None:
    seen = GridEngineDialect().parse_poll(QSTAT_XML)
    assert seen["2"].state == "running"
    assert seen["3.2"].state == "pending"
    assert seen["4"].state == "failed" and seen["4"].failure is FailureKind.BOOT_FAIL
    assert GridEngineDialect().parse_find_task(QSTAT_XML, "ac-array-x", 1) == "3.2"


@pytest.mark.parametrize(("code", "state"), [
    ("qw", "pending"), ("hqw", "pending"), ("r", "running"), ("t", "running"),
    ("Rr", "running"), ("dr", "running"), ("s", "pending"), ("S", "pending"),
    ("Eqw", "failed"), ("dt", "running"), ("zz", "pending"), ("", "pending")])
def test_state_letters(code: str, state: str) -> None:
    assert observe_state(code).state == state


def test_parse_qsub() -> None:
    assert parse_qsub("2\n") == "2"
    assert parse_qsub("3.1-3:1\n") == "3"
    with pytest.raises(ValueError):
        parse_qsub("Your job 5 has been submitted")


def test_qacct_records_are_matched_by_name() -> None:
    records = parse_qacct(QACCT)
    assert [(r.name, r.failed, r.exit_status) for r in records] == [
        ("ac-old-1", 0, 0), ("ac-test-1", 100, 137)]
    assert records[1].failed_text == "assumedly after job"


@pytest.mark.parametrize(("failed", "kind"), [
    (0, None), (100, None), (37, FailureKind.TIMEOUT), (26, FailureKind.BOOT_FAIL)])
def test_accounting_observation(failed: int, kind: FailureKind | None) -> None:
    record = parse_qacct(f"jobname x\nfailed {failed} : text\nexit_status 0\n")[0]
    observed = accounting_observation(record)
    assert (observed.failure if observed else None) is kind


def test_error_reason() -> None:
    assert parse_error_reason(QSTAT_J) == (
        "error: can't open output file \"/nonexistent/x\": No such file or directory")
    assert parse_error_reason("job_number: 4\n") is None


def test_qsub_argv(tmp_path: Path) -> None:
    sub = Submission(job=_job(cpus=4, memory_mb=1000, time_limit_s=90, queue="all.q",
                              account="proj", extra_args=["-l", "arch=lx-amd64", "-h"]),
                     attempt=1, tag="ac-x-1", wrapper=tmp_path / "job.sh",
                     attempt_dir=tmp_path, workdir=tmp_path)
    argv = qsub_argv(sub, BatchOptions(parallel_environment="smp"))
    assert argv[:2] == ["qsub", "-terse"] and argv[-1] == str(tmp_path / "job.sh")
    joined = " ".join(argv)
    for expected in ("-notify", "-r n", "-N ac-x-1", f"-wd {tmp_path}", "-q all.q",
                     "-P proj", "-pe smp 4", "-l h_vmem=250M", "-l h_rt=90",
                     "-l arch=lx-amd64 -h"):
        assert expected in joined
    plain = resource_args(Resources(), BatchOptions())
    assert plain == []


def test_array_argv(tmp_path: Path) -> None:
    array = ArraySubmission(tag="ac-array-1", script=tmp_path / "a.sh", directory=tmp_path,
                            count=3, resources=Resources())
    argv = qsub_array_argv(array, BatchOptions())
    assert "-t" in argv and argv[argv.index("-t") + 1] == "1-3"
    assert f"{tmp_path}/ac-array-1-$TASK_ID.out" in argv
    assert GridEngineDialect().array_task_id("7", 0) == "7.1"


@pytest.mark.parametrize("args", [
    ["-o", "/etc/passwd"], ["-N", "x"], ["-t", "1-3"], ["--wrap"], ["-l"], ["h_vmem=1G"],
    ["-pe", "smp"], ["-l", "-h"], ["-@", "opts"], ["; rm -rf /"], ["-notify"],
    ["-verify"], ["-w", "v"], ["-help"], ["-jsv", "/tmp/x.sh"], ["-binding", "env"]])
def test_reserved_or_malformed_extra_args_are_refused(args: list[str]) -> None:
    with pytest.raises(InvalidRequest):
        check_extra_args(args)


def test_good_extra_args() -> None:
    check_extra_args(["-l", "h_vmem=2G", "-h", "-pe", "mpi", "8", "-p", "-5",
                      "-binding", "linear:1", "-binding", "env", "linear:1", "-soft",
                      "-q", "all.q", "-hard"])


def test_several_cpus_need_a_parallel_environment() -> None:
    dialect = GridEngineDialect()
    with pytest.raises(InvalidRequest, match="parallel environment"):
        dialect.check_resources(Resources(cpus=2), BatchOptions())
    dialect.check_resources(Resources(cpus=2), BatchOptions(parallel_environment="smp"))
    dialect.check_resources(Resources(cpus=1), BatchOptions())


def test_classify_errors() -> None:
    dialect = GridEngineDialect()
    down = 'error: unable to send message to qmaster using port 6444 on host "vm"'
    assert dialect.classify_error(["qstat"], 1, down) == "transient"
    assert dialect.classify_error(["qsub"], 1, "Unable to run job: " + down) == "transient"
    assert dialect.classify_error(
        ["qsub"], 1, 'Unable to run job: Job was rejected because job requests unknown '
                     'queue "nosuch"') == "permanent"
    assert dialect.classify_error(["qdel"], 1, 'denied: job "999" does not exist') == "gone"
    # Refusals recorded from qsub 8.1.9: asking again cannot change them.
    for refusal in ('job rejected: the requested parallel environment "x" does not exist',
                    'job rejected: the requested project "x" does not exist',
                    'attribute "h_vmem" is not a memory value', 'unknown resource "x"',
                    "the advance reservation id 999 is invalid"):
        assert dialect.classify_error(["qsub"], 1, f"Unable to run job: {refusal}\nExiting.\n") \
            == "permanent", refusal
    # These may pass: the job is submitted again later.
    for passing in ("job rejected: Only 100 jobs are allowed per user (current job count: 100)",
                    "failed receiving gdi request response for mid=1 (got syncron message "
                    "receive timeout error)."):
        assert dialect.classify_error(["qsub"], 1, f"Unable to run job: {passing}\n") \
            == "transient", passing
    # Words acjob does not know (qsub 8.1.9): that job alone waits, and ends after a few.
    assert dialect.classify_error(
        ["qsub"], 1, 'qsub: invalid priority "99999".  Must be an integer from -1023 to 1024\n'
    ) == "unknown"
    assert dialect.cancel_argv("7.2") == ["qdel", "7", "-t", "2"]
    assert dialect.cancel_argv("7") == ["qdel", "7"]
