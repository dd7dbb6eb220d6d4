"""The small shell script that every attempt of a job runs inside.

The wrapper is the ground truth of a job's end. It

1. claims its attempt by creating the file ``claim`` exclusively (``O_EXCL``, the shell's
   ``noclobber``: atomic, so a daemon that lost track of a submission can *fence* it by
   creating the file first: a late-starting wrapper then exits without running the
   command);
2. records its pid, so a restarted daemon can find the process again, and creates
   the attempt's progress file, named to the command by ``ACJOB_PROGRESS``;
3. runs the command with stdin, stdout and stderr redirected to the spool;
4. writes the exit status to ``exit`` in one small write, so the status survives the
   daemon and any scheduler's short memory (a reader that finds the file empty or cut
   short looks again). If the wrapper itself received SIGTERM, SIGINT, SIGHUP or
   SIGUSR2 (Grid Engine's warning before it kills a deleted job), the signal's name
   follows the status (``143 TERM``): the job was stopped from outside, and the status
   is not its own. Signals a backend sends as mere warnings (Grid Engine's SIGUSR1
   before a suspension) are ignored, by the wrapper and, inherited, by the command.

It starts no program of its own but the command (everything else is a shell builtin),
so an attempt costs one shell more than the command itself.

A command killed by signal N gets the status 128+N, as in any POSIX shell. The
wrapper exits with the command's status too (a scheduler's accounting shows it),
except 99 and 100, which Grid Engine would take as orders: the wrapper exits 1.
Rendering is pure and the same for every backend but for the signals it ignores; a
batch scheduler runs the very same file as its job script.

Everything the script holds that comes from a job (paths, the command, the
environment) is data, never code: each value is one single-quoted shell word, and
what the wrapper prints is printed by ``printf '%s'``, so no ``$(…)``, backtick or
quote in a value is ever interpreted by the wrapper. Names that must be bare words
(environment variable names, signal names, the job id) are checked, and anything
else is refused with :class:`ValueError` rather than rendered.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping, Sequence
from pathlib import Path

EXIT_FILE = "exit"
PID_FILE = "pid"
CLAIM_DIR = "claim"  # a file (a directory in wrappers before 0.2)
STDOUT_FILE = "stdout"
STDERR_FILE = "stderr"
WRAPPER_FILE = "job.sh"
FEED_LOG = "feed.log"
FEED_STATUS = "feed.status"
#: Where the job reports its progress (``ACJOB_PROGRESS``; see :mod:`acjob.progress`).
PROGRESS_FILE = "progress"

_SIGNAL_NAME = re.compile(r"[A-Z][A-Z0-9]{1,15}")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
#: The job id is written into a comment and the scheduler's view of the script.
_JOB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")

#: Status written when the working directory cannot be entered (as ``sh`` does
#: for a command that cannot be executed).
CANNOT_ENTER_WORKDIR = 126

#: Runs an argv, its words following as arguments, with ``exec``: a name such as
#: "echo" runs the program, never a builtin. A program that cannot be found is said as
#: ``acjob: NAME: command not found`` (status 127, as a shell says it), not with the
#: wrapper script's path, which means nothing to the job's owner.
_EXEC_ARGV = ("exec /bin/sh -c 'case $1 in */*) ;; *) command -v -- \"$1\" >/dev/null 2>&1 || "
              "{ printf \"acjob: %s: command not found\\n\" \"$1\" >&2; exit 127; } ;; esac; "
              "exec \"$@\"' acjob")


def render_wrapper(
    *,
    job_id: str,
    attempt: int,
    attempt_dir: Path,
    workdir: Path,
    command: str | list[str],
    stdin: Path | None,
    env: Mapping[str, str],
    umask: int = 0o022,
    ignore: Sequence[str] = (),
    feed: Sequence[str] | None = None,
) -> str:
    """Return the wrapper script for one attempt.

    Args:
        job_id: The job's id, exported as ``ACJOB_JOB_ID``.
        attempt: The attempt number, exported as ``ACJOB_ATTEMPT``.
        attempt_dir: Where the wrapper writes pid, output and exit status.
        workdir: The directory the command runs in.
        command: A shell string (run by ``/bin/sh -c``) or an argv list that is
            quoted word by word, so no shell ever interprets it.
        stdin: The file that becomes the command's stdin; ``None`` for ``/dev/null``.
        env: Extra environment variables (names already validated).
        umask: The command's umask. The wrapper's own files are created 0600
            whatever it is.
        ignore: Signal names (``USR1``) the wrapper ignores, and the command with it:
            a scheduler's mere warnings, which must not kill the job.
        feed: With a stdin still arriving, the argv of the feeder
            (:mod:`acjob.feeder`) that follows the stdin file and ends at its close
            mark: the command reads from it through a pipe, as the bytes come.

    Raises:
        ValueError: if the job id, an environment variable name or a signal name is
            not a plain word, or any value holds a NUL byte (a shell script cannot
            carry one). The job model refuses all of these at submission already.
    """
    _check(job_id=job_id, attempt=attempt, attempt_dir=attempt_dir, workdir=workdir,
           command=command, stdin=stdin, env=env, umask=umask, ignore=ignore,
           feed=feed or ())
    q = shlex.quote
    a = q(str(attempt_dir))
    if isinstance(command, str):
        run = f"exec /bin/sh -c {q(command)}"
    else:
        run = f"{_EXEC_ARGV} " + " ".join(q(word) for word in command)
    # The job's environment is set inside the subshell only, so no variable a job
    # sets (PATH, or a name the wrapper uses) can change what the wrapper does.
    exports = "".join(f"export {name}={q(value)}; " for name, value in env.items())
    source = q(str(stdin)) if stdin is not None else "/dev/null"
    body = f"( umask {umask:04o}; {exports}{run} )"
    if feed:
        # The command's status is the pipeline's (the last command's, in any sh); the
        # feeder's complaints go to a file of the attempt, never into the job's output.
        # The feeder is born deaf to a cancel's signals (an ignored signal stays ignored
        # through exec): dying of one first, it would hand the command a clean end of
        # file, a cut stdin passing for a whole one. The command dies of it instead.
        feeder = " ".join(q(word) for word in feed)
        # Its own status is kept: a feeder that failed (no Python on this node, a short
        # stdin file) made the command read a cut stdin, so the attempt is not the job's
        # verdict (``FEED`` beside the status, as a signal from outside would be).
        runs = (f"( trap '' TERM INT HUP USR2; {feeder} 2> \"$A/{FEED_LOG}\"; "
                f'echo $? > "$A/{FEED_STATUS}" ) | {body} '
                f'> "$A/{STDOUT_FILE}" 2> "$A/{STDERR_FILE}"\n'
                f'    rc=$?\n'
                f'    fed=; read -r fed < "$A/{FEED_STATUS}" 2>/dev/null\n'
                f'    [ "$fed" = 0 ] || sig=FEED')
    else:
        runs = f'{body} < {source} > "$A/{STDOUT_FILE}" 2> "$A/{STDERR_FILE}"\n    rc=$?'
    ignores = "".join(
        "# The scheduler sends it as a warning (Grid Engine: before a suspension); an\n"
        "# ignored signal stays ignored in the command.\n"
        f"trap '' {name}\n" for name in ignore)
    return f"""#!/bin/sh
# acjob wrapper for job {job_id}, attempt {attempt}. Generated; do not edit.
umask 077
A={a}
# noclobber: the claim is created only if it does not exist (O_EXCL), as the fence is.
# (true, not ":": a failed redirection of a special builtin would end the shell.)
set -C
true 2>/dev/null > "$A/{CLAIM_DIR}" || exit 0
set +C
# A signal to the wrapper itself comes from outside the job (a cancel, a scheduler
# stopping it): it is noted beside the status, so it is not taken for the job's own.
sig=
trap 'sig=TERM' TERM
trap 'sig=INT' INT
trap 'sig=HUP' HUP
trap 'sig=USR2' USR2
{ignores}echo $$ > "$A/{PID_FILE}"
# The attempt's own progress file, made 0600 here (the job's umask may be looser).
true 2>/dev/null > "$A/{PROGRESS_FILE}"
export ACJOB_JOB_ID={q(job_id)} ACJOB_ATTEMPT={attempt:d} ACJOB_PROGRESS="$A/{PROGRESS_FILE}"
W={q(str(workdir))}
if [ -n "$sig" ]; then
    # Stopped from outside (a cancel) before the command started: it never starts.
    : > "$A/{STDOUT_FILE}"; : > "$A/{STDERR_FILE}"
    case $sig in TERM) rc=143 ;; INT) rc=130 ;; HUP) rc=129 ;; *) rc=140 ;; esac
elif cd "$W" 2>/dev/null; then
    {runs}
else
    # printf prints the path as data: nothing in it is expanded or executed.
    printf '%s %s\\n' 'acjob: cannot enter the working directory' "$W" > "$A/{STDERR_FILE}"
    : > "$A/{STDOUT_FILE}"
    rc={CANNOT_ENTER_WORKDIR}
fi
printf '%d %s\\n' "$rc" "$sig" > "$A/{EXIT_FILE}"
# Grid Engine reads a job script's 99 as "run it again" and 100 as "hold it in error
# state": the status is in the exit file, the scheduler only hears that it failed.
case $rc in 99|100) exit 1 ;; esac
exit "$rc"
"""


def _check(*, job_id: str, attempt: int, attempt_dir: Path, workdir: Path,
           command: str | list[str], stdin: Path | None, env: Mapping[str, str],
           umask: int, ignore: Sequence[str], feed: Sequence[str]) -> None:
    """Refuse what :func:`render_wrapper` could not render as plain data.

    Raises:
        ValueError: as documented by :func:`render_wrapper`.
    """
    if not _JOB_ID.fullmatch(job_id):
        raise ValueError(f"not a job id: {job_id!r}")
    # bool is an int, and "%d" of a str raises TypeError: both are programming errors.
    if type(attempt) is not int or type(umask) is not int or not 0 <= umask <= 0o777:
        raise ValueError("attempt and umask must be integers (umask 0 to 0o777)")
    for name in env:
        if not _ENV_NAME.fullmatch(name):
            raise ValueError(f"not an environment variable name: {name!r}")
    for name in ignore:
        if not _SIGNAL_NAME.fullmatch(name):
            raise ValueError(f"not a signal name: {name!r}")
    words = [str(attempt_dir), str(workdir), *env.values()]
    words += [command] if isinstance(command, str) else command
    if stdin is not None:
        words.append(str(stdin))
    words += feed
    if any("\0" in word for word in words):
        raise ValueError("a NUL byte cannot be passed through a shell script")
