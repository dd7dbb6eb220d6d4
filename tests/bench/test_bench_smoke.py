"""A small run of the bench (``bench/peers.py --quick``), so that it does not rot.

It measures acjob alone, with the raw baselines that need nothing but this machine (a
``cat`` pipe, spawning ``sh -c true``, ``python3 -c pass``): no peers are installed, no
Redis, sshd or Slurm is started, so the run stays hermetic and takes seconds. The peers'
side (their install, Redis, their workers, the chart) runs with ``ACJOB_BENCH_PEERS=1``.
The figures are checked for presence and sign only: no timing threshold.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]

QUEUE_FIGURES = ["round_trip_ms", "submit_one_client", "submit_concurrent", "e2e_one_by_one"]
ACJOB_FIGURES = [*QUEUE_FIGURES, "submit_batch", "e2e_batch", "stream_out", "stream_through",
                 "stream_out_client_rss", "stream_through_client_rss", "daemon_rss",
                 "live_pipe_first_byte", "cli_start_ms"]
BASELINES = {
    "round_trip_ms": ["spawn", "acjob_fsync"],
    "submit_one_client": ["acjob_fsync", "fsync"],
    "submit_concurrent": ["acjob_fsync"],
    "e2e_one_by_one": ["spawn", "acjob_fsync"],
    "e2e_batch": ["spawn"],
    "stream_out": ["pipe"],
    "stream_through": ["pipe"],
    "live_pipe_first_byte": ["pipe"],
    "cli_start_ms": ["python", "sh"],
}
PEERS = ["huey", "celery", "rq"]


def _positive(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value) and value > 0


def _run_quick(tmp_path: Path, *options: str) -> dict[str, Any]:
    out = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "peers.py"), "--quick", "--no-ssh",
         "--no-slurm", "--out", str(out), *options],
        capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "ratio" in result.stdout  # the figures were printed beside their baselines
    assert (out / "table.md").read_text().startswith("| figure |")
    results: dict[str, Any] = json.loads((out / "results.json").read_text())
    assert (out / "chart.png").exists() or results["skipped"]["chart"]
    return results


def _check_common(results: dict[str, Any]) -> None:
    meta = results["meta"]
    assert meta["commit"] and meta["date"] and meta["acjob_version"]
    assert results["settings"]["quick"] is True
    for key in ACJOB_FIGURES:
        figure = results["figures"][key]
        assert figure["title"] and figure["unit"], key
        assert _positive(figure["values"]["acjob"]), (key, figure)
        for baseline in BASELINES.get(key, []):
            assert _positive(figure["values"][baseline]), (key, baseline, figure)
            assert _positive(results["ratios"][key][baseline]), (key, baseline)
    assert [goal["goal"] for goal in results["goals"]] == list(range(1, 10))
    for goal in results["goals"]:
        assert goal["checks"] or goal["unmeasured"], goal
        for check in goal["checks"]:
            assert check["status"] in {"met", "not met", "not measured"}, check
    for what in ("ssh", "slurm"):
        assert results["skipped"][what], what


def test_quick_run_of_acjob_alone(tmp_path: Path) -> None:
    results = _run_quick(tmp_path, "--no-peers", "--cache", str(tmp_path / "cache"))
    _check_common(results)
    for peer in PEERS:
        assert "--no-peers" in results["skipped"][peer]
        assert peer not in results["figures"]["round_trip_ms"]["values"]
    # Without the peers' figures, their goals are said not to be measured.
    goal_4 = results["goals"][3]["checks"][0]
    assert goal_4["status"] == "not measured"


@pytest.mark.skipif(os.environ.get("ACJOB_BENCH_PEERS") != "1",
                    reason="installs the peers and runs Redis: set ACJOB_BENCH_PEERS=1")
def test_quick_run_with_the_peers(tmp_path: Path) -> None:
    results = _run_quick(tmp_path)  # the peers' environment is kept in the usual cache
    _check_common(results)
    assert not any(peer in results["skipped"] for peer in PEERS), results["skipped"]
    assert "chart" not in results["skipped"]
    for key in QUEUE_FIGURES:
        for peer in PEERS:
            assert _positive(results["figures"][key]["values"][peer]), (key, peer)
            assert _positive(results["ratios"][key][peer]), (key, peer)
    for peer in PEERS:
        assert results["meta"]["versions"][peer]
