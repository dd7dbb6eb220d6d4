"""A few rounds of the long soak (the long one: python -m tests.chaos.soak --minutes 30)."""

from __future__ import annotations

from pathlib import Path

from tests.chaos.soak import flat, soak


def test_a_short_soak_keeps_every_invariant(short_tmp: Path) -> None:
    figures, memory = soak(0.2, short_tmp, jobs=24, kills=1)
    assert len(memory) >= 3 and figures.kills >= 1
    assert figures.problems == [] and figures.ok, figures
    assert flat(memory), memory


def test_memory_is_flat_only_when_the_last_rounds_stay_near_the_first() -> None:
    assert flat([60.0, 61.0, 62.0, 60.5, 61.0, 63.0])
    assert not flat([60.0, 61.0, 80.0, 95.0, 110.0, 130.0])
