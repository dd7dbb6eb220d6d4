"""The figures the bench takes, issue 14's goals as checks on them, and the report.

A *figure* is one quantity taken of acjob and of its baselines (peers or raw tools) in the
same run. A *ratio* is always acjob's speed relative to a baseline: above 1 acjob is
faster (or leaner), below 1 slower, whatever the unit. A *goal* is one of issue 14's,
checked as "acjob's ratio to a reference is at least a required ratio".
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Figure:
    """One quantity, measured of acjob and of its baselines.

    Attributes:
        key: Its name in the JSON.
        title: What it is, for people (``{jobs}``, ``{clients}``, ``{size}``, ``{pause}``
            are filled from the run's settings).
        unit: Of every value.
        higher_is_better: True for rates, False for times and memory.
        short: A label for the chart.
        baselines: The systems acjob is compared with, in display order.
        peers: True for the figures of the job-queue comparison (the first table).
    """

    key: str
    title: str
    short: str
    unit: str
    higher_is_better: bool
    baselines: tuple[str, ...] = ()
    peers: bool = False


PEERS = ("huey", "celery", "rq")

NAMES = {
    "acjob": "acjob",
    "acjob_fsync": "acjob, synchronous=full",
    "huey": "Huey (notify_result)",
    "celery": "Celery",
    "rq": "RQ",
    "spawn": "raw spawn of sh -c true",
    "pipe": "raw pipe",
    "ssh": "ssh localhost",
    "python": "python3 -c pass",
    "sh": "sh -c true",
    "sbatch": "raw sbatch",
    "fsync": "raw fdatasync of 4 KiB appends",
}
"""Display names of the systems."""

FIGURES = (
    Figure("round_trip_ms", "round trip of one trivial job, Python client, median",
           "round trip", "ms", False, ("huey", "celery", "rq", "acjob_fsync", "spawn"),
           peers=True),
    Figure("submit_one_client", "single-request submissions, one client",
           "submissions, 1 client", "jobs/s", True,
           ("huey", "celery", "rq", "acjob_fsync", "fsync"), peers=True),
    Figure("submit_concurrent", "single-request submissions, {clients} concurrent clients",
           "submissions, {clients} clients", "jobs/s", True,
           ("huey", "celery", "rq", "acjob_fsync"), peers=True),
    Figure("e2e_one_by_one", "{jobs} trivial jobs submitted one by one, end to end",
           "{jobs} jobs one by one, end to end", "jobs/s", True,
           ("huey", "celery", "rq", "acjob_fsync", "spawn"), peers=True),
    Figure("submit_batch", "{jobs} jobs submitted in one batch call", "batch submission",
           "jobs/s", True, (), peers=True),
    Figure("e2e_batch", "{jobs} trivial jobs as one batch, end to end",
           "{jobs} jobs as a batch, end to end", "jobs/s", True, ("spawn",), peers=True),
    Figure("stream_out", "{size} out of a job: acjob -n 'head -c {size} /dev/zero'",
           "{size} out of a job", "MB/s", True, ("pipe", "ssh")),
    Figure("stream_through", "{size} through a job: head -c {size} /dev/zero | acjob -t pipe "
           "cat", "{size} through a job", "MB/s", True, ("pipe", "ssh")),
    Figure("stream_out_client_rss", "client's peak memory, {size} out of a job",
           "client memory, out", "MB", False),
    Figure("stream_through_client_rss", "client's peak memory, {size} through a job",
           "client memory, through", "MB", False),
    Figure("daemon_rss", "daemon's peak memory after the streams", "daemon memory",
           "MB", False),
    Figure("live_pipe_first_byte", "first byte out of (echo a; sleep {pause}; echo b) | "
           "acjob -t pipe cat", "live pipe, first byte", "s", False, ("pipe", "ssh")),
    Figure("cli_start_ms", "acjob -n true, daemon running, median", "CLI start", "ms",
           False, ("python", "sh")),
    Figure("slurm_round_trip", "one trivial job on Slurm, Python client, median (raw: "
           "sbatch --wait)", "Slurm round trip", "s", False, ("sbatch",)),
    Figure("slurm_notice", "Slurm: from a job's exit file to its end in acjob, median",
           "Slurm end noticed", "s", False),
    Figure("slurm_submit", "jobs handed to Slurm one by one (raw: sequential sbatch)",
           "Slurm submission", "jobs/s", True, ("sbatch",)),
)

BY_KEY = {figure.key: figure for figure in FIGURES}


@dataclass(frozen=True)
class Check:
    """One condition of a goal: acjob's ratio to ``reference`` (a system, or a fixed
    target in the figure's unit) must be at least ``required``."""

    text: str
    figure: str
    reference: str | float
    required: float


@dataclass(frozen=True)
class Goal:
    """One of issue 14's goals; without checks, the bench does not measure it."""

    number: int
    title: str
    checks: tuple[Check, ...] = ()
    unmeasured: str = ""


GOALS = (
    Goal(1, "A live pipe", (
        Check("the first line comes out before the producer's pause ends",
              "live_pipe_first_byte", "pause", 1.0),)),
    Goal(2, "Stream rate", (
        Check("1 GiB out of a job at >= 40 % of the raw pipe", "stream_out", "pipe", 0.40),
        Check("1 GiB through a job at >= 25 % of the raw pipe", "stream_through", "pipe", 0.25),
        Check("out of a job faster than ssh localhost", "stream_out", "ssh", 1.0),
        Check("through a job faster than ssh localhost", "stream_through", "ssh", 1.0),
        Check("client <= 100 MB, out of a job", "stream_out_client_rss", 100.0, 1.0),
        Check("client <= 100 MB, through a job", "stream_through_client_rss", 100.0, 1.0),
        Check("daemon <= 100 MB", "daemon_rss", 100.0, 1.0))),
    Goal(3, "CLI start", (
        Check("acjob -n true <= 6x python3 -c pass", "cli_start_ms", "python", 1 / 6),)),
    Goal(4, "Round trip", (
        Check("one trivial job through the Python client at most Huey's time",
              "round_trip_ms", "huey", 1.0),)),
    Goal(5, "Throughput", (
        Check("jobs one request each, end to end, at least Huey's rate", "e2e_one_by_one",
              "huey", 1.0),
        Check("as one batch, >= 60 % of the raw spawn rate of sh -c true", "e2e_batch",
              "spawn", 0.60))),
    Goal(6, "Submission", (
        Check("one client, one request per job: >= 2x Celery", "submit_one_client",
              "celery", 2.0),
        Check("concurrent clients: at least Huey's", "submit_concurrent", "huey", 1.0),
        Check("batched: >= 20,000 jobs/s", "submit_batch", 20000.0, 1.0))),
    Goal(7, "Acknowledged means on disk", unmeasured=(
        "a property, not a figure: the default synchronous = \"acknowledged\" flushes "
        "every commit a client is told of before the answer, the commits of concurrent "
        "requests in one flush (group commit; tests/unit/test_commits.py shows the "
        "order); the acjob column is that default, and the rows 'acjob, "
        "synchronous=full' show an fsync for every commit")),
    Goal(8, "Scale", unmeasured=(
        "taken by bench/scale.py, not by this bench: 1,000,000 stored jobs take longer "
        "to make than a bench run should")),
    Goal(9, "Slurm", (
        Check("round trip at most sbatch --wait's", "slurm_round_trip", "sbatch", 1.0),
        Check("an end noticed <= 0.5 s after the job's exit file", "slurm_notice", 0.5, 1.0),
        Check("submission >= 90 % of raw sequential sbatch", "slurm_submit", "sbatch", 0.9))),
)


def speed_ratio(figure: Figure, acjob: float, baseline: float) -> float:
    """acjob's speed relative to the baseline: above 1, acjob is better."""
    return acjob / baseline if figure.higher_is_better else baseline / acjob


def title(figure: Figure, settings: Mapping[str, Any]) -> str:
    """The figure's title with the run's settings filled in."""
    return figure.title.format(**settings)


def ratios(values: Mapping[str, Mapping[str, float]]) -> dict[str, dict[str, float]]:
    """Every baseline's ratio, per figure (only where acjob and it were measured)."""
    out: dict[str, dict[str, float]] = {}
    for figure in FIGURES:
        measured = values.get(figure.key, {})
        if "acjob" not in measured:
            continue
        out[figure.key] = {name: speed_ratio(figure, measured["acjob"], measured[name])
                           for name in figure.baselines if name in measured}
    return out


def check_goals(values: Mapping[str, Mapping[str, float]],
                settings: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Each goal with each check's outcome: ``met``, ``not met`` or ``not measured``."""
    goals = []
    for goal in GOALS:
        checks = []
        for check in goal.checks:
            figure = BY_KEY[check.figure]
            measured = values.get(check.figure, {})
            reference: float | None
            if check.reference == "pause":
                reference = float(settings["pause"])
            elif isinstance(check.reference, str):
                reference = measured.get(check.reference)
            else:
                reference = check.reference
            acjob = measured.get("acjob")
            entry: dict[str, Any] = {"text": check.text, "figure": check.figure,
                                     "reference": check.reference,
                                     "required_ratio": check.required}
            if acjob is None or reference is None:
                entry["status"] = "not measured"
            else:
                ratio = speed_ratio(figure, acjob, reference)
                entry.update(acjob=acjob, reference_value=reference, ratio=ratio,
                             status="met" if ratio >= check.required else "not met")
            checks.append(entry)
        goals.append({"goal": goal.number, "title": goal.title, "checks": checks,
                      "unmeasured": goal.unmeasured})
    return goals


def _number(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    if value >= 1:
        return f"{value:.2f}"
    return f"{value:.3f}"


TIMES = "\u00d7"


def _ratio(value: float) -> str:
    if value >= 10:
        return f"{value:.0f}{TIMES}"
    return f"{value:.2f}{TIMES}" if value >= 1 else f"{value:#.2g}{TIMES}"


def text_report(results: Mapping[str, Any]) -> str:
    """The figures as lines for a terminal: each beside its baselines, with the ratio."""
    settings = results["settings"]
    lines = ["ratio = acjob's speed relative to the baseline (above 1: acjob is faster)", ""]
    for figure in FIGURES:
        measured = results["figures"].get(figure.key, {}).get("values", {})
        if "acjob" not in measured:
            continue
        better = "higher" if figure.higher_is_better else "lower"
        lines.append(f"{title(figure, settings)} ({figure.unit}, {better} is better)")
        parts = [f"acjob {_number(measured['acjob'])}"]
        for name in figure.baselines:
            if name in measured:
                ratio = results["ratios"][figure.key][name]
                parts.append(f"{NAMES[name]} {_number(measured[name])} "
                             f"(ratio {_ratio(ratio)})")
        lines.append("    " + " | ".join(parts))
    lines += ["", "issue 14's goals:"]
    for goal in results["goals"]:
        if not goal["checks"]:
            lines.append(f"  {goal['goal']}. {goal['title']}: {goal['unmeasured']}")
        for check in goal["checks"]:
            detail = (f" (ratio {_ratio(check['ratio'])}, needs "
                      f"{_ratio(check['required_ratio'])})" if "ratio" in check else "")
            lines.append(f"  {goal['goal']}. [{check['status']}] {check['text']}{detail}")
    for what, reason in results["skipped"].items():
        lines.append(f"skipped {what}: {reason}")
    return "\n".join(lines)


def _cell(figure: Figure, measured: Mapping[str, float], name: str,
          ratio_of: Mapping[str, float]) -> str:
    if name not in measured:
        return ""
    value = f"{_number(measured[name])} {figure.unit}"
    if name == "acjob" or name not in ratio_of:
        return value
    return f"{value} ({_ratio(ratio_of[name])})"


def _md(text: str) -> str:
    """Text for a Markdown table cell (a ``|`` would end the cell)."""
    return text.replace("|", "\\|")


def markdown_report(results: Mapping[str, Any]) -> str:
    """The figures as two Markdown tables (acjob beside the peers, then beside the raw
    tools), each cell a value and acjob's ratio to it, then the goals as a checklist."""
    settings = results["settings"]
    figures = results["figures"]
    peer_columns = ["acjob", *PEERS, "acjob_fsync", "spawn", "fsync"]
    out = ["| figure | " + " | ".join(NAMES[n] for n in peer_columns) + " |",
           "| --- |" + " --- |" * len(peer_columns)]
    for figure in FIGURES:
        measured = figures.get(figure.key, {}).get("values", {})
        if not figure.peers or "acjob" not in measured:
            continue
        ratio_of = results["ratios"].get(figure.key, {})
        cells = [_cell(figure, measured, name, ratio_of) for name in peer_columns]
        out.append(f"| {_md(title(figure, settings))} | " + " | ".join(cells) + " |")
    out += ["", "| figure | acjob | baselines |", "| --- | --- | --- |"]
    for figure in FIGURES:
        measured = figures.get(figure.key, {}).get("values", {})
        if figure.peers or "acjob" not in measured:
            continue
        ratio_of = results["ratios"].get(figure.key, {})
        baselines = "; ".join(f"{NAMES[n]}: {_cell(figure, measured, n, ratio_of)}"
                              for n in figure.baselines if n in measured)
        out.append(f"| {_md(title(figure, settings))} | {_cell(figure, measured, 'acjob', {})} "
                   f"| {baselines} |")
    out += [""]
    for goal in results["goals"]:
        if not goal["checks"]:
            out.append(f"- [ ] **{goal['goal']}. {goal['title']}**: {goal['unmeasured']}")
            continue
        out.append(f"- **{goal['goal']}. {goal['title']}**")
        for check in goal["checks"]:
            box = "x" if check["status"] == "met" else " "
            if "ratio" in check:
                detail = (f"{_ratio(check['ratio'])}, needs "
                          f"{_ratio(check['required_ratio'])}")
            else:
                detail = "not measured in this run"
            out.append(f"  - [{box}] {check['text']} ({detail})")
    return "\n".join(out) + "\n"
