"""TES under a hostile task: forged runner records, odd paths, images that are options.

The runner's records lie in the task's area, which its executors can write; nothing
read from there may make a response (or the daemon's memory) grow with it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from acjob.model import Attempt, Job, JobSpec, State
from acjob.spool import Spool
from acjob.tes.container import image_problem, runtime_argv, task_problem
from acjob.tes.model import Task
from acjob.tes.runner import PROTECTED_ROOTS, Runner, rewrite, roots_of
from acjob.tes.view import (
    MAX_FIELD_CHARS,
    MAX_LOG_VALUES,
    TASK_BUDGET,
    Budget,
    runner_log,
    task_document,
)

JOB_ID = "c" * 26
#: What a document holds besides the budgeted text (ids, exit codes, times, keys).
OVERHEAD = 64 << 10


def _sent(document: Any) -> int:
    """Return the size of ``document`` as the daemon sends it (FastAPI's JSON)."""
    return len(json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode())


def _ended_job(job_id: str = JOB_ID, attempts: int = 1) -> Job:
    return Job(id=job_id, spec=JobSpec(command=["x"]), state=State.COMPLETE,
               backend="local", created_at=0.0, updated_at=0.0, seq=1, attempt=attempts,
               attempts=tuple(Attempt(job_id, n, state="ended", started_at=1.0,
                                      ended_at=2.0) for n in range(1, attempts + 1)))


def _forge(spool: Spool, job: Job, log: dict[str, Any], attempt: int = 1) -> Path:
    """Write ``log`` as the attempt's record, with a 64 KiB file of NULs beside it (a
    NUL is sent as six bytes, ``\\u0000``); return that file."""
    logs = spool.work_dir(job.id) / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    big = spool.work_dir(job.id) / "big"
    big.write_bytes(b"\0" * (64 << 10))
    (logs / f"attempt-{attempt}.json").write_text(json.dumps(log).replace("BIG", str(big)))
    return big


TASK = {"executors": [{"image": "x", "command": ["true"]}, {"image": "x", "command": ["true"]}]}
ENTRY = {"exit_code": 0, "stdout_file": "BIG", "stderr_file": "BIG",
         "start_time": "2026-01-01T00:00:00+00:00"}


def test_a_forged_log_gets_no_more_entries_than_the_task_has_executors(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    job = _ended_job(attempts=4)
    for attempt in (1, 2, 3, 4):
        _forge(spool, job, {"executors": [ENTRY] * 1500}, attempt)
    document = task_document(job, TASK, spool, "FULL")
    assert [len(log["logs"]) for log in document["logs"]] == [2, 2, 2, 2]
    assert _sent(document) <= TASK_BUDGET + OVERHEAD
    # The latest attempt's last executor is served first; what does not fit is cut from
    # the start (TES allows a tail) or left empty, never dropped from the schema.
    texts = [e[s] for log in document["logs"] for e in log["logs"] for s in ("stdout", "stderr")]
    assert texts[-8:] == ["\0" * (64 << 10)] * 8
    assert len("".join(texts[:4])) < 200  # the first attempt gets the crumbs, if any
    assert any(0 < len(t) < 64 << 10 for t in texts) and set("".join(texts)) == {"\0"}


def test_a_list_response_has_one_budget_for_all_its_tasks(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    response = Budget(300_000)
    documents = []
    for n in range(4):
        job = _ended_job(chr(ord("d") + n) * 26)
        _forge(spool, job, {"executors": [ENTRY] * 2})
        documents.append(task_document(job, TASK, spool, "FULL", response))
    assert _sent(documents) <= 300_000 + OVERHEAD
    assert documents[0]["logs"][0]["logs"][1]["stdout"]  # the first ones are served
    assert documents[-1]["logs"][0]["logs"] == [
        {"exit_code": 0, "start_time": ENTRY["start_time"], "stdout": "", "stderr": ""}] * 2


def test_fields_of_a_forged_log_are_checked_and_bounded(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    job = _ended_job()
    huge = "x" * (1 << 20)
    _forge(spool, job, {
        "start_time": huge, "end_time": "yesterday",
        "executors": [{"exit_code": 0, "start_time": huge, "end_time": 5,
                       "stdout_file": "BIG" + "/" * (1 << 20)}],
        "outputs": [{"url": "file:///" + huge, "path": "/o", "size_bytes": "1"},
                    {"url": "file:///o", "path": "/o", "size_bytes": "-1"},
                    {"url": "file:///o", "path": "/o", "size_bytes": "9" * 30}]
        + [{"url": "file:///" + "u" * 4000, "path": "/o", "size_bytes": "1"}] * 2000,
        "system_logs": [huge] * 2 + ["line"]})
    document = task_document(job, TASK, spool, "FULL")
    assert _sent(document) <= TASK_BUDGET + OVERHEAD
    [log] = document["logs"]
    assert log["start_time"] == "1970-01-01T00:00:01+00:00"  # the job's own, not the log's
    assert log["logs"] == [{"exit_code": 0, "stdout": "", "stderr": ""}]
    assert 0 < len(log["outputs"]) < 2000
    assert all(len(o["url"]) < 4100 and o["size_bytes"] == "1" for o in log["outputs"])
    assert log["system_logs"] == ["x" * MAX_FIELD_CHARS] * 2 + ["line"]
    basic = task_document(job, TASK, spool, "BASIC")  # outputs are in BASIC too
    assert _sent(basic) <= TASK_BUDGET + OVERHEAD


def test_a_log_too_costly_to_parse_is_not_parsed(tmp_path: Path) -> None:
    """16 MiB of ``{},`` parse into 390 MB of dicts: such a log is not the runner's."""
    spool = Spool(tmp_path)
    job = _ended_job()
    _forge(spool, job, {"executors": [{}] * (MAX_LOG_VALUES + 1)})
    assert runner_log(spool, job, 1) is None
    _forge(spool, job, {"executors": [{}] * 1000})
    assert runner_log(spool, job, 1) == {"executors": [{}] * 1000}
    (spool.work_dir(job.id) / "logs" / "attempt-1.json").write_text("[" * 100_000)
    assert runner_log(spool, job, 1) is None  # too deep for the parser: no error


def test_the_runner_lists_a_bounded_number_of_outputs(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A directory output may hold any number of files; the record lists a bounded number
    (so the daemon can parse it) and counts the rest."""
    from acjob.tes import runner

    monkeypatch.setattr(runner, "MAX_LISTED_OUTPUTS", 2)
    plan = {"task": {"outputs": [{"path": "/out", "url": f"file://{tmp_path}/copied",
                                  "type": "DIRECTORY"}], "volumes": ["/out"],
                     "executors": [{"image": "x", "command": ["touch", "/out/a", "/out/b",
                                                              "/out/c"]}]}}
    assert runner.Runner(plan, tmp_path / "area", 1).run() == 0
    log = json.loads((tmp_path / "area" / "logs" / "attempt-1.json").read_text())
    assert [o["path"] for o in log["outputs"]] == ["/out/a", "/out/b"]
    assert log["system_logs"] == ["1 more output files were copied (not listed)"]
    assert sorted(p.name for p in (tmp_path / "copied").iterdir()) == ["a", "b", "c"]


@pytest.mark.parametrize("path", ["//etc/x", "/./etc/x", "///etc//x/", "/etc/./x"])
def test_every_spelling_of_a_path_is_checked_as_the_path_used(path: str) -> None:
    """``//etc/x`` and ``/./etc/x`` are ``/etc/x``: they map ``/etc`` like it does."""
    task = Task.model_validate({
        "executors": [{"image": "x", "command": ["true"], "stdout": path}],
        "inputs": [{"path": path, "content": "x"}], "volumes": [path],
        "outputs": [{"path": path + "/*", "path_prefix": path, "url": "file:///tmp/o"}]})
    assert task.inputs[0].path == task.volumes[0] == task.executors[0].stdout == "/etc/x"
    assert (task.outputs[0].path, task.outputs[0].path_prefix) == ("/etc/x/*", "/etc/x")
    assert roots_of([path]) == ["/etc"]
    assert set(roots_of([path])) & PROTECTED_ROOTS


@pytest.mark.parametrize("path", ["//../etc", "/./../etc", "/data/./../../etc"])
def test_dot_dot_is_refused_however_it_is_spelled(path: str) -> None:
    with pytest.raises(ValidationError, match=r"\.\."):
        Task.model_validate({"executors": [{"image": "x", "command": ["true"]}],
                             "volumes": [path]})


@pytest.mark.parametrize("roots", [["/data", "/scratch"], ["/scratch", "/data"]])
def test_host_paths_are_rewritten_once(roots: list[str]) -> None:
    """The area's own path may contain a task root (a spool under ``/scratch``)."""
    for area in (Path("/scratch/spool/j/work/root"), Path("/data/spool/j/work/root")):
        assert rewrite("cp /data/x /scratch/y", roots, area) == (
            f"cp {area}/data/x {area}/scratch/y")


def test_the_runner_rewrites_each_path_once(tmp_path: Path) -> None:
    top = "/" + tmp_path.parts[1]  # the area lies under this root: make it a task root too
    longer = "/" + "v" * len(top)
    plan = {"task": {"volumes": [top + "/in", longer],
                     "executors": [{"image": "x", "command": ["cat", f"{longer}/x",
                                                              f"{top}/in/y"]}]}}
    runner = Runner(plan, tmp_path, 1)
    assert runner._argv(runner.task.executors[0]) == [
        "cat", f"{tmp_path}/root{longer}/x", f"{tmp_path}/root{top}/in/y"]


PODMAN = ["podman", "run", "--rm", "-i", "{mounts}", "-w", "{workdir}", "{image}"]
DOCKER = ["docker", "run", "--rm", "-i", "{mounts}", "-w", "{workdir}", "{image}"]
APPTAINER = ["apptainer", "exec", "{mounts}", "--pwd", "{workdir}", "docker://{image}"]
REFERENCES = ["alpine", "alpine:3.20", "docker.io/library/ubuntu:22.04", "localhost:5000/a/b",
              "quay.io/biocontainers/samtools:1.17--h00cdaf9_0", "ubuntu@sha256:" + "a" * 64]
NOT_REFERENCES = ["--privileged", "-v", "--volume=/:/host", "alpine --privileged", "Alpine",
                  "alpine:", "", "a b", "alpine\n", "alp\u0131ne", "alpine:-x", ":tag",
                  "docker://--privileged", "/x/../y.sif", "/etc/passwd", "-/x.sif", "x" * 300]


@pytest.mark.parametrize("image", REFERENCES)
def test_image_references_are_accepted(image: str) -> None:
    for runtime in (PODMAN, DOCKER, APPTAINER):
        assert image_problem(image, runtime) is None


@pytest.mark.parametrize("image", NOT_REFERENCES)
def test_an_image_that_is_no_reference_is_refused(image: str) -> None:
    for runtime in (PODMAN, DOCKER, APPTAINER):
        assert image_problem(image, runtime) is not None
    assert image_problem(image, ["runner-without-images"]) is None  # the image is unused


def test_uris_and_local_images_only_where_the_runtime_reads_the_image_itself() -> None:
    standalone = ["apptainer", "exec", "{mounts}", "{image}"]
    for image in ("docker://alpine:3.20", "oras://ghcr.io/org/tool:1", "/images/tool.sif",
                  "library://sylabsed/examples/lolcow:latest", "shub://org/tool"):
        assert image_problem(image, standalone) is None
        assert image_problem(image, APPTAINER) is not None  # docker://docker://… is no image


@pytest.mark.parametrize("runtime", [PODMAN, DOCKER, APPTAINER])
def test_neither_image_nor_command_can_become_a_runtime_option(runtime: list[str]) -> None:
    """podman run, docker run and apptainer exec read [OPTIONS] IMAGE [COMMAND...]: '--'
    ends the options before the image, and the command follows the image."""
    command = ["--volume=/:/host", "--privileged", "sh"]
    argv = runtime_argv(runtime, "-v", ["/data"], lambda root: "/area/root" + root,
                        "alpine:3.20", None, command)
    options: list[str] = []  # the template's own, in its order
    for item in runtime[:-1]:
        options += ["-v", "/area/root/data:/data"] if item == "{mounts}" else [
            item.replace("{workdir}", "/")]
    image = runtime[-1].replace("{image}", "alpine:3.20")
    assert argv == [*options, "--", image, *command]


def test_the_end_of_options_goes_before_the_image_operand_only() -> None:
    argv = runtime_argv(["podman", "run", "--label=image={image}", "{image}"], "-v", [],
                        str, "alpine", "/w", ["ls"])
    assert argv == ["podman", "run", "--label=image=alpine", "--", "alpine", "ls"]
    assert runtime_argv(["wrapper", "--"], "-v", [], str, "x", None, ["ls"]) == [
        "wrapper", "--", "ls"]  # no operand: the template ends its options itself


def test_a_path_that_would_change_a_mount_spec_is_refused() -> None:
    task = Task.model_validate({"executors": [{"image": "alpine", "command": ["true"]}],
                                "volumes": ["/a:b/x"]})
    problem = task_problem(task, PODMAN, roots_of(["/a:b/x"]))
    assert problem is not None and "'/a:b'" in problem
    assert task_problem(task, PODMAN, ["/a,b"]) is not None
    assert task_problem(task, PODMAN, ["/data"]) is None
    bad = Task.model_validate({"executors": [{"image": "x", "command": ["true"]},
                                             {"image": "--privileged", "command": ["true"]}]})
    assert "executors[1].image" in (task_problem(bad, PODMAN, []) or "")


def test_the_runner_never_starts_a_runtime_with_a_bad_image(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A plan written before the daemon checked images: the executor fails, the runtime
    is never run."""
    started: list[list[str]] = []
    monkeypatch.setattr(Runner, "_spawn", staticmethod(
        lambda argv, *rest: started.append(argv) or 0))
    plan = {"runtime": PODMAN, "task": {"executors": [
        {"image": "--privileged", "command": ["--volume=/:/host", "sh"]}]}}
    assert Runner(plan, tmp_path, 1).run() == 1
    assert started == []
    log = json.loads((tmp_path / "logs" / "attempt-1.json").read_text())
    assert "image" in log["system_logs"][0]
    good = {**plan, "task": {"executors": [{"image": "alpine", "command": ["true"]}]}}
    assert Runner(good, tmp_path, 2).run() == 0
    assert started[0][-3:] == ["--", "alpine", "true"]
