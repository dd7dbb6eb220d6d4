"""The example web service (examples/webservice) against a real daemon, in a real browser.

The service runs as a subprocess on a free port; the daemon is a real ``ac serve``; the
jobs run the real clustalw and FastTree (locally, and on Slurm where it runs); the
pages are driven with Playwright in Debian's chromium. A stage of the job is held back
by a gate file the test creates, so what the page shows meanwhile is seen for certain.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import select
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.conftest import Daemon, client_for, free_port, tool_env, wait_for
from tests.integration.schedulers import SLURM, scheduler_daemon

APP = Path(__file__).resolve().parents[2] / "examples" / "webservice" / "app.py"
CHROMIUM = "/usr/bin/chromium"
SECRET = "a secret the daemon and the service share"
LABEL = {"app": "webservice"}
UI_TIMEOUT = 60_000   # ms: how long the browser may take at most, never a measure

SEQUENCES = """>Homo_sapiens
ATGGTGCACCTGACTCCTGAGGAGAAGTCTGCCGTTACTGCCCTGTGGGGCAAGGTGAACGTGGATGAAGTTGGTGGTGAGG
>Pan_troglodytes
ATGGTGCACCTGACTCCTGAGGAGAAGTCTGCCGTTACTGCCCTGTGGGGCAAGGTGAACGTGGATGCAGTTGGTGGTGAGG
>Gorilla_gorilla
ATGGTGCACCTGACTCCTGAGGAGAAGTCTGCAGTTACTGCCCTGTGGGGCAAGGTGAACGTGGATGAAGTTGGTGGTGAGG
>Mus_musculus
ATGGTGCACCTGACTGATGCTGAGAAGTCTGCTGTCTCTTGCCTGTGGGCAAAGGTGAACCCCGATGAAGTTGGTGGTGAGG
>Gallus_gallus
ATGGTGCACTGGACTGCTGAGGAGAAGCAGCTCATCACCGGCCTCTGGGGCAAGGTCAATGTGGCCGAATGTGGGGCCGAAG
"""
NAMES = [line[1:] for line in SEQUENCES.splitlines() if line.startswith(">")]


def _fasttree() -> str | None:
    return shutil.which("FastTree") or shutil.which("fasttree")


def require_tools() -> None:
    """Skip without chromium, clustalw or FastTree, but in CI, where they must be."""
    missing = [name for name, found in [("chromium", Path(CHROMIUM).exists()),
                                        ("clustalw", shutil.which("clustalw")),
                                        ("FastTree", _fasttree())] if not found]
    if not missing:
        return
    problem = (f"{', '.join(missing)} not installed (apt-get install clustalw fasttree "
               "chromium; scripts/test does it as root on Debian)")
    if os.environ.get("CI") == "true":
        pytest.fail(f"must run in CI: {problem}")
    pytest.skip(problem)


def local_tree(tmp: Path) -> str:
    """The same pipeline as the job's, run here: what the service must show."""
    work = tmp / "local-pipeline"
    work.mkdir()
    (work / "input.fa").write_text(SEQUENCES)
    subprocess.run(["clustalw", "-INFILE=input.fa", "-OUTFILE=alignment.fa", "-OUTPUT=FASTA",
                    "-TYPE=DNA"], cwd=work, check=True, capture_output=True, timeout=120)
    fasttree = _fasttree()
    assert fasttree is not None
    tree = subprocess.run([fasttree, "-nt", "-quiet", "alignment.fa"], cwd=work, check=True,
                          capture_output=True, timeout=120).stdout.decode().strip()
    assert tree.endswith(";")
    return tree


@dataclass
class Gate:
    """A program the job runs only once the test opens its gate (creates a file)."""

    wrapper: Path
    file: Path

    def open(self) -> None:
        self.file.touch()


def gate(tmp: Path, name: str, program: str) -> Gate:
    wrapper, file = tmp / f"gated-{name}", tmp / f"gate-{name}"
    wrapper.write_text(f"#!/bin/sh\nwhile [ ! -e '{file}' ]; do sleep 0.05; done\n"
                       f"exec '{program}' \"$@\"\n")
    wrapper.chmod(0o755)
    return Gate(wrapper, file)


@dataclass
class App:
    """The example web service, as a subprocess on a port of its own."""

    data_dir: Path
    args: list[str]
    env: dict[str, str]
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        read_fd, write_fd = os.pipe()
        argv = [sys.executable, str(APP), "--port", str(self.port), "--data-dir",
                str(self.data_dir), "--ready-fd", str(write_fd), *self.args]
        with open(self.data_dir.parent / f"app-{self.port}.log", "ab") as log:
            self.proc = subprocess.Popen(argv, env=self.env, stdout=log, stderr=log,
                                         pass_fds=(write_fd,))
        os.close(write_fd)
        try:
            ready, _, _ = select.select([read_fd], [], [], 60)
            started = os.read(read_fd, 1) if ready else b""
        finally:
            os.close(read_fd)
        if started != b"1":
            self.stop()
            log_text = (self.data_dir.parent / f"app-{self.port}.log").read_text()
            raise RuntimeError(f"the web service did not start:\n{log_text}")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def http(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, follow_redirects=False, timeout=60)

    def submit(self) -> str:
        """Post the form as a browser would; return the job id it redirects to."""
        with self.http() as http:
            answer = http.post("/jobs", data={"sequences": SEQUENCES})
        assert answer.status_code == 303, answer.text
        location = answer.headers["location"]
        assert location.startswith("/jobs/")
        return location.removeprefix("/jobs/")


@contextlib.contextmanager
def running(app: App) -> Iterator[App]:
    app.start()
    try:
        yield app
    finally:
        app.stop()


def make_app(daemon: Daemon, tmp: Path, *args: str, name: str = "app") -> App:
    data = tmp / name
    data.mkdir(exist_ok=True)
    return App(data_dir=data, args=["--acjob-url", daemon.url, *args], env=daemon.env)


def make_daemon(tmp: Path) -> Daemon:
    state, config, sock = tmp / "state", tmp / "daemon.toml", tmp / "d.sock"
    config.write_text(f'[server]\nstate_dir = "{state}"\n[backends.local]\nkill_grace = 1\n'
                      f'[webhook]\nsecret = "{SECRET}"\n'
                      "[delivery]\nfirst_retry = 0.2\nmax_retry = 0.5\n")
    return Daemon(state_dir=state, url=f"unix:{sock}",
                  env=tool_env(tmp, ACJOB_URL=f"unix:{sock}"), config=config)


@pytest.fixture
def wdaemon(short_tmp: Path) -> Iterator[Daemon]:
    require_tools()
    d = make_daemon(short_tmp)
    d.start()
    try:
        yield d
    finally:
        d.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    require_tools()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM)
        try:
            yield chromium
        finally:
            chromium.close()


def jobs_of_the_service(daemon: Daemon) -> list[object]:
    with client_for(daemon) as client:
        return client.list(label=LABEL, limit=1000)[0]


def submit_in_browser(page, app: App) -> str:  # type: ignore[no-untyped-def]
    page.goto(app.url + "/")
    page.fill("#sequences", SEQUENCES)
    page.click("#submit")
    page.wait_for_url(f"{app.url}/jobs/*", timeout=UI_TIMEOUT)
    return str(page.url).rsplit("/", 1)[1]


def expect_tree(page, tree: str, app: App, job_id: str) -> None:  # type: ignore[no-untyped-def]
    """The page draws the tree, and the service's Newick is the local pipeline's."""
    from playwright.sync_api import expect

    svg = page.locator("#tree svg.tree")
    expect(svg).to_be_visible(timeout=UI_TIMEOUT)
    expect(page.locator("#state")).to_have_text("COMPLETE")
    leaves = svg.locator("text.leaf").all_text_contents()
    assert sorted(leaves) == sorted(NAMES)
    with app.http() as http:
        answer = http.get(f"/jobs/{job_id}/result")
        assert answer.status_code == 200
        assert answer.headers["content-type"].startswith("text/plain")
        assert answer.text.strip() == tree
        alignment = http.get(page.locator("#alignment").get_attribute("href"))
    assert alignment.status_code == 200
    assert sorted(line[1:] for line in alignment.text.splitlines()
                  if line.startswith(">")) == sorted(NAMES)


def test_browser_submits_watches_progress_and_sees_the_tree(
        wdaemon: Daemon, short_tmp: Path, browser) -> None:  # type: ignore[no-untyped-def]
    from playwright.sync_api import expect

    tree = local_tree(short_tmp)
    fasttree = _fasttree()
    assert fasttree is not None
    align, build = gate(short_tmp, "clustalw", "clustalw"), gate(short_tmp, "fasttree", fasttree)
    app = make_app(wdaemon, short_tmp, "--clustalw", str(align.wrapper),
                   "--fasttree", str(build.wrapper))
    with running(app):
        page = browser.new_page()
        job_id = submit_in_browser(page, app)
        # The job's own progress reports reach the page while it runs, stage by stage.
        expect(page.locator("#stage")).to_have_text("aligning", timeout=UI_TIMEOUT)
        expect(page.locator("#state")).to_have_text("RUNNING")
        expect(page.locator("#percent")).to_have_text("10%")
        with app.http() as http:
            assert http.get(f"/jobs/{job_id}/result").status_code == 202
        align.open()
        expect(page.locator("#stage")).to_have_text("building the tree", timeout=UI_TIMEOUT)
        expect(page.locator("#percent")).to_have_text("60%")
        build.open()
        expect_tree(page, tree, app, job_id)
        expect(page.locator("#stage")).to_have_text("done")
        page.close()
    [job] = jobs_of_the_service(wdaemon)
    assert job.id == job_id  # type: ignore[attr-defined]


def _signed(body: bytes, secret: str = SECRET) -> dict[str, str]:
    return {"Content-Type": "application/json", "X-Acjob-Event": "result",
            "X-Acjob-Signature": "sha256=" + hmac.new(secret.encode(), body,
                                                      hashlib.sha256).hexdigest()}


def test_results_come_by_signed_callback_and_forged_ones_are_refused(
        wdaemon: Daemon, short_tmp: Path) -> None:
    tree = local_tree(short_tmp)
    port = free_port()
    app = make_app(wdaemon, short_tmp, "--webhook-secret", SECRET,
                   "--public-url", f"http://127.0.0.1:{port}")
    app.port = port
    with running(app), app.http() as http:
        assert http.get("/status.json").json()["mode"] == "webhook"
        job_id = app.submit()
        with client_for(wdaemon) as client:
            info = client.wait(job_id, timeout=120)
        assert info.state.value == "COMPLETE"
        # The result's callback reaches the service (it is sent after the job ends).
        record = wait_for(lambda: (r := http.get(f"/jobs/{job_id}/record.json").json())
                          ["callbacks"] and r, what="the result's callback")
        assert record["state"] == "COMPLETE" and record["learned_by"] == "callback"
        assert http.get(f"/jobs/{job_id}/result").text.strip() == tree

        forged = json.dumps({"event": "result", "delivery_id": "forged-1",
                             "job": {"id": job_id, "state": "EXECUTOR_ERROR",
                                     "exit_code": 1}}).encode()
        assert http.post("/hooks/acjob", content=forged,
                         headers=_signed(forged, "not the secret")).status_code == 403
        assert http.post("/hooks/acjob", content=forged,
                         headers={"Content-Type": "application/json"}).status_code == 403
        tampered = forged.replace(b"forged-1", b"forged-2")
        assert http.post("/hooks/acjob", content=tampered,
                         headers=_signed(forged)).status_code == 403
        status = http.get("/status.json").json()
        assert status["refused_callbacks"] == 3 and status["callbacks"] == 1
        assert http.get(f"/jobs/{job_id}/record.json").json() == record
        assert http.get(f"/jobs/{job_id}").status_code == 200


def test_killed_daemon_and_restarted_service_lose_nothing(
        wdaemon: Daemon, short_tmp: Path, browser) -> None:  # type: ignore[no-untyped-def]
    from playwright.sync_api import expect

    tree = local_tree(short_tmp)
    align = gate(short_tmp, "clustalw", "clustalw")
    app = make_app(wdaemon, short_tmp, "--clustalw", str(align.wrapper))
    app.args += ["--webhook-secret", SECRET, "--public-url", app.url]
    app.start()
    try:
        page = browser.new_page()
        job_id = submit_in_browser(page, app)
        expect(page.locator("#stage")).to_have_text("aligning", timeout=UI_TIMEOUT)

        wdaemon.kill9()
        app.stop()
        app.start()     # the same port and data directory: only job ids are kept
        with app.http() as http:
            down = http.get(f"/jobs/{job_id}")
        assert down.status_code == 503
        assert down.headers["retry-after"].isdigit()
        assert "cannot be reached" in down.text
        wdaemon.start()
        align.open()
        # The page, open all along, follows the job to its end.
        expect_tree(page, tree, app, job_id)
        page.close()
        # And the result's callback, made by the restarted daemon, reaches the
        # restarted service.
        with app.http() as http:
            wait_for(lambda: http.get(f"/jobs/{job_id}/record.json").json()["callbacks"] == 1,
                     what="the result's callback")
    finally:
        app.stop()
    [job] = jobs_of_the_service(wdaemon)
    assert job.id == job_id and job.attempt == 1  # type: ignore[attr-defined]


def test_errors_are_pages(wdaemon: Daemon, short_tmp: Path) -> None:
    failing = short_tmp / "failing-clustalw"
    failing.write_text("#!/bin/sh\necho 'ERROR: sequences refused by this clustalw' >&2\n"
                       "exit 3\n")
    failing.chmod(0o755)
    app = make_app(wdaemon, short_tmp, "--clustalw", str(failing))
    with running(app), app.http() as http:
        bad = http.post("/jobs", data={"sequences": ">a\nACGT\n>b\nAC GT\n"})
        assert bad.status_code == 400
        assert "at least 3" in bad.text and 'id="error"' in bad.text
        bad = http.post("/jobs", data={"sequences": ">a\nACGT\n>b\nAC1T\n>c\nACGA\n"})
        assert bad.status_code == 400 and "Line 4" in bad.text
        bad = http.post("/jobs", data={"sequences": "ACGT\n"})
        assert bad.status_code == 400 and "not FASTA" in bad.text
        assert jobs_of_the_service(wdaemon) == []

        job_id = app.submit()
        with client_for(wdaemon) as client:
            assert client.wait(job_id, timeout=120).exit_code == 3
        failed = http.get(f"/jobs/{job_id}/result")
        assert failed.status_code == 422
        assert failed.headers["content-type"].startswith("text/html")
        assert "ERROR: sequences refused by this clustalw" in failed.text
        assert "Traceback" not in failed.text
        page = http.get(f"/jobs/{job_id}")
        assert page.status_code == 200 and 'id="stderr"' in page.text
        assert "ERROR: sequences refused by this clustalw" in page.text
        assert http.get("/jobs/nosuchjob").status_code == 404

    nobody = make_app(wdaemon, short_tmp, name="unreachable")
    nobody.args = ["--acjob-url", f"unix:{short_tmp / 'nobody.sock'}", "--retry-for", "1"]
    with running(nobody), nobody.http() as http:
        assert http.get("/").status_code == 200
        down = http.post("/jobs", data={"sequences": SEQUENCES})
        assert down.status_code == 503
        assert down.headers["retry-after"].isdigit()
        assert "cannot be reached" in down.text and "Traceback" not in down.text


def test_the_same_flow_on_slurm(short_tmp: Path, browser) -> None:  # type: ignore[no-untyped-def]
    require_tools()
    tree = local_tree(short_tmp)
    with contextlib.contextmanager(scheduler_daemon)(SLURM, short_tmp) as sdaemon:
        app = make_app(sdaemon, short_tmp, "--backend", "slurm")
        with running(app):
            page = browser.new_page()
            job_id = submit_in_browser(page, app)
            expect_tree(page, tree, app, job_id)
            page.close()
        [job] = jobs_of_the_service(sdaemon)
        assert job.id == job_id  # type: ignore[attr-defined]
        assert job.data["backend"] == "slurm"  # type: ignore[attr-defined]


def test_a_form_sent_twice_is_one_job(wdaemon: Daemon, short_tmp: Path) -> None:
    app = make_app(wdaemon, short_tmp)
    with running(app), app.http() as http:
        token = "0123456789abcdef0123456789abcdef"
        first = http.post("/jobs", data={"sequences": SEQUENCES, "token": token})
        again = http.post("/jobs", data={"sequences": SEQUENCES, "token": token})
        assert first.status_code == again.status_code == 303
        assert first.headers["location"] == again.headers["location"]
        edited = http.post("/jobs", data={"sequences": SEQUENCES.replace("ATGG", "ATGC", 1),
                                          "token": token})
        assert edited.status_code == 303
        assert edited.headers["location"] != first.headers["location"]
        # An uploaded file is taken as the pasted text is.
        uploaded = http.post("/jobs", data={"token": token},
                             files={"file": ("seqs.fa", SEQUENCES.encode())})
        assert uploaded.headers["location"] == first.headers["location"]
        binary = http.post("/jobs", files={"file": ("seqs.fa", b"\xff\xfe>a\n")})
        assert binary.status_code == 400 and "not text" in binary.text
    assert len(jobs_of_the_service(wdaemon)) == 2


def test_blast_search_in_the_browser(wdaemon: Daemon, short_tmp: Path, browser) -> None:  # type: ignore[no-untyped-def]
    from playwright.sync_api import expect

    if not shutil.which("blastn") or not shutil.which("makeblastdb"):
        problem = "ncbi-blast+ not installed (apt-get install ncbi-blast+)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"must run in CI: {problem}")
        pytest.skip(problem)
    query = ("GGCAAGGTGAACGTGGATGAAGTTGGTGGTGAGGCCCTGGGCAGGCTGCTGGTGGTCTACCCTTGGACC")
    app = make_app(wdaemon, short_tmp)
    with running(app), app.http() as http:
        bad = http.post("/blast", data={"query": ">p\nMVHLTPEEKSAVTALWGKVNVDEVGGEALGRL\n"})
        assert bad.status_code == 400 and "not a nucleotide" in bad.text
        page = browser.new_page()
        page.goto(app.url + "/blast")
        page.fill("#query", query)
        page.click("#submit")
        page.wait_for_url(f"{app.url}/jobs/*", timeout=UI_TIMEOUT)
        job_id = str(page.url).rsplit("/", 1)[1]
        first = page.locator("#hits tbody tr").first
        expect(first).to_be_visible(timeout=UI_TIMEOUT)
        expect(first.locator("td").nth(0)).to_have_text("globin_ref")
        expect(first.locator("td").nth(1)).to_have_text("100.0%")
        page.close()
        tabular = http.get(f"/jobs/{job_id}/result")
        assert tabular.status_code == 200
        assert http.get(f"/jobs/{job_id}/alignment").status_code == 404
    (short_tmp / "query.fa").write_text(f">query\n{query}\n")
    local = subprocess.run(
        ["blastn", "-task", "blastn", "-query", "query.fa", "-db",
         str(app.data_dir / "blastdb" / "demo"), "-evalue", "10", "-max_target_seqs", "50",
         "-outfmt", "6 qseqid sseqid pident length mismatch gapopen qstart qend sstart send "
         "evalue bitscore"], cwd=short_tmp, check=True, capture_output=True, timeout=120)
    assert tabular.text == local.stdout.decode()
    [job] = jobs_of_the_service(wdaemon)
    assert job.data["labels"] == {"app": "webservice", "tool": "blast"}  # type: ignore[attr-defined]
