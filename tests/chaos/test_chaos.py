"""The short chaos run that CI does (the full one: python -m tests.chaos.driver)."""

from __future__ import annotations

from pathlib import Path

from tests.chaos.driver import run


def test_short_chaos_loses_and_repeats_nothing(short_tmp: Path) -> None:
    figures = run(jobs_count=120, kills=4, workdir=short_tmp, slow=1.0)
    assert figures.kills == 4 and figures.cuts > 0
    assert figures.followers > 0  # progress followed on event streams through it all
    assert figures.problems == [] and figures.ok, figures
