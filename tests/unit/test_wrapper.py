"""The generated wrapper, run for real with /bin/sh in a temporary spool."""

from __future__ import annotations

import inspect
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from acjob import feeder
from acjob.wrapper import render_wrapper


def _run(tmp_path: Path, command: str | list[str], stdin: bytes | None = None,
         env: dict[str, str] | None = None, workdir: Path | None = None) -> Path:
    attempt = tmp_path / "1"
    attempt.mkdir()
    stdin_path = None
    if stdin is not None:
        stdin_path = tmp_path / "stdin"
        stdin_path.write_bytes(stdin)
    work = workdir or tmp_path / "work"
    work.mkdir(exist_ok=True)
    script = render_wrapper(job_id="j" * 26, attempt=1, attempt_dir=attempt, workdir=work,
                            command=command, stdin=stdin_path, env=env or {})
    (attempt / "job.sh").write_text(script)
    done = subprocess.run(["/bin/sh", str(attempt / "job.sh")], check=False, timeout=30)
    (attempt / "wrapper-status").write_text(str(done.returncode))
    return attempt


def test_shell_string_with_stdin_and_exit(tmp_path: Path) -> None:
    a = _run(tmp_path, "tr a-z A-Z; echo err >&2; exit 5", stdin=b"hello\n")
    assert (a / "stdout").read_bytes() == b"HELLO\n"
    assert (a / "stderr").read_bytes() == b"err\n"
    assert (a / "exit").read_text().split() == ["5"]
    assert int((a / "pid").read_text()) > 0
    assert not (a / "exit.tmp").exists()


@pytest.mark.parametrize("word", ["$HOME", "a b", ";id", "`id`", "'", '"', "\\", "*", "$(id)",
                                  "\n", "-n", "echo"])
def test_argv_words_are_never_interpreted(tmp_path: Path, word: str) -> None:
    a = _run(tmp_path, ["printf", "[%s]", word])
    assert (a / "stdout").read_text() == f"[{word}]"
    assert (a / "exit").read_text().split() == ["0"]


def test_argv_runs_programs_not_builtins(tmp_path: Path) -> None:
    a = _run(tmp_path, ["nonexistent-program-xyz", "arg"])
    assert (a / "exit").read_text().split() == ["127"]
    # In the job's words, as a shell says it: never the wrapper script's own path.
    assert (a / "stderr").read_text() == "acjob: nonexistent-program-xyz: command not found\n"


def test_an_argv_program_that_cannot_run_is_not_said_with_the_wrappers_path(
        tmp_path: Path) -> None:
    (tmp_path / "plain").write_text("not a program")
    a = _run(tmp_path, [str(tmp_path / "plain")])
    assert (a / "exit").read_text().split() == ["126"]
    assert "job.sh" not in (a / "stderr").read_text()
    assert (a / "stderr").read_text().startswith("acjob: ")


@pytest.mark.parametrize(("code", "wrapper_code"), [(3, 3), (99, 1), (100, 1), (137, 137)])
def test_the_wrapper_hides_only_grid_engines_reserved_statuses(
        tmp_path: Path, code: int, wrapper_code: int) -> None:
    a = _run(tmp_path, f"exit {code}")
    assert (a / "exit").read_text().split() == [str(code)]
    assert (a / "wrapper-status").read_text() == str(wrapper_code)


@pytest.mark.parametrize("ignore", [(), ("USR1",)])
def test_warning_signals_a_backend_names_are_ignored_by_the_command(
        tmp_path: Path, ignore: tuple[str, ...]) -> None:
    attempt = tmp_path / "1"
    attempt.mkdir()
    script = render_wrapper(job_id="j" * 26, attempt=1, attempt_dir=attempt, workdir=tmp_path,
                            command="kill -USR1 0; echo survived", stdin=None, env={},
                            ignore=ignore)
    (attempt / "job.sh").write_text(script)
    subprocess.run(["/bin/sh", str(attempt / "job.sh")], start_new_session=True, timeout=30,
                   check=False)
    if ignore:  # the whole process group got it, as from Grid Engine; nobody died
        assert (attempt / "stdout").read_text() == "survived\n"
        assert (attempt / "exit").read_text().split() == ["0"]
    else:  # the command's own business: killed by it, and the wrapper with it
        assert (attempt / "stdout").read_text() == ""


def test_signal_status(tmp_path: Path) -> None:
    a = _run(tmp_path, "kill -9 $$")
    assert (a / "exit").read_text().split() == ["137"]


def test_env_and_ids_exported(tmp_path: Path) -> None:
    a = _run(tmp_path, 'echo "$GREETING $ACJOB_ATTEMPT"', env={"GREETING": "it's $x"})
    assert (a / "stdout").read_text() == "it's $x 1\n"


def test_progress_file_is_the_attempts_own_and_private(tmp_path: Path) -> None:
    a = _run(tmp_path, 'echo "$ACJOB_PROGRESS"; echo "40 aligning" > "$ACJOB_PROGRESS"')
    assert (a / "stdout").read_text() == f"{a / 'progress'}\n"
    assert (a / "progress").read_text() == "40 aligning\n"
    assert (a / "progress").stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize("fence", ["file", "directory (an older daemon's)"])
def test_fence_prevents_the_run(tmp_path: Path, fence: str) -> None:
    attempt = tmp_path / "1"
    attempt.mkdir()
    # The daemon fenced this attempt.
    (attempt / "claim").touch() if fence == "file" else (attempt / "claim").mkdir()
    witness = tmp_path / "ran"
    script = render_wrapper(job_id="j" * 26, attempt=1, attempt_dir=attempt, workdir=tmp_path,
                            command=f"touch {witness}", stdin=None, env={})
    (attempt / "job.sh").write_text(script)
    result = subprocess.run(["/bin/sh", str(attempt / "job.sh")], timeout=30)
    assert result.returncode == 0
    assert not witness.exists() and not (attempt / "exit").exists()


def test_missing_workdir_is_status_126(tmp_path: Path) -> None:
    missing = tmp_path / "gone"
    attempt = tmp_path / "1"
    attempt.mkdir()
    script = render_wrapper(job_id="j" * 26, attempt=1, attempt_dir=attempt, workdir=missing,
                            command="true", stdin=None, env={})
    (attempt / "job.sh").write_text(script)
    subprocess.run(["/bin/sh", str(attempt / "job.sh")], timeout=30)
    assert (attempt / "exit").read_text().split() == ["126"]
    assert b"cannot enter" in (attempt / "stderr").read_bytes()


def test_output_files_are_private_but_job_files_follow_umask(tmp_path: Path) -> None:
    a = _run(tmp_path, "touch made-by-job")
    assert (a / "stdout").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "work" / "made-by-job").stat().st_mode & 0o777 == 0o644 & ~0o022
    assert os.access(a / "exit", os.R_OK)


@pytest.mark.parametrize("name", ["A", "W", "PATH", "rc", "sig", "HOME"])
def test_job_environment_cannot_break_the_wrapper(tmp_path: Path, name: str) -> None:
    a = _run(tmp_path, f'echo "${name}"', env={name: "/nonexistent"})
    assert (a / "stdout").read_text() == "/nonexistent\n"
    assert (a / "exit").read_text().split() == ["0"]


def test_a_signal_from_outside_is_noted_beside_the_status(tmp_path: Path) -> None:
    import signal
    import time

    attempt = tmp_path / "1"
    attempt.mkdir()
    script = render_wrapper(job_id="j" * 26, attempt=1, attempt_dir=attempt, workdir=tmp_path,
                            command="echo up; sleep 30", stdin=None, env={})
    (attempt / "job.sh").write_text(script)
    proc = subprocess.Popen(["/bin/sh", str(attempt / "job.sh")], start_new_session=True)
    deadline = time.monotonic() + 30
    while not (attempt / "stdout").exists() or not (attempt / "stdout").read_bytes():
        assert time.monotonic() < deadline
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGTERM)  # as a cancel or a scheduler does
    proc.wait(timeout=30)
    assert (attempt / "exit").read_text().split() == ["143", "TERM"]



# Values a client controls, each a valid file name component (no "/", no NUL). Each
# would run ``touch PWNED``, break the script's syntax or change the text, were it
# ever taken for shell code instead of data.
HOSTILE = [
    "$(touch PWNED)", "`touch PWNED`", "'; touch PWNED; '", '"; touch PWNED; "',
    "\ntouch PWNED\n", '\\"$(touch PWNED)\\"', "${x:=$(touch PWNED)}", "$((1+1))",
    "-n", "%s%n%d\\n", " two  spaces ", "*", "a'b\"c`d$e\\f", "caf\u00e9\t\r",
]


def _render_and_run(tmp_path: Path, **fields: object) -> tuple[Path, int]:
    """Render a wrapper with ``fields`` overriding harmless defaults and run it.

    The script must pass ``sh -n``; it runs with ``tmp_path`` as its current
    directory. Returns the attempt directory and the wrapper's exit status, and
    checks that no payload in any value ran.
    """
    args: dict[str, object] = {
        "job_id": "j" * 26, "attempt": 1, "attempt_dir": tmp_path / "1",
        "workdir": tmp_path / "work", "command": ["true"], "stdin": None, "env": {},
    }
    if "workdir" not in fields:
        (tmp_path / "work").mkdir(exist_ok=True)
    args.update(fields)
    attempt_dir = args["attempt_dir"]
    assert isinstance(attempt_dir, Path)
    attempt_dir.mkdir(parents=True)
    script = render_wrapper(**args)  # type: ignore[arg-type]
    (attempt_dir / "job.sh").write_text(script)
    syntax = subprocess.run(["/bin/sh", "-n", str(attempt_dir / "job.sh")], check=False,
                            capture_output=True, timeout=30)
    assert syntax.returncode == 0, syntax.stderr
    done = subprocess.run(["/bin/sh", str(attempt_dir / "job.sh")], check=False,
                          cwd=tmp_path, timeout=30)
    assert list(tmp_path.rglob("PWNED")) == []
    return attempt_dir, done.returncode


@pytest.mark.parametrize("value", HOSTILE)
def test_a_missing_workdir_is_reported_as_its_literal_path(tmp_path: Path, value: str) -> None:
    gone = tmp_path / f"w{value}" / value  # never created: the attempt cannot enter it
    a, status = _render_and_run(tmp_path, workdir=gone)
    assert status == 126
    assert (a / "exit").read_text().split() == ["126"]
    message = f"acjob: cannot enter the working directory {gone}\n"
    assert (a / "stderr").read_bytes().decode() == message


@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_workdir_attempt_dir_and_stdin_paths_are_data(tmp_path: Path,
                                                              value: str) -> None:
    work = tmp_path / f"w{value}"
    work.mkdir()
    stdin = tmp_path / f"in{value}"
    stdin.write_text(value)
    a, status = _render_and_run(tmp_path, attempt_dir=tmp_path / f"a{value}", workdir=work,
                                stdin=stdin, command="pwd; cat")
    assert status == 0
    assert (a / "stdout").read_bytes().decode() == f"{work}\n{value}"


@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_environment_values_argv_and_command_strings_are_data(
        tmp_path: Path, value: str) -> None:
    a, _ = _render_and_run(tmp_path, attempt_dir=tmp_path / "env",
                           env={"V": value}, command='printf "%s|" "$V"')
    assert (a / "stdout").read_bytes().decode() == f"{value}|"
    a, _ = _render_and_run(tmp_path, attempt_dir=tmp_path / "argv",
                           command=["printf", "%s|", value, value])
    assert (a / "stdout").read_bytes().decode() == f"{value}|{value}|"
    # A command string is the job's own shell code: it reaches sh -c unchanged.
    a, _ = _render_and_run(tmp_path, attempt_dir=tmp_path / "string",
                           command=f"printf '%s|' {shlex.quote(value)}")
    assert (a / "stdout").read_bytes().decode() == f"{value}|"


@pytest.mark.parametrize("field", ["job_id", "env_name", "ignore", "nul"])
@pytest.mark.parametrize("value", HOSTILE)
def test_names_that_must_be_bare_words_are_refused_not_rendered(
        tmp_path: Path, field: str, value: str) -> None:
    args: dict[str, object] = {
        "job_id": "j" * 26, "attempt": 1, "attempt_dir": tmp_path, "workdir": tmp_path,
        "command": ["true"], "stdin": None, "env": {},
    }
    if field == "job_id":
        args["job_id"] = value
    elif field == "env_name":
        args["env"] = {value: "x"}
    elif field == "ignore":
        args["ignore"] = ("USR1", value)
    else:
        args["env"] = {"V": f"{value}\0"}
    with pytest.raises(ValueError):
        render_wrapper(**args)  # type: ignore[arg-type]


def test_every_field_the_wrapper_renders_is_covered_above() -> None:
    # Labels, the job's name and its deliveries are never rendered: the wrapper has
    # no parameter for them. A new parameter needs a hostile test above first.
    assert set(inspect.signature(render_wrapper).parameters) == {
        "job_id", "attempt", "attempt_dir", "workdir", "command", "stdin", "env", "umask",
        "ignore", "feed"}


@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_paths_given_to_the_feeder_are_data(tmp_path: Path, value: str) -> None:
    stdin = tmp_path / f"in{value}"
    stdin.write_text(value)
    mark = tmp_path / f"mark{value}"
    mark.write_text(f"{len(value.encode())}\n")
    feed = [sys.executable, "-I", "-S", feeder.__file__, str(stdin), str(mark)]
    a, status = _render_and_run(tmp_path, attempt_dir=tmp_path / f"a{value}", command="cat",
                                feed=feed)
    assert status == 0
    assert (a / "stdout").read_bytes().decode() == value


def test_a_signal_before_the_command_starts_keeps_it_from_starting(tmp_path: Path) -> None:
    """A cancel that reaches the wrapper while it is still starting (its traps are set,
    the command not yet run): the command never runs, and the status says why."""
    attempt, work = tmp_path / "1", tmp_path / "work"
    attempt.mkdir()
    work.mkdir()
    witness = tmp_path / "ran"
    script = render_wrapper(job_id="j" * 26, attempt=1, attempt_dir=attempt, workdir=work,
                            command=f"touch {witness}", stdin=None, env={})
    # The signal arrives right after the traps are set, as a cancel could.
    marker = "trap 'sig=USR2' USR2\n"
    assert marker in script
    script = script.replace(marker, marker + "kill -TERM $$\n")
    (attempt / "job.sh").write_text(script)
    subprocess.run(["/bin/sh", str(attempt / "job.sh")], check=False, timeout=30)
    assert not witness.exists()
    assert (attempt / "exit").read_text().split() == ["143", "TERM"]
