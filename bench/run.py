"""acjob's speed, each figure beside a baseline measured in the same run (the old command).

    python bench/run.py [--size-mib 1024] [--runs 20] [--jobs 500] [peers.py options]

``bench/peers.py`` now takes these figures (stream through ``cat`` against a plain
``cat`` pipe, ``acjob -n true`` against ``sh -c true``, the client's submit + wait + read
against spawning the same work, one batch against single calls) and many more. This
command runs it on acjob and the raw baselines alone, as this file always did: no peers,
no ssh, no Slurm. Its figures are explained in docs/performance.md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from peers import main as peers_main


def main(argv: list[str] | None = None) -> int:
    """Run ``bench/peers.py`` on acjob and its raw baselines alone."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--jobs", type=int, default=500)
    args, rest = parser.parse_known_args(argv)
    return peers_main(["--no-peers", "--no-ssh", "--no-slurm", "--size-mib",
                       str(args.size_mib), "--runs", str(args.runs), "--jobs", str(args.jobs),
                       *rest])


if __name__ == "__main__":
    sys.exit(main())
