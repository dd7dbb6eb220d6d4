"""Draw a bench run as one chart: acjob's speed relative to each baseline, one bar each.

    PYTHON -m harness.chart RESULTS.json CHART.png

Runs with any Python that has matplotlib (the bench uses the peers' virtual
environment; matplotlib is no dependency of acjob). The x axis is logarithmic: 1 is
parity, right of it acjob is faster (or leaner), left of it slower. A bar that one of
issue 14's goals applies to is green where the goal is met and red where not, with a
black diamond at the ratio the goal needs; other bars are grey.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from harness.report import BY_KEY, FIGURES, NAMES, TIMES

Row = tuple[str, float, float | None, bool | None, str]


def _rows(results: Mapping[str, Any]) -> list[Row]:
    """(label, ratio, required ratio or None, met or None, figure) for each bar, top to
    bottom."""
    settings = results["settings"]
    required: dict[tuple[str, str], tuple[float, bool | None]] = {}
    targets: list[tuple[str, str, float, float, bool]] = []
    for goal in results["goals"]:
        for check in goal["checks"]:
            reference = check["reference"]
            met = None if check["status"] == "not measured" else check["status"] == "met"
            if isinstance(reference, str) and reference != "pause":
                required[(check["figure"], reference)] = (check["required_ratio"], met)
            elif "ratio" in check:
                target = ("the producer's pause" if reference == "pause"
                          else f"{check['reference_value']:,.0f} {BY_KEY[check['figure']].unit}")
                targets.append((check["figure"], f"goal: {target}", check["ratio"],
                                check["required_ratio"], check["status"] == "met"))
    rows: list[Row] = []
    for figure in FIGURES:
        short = figure.short.format(**settings)
        for name, ratio in results["ratios"].get(figure.key, {}).items():
            if name == "acjob_fsync":
                continue  # a variant of acjob, in the tables only
            need, met = required.get((figure.key, name), (None, None))
            rows.append((f"{short} vs {NAMES[name]}", ratio, need, met, figure.key))
        for key, label, ratio, need, met in targets:
            if key == figure.key:
                rows.append((f"{short} vs {label}", ratio, need, met, figure.key))
    return rows


def draw(results: Mapping[str, Any], out: Path) -> None:
    """Write the chart of ``results`` (the bench's JSON) to ``out`` (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = _rows(results)
    if not rows:
        raise ValueError("nothing to draw: no figure has acjob and a baseline")
    fig, ax = plt.subplots(figsize=(11, 0.36 * len(rows) + 1.6))
    ys = list(range(len(rows)))[::-1]
    colours = ["#9e9e9e" if met is None else "#2e7d32" if met else "#c62828"
               for _, _, _, met, _ in rows]
    ratios = [ratio for _, ratio, _, _, _ in rows]
    # Each bar goes from parity (1) to the ratio: right, acjob is ahead; left, behind.
    ax.barh(ys, [ratio - 1 for ratio in ratios], left=1, color=colours, height=0.7)
    ax.set_xscale("log")
    needs = [need for _, _, need, _, _ in rows if need]
    low = min([*ratios, *needs], default=1.0)
    high = max([*ratios, *needs], default=1.0)
    ax.set_xlim(min(low / 4, 0.5), max(high * 4, 2))
    for y, (_, ratio, need, _, key) in zip(ys, rows, strict=True):
        if y < len(rows) - 1 and rows[len(rows) - 2 - y][4] != key:
            ax.axhline(y + 0.5, color="#dddddd", linewidth=0.8)  # between two figures
        if ratio >= 1:
            ax.text(ratio * 1.06, y, f"{ratio:#.2g}{TIMES}", va="center", fontsize=8)
        else:
            ax.text(ratio / 1.06, y, f"{ratio:#.2g}{TIMES}", va="center", ha="right",
                    fontsize=8)
        if need is not None:
            ax.plot([need], [y], marker="D", color="black", markersize=5)
    ax.axvline(1, color="black", linewidth=0.8)
    ax.set_yticks(ys, [label for label, _, _, _, _ in rows], fontsize=8)
    ax.set_xlabel("acjob's speed relative to the baseline (log scale; > 1: acjob is faster)")
    meta = results["meta"]
    ax.set_title(f"acjob {meta['acjob_version']} ({meta['commit']}) beside its peers and "
                 f"raw baselines, {meta['date']}, {meta['cpus']} CPUs"
                 + (" — quick run" if results["settings"]["quick"] else ""), fontsize=10)
    before, after = meta["load_average_before"][0], meta["load_average_after"][0]
    fig.text(0.01, 0.005, "Green/red: a goal of issue 14 met/not met (black diamond: the ratio "
             "it needs); grey: context. The machine's load average before/after the run: "
             f"{before:.1f}/{after:.1f}.", fontsize=8, va="bottom")
    fig.tight_layout(rect=(0, 0.02, 1, 1))
    fig.savefig(out, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    """Draw the chart of a results file."""
    source, out = (argv if argv is not None else sys.argv[1:])
    draw(json.loads(Path(source).read_text()), Path(out))


if __name__ == "__main__":
    main()
