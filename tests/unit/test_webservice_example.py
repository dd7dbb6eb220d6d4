"""The example web service's pure parts: FASTA checks, the Newick parser and drawing,
the job's script and output, the callback's signature. (The service itself runs in
tests/integration/test_webservice.py.)"""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "webservice"


def _load(name: str) -> ModuleType:
    if str(EXAMPLE) not in sys.path:
        sys.path.insert(0, str(EXAMPLE))
    return importlib.import_module(name)


fasta = _load("fasta")
newick = _load("newick")
pipeline = _load("pipeline")
blast = _load("blast")


def test_fasta_is_cleaned_and_typed() -> None:
    parsed = fasta.parse(">a desc\nACGT\nac-t\n\n>b\nACGA\n>c\nTTGA\n")
    assert [s.name for s in parsed.items] == ["a", "b", "c"]
    assert parsed.nucleotide
    assert parsed.to_fasta() == b">a\nACGTAC-T\n>b\nACGA\n>c\nTTGA\n"
    assert not fasta.parse(">a\nMVHLTPEE\n>b\nMVHLTPEK\n>c\nMVQLTPEE\n").nucleotide


@pytest.mark.parametrize(("text", "message"), [
    (">a\nACGT\n>b\nACGT\n", "at least 3"),
    ("ACGT\n", "not FASTA"),
    (">a\nAC1T\n>b\nACGT\n>c\nACGT\n", "Line 2"),
    (">a\nACGT\n>a\nACGT\n>c\nACGT\n", "used twice"),
    (">a(b)\nACGT\n>b\nACGT\n>c\nACGT\n", "must be"),
    (">a\n\n>b\nACGT\n>c\nACGT\n", "empty"),
    (">\nACGT\n", "without a name"),
    (">a\n" + "A" * (fasta.MAX_BYTES + 1), "larger than"),
])
def test_bad_fasta_is_said_in_words(text: str, message: str) -> None:
    with pytest.raises(fasta.FastaError, match=message):
        fasta.parse(text)


def test_newick_is_parsed_and_drawn() -> None:
    tree = newick.parse("(a:0.1,'b c''d':0.2,(c:0.05,d_e:0.3)0.86:0.1);")
    assert [leaf.name for leaf in tree.leaves()] == ["a", "b c'd", "c", "d_e"]
    assert tree.children[2].name == "0.86" and tree.children[2].length == 0.1
    svg = newick.to_svg(tree)
    assert svg.startswith("<svg") and svg.count('class="leaf"') == 4
    assert "b c&#x27;d" in svg and ">0.86<" in svg
    assert newick.to_svg(newick.parse("((a,b),c);")).count('class="leaf"') == 3


@pytest.mark.parametrize("text", ["(a,b", "(a,b);x", "(a:x,b);", "('a,b);"])
def test_bad_newick_is_refused(text: str) -> None:
    with pytest.raises(newick.NewickError):
        newick.parse(text)


def test_the_job_script_runs_and_its_output_splits(tmp_path: Path) -> None:
    """The script, run by sh with stand-ins for the tools: stages, then two sections."""
    clustalw = tmp_path / "clustalw"
    clustalw.write_text("#!/bin/sh\necho aligning-log\ncp input.fa alignment.fa\n")
    fasttree = tmp_path / "FastTree"
    fasttree.write_text("#!/bin/sh\necho '(a:1,b:1,c:1);'\n")
    for tool in (clustalw, fasttree):
        tool.chmod(0o755)
    progress = tmp_path / "progress"
    script = pipeline.script(nucleotide=True, clustalw=str(clustalw), fasttree=str(fasttree))
    done = subprocess.run(["sh", "-c", script], input=b">a\nA\n>b\nC\n>c\nG\n", cwd=tmp_path,
                          capture_output=True, env={"ACJOB_PROGRESS": str(progress),
                                                    "PATH": "/usr/bin:/bin"}, check=True)
    assert done.stderr == b"aligning-log\n"
    assert progress.read_text() == "100 done\n"
    result = pipeline.parse_output(done.stdout)
    assert result.tree == "(a:1,b:1,c:1);"
    assert result.alignment == ">a\nA\n>b\nC\n>c\nG\n"
    with pytest.raises(ValueError):
        pipeline.parse_output(b"### tree\n(a,b\n")


def test_blast_queries_and_hits() -> None:
    assert blast.parse_query("acgtacgt\n").items[0].name == "query"
    with pytest.raises(fasta.FastaError, match="one"):
        blast.parse_query(">a\nACGT\n>b\nACGT\n")
    with pytest.raises(fasta.FastaError, match="nucleotide"):
        blast.parse_query(">p\nMVHLTPEEKSAV\n")
    [hit] = blast.parse_hits(b"q\tref\t98.5\t68\t1\t0\t1\t68\t49\t116\t2.9e-31\t119\n")
    assert (hit.subject, hit.identity, hit.length, hit.subject_range) == ("ref", 98.5, 68,
                                                                           "49-116")
    with pytest.raises(ValueError):
        blast.parse_hits(b"not a blast line\n")
