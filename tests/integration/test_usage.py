"""What a new user types: options where options go, mistakes said in the user's words,
the job seeing what the user expects (issue 15)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Daemon, free_port, tool_env


@pytest.fixture
def mdaemon(short_tmp: Path) -> Iterator[Daemon]:
    """A daemon that can mail (to a port nobody listens on) and sign callbacks."""
    state = short_tmp / "state"
    config = short_tmp / "d.toml"
    config.write_text(f'[server]\nstate_dir = "{state}"\n'
                      f'[mail]\nhost = "127.0.0.1"\nport = {free_port()}\n'
                      '[webhook]\nsecret = "s"\n')
    sock = short_tmp / "d.sock"
    d = Daemon(state_dir=state, url=f"unix:{sock}", config=config,
               env=tool_env(short_tmp, ACJOB_URL=f"unix:{sock}"))
    d.start()
    yield d
    d.stop()


@pytest.mark.parametrize("target", [["-t", "email", "me@example.org"],
                                    ["-t", "webhook", "http://127.0.0.1:9/hook"]])
def test_options_after_the_address_are_options(mdaemon: Daemon, target: list[str]) -> None:
    result = mdaemon.run("acjob", *target, "-n", "--json", "--name", "x", "echo hi")
    assert result.returncode == 0, result.stderr
    job = json.loads(result.stdout)
    assert (job["command"], job["name"], job["stdin"]["mode"]) == ("echo hi", "x", "none")
    argv = json.loads(mdaemon.run("acjob", *target, "--json", "--", "printf", "%s", "-n").stdout)
    assert argv["command"] == ["printf", "%s", "-n"]  # after --, words are the command's


def _usage(daemon: Daemon, *args: str) -> str:
    result = daemon.run("acjob", *args)
    assert result.returncode == 2, (args, result)
    err = result.stderr.decode()
    assert "Traceback" not in err and "openapi" not in err and "pattern" not in err, err
    lines = err.splitlines()
    assert lines[-2].startswith("Error: ") and lines[-1].startswith("Try: "), err
    return err


MISTAKES = {
    "an empty command": ([""], "the command is empty"),
    "a blank command": ([" "], "the command is empty"),
    "a bad variable name": (["-e", "1X=y", "true"], "-e 1X=y: '1X' is not a variable name"),
    "a bad label key": (["-l", "bad key=x", "true"], "-l bad key=x: 'bad key' is not a label"),
    "not a mail address": (["--mail", "notanemail", "true"],
                           "--mail notanemail: not a mail address"),
    "not a webhook URL": (["-t", "webhook", "ftp://x", "true"], "not a URL a result can be"),
    "too much memory": (["--memory", "99999999999", "true"],
                        "--memory: 99999999999 is out of range: from 1 to 1073741824 MB"),
    "not a number": (["--cpus", "many", "true"], "'many' is not a whole number of cpus"),
    "too many words": (["--", *["x"] * 70000], "the command has 70000 words; at most 65536"),
    "--json with a pipe": (["--json", "true"], "--json prints the job instead of its output"),
    "no address": (["-t", "email", "true"], "-t email needs the address and then the command"),
    "an unknown option": (["--nosuch", "true"], "no such option: --nosuch"),
    "an unknown type": (["-t", "bogus", "true"], "-t/--type: invalid choice: 'bogus'"),
    "an option without its value": (["-e"], "-e/--env: expected one argument"),
    "-t email on a daemon with no [mail] (the daemon's refusal)":
        (["-t", "email", "me@example.org", "true"],
         "this daemon has no [mail] configuration, so it cannot mail results"),
    "an unknown backend (the daemon's refusal)": (["--backend", "nope", "true"],
                                                  "no backend named 'nope'"),
    "a working directory the daemon does not have": (["--workdir", "/nonexistent/x", "true"],
                                                     "/nonexistent/x does not exist"),
}


@pytest.mark.parametrize("args,said", MISTAKES.values(), ids=MISTAKES.keys())
def test_mistakes_are_usage_errors_in_the_users_words(daemon: Daemon, args: list[str],
                                                      said: str) -> None:
    assert said in _usage(daemon, *args)


@pytest.mark.parametrize("args,said", [
    (["-i", "0", "x"], "-i/--interval: 0.0 is out of range: from 0.1 to 600 seconds"),
    (["-i", "soon", "x"], "-i/--interval: 'soon' is not a number of seconds"),
    (["--nosuch"], "no such option: --nosuch"),
])
def test_acpoll_mistakes_are_usage_errors(daemon: Daemon, args: list[str], said: str) -> None:
    result = daemon.run("acpoll", *args)
    assert result.returncode == 2, result
    lines = result.stderr.decode().splitlines()
    assert lines[-2] == f"Error: {said}" and lines[-1] == "Try: acpoll --help", lines


def test_a_relative_workdir_is_the_callers(daemon: Daemon, short_tmp: Path) -> None:
    (short_tmp / "here").mkdir()
    cmd = [sys.executable, "-c", "from acjob.cli.acjob import main; main()"]
    for workdir in (".", "here"):
        result = subprocess.run([*cmd, "--workdir", workdir, "pwd"], cwd=short_tmp,
                                env=daemon.env, capture_output=True, timeout=60)
        assert result.returncode == 0, result.stderr
        expected = short_tmp if workdir == "." else short_tmp / "here"
        assert result.stdout.decode().strip() == str(expected)


def test_a_bare_env_name_passes_the_callers_value(daemon: Daemon) -> None:
    env = {**daemon.env, "MINE": "from the caller"}
    env.pop("UNSET_HERE", None)
    result = daemon.run("acjob", "-e", "MINE", "-e", "UNSET_HERE", "-e", "SET=x",
                        'echo "$MINE|${UNSET_HERE-unset}|$SET"', env=env)
    assert result.stdout == b"from the caller|unset|x\n", result.stderr


@pytest.mark.parametrize("tool", ["acjob", "acpoll", "ac"])
def test_every_tool_tells_its_version(daemon: Daemon, tool: str) -> None:
    import acjob

    result = daemon.run(tool, "--version")
    assert result.returncode == 0
    assert result.stdout.decode() == f"{tool} {acjob.__version__}\n"


def test_acpoll_reads_what_acjob_and_ac_print_as_json(daemon: Daemon) -> None:
    first = daemon.run("acjob", "-t", "poll", "--json", "echo one").stdout
    second = daemon.run("acjob", "-t", "poll", "--json", "echo two").stdout
    assert json.loads(first)["id"]
    polled = daemon.run("acpoll", input=first + second)
    assert (polled.returncode, polled.stdout) == (0, b"one\ntwo\n"), polled.stderr
    listed = daemon.run("ac", "jobs", "--json").stdout  # newest first
    assert daemon.run("acpoll", input=listed).stdout == b"two\none\n"
    bad = daemon.run("acpoll", input=b'{"no id": 1}\n')
    assert bad.returncode == 2 and b"line 1 of stdin is neither handles nor" in bad.stderr


def test_ac_cancel_prints_json(daemon: Daemon) -> None:
    job_id = daemon.run("acjob", "-t", "poll", "sleep 300").stdout.decode().strip()
    result = daemon.run("ac", "cancel", "--json", job_id)
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    assert shown["id"] == job_id and shown["state"] in ("CANCELING", "CANCELED")


def test_a_queued_pipe_job_says_so_once_on_a_terminal(short_tmp: Path) -> None:
    import os
    import pty

    state, sock = short_tmp / "state", short_tmp / "d.sock"
    config = short_tmp / "d.toml"
    config.write_text(f'[server]\nstate_dir = "{state}"\n[backends.local]\nslots = 1\n')
    d = Daemon(state_dir=state, url=f"unix:{sock}", config=config,
               env=tool_env(short_tmp, ACJOB_URL=f"unix:{sock}"))
    d.start()
    master, slave = pty.openpty()
    try:
        blocker = d.run("acjob", "-t", "poll", "sleep 300").stdout.decode().strip()
        proc = subprocess.Popen(
            [sys.executable, "-c", "from acjob.cli.acjob import main; main()", "-n",
             "echo ran"], stdout=subprocess.PIPE, stderr=slave, env=d.env)
        os.close(slave)
        said = b""
        while b"\n" not in said:
            said += os.read(master, 1024)
        assert b"is queued: waiting for room on local (Ctrl-C detaches)" in said
        assert d.run("ac", "cancel", blocker).returncode == 0
        out, _ = proc.communicate(timeout=60)
        assert (proc.returncode, out) == (0, b"ran\n")
    finally:
        os.close(master)
        d.stop()


def test_acpoll_on_a_terminal_without_a_handle_says_so(daemon: Daemon) -> None:
    import os
    import pty

    master, slave = pty.openpty()
    try:
        result = subprocess.run(
            [sys.executable, "-c", "from acjob.cli.acpoll import main; main()"],
            stdin=slave, capture_output=True, env=daemon.env, timeout=60)
    finally:
        os.close(slave)
        os.close(master)
    assert result.returncode == 2  # not a silent wait for stdin
    assert result.stderr.startswith(b"Error: no job handle given\nTry: ")
