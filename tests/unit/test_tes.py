"""TES pieces that need no daemon: path mapping, the runtime template, states, the runner."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from acjob.errors import InvalidRequest
from acjob.model import Job, JobSpec, State
from acjob.server.tes import job_spec, stored_task
from acjob.spool import Spool
from acjob.tes.model import Task
from acjob.tes.runner import SYSTEM_ERROR_EXIT, Runner, rewrite, roots_of
from acjob.tes.view import task_document, task_state


def test_roots_and_rewriting_match_whole_components(tmp_path: Path) -> None:
    roots = roots_of(["/data/in.txt", "/data/sub/x", "/outputs/o", "/vol"])
    assert roots == ["/outputs", "/data", "/vol"]
    root = tmp_path / "root"
    assert rewrite("cat /data/in.txt > /outputs/o", roots, root) == (
        f"cat {root}/data/in.txt > {root}/outputs/o")
    assert rewrite("--in=/data", roots, root) == f"--in={root}/data"
    for untouched in ("/database/x", "/usr/data/x", "/datax", "data/x", "/bin/vol"):
        assert rewrite(untouched, roots, root) == untouched


def test_runtime_template_mounts_instead_of_rewriting(tmp_path: Path) -> None:
    task = {"executors": [{"image": "biocontainers/samtools", "command": ["cat", "/data/x"],
                           "workdir": "/data"}],
            "inputs": [{"path": "/data/x", "content": "x"}]}
    plan = {"task": task, "mount_flag": "--bind",
            "runtime": ["apptainer", "exec", "{mounts}", "--pwd", "{workdir}",
                        "docker://{image}"]}
    runner = Runner(plan, tmp_path, 1)
    argv = runner._argv(runner.task.executors[0])
    assert argv == ["apptainer", "exec", "--bind", f"{tmp_path}/root/data:/data", "--pwd",
                    "/data", "--", "docker://biocontainers/samtools", "cat", "/data/x"]
    host = Runner({**plan, "runtime": None}, tmp_path, 1)
    assert host._argv(host.task.executors[0]) == ["cat", f"{tmp_path}/root/data/x"]


def test_runner_records_executors_and_stops_at_the_first_failure(tmp_path: Path) -> None:
    plan = {"task": {"volumes": ["/vol"], "executors": [
        {"image": "x", "command": ["sh", "-c", "echo one > /vol/f; exit 2"],
         "ignore_error": True},
        {"image": "x", "command": ["sh", "-c", "cat /vol/f; exit 5"]},
        {"image": "x", "command": ["touch", "/vol/never"]}]}}
    assert Runner(plan, tmp_path, 1).run() == 5
    log = json.loads((tmp_path / "logs" / "attempt-1.json").read_text())
    assert [e["exit_code"] for e in log["executors"]] == [2, 5]
    assert Path(log["executors"][1]["stdout_file"]).read_text() == "one\n"
    assert not (tmp_path / "root" / "vol" / "never").exists()
    # A second attempt starts from an empty area.
    assert Runner(plan, tmp_path, 2).run() == 5
    assert not (tmp_path / "root" / "vol" / "never").exists()


def test_runner_system_errors(tmp_path: Path) -> None:
    missing = {"task": {"inputs": [{"path": "/in/x", "url": f"file://{tmp_path}/absent"}],
                        "executors": [{"image": "x", "command": ["true"]}]}}
    assert Runner(missing, tmp_path / "a", 1).run() == SYSTEM_ERROR_EXIT
    no_program = {"task": {"executors": [{"image": "x", "command": ["/nonexistent/prog"]}]}}
    assert Runner(no_program, tmp_path / "b", 1).run() == 127


@pytest.mark.parametrize("path", ["relative", "/a/../b", "/a/\0"])
def test_paths_must_be_absolute_and_stay_inside(path: str) -> None:
    with pytest.raises(ValidationError):
        Task.model_validate({"executors": [{"image": "x", "command": ["true"]}],
                             "volumes": [path]})


def test_outputs_with_wildcards_need_a_prefix() -> None:
    with pytest.raises(ValidationError, match="path_prefix"):
        Task.model_validate({"executors": [{"image": "x", "command": ["true"]}],
                             "outputs": [{"path": "/out/*.txt", "url": "file:///tmp/o"}]})


@pytest.mark.parametrize("prefix", ["/other", "/out/a", "relative", "/../out", "/o", "/out*"])
def test_a_path_prefix_is_a_directory_the_path_lies_in(prefix: str) -> None:
    with pytest.raises(ValidationError, match="path_prefix"):
        Task.model_validate({"executors": [{"image": "x", "command": ["true"]}],
                             "outputs": [{"path": "/out/*.txt", "path_prefix": prefix,
                                          "url": "file:///tmp/o"}]})
    Task.model_validate({"executors": [{"image": "x", "command": ["true"]}],
                         "outputs": [{"path": "/out/*.txt", "path_prefix": "/out/",
                                      "url": "file:///tmp/o"}]})
    # Without wildcards TES ignores it.
    Task.model_validate({"executors": [{"image": "x", "command": ["true"]}],
                         "outputs": [{"path": "/out/a.txt", "path_prefix": prefix,
                                      "url": "file:///tmp/o"}]})


@pytest.mark.parametrize("params", [{"backend": "Slurm"}, {"backend": "x" * 300},
                                    {"time_limit_s": "\u00b2"}, {"time_limit_s": "9" * 30},
                                    {"queue": "a b"}, {"account": ""}])
def test_backend_parameters_acjob_cannot_use_are_a_clear_error(params: dict[str, str]) -> None:
    task = Task.model_validate({"executors": [{"image": "x", "command": ["true"]}]})
    with pytest.raises(InvalidRequest):
        job_spec(task, params, ["runner"])


def test_resources_and_backend_parameters_map_onto_the_job() -> None:
    task = Task.model_validate({
        "executors": [{"image": "x", "command": ["true"]}],
        "resources": {"cpu_cores": 2, "ram_gb": 1.5, "zones": ["short"],
                      "backend_parameters": {"Backend": "slurm", "VmSize": "x"}}})
    spec = job_spec(task, {"backend": "slurm"}, ["runner"])
    assert spec.backend == "slurm"
    assert (spec.resources.cpus, spec.resources.memory_mb, spec.resources.queue) == (
        2, 1536, "short")
    stored = stored_task(task, {"backend": "slurm"})
    assert stored["resources"]["backend_parameters"] == {"Backend": "slurm"}


def _job(state: State) -> Job:
    return Job(id="b" * 26, spec=JobSpec(command=["x"]), state=state, backend="local",
               created_at=0.0, updated_at=0.0, seq=1)


def test_states_and_views(tmp_path: Path) -> None:
    assert task_state(_job(State.EXECUTOR_ERROR), {"system_error": "no input"}) == "SYSTEM_ERROR"
    assert task_state(_job(State.EXECUTOR_ERROR), {}) == "EXECUTOR_ERROR"
    assert task_state(_job(State.PREEMPTED), None) == "PREEMPTED"
    task = {"executors": [{"image": "x", "command": ["true"]}],
            "inputs": [{"path": "/d/x", "content": "secret"}]}
    spool = Spool(tmp_path)
    assert task_document(_job(State.QUEUED), task, spool, "MINIMAL") == {
        "id": "b" * 26, "state": "QUEUED"}
    basic = task_document(_job(State.QUEUED), task, spool, "BASIC")
    assert "content" not in basic["inputs"][0] and basic["logs"] == []
    assert task_document(_job(State.QUEUED), task, spool, "FULL")["inputs"][0]["content"] \
        == "secret"


def test_log_paths_outside_the_area_are_never_read(tmp_path: Path) -> None:
    from acjob.tes.view import _tail

    area = tmp_path / "area"
    area.mkdir()
    (area / "ok").write_text("inside")
    (tmp_path / "secret").write_text("outside")
    assert _tail(area, str(area / "ok")) == "inside"
    assert _tail(area, str(tmp_path / "secret")) == ""
    assert _tail(area, str(area / ".." / "secret")) == ""
    assert _tail(area, 42) == ""


def test_a_spoiled_runner_log_never_breaks_the_view(tmp_path: Path) -> None:
    """The log lies in the task's area, where the task could rewrite it."""
    import os

    from acjob.tes.view import Budget, _executor_logs, _output_logs, runner_log

    spool = Spool(tmp_path)
    job = _job(State.RUNNING)
    logs = spool.work_dir(job.id) / "logs"
    logs.mkdir(parents=True)
    fifo = spool.work_dir(job.id) / "fifo"
    os.mkfifo(fifo)

    (logs / "attempt-1.json").write_text(json.dumps({"executors": 5, "outputs": "x"}))
    assert runner_log(spool, job, 1) == {"executors": 5, "outputs": "x"}
    assert _executor_logs(spool.work_dir(job.id), {"executors": 5}, 4, True, Budget(1 << 20)) \
        == []
    spoiled = {"executors": [{"exit_code": 0, "stdout_file": str(fifo), "start_time": 3},
                             {"exit_code": True}, {"exit_code": 1 << 40}, "x"],
               "outputs": [{"url": "file:///o", "path": "/o", "size_bytes": "1", "x": 1},
                           {"url": 5, "path": "/o", "size_bytes": "1"}, 7]}
    assert _executor_logs(spool.work_dir(job.id), spoiled, 4, True, Budget(1 << 20)) == [
        {"exit_code": 0, "stdout": "", "stderr": ""}]  # the FIFO is never opened for reading
    assert _output_logs(spoiled, Budget(1 << 20)) == [
        {"url": "file:///o", "path": "/o", "size_bytes": "1"}]
    os.unlink(logs / "attempt-1.json")
    os.mkfifo(logs / "attempt-1.json")
    assert runner_log(spool, job, 1) is None


def test_the_runner_never_follows_a_task_link_out_of_its_area(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("host file\n")
    area = tmp_path / "area"
    plan = {"task": {"volumes": ["/vol"], "executors": [
        {"image": "x", "command": ["ln", "-s", str(secret), "/vol/link"]},
        {"image": "x", "command": ["echo", "overwritten"], "stdout": "/vol/link"}]}}
    assert Runner(plan, area, 1).run() == 1
    assert secret.read_text() == "host file\n"
    log = json.loads((area / "logs" / "attempt-1.json").read_text())
    assert "outside" in log["system_logs"][0]
    reading = {"task": {"volumes": ["/vol"], "executors": [
        {"image": "x", "command": ["ln", "-s", str(secret), "/vol/link"]},
        {"image": "x", "command": ["cat"], "stdin": "/vol/link"}]}}
    assert Runner(reading, tmp_path / "b", 1).run() == 1
    assert not [f for f in (tmp_path / "b").rglob("*")
                if f.is_file() and not f.is_symlink() and b"host file" in f.read_bytes()]
    looping = {"task": {"volumes": ["/vol"], "executors": [
        {"image": "x", "command": ["ln", "-s", "/vol/loop", "/vol/loop"]},
        {"image": "x", "command": ["echo"], "stdout": "/vol/loop"}]}}
    assert Runner(looping, tmp_path / "d", 1).run() == 1  # the executor's failure
    out = tmp_path / "copied"
    copying = {"task": {"outputs": [{"path": "/vol/link", "url": f"file://{out}"}],
                        "executors": [{"image": "x", "command": [
                            "ln", "-s", str(secret), "/vol/link"]}]}}
    assert Runner(copying, tmp_path / "c", 1).run() == SYSTEM_ERROR_EXIT
    assert not out.exists()


def test_a_runner_failure_is_the_tasks_system_error(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    plan = {"task": {"executors": [{"image": "x", "command": ["true"]}]}}
    runner = Runner(plan, tmp_path / "a", 1)

    def broken() -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(runner, "_collect", broken)
    assert runner.run() == SYSTEM_ERROR_EXIT
    log = json.loads((tmp_path / "a" / "logs" / "attempt-1.json").read_text())
    assert "a bug" in log["system_error"]


def test_an_unreadable_plan_is_a_system_error(tmp_path: Path) -> None:
    import subprocess
    import sys

    plan = tmp_path / "plan.json"
    plan.write_text("{not json")
    done = subprocess.run([sys.executable, "-m", "acjob.tes.runner", str(plan),
                           str(tmp_path / "area")], capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == SYSTEM_ERROR_EXIT, done.stderr
    log = json.loads((tmp_path / "area" / "logs" / "attempt-1.json").read_text())
    assert "plan" in log["system_error"] and log["executors"] == []


def test_with_content_an_inputs_url_is_ignored_as_tes_says() -> None:
    base = {"executors": [{"image": "x", "command": ["true"]}]}
    Task.model_validate({**base, "inputs": [{"path": "/d/x", "content": "x",
                                             "url": "s3://bucket/x"}]})
    with pytest.raises(ValidationError, match="URLs"):
        Task.model_validate({**base, "inputs": [{"path": "/d/x", "url": "s3://bucket/x"}]})


def test_a_link_swapped_in_after_the_check_is_caught_at_the_open(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A process an executor left running could replace a directory by a link between
    the runner's check and its open: the file actually opened is checked again, and
    a file outside is never emptied."""
    from acjob.tes.runner import StagingError

    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "f").write_text("keep me")
    runner = Runner({"task": {"executors": [{"image": "x", "command": ["true"]}]}},
                    tmp_path / "area", 1)
    runner.root.mkdir(parents=True)
    (runner.root / "vol").symlink_to(outside)
    monkeypatch.setattr(runner, "inside", lambda path: path)  # the check passed before
    for mode in ("wb", "rb"):
        with pytest.raises(StagingError):
            runner.open_inside(runner.root / "vol" / "f", mode)  # type: ignore[arg-type]
    assert (outside / "f").read_text() == "keep me"
    (runner.root / "file").symlink_to(outside / "f")
    with pytest.raises(OSError):
        runner.open_inside(runner.root / "file", "wb")  # a link as the last step
    assert (outside / "f").read_text() == "keep me"
