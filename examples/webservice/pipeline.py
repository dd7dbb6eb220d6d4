"""The job: align with clustalw, build the tree with FastTree, in one shell script.

The sequences are the job's stdin. The job reports its stages through the progress
file acjob names in ``$ACJOB_PROGRESS``, and its stdout is a small self-describing text
of two sections, the tree first::

    ### tree
    (a:0.1,b:0.2,(c:0.1,d:0.3)0.86:0.1);
    ### alignment
    >a
    AC-GT…

so that everything the web service shows comes back through acjob alone (no shared
directory between the web service and the compute node). The tools' own chatter goes
to the job's stderr, which the error page shows when a step fails.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

TREE = "### tree"
ALIGNMENT = "### alignment"


def script(*, nucleotide: bool, clustalw: str = "clustalw", fasttree: str | None = None) -> str:
    """The job's command: a POSIX shell script run in the job's own empty directory.

    ``fasttree`` is the FastTree program; by default the job looks for ``FastTree``
    and then ``fasttree`` (Debian's name) on the compute node itself.
    """
    find_fasttree = (
        f"FASTTREE={shlex.quote(fasttree)}" if fasttree else
        'FASTTREE=$(command -v FastTree || command -v fasttree) || '
        '{ echo "FastTree is not installed on $(hostname)" >&2; exit 127; }')
    kind = "DNA" if nucleotide else "PROTEIN"
    model = " -nt" if nucleotide else ""
    return "\n".join([
        "set -eu",
        find_fasttree,
        "cat > input.fa",
        'echo "10 aligning" > "$ACJOB_PROGRESS"',
        f"{shlex.quote(clustalw)} -INFILE=input.fa -OUTFILE=alignment.fa -OUTPUT=FASTA "
        f"-TYPE={kind} >&2",
        'echo "60 building the tree" > "$ACJOB_PROGRESS"',
        f'"$FASTTREE"{model} -quiet alignment.fa > tree.nwk',
        f"echo '{TREE}'; cat tree.nwk; echo '{ALIGNMENT}'; cat alignment.fa",
        'echo "100 done" > "$ACJOB_PROGRESS"',
        "",
    ])


@dataclass(frozen=True)
class Result:
    tree: str        # the Newick text, one line
    alignment: str   # aligned FASTA


def parse_output(stdout: bytes) -> Result:
    """Split the job's stdout into its tree and its alignment.

    Raises:
        ValueError: the output is not what the job writes (a truncated or foreign
            output).
    """
    text = stdout.decode("utf-8", errors="replace")
    head, sep, alignment = text.partition(f"\n{ALIGNMENT}\n")
    if not sep or not head.startswith(f"{TREE}\n"):
        raise ValueError("the job's output has no tree and alignment sections")
    tree = head.removeprefix(f"{TREE}\n").strip()
    if not tree.endswith(";"):
        raise ValueError("the job's tree is incomplete")
    return Result(tree=tree, alignment=alignment)
