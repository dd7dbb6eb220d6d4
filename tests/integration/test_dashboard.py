"""The dashboard in a real headless browser (Playwright driving Debian's chromium):
against a daemon on TCP with a token, and through ``ac dashboard`` for the private
daemon on its Unix socket.

Every wait is Playwright's ``expect`` (or a wait for a process or a file): no sleeps, no
timing thresholds. Each test keeps a screenshot under its tmp dir and, when it exists
(it is ignored by git), under ``tests/artifacts/``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import acjob
from tests.conftest import Daemon, free_port, tool_env, wait_for

CHROMIUM = Path("/usr/bin/chromium")
TOKEN = "dashboard-test-token-0123456789"
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
IN_CI = os.environ.get("CI") == "true"

if not CHROMIUM.exists():
    if IN_CI:
        raise RuntimeError("CI must run the browser tests: /usr/bin/chromium is missing "
                           "(scripts/test installs Debian's chromium when run as root)")
    pytest.skip("no /usr/bin/chromium (apt-get install chromium; scripts/test does it as "
                "root on Debian)", allow_module_level=True)
try:
    from playwright.sync_api import Browser, BrowserContext, Page, expect, sync_playwright
except ImportError:
    if IN_CI:
        raise
    pytest.skip("the playwright package is not installed (pip install -e '.[test]')",
                allow_module_level=True)

# Slow machines: a state the page shows may take a while to arrive (nothing is timed).
expect.set_options(timeout=30_000)

# A job that says what it does only when the test lets it (a file appears), so the page
# can be seen following its output live. It reports progress where the daemon offers it.
STEPPED = r"""
step() { while [ ! -e "$GATE/$1" ]; do sleep 0.05; done; }
progress() { if [ -n "${ACJOB_PROGRESS:-}" ]; then echo "$1" > "$ACJOB_PROGRESS"; fi; }
step 1; echo "line one"; echo "warning one" >&2; progress "40 aligning"
step 2; echo "line two"; echo "warning two" >&2; progress "80 writing"
step 3; echo "done"
"""


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True,
            args=["--no-sandbox", "--disable-dev-shm-usage"])
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def context(browser: Browser, tmp_path: Path, request: pytest.FixtureRequest
            ) -> Iterator[BrowserContext]:
    ctx = browser.new_context(viewport={"width": 1100, "height": 900})
    ctx.set_default_timeout(30_000)
    try:
        yield ctx
    finally:
        for n, page in enumerate(ctx.pages):
            _screenshot(page, tmp_path, f"{request.node.name}-{n}")
        ctx.close()


def _screenshot(page: Page, tmp_path: Path, name: str) -> None:
    name = re.sub(r"[^\w.-]", "_", name)
    shot = tmp_path / f"{name}.png"
    page.screenshot(path=str(shot), full_page=True)
    if ARTIFACTS.is_dir():
        shutil.copy(shot, ARTIFACTS / shot.name)


@pytest.fixture
def tcp_daemon(short_tmp: Path) -> Iterator[Daemon]:
    port = free_port()
    state = short_tmp / "state-tcp"
    config = short_tmp / "tcp.toml"
    config.write_text(f'[server]\nstate_dir = "{state}"\ntoken = "{TOKEN}"\n'
                      "[backends.local]\nkill_grace = 1\n"
                      '[webhook]\nsecret = "dashboard-webhook-secret"\n')
    env = tool_env(short_tmp, ACJOB_URL=f"http://127.0.0.1:{port}", ACJOB_TOKEN=TOKEN)
    d = Daemon(state_dir=state, url=f"http://127.0.0.1:{port}", env=env, config=config)
    d.start()
    try:
        yield d
    finally:
        d.stop()


@pytest.fixture
def client(tcp_daemon: Daemon) -> Iterator[acjob.Client]:
    with acjob.Client(tcp_daemon.url, token=TOKEN) as c:
        yield c


def _log_in(page: Page, base: str) -> None:
    page.goto(f"{base}/ui/")
    expect(page).to_have_url(f"{base}/ui/login")
    page.fill("#token", TOKEN)
    page.click("button[type=submit]")
    expect(page).to_have_url(f"{base}/ui/")
    expect(page.locator("#jobs")).to_be_visible()


@pytest.fixture
def page(context: BrowserContext, tcp_daemon: Daemon) -> Page:
    p = context.new_page()
    _log_in(p, tcp_daemon.url)
    return p


def _rows(page: Page) -> Any:
    return page.locator("#jobs tbody tr")


# -- access ---------------------------------------------------------------------------


def test_login_with_the_token_and_refused_without(context: BrowserContext,
                                                  tcp_daemon: Daemon) -> None:
    base = tcp_daemon.url
    page = context.new_page()
    page.goto(f"{base}/ui/")
    expect(page).to_have_url(f"{base}/ui/login")
    page.fill("#token", "not-the-token")
    page.click("button[type=submit]")
    expect(page.locator("#login-error")).to_have_text(re.compile("not the daemon's token"))
    assert context.cookies() == []
    # The API answers a browser without a session 401, as JSON.
    answer = page.request.get(f"{base}/v1/jobs")
    assert answer.status == 401
    assert answer.json()["error"]["code"] == "unauthorized"

    page.fill("#token", TOKEN)
    page.click("button[type=submit]")
    expect(page).to_have_url(f"{base}/ui/")
    [cookie] = context.cookies()
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert TOKEN not in cookie["value"]
    assert page.request.get(f"{base}/v1/jobs").status == 200
    # A cookie is not a token: it passes nowhere but as a cookie.
    with httpx.Client(base_url=base) as http:
        bearer = {"Authorization": f"Bearer {cookie['value']}"}
        assert http.get("/v1/jobs", headers=bearer).status_code == 401

    page.click("#logout")
    expect(page).to_have_url(f"{base}/ui/login")
    assert page.request.get(f"{base}/v1/jobs").status == 401
    log = tcp_daemon.log.read_text()
    assert TOKEN not in log and cookie["value"] not in log


def test_cross_site_requests_are_refused(page: Page, tcp_daemon: Daemon,
                                         client: acjob.Client) -> None:
    base = tcp_daemon.url
    job = client.submit(["sleep", "300"])
    # The page's own request without the CSRF proof: refused, the job goes on.
    status = page.evaluate(
        "async (id) => (await fetch(`/v1/jobs/${id}/cancel`, {method: 'POST'})).status",
        job.id)
    assert status == 403
    # With the cookie and the right proof, but sent from another site's page: refused.
    [cookie] = page.context.cookies()
    csrf = page.evaluate("async () => (await (await fetch('/ui/session')).json()).csrf")
    with httpx.Client(base_url=base, cookies={cookie["name"]: cookie["value"]}) as http:
        forged = http.post(f"/v1/jobs/{job.id}/cancel",
                           headers={"X-Acjob-CSRF": csrf, "Origin": "http://evil.example"})
        assert forged.status_code == 403
        assert forged.json()["error"]["code"] == "cross_site_refused"
        wrong = http.post(f"/v1/jobs/{job.id}/cancel", headers={"X-Acjob-CSRF": "0" * 64})
        assert wrong.status_code == 403
        assert wrong.json()["error"]["code"] == "csrf_failed"
    assert client.get(job.id).state not in ("CANCELING", "CANCELED")
    # The proof, from the page's own origin: accepted.
    status = page.evaluate(
        """async ([id, csrf]) => (await fetch(`/v1/jobs/${id}/cancel`,
            {method: 'POST', headers: {'X-Acjob-CSRF': csrf}})).status""", [job.id, csrf])
    assert status == 202
    assert job.wait().state == "CANCELED"


# -- the list ---------------------------------------------------------------------------


def test_jobs_appear_live_and_filter(page: Page, client: acjob.Client) -> None:
    expect(page.locator("#empty")).to_be_visible()
    ran = client.submit(["true"], name="align-1", labels={"project": "tree"})
    held = client.submit(["sleep", "300"], name="blast-1", labels={"project": "other"})
    ran.wait()
    # Live: no reload.
    expect(_rows(page)).to_have_count(2)
    expect(page.locator(f"tr[data-id='{ran.id}'] .state")).to_have_text("COMPLETE")
    expect(page.locator(f"tr[data-id='{held.id}'] .state")).to_have_text("RUNNING")

    page.select_option("#filter-state", "RUNNING")
    expect(_rows(page)).to_have_count(1)
    expect(page.locator(f"tr[data-id='{held.id}']")).to_be_visible()
    page.click("#filter-clear")
    expect(_rows(page)).to_have_count(2)

    page.fill("#filter-label", "project=tree")
    page.click("#filters button[type=submit]")
    expect(_rows(page)).to_have_count(1)
    expect(page.locator(f"tr[data-id='{ran.id}']")).to_be_visible()
    page.click("#filter-clear")

    page.fill("#filter-name", "blast")
    page.click("#filters button[type=submit]")
    expect(_rows(page)).to_have_count(1)
    expect(page.locator(f"tr[data-id='{held.id}']")).to_be_visible()
    page.click("#filter-clear")

    page.fill("#filter-backend", "slurm")
    page.click("#filters button[type=submit]")
    expect(page.locator("#empty")).to_be_visible()
    page.fill("#filter-backend", "local")
    page.click("#filters button[type=submit]")
    expect(_rows(page)).to_have_count(2)
    held.cancel()


def test_pages_of_jobs(page: Page, client: acjob.Client) -> None:
    jobs = client.submit_many([{"command": ["true"], "name": f"job-{n:02}"} for n in range(30)])
    expect(_rows(page)).to_have_count(25)
    expect(page.locator("#page-older")).to_be_enabled()
    expect(page.locator("#page-newer")).to_be_disabled()
    expect(page.locator(f"tr[data-id='{jobs[-1].id}']")).to_be_visible()  # newest first
    page.click("#page-older")
    expect(_rows(page)).to_have_count(5)
    expect(page.locator("#page-number")).to_have_text("page 2")
    expect(page.locator(f"tr[data-id='{jobs[0].id}']")).to_be_visible()
    expect(page.locator("#page-older")).to_be_disabled()
    page.click("#page-newer")
    expect(_rows(page)).to_have_count(25)


# -- a job's page -----------------------------------------------------------------------


def test_job_page_follows_output_live_and_cancels(page: Page, client: acjob.Client,
                                                  tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    gate.mkdir()
    job = client.submit(STEPPED, env={"GATE": str(gate)}, name="stepped",
                        labels={"kind": "test"})
    page.click(f"tr[data-id='{job.id}'] a")
    expect(page).to_have_url(re.compile(f"#/jobs/{job.id}$"))
    expect(page.locator("#job-state")).to_have_text("RUNNING")
    expect(page.locator("dd[data-fact='Command']")).to_contain_text("step 1")
    expect(page.locator("dd[data-fact='Labels']")).to_have_text("kind=test")

    (gate / "1").touch()
    expect(page.locator("#stdout")).to_have_text("line one\n")
    expect(page.locator("#stderr")).to_have_text("warning one\n")
    (gate / "2").touch()
    expect(page.locator("#stdout")).to_have_text("line one\nline two\n")
    expect(page.locator("#stderr")).to_have_text("warning one\nwarning two\n")
    expect(page.locator("#attempts tbody tr")).to_have_count(1)
    expect(page.locator("#no-deliveries")).to_be_visible()

    page.once("dialog", lambda dialog: dialog.accept())
    page.click("#cancel")
    expect(page.locator("#job-state")).to_have_text("CANCELED")
    expect(page.locator("#cancel")).to_be_hidden()
    expect(page.locator("dd[data-fact='Reason']")).to_contain_text("cancel")
    assert client.get(job.id).state == "CANCELED"


def test_job_page_shows_the_end_of_a_finished_job(page: Page, client: acjob.Client,
                                                  tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    gate.mkdir()
    for step in "123":
        (gate / step).touch()
    # A callback to a port where nothing listens: its delivery is tried and retried.
    hook = f"http://127.0.0.1:{free_port()}/done"
    job = client.submit(STEPPED, env={"GATE": str(gate)},
                        deliveries=[{"type": "webhook", "url": hook}])
    info = job.wait()
    assert info.state == "COMPLETE"
    page.goto(f"{page.url.split('#')[0]}#/jobs/{job.id}")
    expect(page.locator("#job-state")).to_have_text("COMPLETE")
    expect(page.locator("#stdout")).to_have_text("line one\nline two\ndone\n")
    expect(page.locator("dd[data-fact='Exit status']")).to_have_text("0")
    expect(page.locator("#cancel")).to_be_hidden()
    delivery = page.locator("#deliveries tbody tr")
    expect(delivery).to_have_count(1)
    expect(delivery).to_contain_text("webhook")
    expect(delivery).to_contain_text(hook)
    expect(page.locator("#no-deliveries")).to_be_hidden()


def test_a_long_log_shows_its_end(page: Page, client: acjob.Client,
                                  tcp_daemon: Daemon) -> None:
    """The page asks for the end of the output only (``tail``), not all of it."""
    job = client.submit("head -c 1000000 /dev/zero | tr '\\0' x; echo; echo THE END")
    assert job.wait().state == "COMPLETE"
    with httpx.Client(base_url=tcp_daemon.url,
                      headers={"Authorization": f"Bearer {TOKEN}"}) as http:
        end = http.get(f"/v1/jobs/{job.id}/stdout", params={"tail": 9})
        assert end.content == b"\nTHE END\n"
        assert end.headers["X-Acjob-Offset"] == "1000000"  # of 1000009 bytes
        assert http.get(f"/v1/jobs/{job.id}/stdout",
                        params={"tail": 10**9}).headers["X-Acjob-Offset"] == "0"
    page.goto(f"{page.url.split('#')[0]}#/jobs/{job.id}")
    expect(page.locator("#stdout")).to_contain_text("THE END")
    expect(page.locator("#stdout-note")).to_contain_text("not shown")
    assert len(page.locator("#stdout").text_content() or "") == 64 * 1024


def test_progress_bar_follows_the_jobs_progress(page: Page, client: acjob.Client,
                                                tmp_path: Path) -> None:
    """The page draws the ``progress`` of a job's JSON as it changes. Shown here with the
    job's own JSON as the daemon sends it, the progress put in by the test (so the page's
    part holds whatever the daemon reports)."""
    gate = tmp_path / "gate"
    gate.mkdir()
    job = client.submit(STEPPED, env={"GATE": str(gate)})
    progress: dict[str, Any] = {"value": None}

    def with_progress(route: Any) -> None:
        answer = route.fetch()
        body = answer.json()
        body["progress"] = progress["value"]
        route.fulfill(response=answer, body=json.dumps(body))

    page.route(re.compile(rf"/v1/jobs/{job.id}(\?.*)?$"), with_progress)
    page.goto(f"{page.url.split('#')[0]}#/jobs/{job.id}")
    expect(page.locator("#job-state")).to_have_text("RUNNING")
    expect(page.locator("#progress")).to_be_hidden()
    progress["value"] = {"percent": 40.0, "message": "aligning", "updated_at": "now"}
    page.evaluate("() => window.dispatchEvent(new HashChangeEvent('hashchange'))")
    expect(page.locator("#progress-bar")).to_have_attribute("aria-valuenow", "40")
    expect(page.locator("#progress-text")).to_have_text("40% aligning")
    progress["value"] = {"percent": 80.0, "message": "writing", "updated_at": "later"}
    page.evaluate("() => window.dispatchEvent(new HashChangeEvent('hashchange'))")
    expect(page.locator("#progress-bar")).to_have_attribute("aria-valuenow", "80")
    expect(page.locator("#progress-text")).to_have_text("80% writing")
    (gate / "1").touch()
    expect(page.locator("#stdout")).to_have_text("line one\n")
    _screenshot(page, tmp_path, "job-page")

    def list_with_progress(route: Any) -> None:
        answer = route.fetch()
        body = answer.json()
        for item in body["jobs"]:
            item["progress"] = progress["value"] if item["id"] == job.id else None
        route.fulfill(response=answer, body=json.dumps(body))

    page.route(re.compile(r"/v1/jobs\?"), list_with_progress)
    page.goto(f"{page.url.split('#')[0]}#/")
    expect(page.locator(f"tr[data-id='{job.id}'] .progress-cell [role=progressbar]")
           ).to_have_attribute("aria-valuenow", "80")
    page.unroute_all(behavior="ignoreErrors")
    for step in "123":
        (gate / step).touch()
    job.wait()


def test_progress_events_move_the_bar(page: Page, client: acjob.Client,
                                      tmp_path: Path) -> None:
    """A ``progress`` event on the job's event stream moves the bar by itself (here the
    stream is the test's: one progress event, as the daemon sends them)."""
    gate = tmp_path / "gate"
    gate.mkdir()
    job = client.submit(STEPPED, env={"GATE": str(gate)})
    wait_for(lambda: client.get(job.id).state == "RUNNING", what="the job to run")
    event = {"attempt": 1, "progress": {"percent": 60.0, "message": "from the stream",
                                        "updated_at": "now"}}
    page.route(re.compile(rf"/v1/jobs/{job.id}/events"), lambda route: route.fulfill(
        status=200, content_type="text/event-stream",
        body=f"retry: 600000\nevent: progress\ndata: {json.dumps(event)}\n\n"))
    page.goto(f"{page.url.split('#')[0]}#/jobs/{job.id}")
    expect(page.locator("#progress-bar")).to_have_attribute("aria-valuenow", "60")
    expect(page.locator("#progress-text")).to_have_text("60% from the stream")
    page.unroute_all(behavior="ignoreErrors")
    for step in "123":
        (gate / step).touch()
    job.wait()


def test_progress_from_the_daemon(page: Page, client: acjob.Client, tmp_path: Path) -> None:
    """End to end: the job writes ``$ACJOB_PROGRESS`` and the bar moves."""
    gate = tmp_path / "gate"
    gate.mkdir()
    job = client.submit(STEPPED, env={"GATE": str(gate)})
    page.goto(f"{page.url.split('#')[0]}#/jobs/{job.id}")
    expect(page.locator("#job-state")).to_have_text("RUNNING")
    (gate / "1").touch()
    expect(page.locator("#stdout")).to_have_text("line one\n")
    expect(page.locator("#progress-bar")).to_have_attribute("aria-valuenow", "40")
    (gate / "2").touch()
    expect(page.locator("#progress-bar")).to_have_attribute("aria-valuenow", "80")
    expect(page.locator("#progress-text")).to_contain_text("writing")
    (gate / "3").touch()
    job.wait()


# -- the chart ----------------------------------------------------------------------------


def test_chart_of_states_wait_and_run_time(page: Page, client: acjob.Client,
                                           tcp_daemon: Daemon) -> None:
    done = [client.submit(["true"]) for _ in range(3)]
    for job in done:
        job.wait()
    with httpx.Client(base_url=tcp_daemon.url,
                      headers={"Authorization": f"Bearer {TOKEN}"}) as http:
        stats = http.get("/v1/stats", params={"window": 600, "buckets": 10}).json()
    assert len(stats["history"]["times"]) == 11
    assert stats["history"]["states"]["COMPLETE"][-1] == 3
    assert stats["history"]["states"]["COMPLETE"][0] == 0
    assert {j["id"] for j in stats["jobs"]} == {j.id for j in done}
    assert all(j["wait_s"] >= 0 and j["run_s"] >= 0 for j in stats["jobs"])

    page.click("#nav-chart")
    expect(page.locator("#chart-states canvas")).to_be_visible()
    expect(page.locator("#chart-times canvas")).to_be_visible()
    expect(page.locator("#chart-summary")).to_contain_text("3 jobs ended")
    expect(page.locator("#chart-states .u-legend")).to_contain_text("COMPLETE")


def test_readable_on_a_phone(browser: Browser, tcp_daemon: Daemon, client: acjob.Client,
                             tmp_path: Path) -> None:
    ctx = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True,
                              has_touch=True)
    try:
        page = ctx.new_page()
        _log_in(page, tcp_daemon.url)
        job = client.submit(["echo", "hello from a phone"], name="phone")
        job.wait()
        expect(_rows(page)).to_have_count(1)
        # The wide columns give way; the page does not scroll sideways.
        expect(page.locator("#jobs th.wide").first).to_be_hidden()
        assert page.evaluate("() => document.documentElement.scrollWidth") <= 390
        page.click(f"tr[data-id='{job.id}'] a")
        expect(page.locator("#stdout")).to_have_text("hello from a phone\n")
        assert page.evaluate("() => document.documentElement.scrollWidth") <= 390
        _screenshot(page, tmp_path, "phone")
    finally:
        ctx.close()


# -- ac dashboard: the private daemon on its Unix socket --------------------------------


@pytest.fixture
def private_env(short_tmp: Path) -> Iterator[dict[str, str]]:
    """The environment of a user with no daemon configured: the private one starts on
    demand (and is stopped after the test)."""
    env = tool_env(short_tmp)
    try:
        yield env
    finally:
        subprocess.run([sys.executable, "-m", "acjob.cli.ac", "shutdown"], env=env,
                       capture_output=True, timeout=60)


def _dashboard(env: dict[str, str]) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen([sys.executable, "-m", "acjob.cli.ac", "dashboard", "--no-browser"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    url = proc.stdout.readline().strip()
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+/ui/login\?token=[\w-]{40,}", url), url
    return proc, url


def test_ac_dashboard_serves_the_private_daemon(browser: Browser, private_env: dict[str, str],
                                                tmp_path: Path) -> None:
    proc, url = _dashboard(private_env)
    base = url.split("/ui/")[0]
    ctx = browser.new_context()
    other = browser.new_context()
    try:
        # Nothing passes without the session, not even to the daemon's API.
        with httpx.Client(base_url=base) as http:
            assert http.get("/v1/jobs").status_code == 401
            assert http.get("/ui/", follow_redirects=False).headers["location"] == "/ui/login"
        page = ctx.new_page()
        page.goto(url)
        expect(page).to_have_url(f"{base}/ui/")
        expect(page.locator("#empty")).to_be_visible()
        [cookie] = ctx.cookies()
        assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"

        # The URL works once: a second browser is refused.
        intruder = other.new_page()
        intruder.goto(url)
        expect(intruder.locator("#login-error")).to_contain_text("used already")
        assert intruder.request.get(f"{base}/v1/jobs").status == 401

        gate = tmp_path / "gate"
        gate.mkdir()
        sock = Path(private_env["XDG_RUNTIME_DIR"]) / "acjob" / "acjob.sock"
        with acjob.Client(f"unix:{sock}") as client:  # the private daemon it started
            job = client.submit(STEPPED, env={"GATE": str(gate)}, name="private")
            expect(_rows(page)).to_have_count(1)
            page.click(f"tr[data-id='{job.id}'] a")
            expect(page.locator("#job-state")).to_have_text("RUNNING")
            (gate / "1").touch()
            expect(page.locator("#stdout")).to_have_text("line one\n")  # streamed through
            (gate / "2").touch()
            expect(page.locator("#stdout")).to_have_text("line one\nline two\n")
            # A cancel without the proof is refused by the relay; the page's is not.
            status = page.evaluate(
                "async (id) => (await fetch(`/v1/jobs/${id}/cancel`, {method: 'POST'})).status",
                job.id)
            assert status == 403
            page.once("dialog", lambda dialog: dialog.accept())
            page.click("#cancel")
            expect(page.locator("#job-state")).to_have_text("CANCELED")
            assert client.get(job.id).state == "CANCELED"
        _screenshot(page, tmp_path, "ac-dashboard")
    finally:
        ctx.close()
        other.close()
        proc.send_signal(signal.SIGINT)
        try:
            _, err = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    # Ctrl-C stops it cleanly: the status of an interrupted tool, no traceback, port closed.
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    with pytest.raises(httpx.ConnectError), httpx.Client(base_url=base) as http:
        http.get("/v1/jobs")


def test_ac_dashboard_relays_a_tcp_daemon_with_its_token(browser: Browser,
                                                         tcp_daemon: Daemon) -> None:
    proc, url = _dashboard(tcp_daemon.env)
    try:
        ctx = browser.new_context()
        page = ctx.new_page()
        page.goto(url)
        expect(page).to_have_url(re.compile(r"/ui/$"))
        with acjob.Client(tcp_daemon.url, token=TOKEN) as client:
            job = client.submit(["echo", "over tcp"])
            job.wait()
        expect(_rows(page)).to_have_count(1)
        ctx.close()
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=30)
    assert TOKEN not in tcp_daemon.log.read_text()
    wait_for(lambda: proc.returncode is not None, what="ac dashboard to stop")


def test_ac_dashboard_opens_a_browser_unless_told_not_to(tcp_daemon: Daemon,
                                                         tmp_path: Path) -> None:
    opened = tmp_path / "opened"
    # $BROWSER is what Python's webbrowser runs: here a command that notes the URL.
    browser_command = (f"{sys.executable} -c "
                       f"'import sys; open(\"{opened}\", \"w\").write(sys.argv[1])' %s")
    env = {**tcp_daemon.env, "BROWSER": browser_command}
    proc = subprocess.Popen([sys.executable, "-m", "acjob.cli.ac", "dashboard"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        wait_for(lambda: opened.exists() and opened.read_text() == url, what="the browser")
        # A HEAD (a link preview, say) does not spend the one-time token.
        with httpx.Client() as http:
            assert http.head(url).status_code == 405
            assert http.get(url).status_code == 303
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=30)
