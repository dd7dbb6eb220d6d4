"""GA4GH TES over a real daemon: py-tes as the client, every response checked against
the official OpenAPI document (closed schemas: no field the spec does not define)."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
import tes

from acjob.tes.view import LIST_BUDGET, TASK_BUDGET
from tests.conftest import Daemon, free_port, tool_env, wait_for
from tests.integration.schedulers import SLURM
from tests.integration.tes_schema import validate

TOKEN = "tes-token-for-tests"
FINAL = {"COMPLETE", "EXECUTOR_ERROR", "SYSTEM_ERROR", "CANCELED"}


def _daemon(short_tmp: Path, extra: str = "") -> Daemon:
    port = free_port()
    state = short_tmp / "state"
    config = short_tmp / "tes.toml"
    config.write_text(f'[server]\nstate_dir = "{state}"\ntoken = "{TOKEN}"\n{extra}')
    env = tool_env(short_tmp, ACJOB_URL=f"http://127.0.0.1:{port}", ACJOB_TOKEN=TOKEN)
    return Daemon(state_dir=state, url=f"http://127.0.0.1:{port}", env=env, config=config)


@pytest.fixture
def tes_daemon(short_tmp: Path) -> Iterator[Daemon]:
    d = _daemon(short_tmp)
    d.start()
    try:
        yield d
    finally:
        d.stop()


@pytest.fixture
def api(tes_daemon: Daemon) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=tes_daemon.url + "/ga4gh/tes/v1", timeout=30,
                      headers={"Authorization": f"Bearer {TOKEN}"}) as client:
        yield client


def _client(d: Daemon) -> tes.HTTPClient:
    return tes.HTTPClient(d.url, token=TOKEN, timeout=30)


def _wait(api: httpx.Client, task_id: str) -> dict[str, Any]:
    def final() -> dict[str, Any] | None:
        task = api.get(f"/tasks/{task_id}", params={"view": "FULL"}).json()
        return task if task["state"] in FINAL else None

    wait_for(final, timeout=120, what=f"task {task_id} to end")
    task = final()
    assert task is not None
    validate(task, "tesTask")
    return task


def test_pytes_task_with_stdin_inline_input_and_output(tes_daemon: Daemon,
                                                       short_tmp: Path) -> None:
    results = short_tmp / "results"
    client = _client(tes_daemon)
    task = tes.Task(
        name="sort-words",
        inputs=[tes.Input(path="/data/words.txt", content="pear\napple\nfig\n")],
        outputs=[tes.Output(path="/outputs/sorted.txt", url=f"file://{results}/sorted.txt")],
        executors=[
            tes.Executor(image="alpine", command=["sort"], stdin="/data/words.txt",
                         stdout="/outputs/sorted.txt"),
            tes.Executor(image="alpine", command=["sh", "-c", "cat /outputs/sorted.txt; "
                                                  "echo to-stderr >&2"]),
        ],
        tags={"project": "acjob-tests"},
    )
    task_id = client.create_task(task)
    done = client.wait(task_id, timeout=120)
    assert done.state == "COMPLETE"
    full = client.get_task(task_id, view="FULL")
    assert full.name == "sort-words" and full.tags == {"project": "acjob-tests"}
    [log] = full.logs
    assert [e.exit_code for e in log.logs] == [0, 0]
    assert log.logs[1].stdout == "apple\nfig\npear\n"
    assert log.logs[1].stderr == "to-stderr\n"
    assert (results / "sorted.txt").read_text() == "apple\nfig\npear\n"
    assert [(o.path, int(o.size_bytes)) for o in log.outputs] == [("/outputs/sorted.txt", 15)]
    assert full.inputs[0].content == "pear\napple\nfig\n"
    basic = client.get_task(task_id, view="BASIC")
    assert basic.inputs[0].content is None and basic.logs[0].logs[1].stdout is None
    assert client.get_task(task_id, view="MINIMAL").executors is None
    info = client.get_service_info()
    assert info.type["artifact"] == "tes"


def test_every_response_matches_the_official_document(api: httpx.Client,
                                                      tes_daemon: Daemon) -> None:
    info = api.get("/service-info")
    assert info.status_code == 200
    validate(info.json(), "tesServiceInfo")
    # The GA4GH compliance suite wants an http(s) URL: by default, the service's own.
    assert info.json()["organization"]["url"] == f"{tes_daemon.url}/"
    created = api.post("/tasks", json={"executors": [{"image": "x", "command": ["true"]}]})
    assert created.status_code == 200
    validate(created.json(), "tesCreateTaskResponse")
    task_id = created.json()["id"]
    for view in ("MINIMAL", "BASIC", "FULL"):
        document = api.get(f"/tasks/{task_id}", params={"view": view}).json()
        validate(document, "tesTask", minimal=view == "MINIMAL")
    assert set(api.get(f"/tasks/{task_id}").json()) == {"id", "state"}  # MINIMAL by default
    _wait(api, task_id)
    listed = api.get("/tasks", params={"view": "FULL"}).json()
    validate(listed, "tesListTasksResponse")
    assert [t["id"] for t in listed["tasks"]] == [task_id]
    cancel = api.post(f"/tasks/{task_id}:cancel")
    assert cancel.status_code == 409 and cancel.json()["error"]["code"] == "task_final"
    # The same service on the paths older clients use, without touching the native API.
    with httpx.Client(base_url=tes_daemon.url, headers=api.headers) as root:
        assert root.get(f"/v1/tasks/{task_id}").json()["state"] == "COMPLETE"
        validate(root.get("/v1/tasks/service-info").json(), "tesServiceInfo")
        assert root.get("/v1/jobs", params={"limit": 1}).status_code == 200
    # A strict check fails on a field the spec does not define.
    with pytest.raises(jsonschema.ValidationError):
        validate({"id": task_id, "state": "COMPLETE", "extra": 1}, "tesTask")


@pytest.mark.parametrize(("body", "needle"), [
    ({}, "executors"),
    ({"executors": []}, "executors"),
    ({"executors": [{"image": "x", "command": ["true"], "workdir": "relative"}]}, "absolute"),
    ({"executors": [{"image": "x", "command": ["true"]}],
      "inputs": [{"path": "/data/../../etc/x", "content": "x"}]}, ".."),
    ({"executors": [{"image": "x", "command": ["true"]}],
      "inputs": [{"path": "/data/x", "url": "s3://bucket/x"}]}, "file://"),
    ({"executors": [{"image": "x", "command": ["true"]}],
      "outputs": [{"path": "/usr/x", "url": "file:///tmp/x"}]}, "/usr"),
    ({"executors": [{"image": "x", "command": ["true"]}],
      "inputs": [{"path": "//etc/x", "content": "x"}]}, "/etc"),
    ({"executors": [{"image": "x", "command": ["true"], "stdout": "/./etc/x"}]}, "/etc"),
    ({"executors": [{"image": "x", "command": ["true"]}],
      "resources": {"backend_parameters": {"VmSize": "big"},
                    "backend_parameters_strict": True}}, "vmsize"),
])
def test_invalid_tasks_get_400(api: httpx.Client, body: dict[str, Any], needle: str) -> None:
    response = api.post("/tasks", json=body)
    assert response.status_code == 400, response.text
    assert needle in response.text.lower()
    assert api.get("/tasks").json() == {"tasks": []}


def test_unknown_tasks_get_404(api: httpx.Client, tes_daemon: Daemon) -> None:
    for task_id in ("a" * 26, "nonsense", "..%2F..%2Fetc"):
        response = api.get(f"/tasks/{task_id}")
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "not_found"
    job = httpx.post(tes_daemon.url + "/v1/jobs", json={"command": "true"},
                     headers=api.headers).json()
    assert api.get(f"/tasks/{job['id']}").status_code == 404  # a native job is no task
    assert httpx.get(tes_daemon.url + "/ga4gh/tes/v1/tasks").status_code == 401


def test_file_and_http_inputs_failures_and_ignore_error(api: httpx.Client,
                                                        short_tmp: Path) -> None:
    source = short_tmp / "source.txt"
    source.write_text("from a file\n")
    served = short_tmp / "served"
    served.mkdir()
    (served / "page.txt").write_text("from http\n")
    handler = lambda *a: http.server.SimpleHTTPRequestHandler(*a, directory=str(served))  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/page.txt"
        ok = api.post("/tasks", json={
            "inputs": [{"path": "/in/a.txt", "url": f"file://{source}"},
                       {"path": "/in/b.txt", "url": url}],
            "executors": [
                {"image": "x", "command": ["sh", "-c", "exit 3"], "ignore_error": True},
                {"image": "x", "command": ["cat", "/in/a.txt", "/in/b.txt"]}]}).json()["id"]
        task = _wait(api, ok)
        assert task["state"] == "COMPLETE"
        assert [e["exit_code"] for e in task["logs"][0]["logs"]] == [3, 0]
        assert task["logs"][0]["logs"][1]["stdout"] == "from a file\nfrom http\n"
        missing = api.post("/tasks", json={
            "inputs": [{"path": "/in/c.txt", "url": url.replace("page", "absent")}],
            "executors": [{"image": "x", "command": ["true"]}]}).json()["id"]
        task = _wait(api, missing)
        assert task["state"] == "SYSTEM_ERROR"
        assert any("404" in s for s in task["logs"][0]["system_logs"])
        assert [t["id"] for t in api.get("/tasks", params={"state": "SYSTEM_ERROR"}).json()[
            "tasks"]] == [missing]
    finally:
        server.shutdown()
    failing = api.post("/tasks", json={"executors": [
        {"image": "x", "command": ["sh", "-c", "exit 4"]},
        {"image": "x", "command": ["touch", "/vol/never"]}], "volumes": ["/vol"]}).json()["id"]
    task = _wait(api, failing)
    assert task["state"] == "EXECUTOR_ERROR"
    assert [e["exit_code"] for e in task["logs"][0]["logs"]] == [4]
    no_output = api.post("/tasks", json={
        "outputs": [{"path": "/out/x", "url": f"file://{short_tmp}/x"}],
        "executors": [{"image": "x", "command": ["true"]}]}).json()["id"]
    assert _wait(api, no_output)["state"] == "SYSTEM_ERROR"


def test_each_executor_log_is_published_as_it_ends(api: httpx.Client,
                                                   short_tmp: Path) -> None:
    gate = short_tmp / "gate"
    created = api.post("/tasks", json={"executors": [
        {"image": "x", "command": ["sh", "-c", "echo first"]},
        {"image": "x", "command": ["sh", "-c", f"while [ ! -e {gate} ]; do sleep 0.05; done"]},
    ]})
    task_id = created.json()["id"]

    def first_logged() -> dict[str, Any] | None:
        task = api.get(f"/tasks/{task_id}", params={"view": "FULL"}).json()
        return task if task.get("logs") and task["logs"][-1]["logs"] else None

    task = wait_for(first_logged, what="the first executor's log")
    assert task["state"] == "RUNNING"  # the second executor still runs
    assert [(e["exit_code"], e["stdout"]) for e in task["logs"][-1]["logs"]] == [(0, "first\n")]
    gate.touch()
    assert [e["exit_code"] for e in _wait(api, task_id)["logs"][-1]["logs"]] == [0, 0]


def test_cancel_list_pages_and_filters(tes_daemon: Daemon, api: httpx.Client,
                                       short_tmp: Path) -> None:
    client = _client(tes_daemon)
    ids = [client.create_task(tes.Task(
        name=f"{prefix}-{i}", tags={"group": prefix, **({"odd": ""} if i % 2 else {})},
        executors=[tes.Executor(image="x", command=["sleep", "300"])]))
        for prefix in ("alpha", "beta") for i in range(3)]
    page = client.list_tasks(view="MINIMAL", page_size=4)
    assert [t.id for t in page.tasks] == ids[::-1][:4]
    rest = client.list_tasks(view="MINIMAL", page_size=4, page_token=page.next_page_token)
    assert [t.id for t in rest.tasks] == ids[::-1][4:] and rest.next_page_token is None

    def listed(**params: Any) -> list[str]:
        body = api.get("/tasks", params=params).json()
        validate(body, "tesListTasksResponse", minimal=True)
        return [t["id"] for t in body["tasks"]]

    assert listed(name_prefix="beta") == ids[3:][::-1]
    assert listed(tag_key="group", tag_value="alpha") == ids[:3][::-1]
    assert listed(tag_key=["group", "odd"], tag_value=["beta", ""]) == [ids[4]]
    client.cancel_task(ids[0])
    assert _wait(api, ids[0])["state"] == "CANCELED"
    client.cancel_task(ids[0])  # again: still fine
    assert listed(state="CANCELED") == [ids[0]]
    assert listed(state="PAUSED") == [] and listed(state="UNKNOWN") == []
    for task_id in ids[1:]:
        client.cancel_task(task_id)


def test_a_task_survives_kill9_of_the_daemon(tes_daemon: Daemon, api: httpx.Client,
                                             short_tmp: Path) -> None:
    gate = short_tmp / "gate"
    task_id = api.post("/tasks", json={"executors": [
        {"image": "x", "command": ["sh", "-c", f"echo first > /work/f; "
                                   f"while [ ! -e {gate} ]; do sleep 0.1; done"]},
        {"image": "x", "command": ["cat", "/work/f"]}], "volumes": ["/work"]}).json()["id"]
    wait_for(lambda: api.get(f"/tasks/{task_id}").json()["state"] == "RUNNING",
             what="the task to run")
    tes_daemon.kill9()
    tes_daemon.start()
    gate.touch()
    task = _wait(api, task_id)
    assert task["state"] == "COMPLETE", task
    assert task["logs"][0]["logs"][1]["stdout"] == "first\n"


def test_a_forged_runner_log_cannot_grow_a_response(api: httpx.Client) -> None:
    """An executor can rewrite the runner's record once the runner has exited (it lies
    in the task's area); the daemon serves no more executors than the task has, and no
    more of their output than its budget, however the record points."""
    task_id = api.post("/tasks", json={"executors": [
        {"image": "x", "command": ["pwd"]},
        {"image": "x", "command": ["sh", "-c", "head -c 65536 /dev/zero > big"]}]}).json()["id"]
    done = _wait(api, task_id)
    assert done["state"] == "COMPLETE", done
    root = Path(done["logs"][0]["logs"][0]["stdout"].strip())  # the executors' directory
    big = str(root / "big")  # 64 KiB of NULs, six bytes each in JSON
    forged = {"executors": [{"exit_code": 0, "stdout_file": big, "stderr_file": big}] * 40,
              "outputs": [{"url": "file:///" + "u" * 4000, "path": "/p", "size_bytes": "1"}]
              * 2000, "system_logs": ["s" * 100_000] * 50}
    (root.parent / "logs" / "attempt-1.json").write_text(json.dumps(forged))
    response = api.get(f"/tasks/{task_id}", params={"view": "FULL"})
    assert response.status_code == 200
    assert len(response.content) <= TASK_BUDGET + (64 << 10)
    task = response.json()
    validate(task, "tesTask")
    assert len(task["logs"][0]["logs"]) == 2  # the task's executors, not the record's
    listed = api.get("/tasks", params={"view": "FULL", "page_size": 2047})
    assert listed.status_code == 200
    assert len(listed.content) <= min(TASK_BUDGET, LIST_BUDGET) + (64 << 10)
    validate(listed.json(), "tesListTasksResponse")
    assert [len(t["logs"][0]["logs"]) for t in listed.json()["tasks"]] == [2]


def test_in_a_container_runtime_task_values_never_become_its_options(short_tmp: Path) -> None:
    d = _daemon(short_tmp, '[tes]\nruntime = ["podman", "run", "--rm", "-i", "{mounts}", '
                           '"-w", "{workdir}", "{image}"]\n')
    d.start()
    try:
        with httpx.Client(base_url=d.url + "/ga4gh/tes/v1", timeout=30,
                          headers={"Authorization": f"Bearer {TOKEN}"}) as api:
            for body, needle in [
                ({"executors": [{"image": "--privileged",
                                 "command": ["--volume=/:/host", "sh"]}]}, "executors[0].image"),
                ({"executors": [{"image": "alpine", "command": ["true"]},
                                {"image": "alpine --rm", "command": ["true"]}]},
                 "executors[1].image"),
                ({"executors": [{"image": "alpine", "command": ["true"]}],
                  "volumes": ["/a:/b"]}, "cannot be mounted"),
            ]:
                response = api.post("/tasks", json=body)
                assert response.status_code == 400, response.text
                assert response.json()["error"]["code"] == "invalid_request"
                assert needle in response.json()["error"]["message"]
            assert api.get("/tasks").json() == {"tasks": []}
            accepted = api.post("/tasks", json={"executors": [
                {"image": "quay.io/org/tool:1.0", "command": ["true"]}]})
            assert accepted.status_code == 200, accepted.text
            # Let it end (no runtime is installed here) before its files are removed.
            _wait(api, accepted.json()["id"])
    finally:
        d.stop()


def test_a_task_on_slurm(short_tmp: Path) -> None:
    SLURM.require()
    d = _daemon(short_tmp, "[backends.slurm]\npoll_interval = 0.2\nmax_poll_interval = 2\n")
    d.start()
    try:
        with httpx.Client(base_url=d.url + "/ga4gh/tes/v1",
                          headers={"Authorization": f"Bearer {TOKEN}"}) as api:
            task_id = api.post("/tasks", json={
                "inputs": [{"path": "/data/x", "content": "on slurm\n"}],
                "resources": {"cpu_cores": 1, "backend_parameters": {"backend": "slurm"}},
                "executors": [{"image": "x", "command": [
                    "sh", "-c", 'cat /data/x; echo "job $SLURM_JOB_ID"']}]}).json()["id"]
            task = _wait(api, task_id)
            assert task["state"] == "COMPLETE", task
            [log] = task["logs"]
            assert log["metadata"]["backend"] == "slurm"
            stdout = log["logs"][0]["stdout"]
            assert stdout.startswith("on slurm\njob ") and log["metadata"]["native_id"] in stdout
    finally:
        d.stop()
